#!/usr/bin/env bash
# Issue 15, items 3 to 5, through samdad with the demo model:
#  - the demo adapter's labels are listed by name (liver, kidney, spleen, aorta), with their codes;
#  - an adapter made for another base model (the demo adapter with another base_fingerprint in its
#    metadata) is refused at upload and at activation with 409 naming both fingerprints; while no
#    model is loaded it is accepted, and when the model loads the site falls back visibly (a warn
#    line naming site, version and both fingerprints; its jobs use the [model] adapter);
#  - [model] convention: shown by --print-config, a bad value refused at file:line, and a samdad
#    started with medsam says so in its "model loaded" line and in /health.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }

"$SAMDA" phantom --out "$T/ph" --site A --count 16 --seed 29 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu"
write_conf "$T/nomodel.conf" "$dport" "$hport" # same data directory, no [model] checkpoint
D="$T/data"; H="http://127.0.0.1:$hport"

# ---- item 5: [model] convention in the option table ----------------------------------------------
"$SAMDAD" --config "$T/s.conf" --print-config >"$T/eff.conf" || fail "--print-config"
grep -qx "convention = sam" "$T/eff.conf" || fail "--print-config lacks convention = sam: $(grep -A8 '^\[model\]' "$T/eff.conf")"
"$SAMDAD" --config "$T/s.conf" --set model.convention=medsam --print-config | grep -qx "convention = medsam" || fail "--set model.convention"
cp "$T/s.conf" "$T/bad.conf"
echo "convention = vit_h" >>"$T/bad.conf" # [model] is the last section
line=$(wc -l <"$T/bad.conf")
rc=0; "$SAMDAD" --config "$T/bad.conf" --check-config 2>"$T/err" || rc=$?
[ "$rc" != 0 ] && grep -qF "$T/bad.conf:$line: [model] convention = vit_h: must be one of sam|medsam" "$T/err" ||
  fail "a bad convention: rc $rc $(cat "$T/err")"
ok "[model] convention: --print-config shows sam (medsam with --set); vit_h refused at bad.conf:$line naming the choices"

# ---- item 4: labels of samda's own adapter --------------------------------------------------------
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
grep 'msg="model loaded"' "$T/d.log" | grep -q 'convention=sam ' || fail "model loaded line: $(grep 'model loaded' "$T/d.log")"
curl -sf "$H/health" | json_expr 'd["checks"]["model"]["status"], "convention=sam" in d["checks"]["model"]["detail"]' | grep -qx "ok True" ||
  fail "/health: $(curl -s "$H/health")"
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)
AA=(-H "Authorization: Bearer $admin")
UP=("${AA[@]}" -H 'Content-Type: application/octet-stream')
[ "$(code -X POST "${UP[@]}" --data-binary @"$DEMO/site_A_adapter.safetensors" "$H/api/v1/sites/default/adapters")" = 201 ] ||
  fail "upload of the demo adapter: $(cat "$T/body")"
json_expr 'd["version"], d["labels"]' <"$T/body" | grep -qxF "1 ['liver', 'kidney', 'spleen', 'aorta']" || fail "labels at upload: $(cat "$T/body")"
[ "$(code "${AA[@]}" "$H/api/v1/sites/default/adapters")" = 200 ] || fail "list: $(cat "$T/body")"
json_expr 'd[0]["labels"], [(c["name"], c["value"], c["type"]["scheme"], c["type"]["code"]) for c in d[0]["label_codes"]]' <"$T/body" |
  grep -qxF "['liver', 'kidney', 'spleen', 'aorta'] [('liver', 1, 'SCT', '10200004'), ('kidney', 2, 'SCT', '64033007'), ('spleen', 3, 'SCT', '78961009'), ('aorta', 4, 'SCT', '15825003')]" ||
  fail "labels listed: $(cat "$T/body")"
ok "the demo adapter lists labels liver, kidney, spleen, aorta, with their SNOMED CT codes"

# ---- item 3: an adapter for another base model -----------------------------------------------------
model_fp=$($PY - "$DEMO/site_A_adapter.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
print(json.loads(b[8:8 + n])["__metadata__"]["base_fingerprint"])
PY
)
grep 'msg="model loaded"' "$T/d.log" | grep -q "fingerprint=${model_fp:0:16}" || fail "the demo adapter's base is not the demo model"
foreign_fp=$(printf 'another base model' | sha256sum | cut -c1-64)
# the same file with another base_fingerprint (same length: the header keeps its size; the payload
# SHA-256 in the metadata covers only the tensors, so the file stays valid)
$PY - "$DEMO/site_A_adapter.safetensors" "$T/foreign.safetensors" "$model_fp" "$foreign_fp" <<'PY'
import sys
src, dst, old, new = sys.argv[1:]
b = open(src, "rb").read()
assert b.count(old.encode()) == 1 and len(old) == len(new)
open(dst, "wb").write(b.replace(old.encode(), new.encode()))
PY
[ "$(code -X POST "${UP[@]}" --data-binary @"$T/foreign.safetensors" "$H/api/v1/sites/default/adapters")" = 409 ] ||
  fail "a foreign adapter was not refused: $(cat "$T/body")"
title=$(json_expr 'd["title"]' <"$T/body")
echo "$title"
case "$title" in *"$foreign_fp"*"$model_fp"*) ;; *) fail "the refusal does not name both fingerprints: $title" ;; esac
[ "$(code "${AA[@]}" "$H/api/v1/sites/default/adapters")" = 200 ] && json_len <"$T/body" | grep -qx 1 || fail "the refused upload left a version"
tmp_empty "$D" || fail "the refused upload left a file in tmp/"
ok "upload of an adapter for another base model: 409 naming both fingerprints, nothing recorded"

# while no model is loaded the same file is accepted, and can be activated
kill -TERM "$(cat "$T/d.pid")"; wait_exit "$(cat "$T/d.pid")" 30
start_samdad n "$T/nomodel.conf"
wait_for_text "$T/n.log" 'msg="ready"' 60
[ "$(code -X POST "${UP[@]}" --data-binary @"$T/foreign.safetensors" "$H/api/v1/sites/default/adapters")" = 201 ] ||
  fail "upload without a model: $(cat "$T/body")"
json_expr 'd["version"], d["base_fingerprint"]' <"$T/body" | grep -qx "2 $foreign_fp" || fail "foreign version: $(cat "$T/body")"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/default/adapters/2/activate")" = 200 ] || fail "activation without a model: $(cat "$T/body")"
kill -TERM "$(cat "$T/n.pid")"; wait_exit "$(cat "$T/n.pid")" 30
ok "without a model: the foreign adapter uploaded (version 2) and activated (nothing to compare with)"

# the model loads: the site falls back visibly
mv "$T/d.log" "$T/d1.log"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
line=$(grep 'made for another base model' "$T/d.log" || true)
echo "$line"
echo "$line" | grep -q 'level=warn' && echo "$line" | grep -q 'site=default' && echo "$line" | grep -q 'version=2' &&
  echo "$line" | grep -q "adapter_base=$foreign_fp" && echo "$line" | grep -q "model=$model_fp" &&
  echo "$line" | grep -q 'fallback=default_adapter' || fail "no warn line naming site, version, both fingerprints and the fallback"
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000" || fail "storescu"
wait_for_text "$T/d.log" 'msg="job done: DICOM-SEG recorded"' 240
"$SAMDA" jobs --data-dir "$D" --kind segment >"$T/jobs.json"
json_expr '[(j["state"], j["result"]["adapter"]["source"]) for j in d]' <"$T/jobs.json" | grep -qxF "[('done', 'default')]" ||
  fail "the site's job did not fall back to the [model] adapter: $(cat "$T/jobs.json")"
ok "at model load: warn naming site default, version 2 and both fingerprints; the site's job used the [model] adapter"

# with the model loaded, activation checks it
[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/default/adapters/2/activate")" = 409 ] || fail "activation of the foreign version: $(cat "$T/body")"
title=$(json_expr 'd["title"]' <"$T/body")
echo "$title"
case "$title" in *"version 2"*"$foreign_fp"*"$model_fp"*) ;; *) fail "the refusal does not name the version and both fingerprints: $title" ;; esac
[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/default/adapters/1/activate")" = 200 ] || fail "activation of version 1: $(cat "$T/body")"
[ "$(code "${AA[@]}" "$H/api/v1/sites/default/adapters")" = 200 ] &&
  json_expr 'sorted((a["version"], a["active"]) for a in d)' <"$T/body" | grep -qxF "[(1, True), (2, False)]" || fail "versions: $(cat "$T/body")"
ok "activation of the foreign version: 409 naming both fingerprints; version 1 (this model's) activates"

# ---- item 5: a samdad started with convention = medsam says so -------------------------------------
kill -TERM "$(cat "$T/d.pid")"; wait_exit "$(cat "$T/d.pid")" 30
sed -i 's/^device = cpu$/device = cpu\nconvention = medsam/' "$T/s.conf"
start_samdad m "$T/s.conf"
wait_for_text "$T/m.log" 'msg="ready"' 60
grep 'msg="model loaded"' "$T/m.log" | grep -q 'convention=medsam ' || fail "model loaded line: $(grep 'model loaded' "$T/m.log")"
curl -sf "$H/health" | json_expr '"convention=medsam" in d["checks"]["model"]["detail"]' | grep -qx True || fail "/health: $(curl -s "$H/health")"
ok "convention = medsam: the model loaded line and /health's model check say convention=medsam"
