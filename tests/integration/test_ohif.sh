#!/usr/bin/env bash
# The OHIF viewer (v3, @ohif/app from npm) in Debian's chromium, pointed at samda's own DICOMweb with
# a bearer token: a phantom CT arrives over C-STORE and is segmented; OHIF opened on the result
# (/viewer?StudyInstanceUIDs=S&initialSeriesInstanceUID=SEG&token=T; OHIF sends ?token= as a bearer
# header) must show the SEG: asserted through the page (window.services.segmentationService and the
# labelmap images in cornerstone's cache: every segment, its voxel count and the slices it covers
# equal the SEG's own frames, read with pydicom), with no failed request. The screenshot is kept in
# the build folder (tests/artefacts/ohif.png).
# Skips (exit 77, with the reason) only when chromium, node, the OHIF build or puppeteer-core is
# missing: deploy/install-deps.sh installs them (the npm packages pinned, into ~/.cache/samda/ohif).
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
OHIF_DIR=${SAMDA_OHIF_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/samda/ohif}
DIST=$(ls -d "$OHIF_DIR"/dist-* 2>/dev/null | sort -V | tail -1 || true)
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
[ -x /usr/bin/chromium ] || { echo "SKIP: /usr/bin/chromium missing (Debian package chromium)"; exit 77; }
command -v node >/dev/null || { echo "SKIP: node missing"; exit 77; }
[ -n "$DIST" ] && [ -f "$DIST/index.html" ] || { echo "SKIP: no OHIF build in $OHIF_DIR (deploy/install-deps.sh fetches @ohif/app)"; exit 77; }
export NODE_PATH="$OHIF_DIR/pptr/node_modules"
node -e 'require("puppeteer-core")' 2>/dev/null || { echo "SKIP: puppeteer-core missing in $NODE_PATH"; exit 77; }

"$SAMDA" phantom --out "$T/ph" --site A --count 48 --seed 11 --slices-per-body 48 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port); oport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu"
sed -i "s|^port = $hport|port = $hport\ncors_origin = http://127.0.0.1:$oport|" "$T/s.conf"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
$PY "$(dirname "$0")/ohif_serve.py" "$DIST" "$oport" "http://127.0.0.1:$hport/dicomweb" 2>"$T/ohif_serve.log" &
_pids+=($!)
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000" || fail "storescu"
wait_for_text "$T/d.log" 'msg="job done: DICOM-SEG recorded"' 240
tok=$("$SAMDA" token create viewer --role user --data-dir "$T/data" 2>/dev/null)
H="http://127.0.0.1:$hport"
study=$($PY -c "import pydicom,os,sys; d=sys.argv[1]; print(pydicom.dcmread(os.path.join(d,sorted(os.listdir(d))[0])).StudyInstanceUID)" "$T/ph/dicom/A_00000")
# the SEG is found the way a viewer finds it: QIDO-RS of the study, Modality SEG
curl -sf -H "Authorization: Bearer $tok" "$H/dicomweb/studies/$study/series?Modality=SEG" >"$T/qido.json" || fail "QIDO series"
seg_series=$(json_expr 'd[0]["0020000E"]["Value"][0]' <"$T/qido.json") || fail "no SEG series in QIDO: $(cat "$T/qido.json")"
rid=$(curl -sf -H "Authorization: Bearer $tok" "$H/api/v1/studies/$study/results" | json_expr '[r["id"] for s in d["series"] for r in s["results"]][0]')
curl -sf -H "Authorization: Bearer $tok" -o "$T/seg.dcm" "$H/api/v1/results/$rid/seg" || fail "result SEG"
ok "the job's SEG is series $seg_series of the study in QIDO-RS"

wait_for_cmd 20 curl -sf "http://127.0.0.1:$oport/app-config.js"
url="http://127.0.0.1:$oport/viewer?StudyInstanceUIDs=$study&initialSeriesInstanceUID=$seg_series&token=$tok"
mkdir -p "$SAMDA_BUILD_DIR/tests/artefacts"
shot="$SAMDA_BUILD_DIR/tests/artefacts/ohif.png"
node "$(dirname "$0")/ohif_check.js" "$url" "$shot" 150 >"$T/ohif.json" 2>"$T/ohif.err" ||
  fail "the browser run failed: $(tail -5 "$T/ohif.err")"
echo "OHIF: $(head -c 600 "$T/ohif.json")"
$PY - "$T/ohif.json" "$T/seg.dcm" "$seg_series" <<'PY' || fail "what OHIF shows is not samda's SEG"
import json, sys
import pydicom
r = json.load(open(sys.argv[1])); seg = pydicom.dcmread(sys.argv[2])
assert r.get("ready"), "OHIF never loaded the segmentation: %s" % {k: r.get(k) for k in ("segmentations", "missing", "error")}
assert any(d["modality"] == "SEG" and d["series"] == sys.argv[3] for d in r["displaySets"]), r["displaySets"]
labels = {str(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}
assert r["segments"] == labels, (r["segments"], labels)
px = seg.pixel_array.reshape((int(seg.NumberOfFrames), seg.Rows, seg.Columns))
voxels, slices, refs = {}, {}, set()
for i, f in enumerate(seg.PerFrameFunctionalGroupsSequence):
    k = str(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
    n = int(px[i].sum())
    voxels[k] = voxels.get(k, 0) + n
    slices[k] = slices.get(k, 0) + (1 if n else 0)
    refs.add(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
assert all(voxels[k] > 0 for k in labels), ("an empty segment in the SEG", voxels)
assert r["voxels"] == voxels, ("voxels per segment differ", r["voxels"], voxels)
assert r["slices"] == slices, ("slices per segment differ", r["slices"], slices)
assert r["referenced"] == len(refs), (r["referenced"], len(refs))
bad = [e for e in r["errors"] if "favicon" not in e]
assert not bad, "failed requests or page errors: %s" % bad[:5]
print("segments", labels, "voxels", voxels, "slices", slices)
PY
ok "OHIF shows every segment of samda's SEG on the CT's $(json_expr 'd["referenced"]' <"$T/ohif.json") slices, voxel for voxel; no request failed"
[ -s "$shot" ] || fail "no screenshot"
ok "screenshot kept: $shot"
