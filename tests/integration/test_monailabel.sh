#!/usr/bin/env bash
# samda as a MONAI Label server (/monailabel/), driven the way 3D Slicer's MONAILabel module and
# OHIF's MONAI Label extension drive it (monailabel_client.py, monailabel_flow.py): auth with a samda
# token, info, automatic and click inference answered as NRRD aligned with the series (checked
# against the DICOM geometry and the phantom's truth), the image download, datastore, active
# learning, training (status, start, a finished job on the saved labels); sessions (a volume
# uploaded as NRRD, LPS and RAS with reversed slices, stored as a DICOM series, inferred on by
# session_id in the upload's geometry, GET, DELETE, then 404); a final label saved from
# the client (NRRD as returned, NRRD in RAS with reversed slices, OHIF's label.bin) arrives at a
# DICOM destination as a DICOM-SEG of the study on the same voxels.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
$PY -c "import requests, cgi, numpy, pydicom" 2>/dev/null || { echo "SKIP: needs python3-requests, numpy, pydicom"; exit 77; }

"$SAMDA" phantom --out "$T/ph" --site A --count 32 --seed 5 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port); pport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
  "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $pport"
sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = pacs/' "$T/s.conf"
mkdir -p "$T/recv"
storescp -aet PACS -od "$T/recv" "$pport" >"$T/storescp.log" 2>&1 &
_pids+=($!)
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
grep -q 'msg="model loaded"' "$T/d.log" || fail "model not loaded"
user=$("$SAMDA" token create reader --role user --data-dir "$T/data" 2>/dev/null)
admin=$("$SAMDA" token create boss --role admin --data-dir "$T/data" 2>/dev/null)

for s in A_00000 A_00001; do
  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/$s" || fail "storescu $s"
done
wait_for_cmd 300 bash -c "[ \$(grep -c 'msg=\"job done: DICOM-SEG recorded\"' '$T/d.log') -ge 2 ]"
ok "two phantom series stored and segmented"
# the automatic results went to the destination too; the labels saved below come after them
wait_for_cmd 60 bash -c "[ \$(ls '$T/recv' | wc -l) -ge 2 ]"

mkdir -p "$T/client"
$PY "$(dirname "$0")/monailabel_flow.py" "http://127.0.0.1:$hport/monailabel/" "$user" "$admin" \
  "$T/ph/dicom/A_00000" "$T/ph/dicom/A_00000.seg.dcm" "$T/ph/dicom/A_00001" "$T/client" "$T/recv" || fail "client flow"

# the final label of A_00000 arrives at the PACS as a DICOM-SEG of the study with the saved voxels
sop=$(json_expr 'd["seg_sop_uid"]' <"$T/client/saved.json")
wait_for_cmd 60 bash -c "grep -rl '$sop' '$T/recv' >/dev/null 2>&1 || ls '$T/recv' | grep -q '$sop'"
$PY - "$T/recv" "$T/client/saved.json" <<'PY' || fail "the saved label at the PACS"
import json, os, sys
import pydicom
want = json.load(open(sys.argv[2]))
for f in os.listdir(sys.argv[1]):
    ds = pydicom.dcmread(os.path.join(sys.argv[1], f))
    if ds.SOPInstanceUID == want["seg_sop_uid"]:
        break
else:
    sys.exit("SEG %s not received" % want["seg_sop_uid"])
assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
assert ds.StudyInstanceUID == want["study"], "not in the series' study"
assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == want["series"]
names = {int(s.SegmentNumber): s.SegmentLabel for s in ds.SegmentSequence}
assert all(s.SegmentAlgorithmType == "MANUAL" for s in ds.SegmentSequence)
px = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
got = {}
for i, fr in enumerate(ds.PerFrameFunctionalGroupsSequence):
    n = names[int(fr.SegmentIdentificationSequence[0].ReferencedSegmentNumber)]
    got[n] = got.get(n, 0) + int(px[i].sum())
assert got == want["voxels"], (got, want["voxels"])
print("received", ds.SeriesDescription, got)
PY
ok "the final label reached the destination as a DICOM-SEG of the study, MANUAL segments, same voxels"
"$SAMDA" audit --limit 100000 --data-dir "$T/data" >"$T/audit.json" || fail "samda audit"
series=$(json_expr 'd["series"]' <"$T/client/saved.json")
json_expr "sum(1 for e in d if e['action'] == 'http PUT /monailabel/datastore/label' and e['outcome'] == 'ok' and 'image=$series' in e['resource'])" \
  <"$T/audit.json" | grep -qx 2 || fail "the two label saves of the series are not in the audit log"
json_expr "[e['actor'] for e in d if e['action'] == 'http POST /monailabel/train/{model}' and e['outcome'] == 'denied']" <"$T/audit.json" |
  grep -q "token:" || fail "the refused training start is not audited"
ok "label saves (with the series) and the refused training start are in the audit log"
json_expr "sum(1 for e in d if e['action'] in ('http PUT /monailabel/session/', 'http DELETE /monailabel/session/{session_id}', 'http POST /monailabel/infer/{model}') and e['outcome'] == 'ok' and 'session_id=' in e['resource'])" \
  <"$T/audit.json" | grep -qx 9 || fail "four session uploads, two infers on them and three deletions are not in the audit log with their session ids"
json_expr "sum(1 for e in d if e['action'] == 'study.delete' and e['actor'].startswith('token:'))" <"$T/audit.json" | grep -qx 3 ||
  fail "the three session studies' deletions are not audited"
json_expr "sum(1 for e in d if e['action'] == 'study.delete' and e['actor'] == 'session-expiry')" <"$T/audit.json" | grep -qx 1 ||
  fail "the expired session's study deletion is not audited"
ok "session uploads, infers and deletions are audited with their session ids; their studies' deletions too (one by expiry)"
# a session's upload and its result stay in samda: nothing with the synthetic patient reached the PACS
$PY - "$T/recv" <<'PY' || fail "a session's series or result was sent to the destination"
import os, sys
import pydicom
for f in os.listdir(sys.argv[1]):
    ds = pydicom.dcmread(os.path.join(sys.argv[1], f), stop_before_pixels=True)
    assert not str(ds.PatientID).startswith("SESSION-"), f
PY
ok "no instance of a session's synthetic patient reached the destination"

# sessions live in samdad's memory: after a restart a session left open is unknown, and the first
# session request deletes its study (the previous run's session studies are recognised by their
# synthetic patient and study description)
H="Authorization: Bearer $user"
curl -s -X PUT -H "$H" -F "client_id=slicer" -F "files=@$T/client/upload.nrrd" \
  "http://127.0.0.1:$hport/monailabel/session/" >"$T/left.json" || fail "PUT /session/ with curl"
left=$(json_expr 'd["session_id"]' <"$T/left.json") || fail "no session id: $(cat "$T/left.json")"
[ "$(code -H "$H" "http://127.0.0.1:$hport/monailabel/datastore/image?image=$left")" = 200 ] || fail "the session's series"
kill -TERM "$(cat "$T/d.pid")"
wait_exit "$(cat "$T/d.pid")" 60
start_samdad d2 "$T/s.conf"
wait_for_text "$T/d2.log" 'msg="ready"' 60
[ "$(code -H "$H" "http://127.0.0.1:$hport/monailabel/datastore/image?image=$left")" = 200 ] ||
  fail "the left session's series should still be stored before any session request"
[ "$(code -H "$H" "http://127.0.0.1:$hport/monailabel/session/$left")" = 404 ] || fail "a session survived the restart"
[ "$(code -H "$H" "http://127.0.0.1:$hport/monailabel/datastore/image?image=$left")" = 404 ] ||
  fail "the previous run's session study was not deleted by the first session request"
[ "$(code -H "$H" "http://127.0.0.1:$hport/monailabel/datastore/image?image=$(json_expr 'd["series"]' <"$T/client/saved.json")")" = 200 ] ||
  fail "a PACS series was deleted with the sessions"
ok "after a restart a left session is unknown (404) and its study is deleted at the first session request; PACS series stay"
