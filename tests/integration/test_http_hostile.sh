#!/usr/bin/env bash
# Issue 14's HTTP findings against samdad itself, over HTTPS: the TLS protocols and suites it
# offers (BCP 195), ambiguous request framing (a request smuggled behind it is never read), STOW part
# headers over the parser's limit (answered, not dropped), path parameters checked only after
# authentication and authorisation, and URLs it hands out that never come from the Host header
# ([http] public_url, else the address the connection arrived on).
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
command -v openssl >/dev/null || fail "openssl missing"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 -subj /CN=127.0.0.1 \
  >/dev/null 2>&1 || fail "openssl could not make a certificate"
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
sed -i "s|^\[http\]$|[http]\ntls_cert = $T/cert.pem\ntls_key = $T/key.pem|" "$T/s.conf"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"'
D="$T/data"; H="https://127.0.0.1:$hport"
user=$("$SAMDA" token create viewer --role user --data-dir "$D" 2>/dev/null)
ingest=$("$SAMDA" token create pacs --role ingest --data-dir "$D" 2>/dev/null)
[[ "$user" == samda_* && "$ingest" == samda_* ]] || fail "token creation failed"
alive() { [ "$(code -k "$H/health")" = 200 ] || fail "samdad not answering after: $1"; }

# ---- TLS: 1.2 and 1.3, ECDHE with AEAD only ----------------------------------------------------
# Debian's OpenSSL offers TLS 1.0/1.1, static RSA and CBC only at security level 0: ask for it, so
# that a refusal is samdad's. hs ARGS...: 1 when a session was set up, 0 when the server refused.
hs() {
  local out rc=0
  out=$(openssl s_client -connect "127.0.0.1:$hport" "$@" </dev/null 2>&1) || rc=$?
  if grep -qE 'no protocols available|no ciphers available|no cipher match' <<<"$out"; then
    fail "s_client $* did not offer it: $(grep -m1 -E 'no (protocols|ciphers?)' <<<"$out")"
  fi
  if [ "$rc" = 0 ] && grep -q '^New, TLSv1' <<<"$out"; then echo 1; else echo 0; fi
}
for a in "-tls1 -cipher DEFAULT:@SECLEVEL=0" "-tls1_1 -cipher DEFAULT:@SECLEVEL=0" \
         "-tls1_2 -cipher AES128-GCM-SHA256:@SECLEVEL=0" "-tls1_2 -cipher AES256-GCM-SHA384:@SECLEVEL=0" \
         "-tls1_2 -cipher AES128-SHA256:@SECLEVEL=0" "-tls1_2 -cipher ECDHE-RSA-AES128-SHA:@SECLEVEL=0" \
         "-tls1_2 -cipher ECDHE-RSA-AES256-SHA384:@SECLEVEL=0"; do
  # shellcheck disable=SC2086
  [ "$(hs $a)" = 0 ] || fail "samdad accepted s_client $a"
done
for a in "-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256" "-tls1_2 -cipher ECDHE-RSA-CHACHA20-POLY1305" "-tls1_3"; do
  # shellcheck disable=SC2086
  [ "$(hs $a)" = 1 ] || fail "samdad refused s_client $a"
done
[ "$(code -k "$H/health")" = 200 ] || fail "curl over https"
[ "$(code -k --tls-max 1.2 "$H/health")" = 200 ] || fail "curl over TLS 1.2"
ok "TLS 1.0, 1.1, static-RSA and CBC suites refused by samdad; ECDHE-AEAD over TLS 1.2 and TLS 1.3 accepted; curl works"

# raw PATH BYTES...: send bytes over TLS, read until samdad closes (or 4 s), print "STATUS RESPONSES CLOSED"
# and the body of the last response to $T/raw.
raw() {
  $PY - "$hport" "$T/raw" <<PY
import socket, ssl, sys, time
req = $1
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="127.0.0.1")
try:
    s.sendall(req)
except OSError:
    pass
s.settimeout(4); out = b""; closed = False; t0 = time.time()
try:
    while time.time() - t0 < 4:
        b = s.recv(65536)
        if not b: closed = True; break
        out += b
except (socket.timeout, TimeoutError): pass
except OSError: closed = True
status = out.split(b" ", 2)[1].decode() if out.startswith(b"HTTP/1.") else "0"
open(sys.argv[2], "wb").write(out)
print(status, out.count(b"HTTP/1.1 "), "closed" if closed else "open")
PY
}

# ---- ambiguous framing: 400 and the connection closed, the smuggled request never read -------------
SMUG="b'GET /dicomweb/studies HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer $user\\r\\n\\r\\n'"
HEAD="b'POST /api/v1/studies/1.2.3/segment HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer $user\\r\\nContent-Type: application/json\\r\\n'"
for c in "b'Content-Length: 2\\r\\nContent-Length: 81\\r\\n\\r\\n{}'" \
         "b'Content-Length: 2\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n2\\r\\n{}\\r\\n0\\r\\n\\r\\n'" \
         "b'Transfer-Encoding: chunked\\r\\nContent-Length: 81\\r\\n\\r\\n2\\r\\n{}\\r\\n0\\r\\n\\r\\n'" \
         "b'Transfer-Encoding: identity\\r\\n\\r\\n{}'"; do
  r=$(raw "$HEAD + $c + $SMUG")
  [ "$r" = "400 1 closed" ] || fail "ambiguous framing $c: $r: $(head -c 600 "$T/raw")"
  grep -q 'Connection: close' "$T/raw" || fail "no Connection: close: $(head -c 600 "$T/raw")"
done
"$SAMDA" audit --data-dir "$D" >"$T/audit.json"
json_expr 'sum(1 for e in d if "/dicomweb/studies" in e["action"] and e["actor"].startswith("token:"))' <"$T/audit.json" \
  | grep -qx 0 || fail "a smuggled request reached the core: $(cat "$T/audit.json")"
r=$(raw "b'GET /dicomweb/studies HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer $user\\r\\nContent-Length: 0\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n'")
[ "$r" = "200 1 closed" ] || fail "identical Content-Length repeats: $r"
alive "ambiguous framing"
ok "differing Content-Length, Transfer-Encoding with Content-Length, a non-chunked coding: 400, closed, smuggled request unread"

# ---- STOW part headers over 8 KiB: a 400 naming the limit, not a dropped connection -----------------
$PY - "$MR/brain_001.dcm" "$T/bigpart.body" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
body = b"--B\r\nContent-Type: application/dicom\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n" + data + b"\r\n--B--\r\n"
open(sys.argv[2], "wb").write(body)
PY
st=$(curl -sk -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $ingest" \
  -H 'Content-Type: multipart/related; type="application/dicom"; boundary=B' --data-binary @"$T/bigpart.body" "$H/dicomweb/studies")
[ "$st" = 400 ] || fail "STOW with a 20 KB part header: $st $(cat "$T/body")"
grep -q 'multipart part 1: headers larger than 8192 bytes' "$T/body" || fail "400 does not name the limit: $(cat "$T/body")"
tmp_empty "$D" || fail "temp files left: $(find "$D/tmp" -type f)"
alive "STOW part headers"
ok "STOW part header of 20 KB: 400 naming the part and the 8192-byte limit; nothing left in tmp/"

# ---- path parameters: 401/403 first, the rule only for an authorised client -----------------------
for p in "/dicomweb/studies/1.2.3%27%20OR%201=1/series" "/dicomweb/studies/..%2F..%2Fetc/series" "/api/v1/jobs/12a" \
         "/dicomweb/studies/1/series/2/instances/3/frames/0,,1"; do
  [ "$(code -k --path-as-is "$H$p")" = 401 ] || fail "anonymous $p: $(cat "$T/body")"
  ! grep -qE 'must be|path segment' "$T/body" || fail "anonymous $p learns the rule: $(cat "$T/body")"
  [ "$(code -k --path-as-is -H "Authorization: Bearer $ingest" "$H$p")" = 403 ] || fail "ingest on $p: $(cat "$T/body")"
  ! grep -qE 'must be|path segment' "$T/body" || fail "ingest token on $p learns the rule: $(cat "$T/body")"
  [ "$(code -k --path-as-is -H "Authorization: Bearer $user" "$H$p")" = 400 ] || fail "user on $p: $(cat "$T/body")"
  grep -qE 'must be|path segment' "$T/body" || fail "user's 400 on $p does not name the rule: $(cat "$T/body")"
done
ok "bad path parameters: 401 anonymous and 403 wrong role without the rule; 400 with the rule for the user"

# ---- URLs handed out: never from the Host header --------------------------------------------------
$PY - "$T/stow.body" "$MR"/brain_00[1-3].dcm <<'PY'
import sys
out = open(sys.argv[1], "wb")
for f in sys.argv[2:]:
    out.write(b"--B\r\nContent-Type: application/dicom\r\n\r\n" + open(f, "rb").read() + b"\r\n")
out.write(b"--B--\r\n")
PY
st=$(curl -sk -o "$T/body" -w '%{http_code}' -H 'Host: evil.example:666' -H "Authorization: Bearer $ingest" \
  -H 'Content-Type: multipart/related; type="application/dicom"; boundary=B' --data-binary @"$T/stow.body" "$H/dicomweb/studies")
[ "$st" = 200 ] || fail "STOW: $st $(cat "$T/body")"
! grep -q evil "$T/body" || fail "RetrieveURL from the Host header: $(cat "$T/body")"
json_expr 'd["00081199"]["Value"][0]["00081190"]["Value"][0]' <"$T/body" | grep -q "^$H/dicomweb/studies/" \
  || fail "RetrieveURL not on $H: $(cat "$T/body")"
study=$(dcmdump -q +P 0020,000D "$MR/brain_001.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
[ "$(code -k -H 'Host: evil.example' -H "Authorization: Bearer $user" "$H/dicomweb/studies/$study/metadata")" = 200 ] || fail "metadata: $(head -c 300 "$T/body")"
! grep -q evil "$T/body" || fail "BulkDataURI from the Host header"
bulk=$(json_expr 'd[0]["7FE00010"]["BulkDataURI"]' <"$T/body")
[[ "$bulk" == "$H/dicomweb/studies/$study/"* ]] || fail "BulkDataURI $bulk not on $H"
[ "$(code -k -H "Authorization: Bearer $user" -H 'Accept: multipart/related; type="application/octet-stream"' "$bulk")" = 200 ] \
  || fail "BulkDataURI $bulk does not answer"
ok "with Host: evil.example, RetrieveURL and BulkDataURI name $H (and the BulkDataURI answers)"

# [http] public_url is checked, and when set it is the base
printf '[daemon]\ndata_dir = %s/x\n[http]\npublic_url = javascript:alert(1)\n' "$T" >"$T/bad.conf"
! "$SAMDAD" --config "$T/bad.conf" --check-config >"$T/check.out" 2>&1 || fail "bad public_url accepted"
grep -q 'bad.conf:4: \[http\] public_url = javascript:alert(1): must be an http:// or https:// URL' "$T/check.out" \
  || fail "public_url refusal: $(cat "$T/check.out")"
kill -TERM "$(cat "$T/d.pid")"; wait_exit "$(cat "$T/d.pid")" 15; [ "$WAIT_RC" = 0 ] || fail "exit $WAIT_RC"
start_samdad d2 "$T/s.conf" --set http.public_url=https://pacs.example/samda/
wait_for_text "$T/d2.log" 'msg="ready"'
st=$(curl -sk -o "$T/body" -w '%{http_code}' -H 'Host: evil.example' -H "Authorization: Bearer $ingest" \
  -H 'Content-Type: multipart/related; type="application/dicom"; boundary=B' --data-binary @"$T/stow.body" "$H/dicomweb/studies")
[ "$st" = 200 ] || fail "STOW with public_url: $st $(cat "$T/body")"
json_expr 'd["00081190"]["Value"][0]' <"$T/body" | grep -qx "https://pacs.example/samda/dicomweb/studies/$study" \
  || fail "RetrieveURL with public_url: $(cat "$T/body")"
ok "[http] public_url: a bad value refused naming file, line and rule; a good one is the base of RetrieveURL"
kill -TERM "$(cat "$T/d2.pid")"; wait_exit "$(cat "$T/d2.pid")" 15; [ "$WAIT_RC" = 0 ] || fail "exit $WAIT_RC"
echo "all hostile HTTP checks passed"
