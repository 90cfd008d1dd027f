#!/usr/bin/env bash
# `samda phantom --dicom`: synthetic bodies as CT series plus their ground truth as DICOM-SEG,
# valid for dciodvfy and pydicom, accepted by samdad over C-STORE.
. "$(dirname "$0")/lib.sh"
"$SAMDA" phantom --out "$T/ph" --site C --count 10 --seed 7 --slices-per-body 10 --dicom >/dev/null || fail "phantom --dicom"
S="$T/ph/dicom/C_00000"; SEG="$T/ph/dicom/C_00000.seg.dcm"
[ "$(ls "$S" | wc -l)" = 10 ] || fail "expected 10 CT files"
for f in "$S/IMG00001.dcm" "$SEG"; do
  errs=$(dciodvfy "$f" 2>&1 | grep '^Error' || true)
  [ -z "$errs" ] || fail "dciodvfy $(basename "$f"): $errs"
done
ok "CT slices and DICOM-SEG pass dciodvfy without errors"
$PY - "$S" "$SEG" <<'PY' || fail "pydicom check of the SEG"
import os, sys, pydicom
series, segf = sys.argv[1], sys.argv[2]
src = [pydicom.dcmread(os.path.join(series, f)) for f in sorted(os.listdir(series))]
seg = pydicom.dcmread(segf)
assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4", seg.SOPClassUID
assert seg.StudyInstanceUID == src[0].StudyInstanceUID
assert seg.SeriesInstanceUID != src[0].SeriesInstanceUID
assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src[0].SeriesInstanceUID
labels = [s.SegmentLabel for s in seg.SegmentSequence]
assert "liver" in labels and "aorta" in labels, labels
positions = {tuple(round(float(v), 3) for v in d.ImagePositionPatient): d.SOPInstanceUID for d in src}
for fg in seg.PerFrameFunctionalGroupsSequence:
    pos = tuple(round(float(v), 3) for v in fg.PlanePositionSequence[0].ImagePositionPatient)
    ref = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    assert positions.get(pos) == ref, (pos, ref)
print("segments", labels, "frames", seg.NumberOfFrames)
PY
ok "pydicom: SEG in the source study, every frame's position equals its source slice's"

dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"'
storescu -R -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$S" "$SEG" || fail "storescu"  # -R: propose exactly the files' SOP classes (SEG is not in storescu's default list)
wait_for_cmd 20 bash -c "'$SAMDA' jobs --data-dir '$T/data' | $PY -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin))==1 else 1)'"
"$SAMDA" series --data-dir "$T/data" | json_expr 'sorted((s["modality"], s["state"], s["reason"][:12]) for s in d)' | grep -q "('SEG', 'complete', 'not selected')" ||
  fail "SEG series not recorded as not selected: $("$SAMDA" series --data-dir "$T/data")"
ok "samdad takes the CT series (one job) and records the SEG series as not selected"
