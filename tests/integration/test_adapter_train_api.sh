#!/usr/bin/env bash
# Supervised adaptation from the PACS: CT series of a shifted site (phantom style B) arrive with
# their ground truth as DICOM-SEG (what a radiologist's corrected masks sent back look like);
# POST /api/v1/sites/default/adapters/train turns them into a new adapter version (parent: the
# [model] adapter), .../evaluate scores it on another study, and with "activate" the next series
# is segmented with it.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
"$SAMDA" phantom --out "$T/ph" --site B --count 48 --seed 21 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
D="$T/data"; H="http://127.0.0.1:$hport"
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)
AJ=(-H "Authorization: Bearer $admin" -H 'Content-Type: application/json')
study_of() { $PY -c "import pydicom,sys,os; d=sys.argv[1]; print(pydicom.dcmread(os.path.join(d, sorted(os.listdir(d))[0])).StudyInstanceUID)" "$1"; }
for b in 0 1 2; do
  storescu -R -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/B_0000$b" "$T/ph/dicom/B_0000$b.seg.dcm" || fail "storescu $b"
done
s0=$(study_of "$T/ph/dicom/B_00000"); s1=$(study_of "$T/ph/dicom/B_00001"); s2=$(study_of "$T/ph/dicom/B_00002")
ok "three studies with their ground-truth SEGs stored"

# bad requests are refused with the member named
[ "$(code -X POST "${AJ[@]}" -d '{}' "$H/api/v1/sites/default/adapters/train")" = 400 ] || fail "train without studies: $(cat "$T/body")"
grep -q "studies" "$T/body" || fail "the refusal should name body.studies: $(cat "$T/body")"
[ "$(code -X POST "${AJ[@]}" -d '{"studies":["1.2.3"],"bogus":1}' "$H/api/v1/sites/default/adapters/train")" = 400 ] || fail "unknown member accepted"
[ "$(code -X POST "${AJ[@]}" -d '{"studies":["1.2.3"]}' "$H/api/v1/sites/nosuch/adapters/train")" = 404 ] || fail "unknown site: $(cat "$T/body")"
ok "train requests without studies, with unknown members or for an unknown site are refused"

# The three series' segmentation jobs first, so that below the prompts share the machine with the
# training alone (the scenario: a radiologist prompts while an adapter trains).
segs_idle() { "$SAMDA" jobs --data-dir "$D" | $PY -c 'import json,sys; sys.exit(0 if all(j["state"] in ("done","failed") for j in json.load(sys.stdin)) else 1)'; }
wait_for_cmd 300 segs_idle

[ "$(code -X POST "${AJ[@]}" -d "{\"studies\":[\"$s0\",\"$s1\"],\"epochs\":3,\"activate\":true,\"holdout\":0}" "$H/api/v1/sites/default/adapters/train")" = 202 ] ||
  fail "train: $(cat "$T/body")"
job=$(json_expr 'd["id"]' <"$T/body")

# While the adapter trains, prompts are answered at once: training runs on a lane of its own.
user=$("$SAMDA" token create viewer --role user --data-dir "$D" 2>/dev/null)
UJ=(-H "Authorization: Bearer $user" -H 'Content-Type: application/json')
inst=$($PY -c "import pydicom,sys,os; d=sys.argv[1]; print(pydicom.dcmread(os.path.join(d, sorted(os.listdir(d))[8])).SOPInstanceUID)" "$T/ph/dicom/B_00002")
training() { curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/jobs/$job" | $PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["state"]=="running" and d["progress_message"]=="training" else 1)'; }
wait_for_cmd 300 training
[ "$(code -X POST "${UJ[@]}" -d "{\"instance\":\"$inst\",\"window\":{\"level\":50,\"width\":400}}" "$H/api/v1/sessions")" = 201 ] ||
  fail "session during training: $(cat "$T/body")"
sid=$(json_expr 'd["id"]' <"$T/body")
worst=0
for i in 1 2 3 4 5; do
  t=$(curl -s -o "$T/body" -w '%{http_code} %{time_total}' "${UJ[@]}" -d '{"box":[60,60,180,180]}' "$H/api/v1/sessions/$sid/predict")
  [ "${t%% *}" = 200 ] || fail "predict during training: $t $(cat "$T/body")"
  worst=$($PY -c "print(max($worst, ${t#* }))")
done
training || fail "the training job was no longer running when the prompts were answered: the check proves nothing"
echo "5 predictions while the adapter trained: slowest $worst s"
$PY -c "import sys; sys.exit(0 if $worst < 1.0 else 1)" || fail "a prediction took $worst s while the adapter trained"
ok "a session and 5 predictions answered while the adapter trains (slowest $worst s, under 1 s)"

wait_for_cmd 300 bash -c "curl -sf -H 'Authorization: Bearer $admin' '$H/api/v1/jobs/$job' | $PY -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[\"state\"] in (\"done\",\"failed\") else 1)'"
curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/jobs/$job" >"$T/job.json"
json_expr 'd["state"]' <"$T/job.json" | grep -qx done || fail "training job: $(cat "$T/job.json")"
echo "training: $(json_expr 'd["result"]["train"]' <"$T/job.json")"
json_expr 'd["result"]["version"] == 1 and d["result"]["data"]["segmentations"] == 2 and d["result"]["train"]["cases"] > 0' <"$T/job.json" | grep -qx True ||
  fail "training result: $(cat "$T/job.json")"
curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/sites/default/adapters" >"$T/ad.json"
json_expr '[(a["version"], a["active"]) for a in d]' <"$T/ad.json" | grep -q "(1, True)" || fail "version 1 not active: $(cat "$T/ad.json")"
# a version the worker made lists its labels (the parent's label objects), as an uploaded one does
json_expr '[a["labels"][:1] + [c["type"]["code"] for c in a["label_codes"][:1]] for a in d if a["version"] == 1]' <"$T/ad.json" |
  grep -qxF "[['liver', '10200004']]" || fail "version 1's labels: $(cat "$T/ad.json")"
ok "POST .../adapters/train: version 1 trained from 2 ground-truth SEGs, recorded and active"

[ "$(code -X POST "${AJ[@]}" -d "{\"studies\":[\"$s2\"]}" "$H/api/v1/sites/default/adapters/1/evaluate")" = 202 ] || fail "evaluate: $(cat "$T/body")"
job=$(json_expr 'd["id"]' <"$T/body")
wait_for_cmd 300 bash -c "curl -sf -H 'Authorization: Bearer $admin' '$H/api/v1/jobs/$job' | $PY -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[\"state\"] in (\"done\",\"failed\") else 1)'"
curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/jobs/$job" >"$T/job2.json"
json_expr 'd["state"]' <"$T/job2.json" | grep -qx done || fail "evaluation job: $(cat "$T/job2.json")"
dice=$(json_expr 'd["result"]["evaluation"]["mean_dice"]' <"$T/job2.json")
echo "evaluation of version 1 on a held-out study: mean Dice $dice"
$PY -c "import sys; sys.exit(0 if 0 <= float('$dice') <= 1 else 1)" || fail "mean Dice out of range"
[ "$(code -X POST "${AJ[@]}" -d "{\"studies\":[\"$s2\"]}" "$H/api/v1/sites/default/adapters/9/evaluate")" = 404 ] || fail "unknown version: $(cat "$T/body")"
ok "POST .../adapters/1/evaluate: mean Dice $dice on a held-out study; unknown version 404"

# the segmentation jobs that ran after activation used the site's version 1
wait_for_cmd 300 bash -c "'$SAMDA' jobs --data-dir '$D' --state pending | $PY -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin))==0 else 1)'"
wait_for_cmd 300 bash -c "'$SAMDA' jobs --data-dir '$D' --state running | $PY -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin))==0 else 1)'"
"$SAMDA" jobs --data-dir "$D" | json_expr '[j["kind"] + ":" + j["state"] for j in d]'
ok "every job finished"
