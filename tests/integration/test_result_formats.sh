#!/usr/bin/env bash
# Result formats per site ([site] outputs), end to end with the shipped demo model: a phantom CT
# series arrives over C-STORE; with outputs = seg,rtstruct,sr the destination (a real storescp)
# receives a DICOM-SEG, an RT Structure Set and a TID 1500 SR in the source's study, each free of
# dciodvfy errors; pydicom fills the RTSTRUCT's contours back onto the CT grid (Dice >= 0.95 per
# label against the SEG) and checks the SR's groups (each referencing its SEG segment and the
# source series; volume = SEG voxels x voxel volume within 1%; HU mean and deviation from the CT).
# After a reload with outputs = rtstruct only the next series sends the RTSTRUCT alone; a bad
# outputs value is refused with file:line. The RTSTRUCT and SR are instances of the study in
# DICOMweb, as the SEG is.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
TOOL="$SAMDA_SOURCE_DIR/tests/unit/dicom/rtstruct_tool.py"

"$SAMDA" phantom --out "$T/ph" --site A --count 64 --seed 5 --slices-per-body 32 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port); pport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
  "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $pport"
sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = pacs\noutputs = seg,rtstruct,sr/' "$T/s.conf"

# a bad value is refused before anything starts, naming the file and line
sed 's/^outputs = seg,rtstruct,sr/outputs = seg,pdf/' "$T/s.conf" >"$T/bad.conf"
out=$("$SAMDAD" --config "$T/bad.conf" --check-config 2>&1) && fail "outputs = seg,pdf accepted"
line=$(grep -n '^outputs = seg,pdf' "$T/bad.conf" | cut -d: -f1)
echo "$out" | grep -q "bad.conf:$line: \[site default\] outputs = pdf: must be among seg|rtstruct|sr" ||
  fail "bad outputs message: $out"
ok "outputs = seg,pdf refused: $(echo "$out" | grep -o 'bad.conf:.*' | head -1)"

mkdir -p "$T/recv"
storescp -aet PACS -od "$T/recv" "$pport" >"$T/storescp.log" 2>&1 &
_pids+=($!)
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60

# 1. seg,rtstruct,sr: three objects at the destination
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000" || fail "storescu"
wait_for_text "$T/d.log" 'msg="job done: DICOM-SEG recorded"' 300
wait_for_cmd 60 bash -c "[ \$(ls '$T/recv' | wc -l) -ge 3 ]"
sleep 1
[ "$(ls "$T/recv" | wc -l)" = 3 ] || fail "expected 3 objects at the destination, got $(ls "$T/recv")"
eval "$($PY - "$T/recv" <<'PY'
import os, sys, pydicom
kinds = {"1.2.840.10008.5.1.4.1.1.66.4": "SEGF", "1.2.840.10008.5.1.4.1.1.481.3": "RTF",
         "1.2.840.10008.5.1.4.1.1.88.34": "SRF"}
for f in sorted(os.listdir(sys.argv[1])):
    p = os.path.join(sys.argv[1], f)
    print("%s='%s'" % (kinds.get(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID, "OTHER"), p))
PY
)"
[ -n "${SEGF:-}" ] && [ -n "${RTF:-}" ] && [ -n "${SRF:-}" ] || fail "not one SEG, RTSTRUCT and SR: $(ls "$T/recv")"
for f in "$SEGF" "$RTF" "$SRF"; do
  errs=$(dciodvfy "$f" 2>&1 | grep '^Error' || true)
  [ -z "$errs" ] || fail "dciodvfy $(basename "$f"): $errs"
done
ok "the destination received a DICOM-SEG, an RT Structure Set and a Comprehensive 3D SR; dciodvfy finds no error"

CT=("$T/ph/dicom/A_00000"/*)
$PY "$TOOL" rtstruct "$RTF" "$SEGF" "${CT[@]}" >"$T/rt.txt" || fail "RTSTRUCT: $(cat "$T/rt.txt")"
cat "$T/rt.txt"
$PY - "$T/rt.txt" <<'PY' || fail "RTSTRUCT against the SEG: $(cat "$T/rt.txt")"
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith("roi ")]
names = sorted(r[1] for r in rows)
assert names == ["aorta", "kidney", "liver", "spleen"], names
for r in rows:
    dice, voxels = float(r[9]), int(r[7])
    assert voxels > 0, "%s: empty in the SEG" % r[1]
    assert dice >= 0.95, "%s: Dice %.4f" % (r[1], dice)
PY
ok "RTSTRUCT in the source's study and frame of reference; its contours filled back agree with the SEG (Dice >= 0.95 per label)"

$PY "$TOOL" sr "$SRF" "$SEGF" "${CT[@]}" >"$T/sr.txt" || fail "SR: $(cat "$T/sr.txt")"
cat "$T/sr.txt"
[ "$(grep -c '^group ' "$T/sr.txt")" = 4 ] || fail "expected 4 measurement groups: $(cat "$T/sr.txt")"
ok "SR: TID 1500, one group per SEG segment referencing it and the source series; volumes = SEG voxels x voxel volume (1%); HU mean/std from the CT"

"$SAMDA" jobs --data-dir "$T/data" | json_expr '[sorted(o["kind"] for o in j["result"]["objects"]) for j in d]' |
  grep -q "\['rtstruct', 'sr'\]" || fail "job report objects: $("$SAMDA" jobs --data-dir "$T/data")"
ok "the job's report lists the RTSTRUCT and SR it made"

# the RTSTRUCT and SR are instances of the study, as the SEG is: QIDO-RS lists their series
user=$("$SAMDA" token create viewer --role user --data-dir "$T/data" 2>/dev/null)
study=$($PY -c "import pydicom; print(pydicom.dcmread('$SEGF').StudyInstanceUID)")
curl -sf -H "Authorization: Bearer $user" "http://127.0.0.1:$hport/dicomweb/studies/$study/series" >"$T/qido.json" ||
  fail "QIDO-RS series"
json_expr 'sorted(s["00080060"]["Value"][0] for s in d)' <"$T/qido.json" | grep -qF "['CT', 'RTSTRUCT', 'SEG', 'SR']" ||
  fail "QIDO-RS series of the study: $(json_expr 'sorted(s["00080060"]["Value"][0] for s in d)' <"$T/qido.json")"
ok "QIDO-RS lists the study's CT, SEG, RTSTRUCT and SR series (results are instances of their study)"

# 2. reload with outputs = rtstruct: the next series sends the RT Structure Set alone
sed -i 's/^outputs = seg,rtstruct,sr/outputs = rtstruct/' "$T/s.conf"
kill -HUP "$(cat "$T/d.pid")"
wait_for_text "$T/d.log" 'msg="configuration reloaded"' 20
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00001" || fail "storescu 2"
wait_for_cmd 300 bash -c "[ \$(grep -c 'msg=\"job done: DICOM-SEG recorded\"' '$T/d.log') -ge 2 ]"
wait_for_cmd 60 bash -c "[ \$(ls '$T/recv' | wc -l) -ge 4 ]"
sleep 2
[ "$(ls "$T/recv" | wc -l)" = 4 ] || fail "expected one more object, got $(ls "$T/recv")"
new=$(ls -t "$T/recv"/* | head -1)
$PY -c "import pydicom,sys; sys.exit(0 if pydicom.dcmread('$new').SOPClassUID == '1.2.840.10008.5.1.4.1.1.481.3' else 1)" ||
  fail "with outputs = rtstruct the destination got something else: $new"
ok "after a reload with outputs = rtstruct the next series sent only its RT Structure Set (the SEG stays the local result)"
