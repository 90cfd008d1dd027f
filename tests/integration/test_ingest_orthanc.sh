#!/usr/bin/env bash
# Orthanc (Debian's package) as the sending PACS: upload the real MR series to Orthanc's REST API,
# ask Orthanc to C-STORE the study to samdad, and check that samdad indexed all of it and queued
# exactly one job.
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
dport=$(free_port); hport=$(free_port); ohttp=$(free_port); odicom=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"'
start_orthanc orthanc "$ohttp" "$odicom" "$dport"
O="http://127.0.0.1:$ohttp"

for f in "$MR"/*.dcm; do
  curl -sf -X POST --data-binary @"$f" "$O/instances" >/dev/null || fail "upload of $f to Orthanc failed"
done
study=$(curl -sf "$O/studies" | json_expr 'd[0]')
[ -n "$study" ] || fail "Orthanc holds no study"
ok "MR series uploaded to Orthanc (study $study)"

curl -sf -X POST "$O/modalities/samda/echo" -d '{}' >/dev/null || fail "Orthanc cannot C-ECHO samdad"
ok "Orthanc C-ECHO to samdad"
out=$(curl -sf -X POST "$O/modalities/samda/store" -d "{\"Resources\": [\"$study\"], \"Synchronous\": true}") ||
  fail "Orthanc C-STORE to samdad failed: $(tail -5 "$T/orthanc.log")"
echo "$out" | json_expr 'd.get("FailedInstancesCount", 0)' | grep -qx 0 || fail "Orthanc reports failures: $out"
ok "Orthanc sent the study: $(echo "$out" | json_expr 'd.get("InstancesCount")') instances"

n=$("$SAMDA" series --data-dir "$T/data" | json_expr 'sum(s["instances"] for s in d)')
[ "$n" = 20 ] || fail "samdad indexed $n instances, expected 20"
wait_for_cmd 20 bash -c "'$SAMDA' jobs --data-dir '$T/data' | $PY -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin))==1 else 1)'"
"$SAMDA" jobs --data-dir "$T/data" | json_expr 'd[0]["kind"]' | grep -qx segment || fail "no segment job"
grep -q 'calling_ae="ORTHANC"' "$T/d.log" || fail "association from ORTHANC not logged"
ok "samdad indexed 20 instances from Orthanc and queued one job"
