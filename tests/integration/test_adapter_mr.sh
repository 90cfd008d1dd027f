#!/usr/bin/env bash
# Labels are data, on MR (issue 17): an MR site (phantom bodies rewritten as MR Image Storage, no HU)
# whose ground truth has two labels with one coded type told apart by their type modifier (SCT
# 64033007 Kidney, Left / Right) and no adapter gets a new adapter from its DICOM-SEGs over C-STORE:
# two labels, each with the MR window (percentiles); activated, the next MR study is segmented with
# it and its SEG carries both segments with the codes and modifiers that came in (pydicom, dciodvfy),
# each overlapping its ground truth.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
"$SAMDA" phantom --out "$T/ph" --site A --count 64 --seed 41 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
for b in 0 1 2 3; do
  $PY "$(dirname "$0")/mr_site.py" "$T/ph/dicom/A_0000$b" "$T/ph/dicom/A_0000$b.seg.dcm" "$T/kid$b.dcm" || fail "MR site $b"
done
errs=$( (dciodvfy "$T/kid0.dcm"; dciodvfy "$T/ph/dicom/A_00000/$(ls "$T/ph/dicom/A_00000" | head -1)") 2>&1 | grep '^Error' || true)
[ -z "$errs" ] || fail "the MR series or its ground-truth SEG: dciodvfy: $errs"
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "device = cpu"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
D="$T/data"; H="http://127.0.0.1:$hport"
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)
AJ=(-H "Authorization: Bearer $admin" -H 'Content-Type: application/json')
study_of() { $PY -c "import pydicom,sys,os; d=sys.argv[1]; print(pydicom.dcmread(os.path.join(d, sorted(os.listdir(d))[0])).StudyInstanceUID)" "$1"; }
for b in 0 1 2; do
  storescu -R -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_0000$b" "$T/kid$b.dcm" >/dev/null 2>&1 || fail "storescu $b"
done
s0=$(study_of "$T/ph/dicom/A_00000"); s1=$(study_of "$T/ph/dicom/A_00001"); s2=$(study_of "$T/ph/dicom/A_00002")
ok "three MR studies with their left/right kidney SEGs stored over C-STORE"

job_done() { curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/jobs/$1" | $PY -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["state"] in ("done","failed") else 1)'; }
[ "$(code -X POST "${AJ[@]}" -d "{\"studies\":[\"$s0\",\"$s1\",\"$s2\"],\"epochs\":12,\"lr\":0.004,\"prompt\":\"free\",\"val_split\":0,\"holdout\":0,\"activate\":true}" \
  "$H/api/v1/sites/default/adapters/train")" = 202 ] || fail "train: $(cat "$T/body")"
job=$(json_expr 'd["id"]' <"$T/body")
wait_for_cmd 500 job_done "$job"
curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/jobs/$job" >"$T/job.json"
json_expr 'd["state"]' <"$T/job.json" | grep -qx done || fail "training job: $(cat "$T/job.json")"
echo "training: $(json_expr 'd["result"]["train"]' <"$T/job.json")"
json_expr '(d["result"]["labels_from"], d["result"]["version"], [(l["name"], l["value"], l["type"]["code"], l["type_modifier"]["code"], l["window"]) for l in d["result"]["labels"]])' <"$T/job.json" |
  grep -qxF "('segs', 1, [('left_kidney', 1, '64033007', '7771000', 'mr'), ('right_kidney', 2, '64033007', '24028007', 'mr')])" ||
  fail "training report: $(cat "$T/job.json")"
ok "a new adapter from the MR SEGs: two labels, one type (Kidney) told apart by the type modifier, MR window"

n_before=$(grep -c 'msg="job done: DICOM-SEG recorded"' "$T/d.log" || true)
storescu -R -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00003" >/dev/null 2>&1 || fail "storescu 3"
s3=$(study_of "$T/ph/dicom/A_00003")
wait_for_cmd 300 bash -c "[ \$(grep -c 'msg=\"job done: DICOM-SEG recorded\"' '$T/d.log') -gt $n_before ]"
curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/studies/$s3/results" >"$T/results.json" || fail "results"
rid=$(json_expr '[r["id"] for s in d["series"] for r in s["results"]][0]' <"$T/results.json")
curl -sf -H "Authorization: Bearer $admin" -o "$T/r.dcm" "$H/api/v1/results/$rid/seg" || fail "result seg"
errs=$(dciodvfy "$T/r.dcm" 2>&1 | grep '^Error' || true)
[ -z "$errs" ] || fail "dciodvfy: $errs"
$PY - "$T/r.dcm" "$T/kid3.dcm" <<'PY' || fail "the result SEG"
import sys, numpy as np, pydicom
r, gt = pydicom.dcmread(sys.argv[1]), pydicom.dcmread(sys.argv[2])
def codes(s, kw):
    return [(c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning) for c in s[kw]]
def mod(s):
    return codes(s.SegmentedPropertyTypeCodeSequence[0], "SegmentedPropertyTypeModifierCodeSequence")
assert [s.SegmentLabel for s in r.SegmentSequence] == ["left_kidney", "right_kidney"], r.SegmentSequence
for a, b in zip(r.SegmentSequence, gt.SegmentSequence):
    for kw in ("SegmentedPropertyCategoryCodeSequence", "SegmentedPropertyTypeCodeSequence"):
        assert codes(a, kw) == codes(b, kw), (kw, codes(a, kw), codes(b, kw))
    assert mod(a) == mod(b), (mod(a), mod(b))
assert [mod(s)[0][0] for s in r.SegmentSequence] == ["7771000", "24028007"]
assert r.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
def masks(d):
    px = d.pixel_array.reshape(int(d.NumberOfFrames), d.Rows, d.Columns)
    out = {}
    for i, f in enumerate(d.PerFrameFunctionalGroupsSequence):
        k = (f.SegmentIdentificationSequence[0].ReferencedSegmentNumber,
             f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        out[k] = out.get(k, 0) | px[i].astype(bool)
    return out
mr, mg = masks(r), masks(gt)
for n in (1, 2):
    inter = sum(int((mr[k] & mg.get(k, 0)).sum()) for k in mr if k[0] == n)
    total = sum(int(v.sum()) for k, v in mr.items() if k[0] == n) + sum(int(v.sum()) for k, v in mg.items() if k[0] == n)
    dice = 2.0 * inter / total if total else 0.0
    print("segment", n, r.SegmentSequence[n - 1].SegmentLabel, "Dice against the ground truth %.3f" % dice)
    assert dice > 0.2, (n, dice)
PY
ok "the next MR study's SEG: left and right kidney with the type and modifier codes that came in, each overlapping its ground truth; dciodvfy finds no error"
