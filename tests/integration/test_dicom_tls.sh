#!/usr/bin/env bash
# DICOM TLS through samdad (issue 15, item 1), with dcmtk's +tls tools and a test PKI made here with
# the openssl command: [dicom] tls on the listener (client certificates required) and
# [destination] tls for the exporter and the destination C-ECHO.
#  - the configuration refuses a key that does not match its certificate (file:line, key, rule);
#    --print-config shows the key's path, never its content;
#  - storescu +tls with a certificate of the trusted CA stores (the instances indexed); a client
#    with a certificate of another CA, one without a certificate and a plain-TCP one are refused,
#    nothing of theirs stored, and samdad logs each refused handshake with the peer's address;
#  - the job's DICOM-SEG goes to storescp +tls (which requires samdad's client certificate); a
#    storescp whose certificate another CA signed gets nothing: the export fails at once
#    (permanent, one attempt), logged naming the destination and the TLS cause;
#  - POST /api/v1/destinations/NAME/echo uses the destination's TLS; API destinations cannot ask
#    for TLS (400).
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
command -v openssl >/dev/null || fail "openssl missing"

# ---- test PKI: a CA and a rogue CA; samdad's certificate (server and client use), a sender's, a
#      PACS's, and the rogue CA's sender and PACS. RSA keys: the BCP 195 suites are RSA ones.
P="$T/pki"
mkdir -p "$P"
(
  cd "$P"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >ext.cnf
  mk_ca() { openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.crt" -days 2 -subj "/CN=$1"; }
  mk_cert() {
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$3"
    openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -out "$1.crt" -days 2 -extfile ext.cnf
  }
  mk_ca ca && mk_ca rogueca
  mk_cert samda ca localhost && mk_cert sender ca modality && mk_cert pacs ca localhost
  mk_cert intruder rogueca intruder && mk_cert roguepacs rogueca localhost
) >"$T/pki.log" 2>&1 || fail "making the test PKI: $(tail -5 "$T/pki.log")"

"$SAMDA" phantom --out "$T/ph" --site A --count 8 --seed 5 --slices-per-body 8 --dicom >/dev/null || fail "phantom"
series_dir="$T/ph/dicom/A_00000"
n_files=$(ls "$series_dir" | wc -l)
dport=$(free_port); hport=$(free_port); pport=$(free_port); rport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
  "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $pport" "tls = true" \
  "tls_ca_file = $P/ca.crt" "tls_cert = $P/samda.crt" "tls_key = $P/samda.key" \
  "[destination rogue]" "ae_title = ROGUE" "host = 127.0.0.1" "port = $rport" "tls = true" \
  "tls_ca_file = $P/ca.crt"
sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = pacs, rogue/' "$T/s.conf"
sed -i 's/^tick = 200ms/tick = 200ms\nexport_backoff = 1s\nexport_backoff_max = 2s/' "$T/s.conf"
# the listener: TLS only, client certificates of the CA required (the default)
sed -i "s|^ae_title = SAMDA|ae_title = SAMDA\ntls = true\ntls_cert = $P/samda.crt\ntls_key = $P/samda.key\ntls_ca_file = $P/ca.crt|" "$T/s.conf"

# ---- configuration: validated like every option; key paths shown, key material never
cp "$T/s.conf" "$T/bad.conf"
sed -i "0,/^tls_key = /s|^tls_key = $P/samda.key|tls_key = $P/pacs.key|" "$T/bad.conf" # the [dicom] one
line=$(grep -n "^tls_key = $P/pacs.key" "$T/bad.conf" | head -1 | cut -d: -f1)
rc=0
"$SAMDAD" --config "$T/bad.conf" --check-config >"$T/check.out" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "a key that does not match its certificate was accepted (rc $rc): $(cat "$T/check.out")"
grep -qF "$T/bad.conf:$line: [dicom] tls_key = $P/pacs.key: private key $P/pacs.key does not match certificate $P/samda.crt" \
  "$T/check.out" || fail "mismatch message: $(cat "$T/check.out")"
"$SAMDAD" --config "$T/s.conf" --print-config >"$T/print.out" || fail "--print-config"
grep -qx "tls_key = $P/samda.key" "$T/print.out" || fail "--print-config does not show [dicom] tls_key's path"
grep -q "BEGIN\|PRIVATE KEY" "$T/print.out" && fail "--print-config shows key material"
ok "configuration: a mismatched key refused at $(basename "$T/bad.conf"):$line naming [dicom] tls_key and the rule; --print-config shows the key path, no key material"

# ---- destinations: one storescp +tls with a certificate of the CA, requiring samdad's client
#      certificate; one whose certificate the rogue CA signed
mkdir -p "$T/recv" "$T/recv_rogue"
storescp -aet PACS -od "$T/recv" +tls "$P/pacs.key" "$P/pacs.crt" +cf "$P/ca.crt" -rc "$pport" >"$T/storescp.log" 2>&1 &
_pids+=($!)
storescp -aet ROGUE -od "$T/recv_rogue" +tls "$P/roguepacs.key" "$P/roguepacs.crt" +cf "$P/ca.crt" -ic "$rport" \
  >"$T/storescp_rogue.log" 2>&1 &
_pids+=($!)

start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
grep -q 'msg="ready".*dicom_tls=true' "$T/d.log" || fail "the ready line does not say DICOM TLS is on: $(grep 'msg="ready"' "$T/d.log")"
D="$T/data"
instances() { sqlite3 "$D/index.sqlite3" "SELECT count(*) FROM instances"; }

# ---- refused senders first: nothing of theirs may be stored
tls_fail_lines() { grep -c 'msg="TLS handshake failed"' "$T/d.log" || true; }
! storescu -to 10 -ta 10 -aet STORESCU -aec SAMDA +tls "$P/intruder.key" "$P/intruder.crt" +cf "$P/ca.crt" \
  127.0.0.1 "$dport" "$series_dir/IMG00001.dcm" >"$T/intruder.out" 2>&1 || fail "a client certificate of another CA was accepted"
wait_for_cmd 10 bash -c "[ \$(grep -c 'msg=\"TLS handshake failed\"' '$T/d.log') -ge 1 ]"
! storescu -to 10 -ta 10 -aet STORESCU -aec SAMDA +tla +cf "$P/ca.crt" \
  127.0.0.1 "$dport" "$series_dir/IMG00001.dcm" >"$T/anon.out" 2>&1 || fail "a client without a certificate was accepted"
wait_for_cmd 10 bash -c "[ \$(grep -c 'msg=\"TLS handshake failed\"' '$T/d.log') -ge 2 ]"
! storescu -to 10 -ta 10 -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$series_dir/IMG00001.dcm" >"$T/plain.out" 2>&1 ||
  fail "a plain-TCP client stored on the TLS port"
wait_for_cmd 10 bash -c "[ \$(grep -c 'msg=\"TLS handshake failed\"' '$T/d.log') -ge 3 ]"
[ "$(tls_fail_lines)" = 3 ] || fail "expected 3 refused handshakes logged, got $(tls_fail_lines)"
grep 'msg="TLS handshake failed"' "$T/d.log" | head -3
grep 'msg="TLS handshake failed"' "$T/d.log" | grep -vq 'peer=127.0.0.1 ' &&
  fail "a refused handshake's log line does not name the peer's address"
grep 'msg="TLS handshake failed"' "$T/d.log" | head -2 | grep -qi 'certificate' ||
  fail "the refused handshakes' log lines do not say the certificate was the cause"
[ "$(instances)" = 0 ] || fail "a refused sender's instance was stored"
ok "refused and logged (peer address, cause): a client certificate of another CA, no certificate (+tla), plain TCP; nothing stored"

# ---- after the handshake the [peer] allow-list applies as on a plain port
! storescu -to 10 -ta 10 -aet INTRUDER -aec SAMDA +tls "$P/sender.key" "$P/sender.crt" +cf "$P/ca.crt" \
  127.0.0.1 "$dport" "$series_dir/IMG00001.dcm" >"$T/ae.out" 2>&1 || fail "an unknown calling AE title stored over TLS"
wait_for_cmd 10 grep -q 'msg="association rejected" calling_ae="INTRUDER"' "$T/d.log"
[ "$(instances)" = 0 ] || fail "the unknown AE's instance was stored"
ok "a trusted certificate with an AE title not in [peer]: association rejected and logged"

# ---- a trusted sender stores over TLS
storescu -to 30 -ta 30 -aet STORESCU -aec SAMDA +tls "$P/sender.key" "$P/sender.crt" +cf "$P/ca.crt" \
  127.0.0.1 "$dport" +sd "$series_dir" >"$T/store.out" 2>&1 || fail "storescu +tls: $(tail -5 "$T/store.out")"
[ "$(instances)" = "$n_files" ] || fail "index holds $(instances) instances, expected $n_files"
"$SAMDA" series --data-dir "$D" | json_expr 'sum(s["instances"] for s in d)' | grep -qx "$n_files" || fail "samda series"
ok "storescu +tls with a certificate of the trusted CA: $n_files instances stored and indexed"

# ---- the SEG goes to the TLS destination; the one with an untrusted certificate gets nothing
wait_for_text "$T/d.log" 'msg="job done: DICOM-SEG recorded"' 300
sop=$(sqlite3 "$D/index.sqlite3" "SELECT seg_sop_uid FROM results")
wait_for_cmd 60 test -f "$T/recv/SG.$sop"
$PY -c "import pydicom,sys; d=pydicom.dcmread('$T/recv/SG.$sop'); sys.exit(0 if d.SOPClassUID=='1.2.840.10008.5.1.4.1.1.66.4' else 1)" ||
  fail "the file storescp +tls received is not the DICOM-SEG"
wait_for_cmd 10 grep -q 'msg="sent".*destination=pacs' "$T/d.log"
ok "the DICOM-SEG reached storescp +tls (samdad presented its client certificate; storescp required it)"

wait_for_text "$T/d.log" 'msg="DICOM TLS with the destination failed: not sent, failed (retry by hand)"' 60
line=$(grep 'msg="DICOM TLS with the destination failed' "$T/d.log" | head -1)
echo "$line"
echo "$line" | grep -q 'destination=rogue' || fail "the failure does not name the destination"
echo "$line" | grep -q 'TLS handshake failed' || fail "the failure does not give the TLS cause"
echo "$line" | grep -qi 'certificate' || fail "the failure does not say the certificate was the cause"
sleep 3 # two back-off periods: a transient failure would have been tried again by now
rogue_id="(SELECT id FROM destinations WHERE name = 'rogue')"
st=$(sqlite3 "$D/index.sqlite3" "SELECT state || ' ' || attempts || ' ' || permanent FROM exports WHERE destination_id = $rogue_id")
[ "$st" = "failed 1 1" ] || fail "export to the untrusted destination: expected 'failed 1' (permanent, not retried), got '$st'"
[ -z "$(ls "$T/recv_rogue")" ] || fail "the destination with an untrusted certificate received something"
[ "$(grep -c 'destination=rogue' "$T/d.log")" = 1 ] || fail "the untrusted destination was tried more than once"
ok "a destination whose certificate the configured CA did not sign: nothing sent, the export failed at once (permanent, 1 attempt), logged with destination and cause"

# ---- C-ECHO of destinations uses their TLS; API destinations cannot ask for TLS
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)
AA=(-H "Authorization: Bearer $admin")
H="http://127.0.0.1:$hport"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/destinations/pacs/echo")" = 200 ] || fail "echo pacs: $(cat "$T/body")"
json_expr 'd["ok"], d["status"], d["tls"]' <"$T/body" | grep -qx "True SAMDA_OK True" || fail "echo pacs over TLS: $(cat "$T/body")"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/destinations/rogue/echo")" = 200 ] || fail "echo rogue: $(cat "$T/body")"
json_expr 'd["ok"], d["tls"]' <"$T/body" | grep -qx "False True" || fail "echo rogue: $(cat "$T/body")"
json_expr 'd["error"]' <"$T/body" | grep -q "TLS handshake failed" || fail "echo rogue error: $(cat "$T/body")"
[ "$(code "${AA[@]}" "$H/api/v1/destinations/pacs")" = 200 ] || fail "destination pacs"
json_expr 'd["tls"], d["source"]' <"$T/body" | grep -qx "True configuration" || fail "destination pacs: $(cat "$T/body")"
[ "$(code -X POST "${AA[@]}" -H 'Content-Type: application/json' \
  -d '{"name":"x","ae_title":"X","host":"127.0.0.1","port":104,"settings":{"tls":true}}' "$H/api/v1/destinations")" = 400 ] ||
  fail "an API destination asking for TLS was not refused: $(cat "$T/body")"
grep -q "settings.tls" "$T/body" || fail "the 400 does not name settings.tls: $(cat "$T/body")"
ok "C-ECHO of destinations over their TLS (trusted: ok; untrusted CA: TLS handshake failed); API destinations asking for TLS: 400"

# no key material in the log
grep -q "BEGIN\|PRIVATE KEY" "$T/d.log" && fail "key material in the log"
ok "no key material in samdad's log"
