#!/usr/bin/env bash
# A site's active adapter file damaged on disk after it was registered (issue 8, faults). The worker
# checks the file against the SHA-256 the index recorded before it parses it: a version already in
# its cache keeps being used; after a restart the job fails with a message naming the site, the
# version and the file, the data directory check names it too; uploading a good version and
# retrying the job recovers without a restart.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }

"$SAMDA" phantom --out "$T/ph" --site A --count 96 --seed 23 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "device = cpu"
sed -i 's/^tick = 200ms/tick = 200ms\njob_max_attempts = 1/' "$T/s.conf"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
admin=$("$SAMDA" token create ops --role admin --data-dir "$T/data" 2>/dev/null)
AA=(-H "Authorization: Bearer $admin")
H="http://127.0.0.1:$hport"

[ "$(code -X POST "${AA[@]}" -H 'Content-Type: application/octet-stream' --data-binary @"$DEMO/site_A_adapter.safetensors" \
      "$H/api/v1/sites/default/adapters")" = 201 ] || fail "upload: $(cat "$T/body")"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/default/adapters/1/activate")" = 200 ] || fail "activate: $(cat "$T/body")"
ok "adapter version 1 registered and active for site default"

jobs_json() { "$SAMDA" jobs --data-dir "$T/data"; }
job_state() { jobs_json | json_expr "[j['state'] for j in d if j['id'] == $1][0]"; }
send_series() {  # send_series N: send phantom series N and wait until its job ends; prints the job id
  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_0000$1" || fail "storescu $1"
  wait_for_cmd 30 bash -c "'$SAMDA' jobs --data-dir '$T/data' | $PY -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin)) == $(($1 + 1)) else 1)'"
  local id
  id=$(jobs_json | json_expr 'max(j["id"] for j in d)')
  wait_for_cmd 240 bash -c "'$SAMDA' jobs --data-dir '$T/data' | $PY -c 'import json,sys; sys.exit(0 if [j for j in json.load(sys.stdin) if j[\"id\"] == $id and j[\"state\"] in (\"done\", \"failed\")] else 1)'"
  echo "$id"
}

j1=$(send_series 0)
[ "$(job_state "$j1")" = done ] || fail "job $j1: $(jobs_json)"
jobs_json | json_expr "[j['result']['adapter'] for j in d if j['id'] == $j1][0]" | grep -q "'version': 1" || fail "job $j1 did not use version 1"
ok "job $j1 done with site adapter version 1"

f=$(find "$T/data/objects/adapters" -name '1.safetensors')
[ -n "$f" ] || fail "no stored adapter file"
chmod u+w "$f"
$PY - "$f" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0xFF
open(p, "wb").write(bytes(b))
PY
ok "one byte of the stored adapter file flipped"

j2=$(send_series 1)
[ "$(job_state "$j2")" = done ] || fail "job $j2 should run on the cached adapter: $(jobs_json)"
ok "job $j2 done: the version already in the worker's memory keeps being used"

kill -TERM "$(cat "$T/d.pid")"
wait_exit "$(cat "$T/d.pid")" 30
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
j3=$(send_series 2)
[ "$(job_state "$j3")" = failed ] || fail "job $j3 should fail on the damaged adapter: $(jobs_json)"
msg=$(jobs_json | json_expr "[j.get('error', '') for j in d if j['id'] == $j3][0]")
echo "job $j3: $msg"
echo "$msg" | grep -q "adapter version 1 of site default" || fail "the error does not name site and version"
echo "$msg" | grep -q "changed on disk" || fail "the error does not say the file changed"
grep 'msg="job failed' "$T/d.log" | grep -q "changed on disk" || fail "no log line for the failed job"
"$SAMDA" check --data-dir "$T/data" >"$T/check.out" 2>&1 && fail "samda check passed a damaged adapter"
grep -q "1.safetensors" "$T/check.out" || fail "samda check does not name the file: $(cat "$T/check.out")"
ok "after a restart: job $j3 failed naming site, version and file; samda check names the file"

[ "$(code -X POST "${AA[@]}" -H 'Content-Type: application/octet-stream' --data-binary @"$DEMO/site_A_adapter.safetensors" \
      "$H/api/v1/sites/default/adapters?parent=1")" = 201 ] || fail "upload v2: $(cat "$T/body")"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/default/adapters/2/activate")" = 200 ] || fail "activate v2: $(cat "$T/body")"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/jobs/$j3/retry")" = 200 ] || fail "retry: $(cat "$T/body")"
wait_for_cmd 240 bash -c "[ \"\$('$SAMDA' jobs --data-dir '$T/data' | $PY -c 'import json,sys; print([j[\"state\"] for j in json.load(sys.stdin) if j[\"id\"] == $j3][0])')\" = done ]"
jobs_json | json_expr "[j['result']['adapter'] for j in d if j['id'] == $j3][0]" | grep -q "'version': 2" || fail "job $j3 did not use version 2"
ok "a good version uploaded and activated, job $j3 retried: done with version 2, no restart"
