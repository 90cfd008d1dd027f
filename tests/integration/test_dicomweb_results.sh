#!/usr/bin/env bash
# samda's results are DICOM instances of their study (issue 18): a phantom CT series arrives over
# C-STORE and is segmented with the demo model; the DICOM-SEG is then in the study for DICOMweb like
# any instance: QIDO (study modalities and counts, series by Modality=SEG, instances), WADO-RS
# (instance and series retrieve with the same SOP Instance UID as /api/v1/results/{id}/seg, series
# metadata with the SEG's nested sequences, a bit-packed frame naming its transfer syntax), the
# change feed; no segmentation job is queued for the SEG series; DICOMweb answers are
# "private, no-cache", not no-store; a re-run adds a new SEG instance with the counts kept right, the
# SEG sent back over C-STORE changes nothing, and the data directory checks clean.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }

"$SAMDA" phantom --out "$T/ph" --site A --count 16 --seed 18 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
SRC="$T/ph/dicom/A_00000"
n_ct=$(ls "$SRC" | wc -l)
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
D="$T/data"
user=$("$SAMDA" token create viewer --role user --data-dir "$D" 2>/dev/null)
UA=(-H "Authorization: Bearer $user")
H="http://127.0.0.1:$hport"
W="$H/dicomweb"

storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$SRC" || fail "storescu"
wait_for_text "$T/d.log" 'msg="job done: DICOM-SEG recorded"' 240
read -r study ct_series < <($PY -c "import pydicom; d=pydicom.dcmread('$SRC/$(ls "$SRC" | head -1)'); print(d.StudyInstanceUID, d.SeriesInstanceUID)")
curl -sf "${UA[@]}" "$H/api/v1/studies/$study/results" >"$T/results.json" || fail "results"
read -r rid seg_series seg_sop < <(json_expr '" ".join(str(x) for x in [(r["id"], r["seg_series_uid"], r["seg_sop_uid"]) for s in d["series"] for r in s["results"]][0])' <"$T/results.json")
[ -n "$seg_sop" ] || fail "no result: $(cat "$T/results.json")"
curl -sf "${UA[@]}" -o "$T/result.dcm" "$H/api/v1/results/$rid/seg" || fail "result seg"
ok "job done: result $rid, SEG series $seg_series"

# QIDO-RS: the study names SEG and counts its series and instance; the SEG series and instance are listed
[ "$(code "${UA[@]}" -D "$T/h_qido" "$W/studies?StudyInstanceUID=$study")" = 200 ] || fail "QIDO study: $(cat "$T/body")"
json_expr '(sorted(d[0]["00080061"]["Value"]), d[0]["00201206"]["Value"][0], d[0]["00201208"]["Value"][0])' <"$T/body" |
  grep -qxF "(['CT', 'SEG'], 2, $((n_ct + 1)))" || fail "study: $(cat "$T/body")"
[ "$(code "${UA[@]}" "$W/studies?ModalitiesInStudy=SEG")" = 200 ] || fail "QIDO ModalitiesInStudy"
json_expr '[s["0020000D"]["Value"][0] for s in d]' <"$T/body" | grep -qF "'$study'" || fail "ModalitiesInStudy=SEG: $(cat "$T/body")"
[ "$(code "${UA[@]}" -D "$T/h_series" "$W/series?Modality=SEG")" = 200 ] || fail "QIDO series"
json_expr '[(s["0020000E"]["Value"][0], s["00201209"]["Value"][0]) for s in d]' <"$T/body" | grep -qxF "[('$seg_series', 1)]" ||
  fail "series?Modality=SEG: $(cat "$T/body")"
[ "$(code "${UA[@]}" "$W/studies/$study/series/$seg_series/instances")" = 200 ] || fail "QIDO instances"
json_expr '[(i["00080018"]["Value"][0], i["00080016"]["Value"][0], i["00080060"]["Value"][0]) for i in d]' <"$T/body" |
  grep -qxF "[('$seg_sop', '1.2.840.10008.5.1.4.1.1.66.4', 'SEG')]" || fail "SEG instance: $(cat "$T/body")"
[ "$(code "${UA[@]}" "$W/studies/$study/instances")" = 200 ] || fail "QIDO study instances"
json_len <"$T/body" | grep -qx "$((n_ct + 1))" || fail "study instances: $(json_len <"$T/body")"
ok "QIDO-RS: ModalitiesInStudy CT\\SEG, 2 series and $((n_ct + 1)) instances; series?Modality=SEG and the SEG instance listed"

# WADO-RS metadata of the SEG series: the nested sequences, equal to the file's
[ "$(code "${UA[@]}" -D "$T/h_meta" "$W/studies/$study/series/$seg_series/metadata")" = 200 ] || fail "metadata: $(cat "$T/body")"
cp "$T/body" "$T/meta.json"
$PY - "$T/meta.json" "$T/result.dcm" "$ct_series" <<'PY' || fail "SEG metadata"
import json, sys, pydicom
from pydicom.dataset import Dataset
meta = json.load(open(sys.argv[1])); f = pydicom.dcmread(sys.argv[2]); ct = sys.argv[3]
assert len(meta) == 1, len(meta)
j = Dataset.from_json(meta[0], bulk_data_uri_handler=lambda tag, vr, value: None)
assert j.SOPInstanceUID == f.SOPInstanceUID
assert [s.SegmentLabel for s in j.SegmentSequence] == [s.SegmentLabel for s in f.SegmentSequence] and len(f.SegmentSequence) > 0
assert j.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == f.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue
sh = j.SharedFunctionalGroupsSequence[0]
assert sh.PixelMeasuresSequence[0].PixelSpacing == f.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
assert len(j.PerFrameFunctionalGroupsSequence) == int(f.NumberOfFrames) > 0
pf, ff = j.PerFrameFunctionalGroupsSequence[-1], f.PerFrameFunctionalGroupsSequence[-1]
assert pf.SegmentIdentificationSequence[0].ReferencedSegmentNumber == ff.SegmentIdentificationSequence[0].ReferencedSegmentNumber
assert pf.PlanePositionSequence[0].ImagePositionPatient == ff.PlanePositionSequence[0].ImagePositionPatient
assert j.ReferencedSeriesSequence[0].SeriesInstanceUID == ct
assert "BulkDataURI" in meta[0]["7FE00010"] and "/frames/1" in meta[0]["7FE00010"]["BulkDataURI"]
print("metadata: segments", len(j.SegmentSequence), "frames", len(j.PerFrameFunctionalGroupsSequence))
PY
ok "series metadata of the SEG: SegmentSequence, Shared/PerFrameFunctionalGroups, ReferencedSeriesSequence as in the file"

# WADO-RS retrieve: instance and series, the same SEG as /api/v1/results/{id}/seg
for url in "$W/studies/$study/series/$seg_series/instances/$seg_sop" "$W/studies/$study/series/$seg_series"; do
  curl -sf "${UA[@]}" -D "$T/h_wado" -o "$T/wado.bin" -H 'Accept: multipart/related; type="application/dicom"' "$url" || fail "retrieve $url"
  $PY - "$T/h_wado" "$T/wado.bin" "$T/result.dcm" <<'PY' || fail "retrieve $url"
import io, sys, pydicom
ct = [l.split(":", 1)[1].strip() for l in open(sys.argv[1]) if l.lower().startswith("content-type:")][-1]
assert ct.startswith("multipart/related") and 'type="application/dicom"' in ct, ct
boundary = ct.split("boundary=")[1].strip('"').encode()
body = open(sys.argv[2], "rb").read()
parts = [p for p in body.split(b"--" + boundary)[1:] if not p.startswith(b"--")]
assert len(parts) == 1, len(parts)
head, data = parts[0].split(b"\r\n\r\n", 1)
assert b"application/dicom" in head, head
d = pydicom.dcmread(io.BytesIO(data[:-2] if data.endswith(b"\r\n") else data))
r = pydicom.dcmread(sys.argv[3])
assert d.SOPInstanceUID == r.SOPInstanceUID and d.PixelData == r.PixelData
PY
done
ok "WADO-RS instance and series retrieve: one part, pydicom reads the SEG of /api/v1/results/$rid/seg"

# a frame: bit-packed (PS3.5 8.1.1, re-aligned to its first byte), its part naming the transfer syntax
nf=$($PY -c "import pydicom; print(pydicom.dcmread('$T/result.dcm').NumberOfFrames)")
curl -sf "${UA[@]}" -D "$T/h_frame" -o "$T/frame.bin" -H 'Accept: multipart/related; type="application/octet-stream"; transfer-syntax=*' \
  "$W/studies/$study/series/$seg_series/instances/$seg_sop/frames/1,$nf" || fail "frames"
$PY - "$T/h_frame" "$T/frame.bin" "$T/result.dcm" <<'PY' || fail "SEG frames"
import sys, numpy as np, pydicom
ct = [l.split(":", 1)[1].strip() for l in open(sys.argv[1]) if l.lower().startswith("content-type:")][-1]
boundary = ct.split("boundary=")[1].strip('"').encode()
parts = [p for p in open(sys.argv[2], "rb").read().split(b"--" + boundary)[1:] if not p.startswith(b"--")]
r = pydicom.dcmread(sys.argv[3]); px = r.pixel_array.reshape(int(r.NumberOfFrames), r.Rows, r.Columns)
assert len(parts) == 2, len(parts)
for part, k in zip(parts, (0, int(r.NumberOfFrames) - 1)):
    head, data = part.split(b"\r\n\r\n", 1)
    head = head.decode().lower()
    assert "content-type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1" in head, head
    data = data[:-2]
    want = np.packbits(px[k].ravel().astype(np.uint8), bitorder="little").tobytes()
    assert len(data) == (r.Rows * r.Columns + 7) // 8 and data == want, (k, len(data), len(want))
print("frames", len(parts), "bytes", len(data))
PY
ok "frames 1 and $nf of the SEG: bit-packed bytes equal to the file's, Content-Type names transfer-syntax=1.2.840.10008.1.2.1"

# caching: DICOMweb reads are private, no-cache (never no-store); other answers stay no-store
for h in h_qido h_series h_meta h_wado h_frame; do
  grep -qi '^cache-control: private, no-cache' "$T/$h" || fail "$h: $(grep -i cache-control "$T/$h")"
  grep -qi 'no-store' "$T/$h" && fail "$h carries no-store"
done
curl -sf "${UA[@]}" -D "$T/h_jobs" -o /dev/null "$H/api/v1/jobs" || fail "jobs"
grep -qi '^cache-control: no-store' "$T/h_jobs" || fail "jobs: $(grep -i cache-control "$T/h_jobs")"
ok "QIDO, metadata, retrieve and frames answer Cache-Control: private, no-cache; /api/v1/jobs stays no-store"

# the change feed records the SEG as an instance (and its series) and as a result
[ "$(code "${UA[@]}" "$H/api/v1/changes?since=0&limit=1000")" = 200 ] || fail "changes"
json_expr 'sorted((c["kind"], c["type"]) for c in d["changes"] if c["resource"] in ("'"$seg_sop"'", "'"$seg_series"'"))' <"$T/body" |
  grep -qxF "[('instance', 'new'), ('result', 'new'), ('series', 'new')]" || fail "change feed: $(cat "$T/body")"
ok "change feed: the SEG instance, its series and the result"

# no job for the SEG series, before or after the completion timers had their chance
sleep 3
"$SAMDA" jobs --data-dir "$D" | json_expr '[(j["kind"], j["series_uid"]) for j in d]' | grep -qxF "[('segment', '$ct_series')]" ||
  fail "jobs: $("$SAMDA" jobs --data-dir "$D")"
ok "one job, for the CT series: none for the SEG series"

# a re-run: a new SEG, a new instance in a new series; counts follow
B=(-H "Authorization: Bearer $user" -H 'Content-Type: application/json')
[ "$(code -X POST "${B[@]}" -d '{"transaction_id":"rerun-1"}' "$H/api/v1/studies/$study/segment")" = 202 ] || fail "segment: $(cat "$T/body")"
job2=$(json_expr 'd["id"]' <"$T/body")
wait_for_cmd 240 bash -c "curl -sf -H 'Authorization: Bearer $user' '$H/api/v1/jobs/$job2' | grep -q '\"state\": *\"done\"'"
curl -sf "${UA[@]}" "$H/api/v1/jobs/$job2" | json_expr '[s["series_uid"] for s in d["result"]["series"]]' | grep -qxF "['$ct_series']" ||
  fail "the study job segmented more than the CT series: $(curl -sf "${UA[@]}" "$H/api/v1/jobs/$job2")"
curl -sf "${UA[@]}" "$W/studies?StudyInstanceUID=$study" | json_expr '(d[0]["00201206"]["Value"][0], d[0]["00201208"]["Value"][0])' |
  grep -qxF "(3, $((n_ct + 2)))" || fail "study counts after the re-run: $(curl -sf "${UA[@]}" "$W/studies?StudyInstanceUID=$study")"
curl -sf "${UA[@]}" "$W/series?Modality=SEG" | json_expr 'sorted(s["0020000E"]["Value"][0] for s in d)' >"$T/segs"
$PY -c "import ast,sys; s=ast.literal_eval(open('$T/segs').read()); sys.exit(0 if len(s)==2 and '$seg_series' in s else 1)" || fail "SEG series: $(cat "$T/segs")"
curl -sf "${UA[@]}" "$H/api/v1/studies/$study/results" | json_expr 'sorted(r["seg_series_uid"] for s in d["series"] for r in s["results"])' |
  diff - "$T/segs" >/dev/null || fail "results and SEG series differ: $(cat "$T/segs")"
ok "re-run (job $job2, the study's CT series only): a second SEG series and instance, 3 series and $((n_ct + 2)) instances"

# the SEG sent back over C-STORE (a PACS echoing samda's export): identical, nothing changes
storescu -R -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$T/result.dcm" || fail "storescu SEG"
curl -sf "${UA[@]}" "$W/studies?StudyInstanceUID=$study" | json_expr '(d[0]["00201206"]["Value"][0], d[0]["00201208"]["Value"][0])' |
  grep -qxF "(3, $((n_ct + 2)))" || fail "counts after the SEG came back"
ok "the SEG sent back over C-STORE is accepted as identical; counts unchanged"

sleep 2
"$SAMDA" jobs --data-dir "$D" | json_expr 'len(d)' | grep -qx 2 || fail "a job was queued for a SEG: $("$SAMDA" jobs --data-dir "$D")"
"$SAMDA" check --data-dir "$D" >"$T/check.out" 2>&1 || fail "check: $(cat "$T/check.out")"
ok "still two jobs; the data directory checks clean (every file claimed, results and instances agree)"
