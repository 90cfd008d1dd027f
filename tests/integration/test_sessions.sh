#!/usr/bin/env bash
# Interactive sessions with the demo model: POST /api/v1/sessions on a stored slice, predictions
# with a box, points, the previous mask and multimask (Dice against the phantom's exact mask),
# refusals (bad prompts, unknown or deleted sessions, wrong role), and predict latency p50/p99 with
# the cached embedding (printed).
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
"$SAMDA" phantom --out "$T/ph" --site A --count 16 --seed 8 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu"
sed -i 's/^modalities = CT,MR/modalities = MR/' "$T/s.conf"   # no batch job: the worker is all ours
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
D="$T/data"; H="http://127.0.0.1:$hport"
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000" || fail "storescu"
user=$("$SAMDA" token create viewer --role user --data-dir "$D" 2>/dev/null)
ingest=$("$SAMDA" token create modality --role ingest --data-dir "$D" 2>/dev/null)
UJ=(-H "Authorization: Bearer $user" -H 'Content-Type: application/json')
inst=$($PY -c "import pydicom; print(pydicom.dcmread('$T/ph/dicom/A_00000/IMG00009.dcm').SOPInstanceUID)")
series=$($PY -c "import pydicom; print(pydicom.dcmread('$T/ph/dicom/A_00000/IMG00009.dcm').SeriesInstanceUID)")
GT="$T/ph/A_00000_0008.mask.npy"

[ "$(code -X POST "${UJ[@]}" -d "{\"instance\":\"$inst\",\"window\":{\"level\":50,\"width\":400}}" "$H/api/v1/sessions")" = 201 ] ||
  fail "session: $(cat "$T/body")"
sid=$(json_expr 'd["id"]' <"$T/body")
ok "session $sid on one instance (201)"

# a box around the liver (label 1) from the exact mask
box=$($PY -c "import numpy as np; m=np.load('$GT'); ys,xs=np.nonzero(m==1); print('[%d,%d,%d,%d]' % (xs.min(),ys.min(),xs.max()+1,ys.max()+1))")
dice() { $PY - "$T/body" "$GT" "$1" <<'PY'
import json, sys, numpy as np
r = json.load(open(sys.argv[1])); gt = np.load(sys.argv[2]) == int(sys.argv[3])
m = r["mask"]; flat = np.zeros(m["rows"] * m["columns"], np.uint8); pos = 0; v = 0
for c in m["counts"]:
    flat[pos:pos + c] = v; pos += c; v ^= 1
assert pos == flat.size, (pos, flat.size)
pred = flat.reshape(m["rows"], m["columns"]).astype(bool)
assert pred.sum() == r["area"]
print("%.3f" % (2 * (pred & gt).sum() / max(pred.sum() + gt.sum(), 1)))
PY
}
[ "$(code -X POST "${UJ[@]}" -d "{\"box\":$box}" "$H/api/v1/sessions/$sid/predict")" = 200 ] || fail "predict box: $(cat "$T/body")"
d1=$(dice 1)
echo "box prompt: Dice $d1, IoU prediction $(json_expr 'd["iou"]' <"$T/body"), decode $(json_expr 'round(d["decode_ms"],1)' <"$T/body") ms"
$PY -c "import sys; sys.exit(0 if float('$d1') >= 0.6 else 1)" || fail "box Dice $d1 below 0.6"
pt=$($PY -c "import numpy as np; m=np.load('$GT'); ys,xs=np.nonzero(m==1); i=len(xs)//2; print('[%d,%d,1]' % (xs[i],ys[i]))")
[ "$(code -X POST "${UJ[@]}" -d "{\"box\":$box,\"points\":[$pt],\"use_previous\":true}" "$H/api/v1/sessions/$sid/predict")" = 200 ] ||
  fail "predict refine: $(cat "$T/body")"
d2=$(dice 1)
[ "$(code -X POST "${UJ[@]}" -d "{\"points\":[$pt],\"multimask\":true}" "$H/api/v1/sessions/$sid/predict")" = 200 ] || fail "multimask: $(cat "$T/body")"
json_expr 'len(d["iou"]) == 3 and d["iou"][d["best"]] == max(d["iou"])' <"$T/body" | grep -qx True || fail "multimask: $(head -c 300 "$T/body")"
ok "box (Dice $d1), box + point + previous mask (Dice $d2), multimask (best of 3 by IoU)"

# a session on a series slice too
[ "$(code -X POST "${UJ[@]}" -d "{\"series\":\"$series\",\"slice\":3}" "$H/api/v1/sessions")" = 201 ] || fail "series session: $(cat "$T/body")"
sid2=$(json_expr 'd["id"]' <"$T/body")

# refusals
[ "$(code -X POST "${UJ[@]}" -d '{"box":[10,10,5,5]}' "$H/api/v1/sessions/$sid/predict")" = 400 ] || fail "bad box: $(cat "$T/body")"
grep -q "x1 > x0" "$T/body" || fail "bad box message: $(cat "$T/body")"
[ "$(code -X POST "${UJ[@]}" -d '{}' "$H/api/v1/sessions/$sid/predict")" = 400 ] || fail "empty prompt accepted"
[ "$(code -X POST "${UJ[@]}" -d '{"points":[[1,2]]}' "$H/api/v1/sessions/$sid/predict")" = 400 ] || fail "bad point accepted"
[ "$(code -X POST "${UJ[@]}" -d '{"box":[1,1,9,9]}' "$H/api/v1/sessions/0123456789abcdef0123456789abcdef/predict")" = 404 ] || fail "unknown session"
[ "$(code -X POST "${UJ[@]}" -d '{"box":[1,1,9,9]}' "$H/api/v1/sessions/..%2f..%2fetc/predict")" = 400 ] || fail "traversal id"
[ "$(code -X POST "${UJ[@]}" -d "{\"series\":\"$series\",\"slice\":99}" "$H/api/v1/sessions")" = 400 ] || fail "slice out of range"
[ "$(code -X POST "${UJ[@]}" -d '{"series":"1.2.3","slice":0}' "$H/api/v1/sessions")" = 404 ] || fail "unknown series"
[ "$(code -X POST -H "Authorization: Bearer $ingest" -H 'Content-Type: application/json' -d "{\"instance\":\"$inst\"}" "$H/api/v1/sessions")" = 403 ] ||
  fail "ingest role accepted"
ok "refusals: bad box/points/empty prompt 400, unknown session 404, traversal 400, slice range 400, unknown series 404, wrong role 403"

# latency with the cached embedding (printed, not gated)
for i in $(seq 30); do
  curl -s -o /dev/null -w '%{time_total}\n' "${UJ[@]}" -d "{\"box\":$box}" "$H/api/v1/sessions/$sid2/predict"
done | sort -n >"$T/lat"
echo "predict latency over 30 requests (HTTP round trip, demo model, CPU): p50 $(sed -n 15p "$T/lat") s, p99 $(tail -1 "$T/lat") s"

curl -sf -H "Authorization: Bearer $user" "$H/metrics" >"$T/metrics" || fail "metrics"
grep -q '^samda_model_loaded 1' "$T/metrics" || fail "samda_model_loaded"
n=$(awk '/^samda_session_predict_seconds_count/ {print $2}' "$T/metrics")
[ "${n:-0}" -ge 30 ] || fail "predict histogram count $n"
grep -q '^samda_model_encode_seconds_bucket{le="+Inf"}' "$T/metrics" || fail "encode histogram"
grep -q '^samda_exports{state="failed"}' "$T/metrics" || fail "export states"
ok "/metrics: model loaded, encode/predict histograms ($n predictions), export states"
[ "$(code -X DELETE -H "Authorization: Bearer $user" "$H/api/v1/sessions/$sid")" = 204 ] || fail "delete: $(cat "$T/body")"
[ "$(code -X POST "${UJ[@]}" -d "{\"box\":$box}" "$H/api/v1/sessions/$sid/predict")" = 404 ] || fail "deleted session still answers"
"$SAMDA" audit --data-dir "$D" >"$T/audit.json"
grep -q "POST /api/v1/sessions/{session}/predict" "$T/audit.json" || fail "sessions not audited"
ok "delete 204, then 404; session routes audited"
