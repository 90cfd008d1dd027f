#!/usr/bin/env bash
# Orthanc round trip with the demo model: Orthanc (Debian's package) holds a phantom CT series and
# the real oblique MR series, sends both studies to samdad, and is samdad's destination; afterwards
# Orthanc holds a DICOM-SEG in each study. The MR SEG's geometry equals the source's exactly
# (orientation, pixel spacing, every frame's position = its referenced slice's). A destination
# whose presentation contexts refuse the SEG class fails the export for good, without retries.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
MR="$FIXTURES/dicom/mr-brain-20"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
"$SAMDA" phantom --out "$T/ph" --site A --count 24 --seed 3 --slices-per-body 24 --dicom >/dev/null || fail "phantom"

dport=$(free_port); hport=$(free_port); ohttp=$(free_port); odicom=$(free_port); rport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
  "[destination orthanc]" "ae_title = ORTHANC" "host = 127.0.0.1" "port = $odicom" \
  "[destination ctonly]" "ae_title = CTONLY" "host = 127.0.0.1" "port = $rport"
sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = orthanc,ctonly/' "$T/s.conf"
sed -i 's/^tick = 200ms/tick = 200ms\nexport_backoff = 1s\nexport_backoff_max = 1s/' "$T/s.conf"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60

# A PACS that accepts CT only: storescp with an association profile without the SEG class.
cat >"$T/ctonly.cfg" <<'CFG'
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[[PresentationContexts]]
[CT]
PresentationContext1 = CTImageStorage\Uncompressed
[[Profiles]]
[Default]
PresentationContexts = CT
CFG
mkdir -p "$T/ctonly"
storescp -aet CTONLY -xf "$T/ctonly.cfg" Default -od "$T/ctonly" "$rport" >"$T/ctonly.log" 2>&1 &
_pids+=($!)

start_orthanc orthanc "$ohttp" "$odicom" "$dport"
O="http://127.0.0.1:$ohttp"
for f in "$MR"/*.dcm "$T/ph/dicom/A_00000"/*.dcm; do
  curl -sf -X POST --data-binary @"$f" "$O/instances" >/dev/null || fail "upload of $f to Orthanc failed"
done
for study in $(curl -sf "$O/studies" | json_expr '" ".join(d)'); do
  curl -sf -X POST "$O/modalities/samda/store" -d "{\"Resources\": [\"$study\"], \"Synchronous\": true}" >/dev/null ||
    fail "Orthanc C-STORE to samdad failed"
done
ok "Orthanc sent the CT and MR studies to samdad"

# Both SEGs reach Orthanc, each in its source study.
wait_for_cmd 240 bash -c "curl -sf '$O/tools/find' -d '{\"Level\":\"Series\",\"Query\":{\"Modality\":\"SEG\"}}' | $PY -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin))==2 else 1)'"
for s in $(curl -sf "$O/tools/find" -d '{"Level":"Series","Query":{"Modality":"SEG"}}' | json_expr '" ".join(d)'); do
  parent=$(curl -sf "$O/series/$s" | json_expr 'd["ParentStudy"]')
  n=$(curl -sf "$O/studies/$parent/series" | json_expr 'len(d)')
  [ "$n" = 2 ] || fail "study $parent: expected the source series and the SEG, found $n series"
done
ok "Orthanc holds a SEG in each source study"

# The MR SEG's geometry equals the source's.
mrseg=$(curl -sf "$O/tools/find" -d '{"Level":"Instance","Query":{"Modality":"SEG"},"Expand":true}' |
  json_expr '[i["ID"] for i in d]' | tr -d "[]',")
found=0
for id in $mrseg; do
  curl -sf "$O/instances/$id/file" -o "$T/seg-$id.dcm"
  if $PY - "$T/seg-$id.dcm" "$MR" <<'PY'; then found=1; fi
import os, sys, pydicom
seg = pydicom.dcmread(sys.argv[1])
src = {}
for f in os.listdir(sys.argv[2]):
    d = pydicom.dcmread(os.path.join(sys.argv[2], f), stop_before_pixels=True)
    src[d.SOPInstanceUID] = d
if seg.ReferencedSeriesSequence[0].SeriesInstanceUID != next(iter(src.values())).SeriesInstanceUID:
    sys.exit(1)  # the CT one
one = next(iter(src.values()))
sh = seg.SharedFunctionalGroupsSequence[0]
ori = [float(v) for v in sh.PlaneOrientationSequence[0].ImageOrientationPatient]
assert max(abs(a - float(b)) for a, b in zip(ori, one.ImageOrientationPatient)) < 1e-6, ori
assert abs(ori[0] - 1) > 1e-3 or abs(ori[4] - 1) > 1e-3, "the fixture should be oblique"
ps = [float(v) for v in sh.PixelMeasuresSequence[0].PixelSpacing]
assert max(abs(a - float(b)) for a, b in zip(ps, one.PixelSpacing)) < 1e-6, ps
assert seg.Rows == one.Rows and seg.Columns == one.Columns
for fg in seg.PerFrameFunctionalGroupsSequence:
    ref = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    pos = [float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient]
    want = [float(v) for v in src[ref].ImagePositionPatient]
    assert max(abs(a - b) for a, b in zip(pos, want)) < 1e-4, (pos, want)
print("MR SEG: %d frames, orientation and positions equal the source's" % seg.NumberOfFrames)
PY
done
[ "$found" = 1 ] || fail "no SEG of the MR series passed the geometry check"
ok "MR (oblique) SEG geometry equals the source's"

# The CT-only destination refused the SEG class: failed for good, one attempt per SEG.
wait_for_cmd 30 grep -q 'refused by the destination' "$T/d.log"
sleep 3
n=$(grep -c 'destination=ctonly' "$T/d.log" || true)
[ "$n" -le 2 ] || fail "expected at most one refusal per SEG for ctonly, saw $n lines: $(grep 'destination=ctonly' "$T/d.log")"
ls "$T/ctonly" | grep -q . && fail "ctonly stored something"
ok "a destination refusing the SEG class: failed for good, no retry storm ($n refusals for 2 SEGs)"
