#!/usr/bin/env bash
# DICOM ingest with real peers (dcmtk's echoscu/storescu): the real MR series, transfer-syntax
# samples, pydicom's files, 8 parallel senders, the allow-list, a bad UID, a truncated file and
# JPEG 2000; then series completion: exactly one job for the series, none for an identical re-send.
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 0; }
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"'
D="$T/data"
series() { "$SAMDA" series --data-dir "$D"; }
jobs() { "$SAMDA" jobs --data-dir "$D"; }

echoscu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" || fail "C-ECHO failed"
ok "C-ECHO"

# Allow-list: an unknown calling AE and an unknown called AE are rejected.
! echoscu -aet INTRUDER -aec SAMDA 127.0.0.1 "$dport" 2>"$T/e1" || fail "unknown calling AE accepted"
grep -qi "rejected" "$T/e1" || fail "echoscu did not report a rejection: $(cat "$T/e1")"
grep -q 'msg="association rejected" calling_ae="INTRUDER"' "$T/d.log" || fail "no log line names the rejected AE"
! echoscu -aet STORESCU -aec NOT_SAMDA 127.0.0.1 "$dport" 2>/dev/null || fail "unknown called AE accepted"
ok "unknown calling and called AE titles rejected and logged"

# The real MR series over one association.
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$MR" 2>"$T/store.err" || fail "storescu MR: $(tail -3 "$T/store.err")"
n=$(series | json_expr 'sum(s["instances"] for s in d if s["modality"]=="MR")')
[ "$n" = 20 ] || fail "index holds $n MR instances, expected 20"
ok "20 MR instances stored and indexed"

# Completion: one job for the series.
wait_for_cmd 20 bash -c "'$SAMDA' jobs --data-dir '$D' | $PY -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin))==1 else 1)'"
jobs >"$T/jobs1.json"
[ "$(json_expr 'd[0]["kind"]+"/"+d[0]["state"]' <"$T/jobs1.json")" = "segment/pending" ] || fail "job: $(cat "$T/jobs1.json")"
[ "$(series | json_expr '[s["state"] for s in d if s["modality"]=="MR"][0]')" = complete ] || fail "series not complete"
ok "series complete after the idle timers: one pending segment job"

# Identical re-send: no second job.
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$MR" 2>/dev/null || fail "re-send failed"
sleep 3
[ "$(jobs | json_len)" = 1 ] || fail "an identical re-send created another job: $(jobs)"
ok "identical re-send: still one job"

# Transfer syntaxes: every sample the build decodes is accepted; JPEG 2000 is not negotiated.
for f in "$FIXTURES"/dicom/transfer-syntaxes/*.dcm; do
  b=$(basename "$f" .dcm)
  rc=0
  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$f" >"$T/ts-$b.out" 2>&1 || rc=$?
  if [ "$b" = jpeg_2000 ]; then
    [ "$rc" != 0 ] || fail "JPEG 2000 was accepted"
    grep -qiE "no presentation context|no acceptable presentation|unable to convert dataset from .JPEG 2000" "$T/ts-$b.out" || fail "JPEG 2000 refusal unclear: $(cat "$T/ts-$b.out")"
  else
    [ "$rc" = 0 ] || fail "$b refused: $(tail -3 "$T/ts-$b.out")"
  fi
done
ok "transfer syntaxes: 8 accepted, JPEG 2000 not negotiated"

# pydicom's real test files.
PYD=/usr/lib/python3/dist-packages/pydicom/data/test_files
for f in CT_small.dcm MR_small.dcm; do
  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$PYD/$f" 2>"$T/p.err" || fail "$f: $(tail -2 "$T/p.err")"
done
ok "pydicom CT_small and MR_small stored"

# A bad UID: failure status, nothing stored.
$PY - "$MR/brain_001.dcm" "$T/baduid.dcm" <<'PY'
import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.1..77"
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
ds.save_as(sys.argv[2])
PY
rc=0; storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$T/baduid.dcm" >"$T/bad.out" 2>&1 || rc=$?
grep -qiE "status.*(C000|A900)|0xc000|0xa900|Error: Cannot understand|Failed" "$T/bad.out" || fail "bad UID not refused: $(cat "$T/bad.out")"
ok "instance with an invalid UID refused"

# A truncated file: storescu aborts the association mid-way; nothing half-written stays.
head -c 60000 "$MR/brain_002.dcm" >"$T/trunc.dcm"
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$T/trunc.dcm" >/dev/null 2>&1 || true
wait_for_text "$T/d.log" 'outcome=aborted'
tmp_empty "$D" || fail "temporary files left: $(find "$D/tmp" -type f)"
ok "truncated transfer: association aborted, nothing left behind"

# Eight senders in parallel (the MR series again plus the samples) all succeed.
pids=()
for i in $(seq 1 8); do
  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$MR" >"$T/par$i.out" 2>&1 & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a parallel storescu failed"; done
ok "8 parallel associations succeed"

tmp_empty "$D" || fail "temporary files left after the run"
"$SAMDA" check --data-dir "$D" >"$T/check.out" || fail "data directory check: $(cat "$T/check.out")"
ok "data directory consistent: $(cat "$T/check.out")"

# Audit: one entry per association, no patient names or IDs anywhere in it or in the log.
"$SAMDA" audit --data-dir "$D" >"$T/audit.json"
[ "$(json_expr 'sum(1 for e in d if e["action"]=="dicom.association")' <"$T/audit.json")" -ge 14 ] || fail "too few association audit entries"
pname=$($PY -c "import pydicom; print(pydicom.dcmread('$MR/brain_001.dcm').PatientName)")
pid=$($PY -c "import pydicom; print(pydicom.dcmread('$MR/brain_001.dcm').PatientID)")
for s in "$pname" "$pid"; do
  [ ${#s} -ge 4 ] || continue  # a short ID would match unrelated text
  ! grep -qF -- "$s" "$T/d.log" "$T/audit.json" || fail "patient data '$s' found in log or audit"
done
ok "audit entries per association, no patient data in log or audit"

kill -TERM "$(cat "$T/d.pid")"; wait_exit "$(cat "$T/d.pid")" 15; [ "$WAIT_RC" = 0 ] || fail "exit $WAIT_RC"
echo "all ingest checks passed"
