#!/usr/bin/env bash
# STOW-RS destinations (issue 20): results go to DICOMweb servers with the same durable export queue
# as C-STORE. One study is segmented and its SEG is sent by STOW-RS to Orthanc's DICOMweb plugin
# (basic auth) and to a second samdad over HTTPS (bearer token of role ingest; its certificate
# verified against tls_ca_file, host name included); it arrives in the right study at both. A
# destination with a wrong password fails for good at once (401 named), one whose certificate the
# system CAs do not trust fails for good naming the verification; no secret appears in the log.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || { echo "SKIP: orthanc-dicomweb missing"; exit 77; }
P="$T/pki"; mkdir -p "$P"
(
  cd "$P"
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >ext.cnf
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=samda test CA"
  openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj "/CN=127.0.0.1"
  openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 2 -extfile ext.cnf
) >"$T/pki.log" 2>&1 || fail "test PKI: $(tail -3 "$T/pki.log")"
"$SAMDA" phantom --out "$T/ph" --site A --count 16 --seed 29 --slices-per-body 16 --dicom >/dev/null || fail "phantom"

# the second samdad: HTTPS, an ingest token for the first
d2=$(free_port); h2=$(free_port)
mkdir -p "$T/two"
write_conf "$T/two/s.conf" "$d2" "$h2"
sed -i "s|^data_dir = data|data_dir = $T/two/data|; s|^\[http\]$|[http]\ntls_cert = $P/srv.crt\ntls_key = $P/srv.key|" "$T/two/s.conf"
start_samdad two "$T/two/s.conf"
wait_for_text "$T/two.log" 'msg="ready"' 60
"$SAMDA" token create first --role ingest --data-dir "$T/two/data" >"$T/token2" 2>/dev/null
viewer2=$("$SAMDA" token create viewer --role user --data-dir "$T/two/data" 2>/dev/null)
ohttp=$(free_port); odicom=$(free_port); dport=$(free_port); hport=$(free_port)
start_orthanc orthanc "$ohttp" "$odicom" "$dport" web "samda:s3cret-orthanc"
printf 's3cret-orthanc\n' >"$T/orthanc.pw"; printf 'not-the-password\n' >"$T/wrong.pw"
chmod 600 "$T/token2" "$T/orthanc.pw" "$T/wrong.pw"

write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
  "[destination orthanc]" "url = http://127.0.0.1:$ohttp/dicom-web/" "auth = basic" "username = samda" "secret_file = $T/orthanc.pw" \
  "[destination second]" "url = https://127.0.0.1:$h2/dicomweb" "auth = bearer" "secret_file = $T/token2" "tls_ca_file = $P/ca.crt" \
  "[destination wrongpw]" "url = http://127.0.0.1:$ohttp/dicom-web" "auth = basic" "username = samda" "secret_file = $T/wrong.pw" \
  "[destination untrusted]" "url = https://127.0.0.1:$h2/dicomweb" "auth = bearer" "secret_file = $T/token2"
sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = orthanc,second,wrongpw,untrusted/' "$T/s.conf"
sed -i 's/^tick = 200ms/tick = 200ms\nexport_backoff = 1s\nexport_backoff_max = 2s/' "$T/s.conf"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
admin=$("$SAMDA" token create ops --role admin --data-dir "$T/data" 2>/dev/null)
H="http://127.0.0.1:$hport"

storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000" || fail "storescu"
wait_for_text "$T/d.log" 'msg="job done: DICOM-SEG recorded"' 240
read -r study < <($PY -c "import pydicom,os,sys; d=sys.argv[1]; print(pydicom.dcmread(os.path.join(d,sorted(os.listdir(d))[0])).StudyInstanceUID)" "$T/ph/dicom/A_00000")
seg_sop=$(curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/studies/$study/results" | json_expr '[r["seg_sop_uid"] for s in d["series"] for r in s["results"]][0]')
exports_settled() { curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/exports" |
  $PY -c 'import json,sys; d=json.load(sys.stdin); d=d.get("exports", d) if isinstance(d, dict) else d; sys.exit(0 if len(d)==4 and all(e["state"] in ("done","failed") for e in d) else 1)'; }
wait_for_cmd 120 exports_settled || fail "exports: $(curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/exports")"
curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/exports" >"$T/exports.json"
$PY - "$T/exports.json" <<'PY' || fail "export states: $(cat "$T/exports.json")"
import json, sys
d = json.load(open(sys.argv[1])); d = d.get("exports", d) if isinstance(d, dict) else d
by = {e["destination"]: e for e in d}
assert by["orthanc"]["state"] == "done" and by["second"]["state"] == "done", by
for name, words in (("wrongpw", "credentials"), ("untrusted", "does not verify")):
    e = by[name]
    assert e["state"] == "failed" and e["attempts"] == 1 and words in (e["error"] or ""), (name, e)
    print(name, "->", e["error"])
PY
ok "SEG exported by STOW-RS to Orthanc (basic) and to a second samdad over HTTPS (bearer); a wrong password and an untrusted certificate fail for good at once, named"

# at Orthanc: in the source study
O="http://127.0.0.1:$ohttp"
curl -sf -u samda:s3cret-orthanc "$O/tools/find" -d "{\"Level\":\"Instance\",\"Query\":{\"SOPInstanceUID\":\"$seg_sop\"},\"Expand\":true}" >"$T/o.json"
oseries=$(json_expr 'd[0]["ParentSeries"]' <"$T/o.json") || fail "Orthanc has no instance $seg_sop: $(cat "$T/o.json")"
ostudy=$(curl -sf -u samda:s3cret-orthanc "$O/series/$oseries" | json_expr 'd["ParentStudy"]')
curl -sf -u samda:s3cret-orthanc "$O/studies/$ostudy" | json_expr 'd["MainDicomTags"]["StudyInstanceUID"]' | grep -qx "$study" ||
  fail "the SEG is not in study $study at Orthanc"
# at the second samdad: its DICOMweb lists it in the study
curl -sf --cacert "$P/ca.crt" -H "Authorization: Bearer $viewer2" "https://127.0.0.1:$h2/dicomweb/studies/$study/series?Modality=SEG" |
  json_expr 'len(d)' | grep -qx 1 || fail "the second samdad has no SEG series in $study"
curl -sf --cacert "$P/ca.crt" -H "Authorization: Bearer $viewer2" "https://127.0.0.1:$h2/dicomweb/studies/$study/instances" |
  json_expr '[i["00080018"]["Value"][0] for i in d]' | grep -qF "'$seg_sop'" || fail "the second samdad lacks $seg_sop"
ok "the SEG ($seg_sop) is in study $study at Orthanc and at the second samdad"

for secret in s3cret-orthanc not-the-password "$(cat "$T/token2")"; do
  grep -qF -- "$secret" "$T/d.log" && fail "a secret is in samdad's log"
done
[ "$(code -X POST -H "Authorization: Bearer $admin" "$H/api/v1/destinations/orthanc/echo")" = 409 ] || fail "C-ECHO of a STOW-RS destination: $(cat "$T/body")"
grep -q 'STOW-RS' "$T/body" || fail "the echo refusal should say why: $(cat "$T/body")"
ok "no secret in the log; C-ECHO of a STOW-RS destination is refused, saying why"
