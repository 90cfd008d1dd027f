#!/usr/bin/env bash
# DICOM ingest with real peers (dcmtk's echoscu/storescu): the real MR series, transfer-syntax
# samples, pydicom's files, 8 parallel senders, the allow-list, a bad UID, a truncated file and
# JPEG 2000; then series completion: exactly one job for the series, none for an identical re-send.
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
start_samdad d "$T/s.conf" --set dicom.max_associations_per_peer=8 # 8 parallel senders below, one AE title
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

# Identical re-send: no second job, and the duplicate policy's decisions are recorded.
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$MR" 2>/dev/null || fail "re-send failed"
sleep 3
[ "$(jobs | json_len)" = 1 ] || fail "an identical re-send created another job: $(jobs)"
"$SAMDA" audit --data-dir "$D" | json_expr '[e["details"]["duplicates"]["identical"] for e in d if e["action"]=="dicom.association" and e["outcome"]=="ok"][-1]' | grep -qx 20 ||
  fail "the association audit entry does not record 20 identical duplicates"
ok "identical re-send: still one job; 20 identical duplicates recorded in the audit entry"

# Transfer syntaxes: each sample is proposed in its own encoding (storescu's flag for it) and
# accepted bit-preserving; JPEG 2000 is not negotiated (Debian's DCMTK cannot decode it), so the
# sender cannot deliver it in that encoding.
declare -A flag=([deflated]=-xd [explicit_big]=-xb [explicit_little]=-xe [implicit_little]=-xi
  [jpeg_baseline_8bit]=-xy [jpeg_lossless_sel1]=-xs [jpeg_ls]=-xu [rle]=-xr [jpeg_2000]=-xw)
for f in "$FIXTURES"/dicom/transfer-syntaxes/*.dcm; do
  b=$(basename "$f" .dcm)
  rc=0
  storescu -aet STORESCU -aec SAMDA ${flag[$b]:-} 127.0.0.1 "$dport" "$f" >"$T/ts-$b.out" 2>&1 || rc=$?
  if [ "$b" = explicit_big ]; then
    # The same SOP instance as MR slice 13, re-encoded: a duplicate with different bytes, which the
    # default policy (ignore identical, refuse changed) answers with 0111 Duplicate SOP Instance.
    [ "$rc" != 0 ] || fail "a changed duplicate was accepted under storage.duplicates = ignore"
    grep -q 'msg="instance refused" assoc=[0-9]* status=0111' "$T/d.log" || fail "no 0111 refusal logged"
  elif [ "$b" = jpeg_2000 ]; then
    [ "$rc" != 0 ] || fail "JPEG 2000 was accepted"
    grep -qiE "no presentation context|no acceptable presentation|unable to convert dataset from .JPEG 2000" "$T/ts-$b.out" ||
      fail "JPEG 2000 refusal unclear: $(cat "$T/ts-$b.out")"
  else
    [ "$rc" = 0 ] || fail "$b refused: $(tail -3 "$T/ts-$b.out")"
    grep -q "Store Failed\|Status: [^S]" "$T/ts-$b.out" && fail "$b: $(cat "$T/ts-$b.out")"
  fi
done
# Bit-preserving: the stored JPEG file keeps its transfer syntax.
jpeg_sop=$(dcmdump -q +P 0008,0018 "$FIXTURES/dicom/transfer-syntaxes/jpeg_baseline_8bit.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
stored=$(grep -rl --include='*.dcm' -F "$jpeg_sop" "$D/objects" | head -1)
[ -n "$stored" ] || fail "stored JPEG baseline instance not found"
dcmdump -q +P 0002,0010 "$stored" | grep -q JPEGBaseline || fail "stored file was transcoded: $(dcmdump -q +P 0002,0010 "$stored")"
tmp_empty "$D" || fail "temporary files left after the transfer-syntax samples"
ok "transfer syntaxes: 7 accepted bit-preserving, a changed duplicate refused (0111), JPEG 2000 not negotiated"

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
rc=0; storescu -v -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$T/baduid.dcm" >"$T/bad.out" 2>&1 || rc=$?
grep -q "Received Store Response (Error: CannotUnderstand)" "$T/bad.out" ||
  fail "bad UID not refused with C000: $(grep -v DcmItem "$T/bad.out" | tail -5)"
grep -q 'status=C000 error=.*SOPInstanceUID.*is not a valid UID' "$T/d.log" || fail "bad UID refusal not logged"
tmp_empty "$D" || fail "the refused instance left a temporary file"
ok "instance with an invalid UID refused"

# A truncated file: storescu aborts the association mid-way; nothing half-written stays.
head -c 60000 "$MR/brain_002.dcm" >"$T/trunc.dcm"
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$T/trunc.dcm" >/dev/null 2>&1 || true
wait_for_text "$T/d.log" 'outcome=aborted'
tmp_empty "$D" || fail "temporary files left: $(find "$D/tmp" -type f)"
ok "truncated transfer: association aborted, nothing left behind"

# Eight senders in parallel, each with a series of its own (new UIDs): all succeed, all indexed,
# and each series gets its job.
before=$(series | json_expr 'sum(s["instances"] for s in d)')
pids=()
for i in $(seq 1 8); do copy_series "$MR" "$T/par$i" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "preparing a series copy failed"; done
pids=()
for i in $(seq 1 8); do
  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/par$i" >"$T/par$i.out" 2>&1 & pids+=($!)
done
for i in "${!pids[@]}"; do wait "${pids[$i]}" || fail "parallel storescu $((i + 1)) failed: $(tail -3 "$T/par$((i + 1)).out")"; done
after=$(series | json_expr 'sum(s["instances"] for s in d)')
[ $((after - before)) = 160 ] || fail "8 parallel senders: $((after - before)) new instances indexed, expected 160"
par_series=$(for i in $(seq 1 8); do dcmdump -q +P 0020,000E "$T/par$i/brain_001.dcm" | sed 's/.*\[\(.*\)\].*/\1/'; done | sort | tr '\n' ' ')
check_par_jobs() {
  "$SAMDA" jobs --data-dir "$D" | $PY -c '
import json, sys
want = set(sys.argv[1].split())
jobs = [j for j in json.load(sys.stdin) if j["series_uid"] in want]
sys.exit(0 if len(jobs) == len(want) == len({j["series_uid"] for j in jobs}) else 1)' "$par_series"
}
wait_for_cmd 30 check_par_jobs
ok "8 parallel associations: 160 instances indexed, one job per new series"

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

# Free space below the watermark: Out of Resources (A700), logged, nothing kept.
start_samdad full "$T/s.conf" --set storage.min_free=1TiB
wait_for_text "$T/full.log" 'msg="ready"'
n0=$(series | json_expr 'sum(s["instances"] for s in d)')
storescu -v -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$T/par1/brain_003.dcm" >"$T/full.out" 2>&1 || true
grep -q "Received Store Response (Refused: OutOfResources)" "$T/full.out" || fail "no A700: $(grep -v DcmItem "$T/full.out" | tail -3)"
grep -q 'disk space below storage.min_free' "$T/full.log" || fail "watermark refusal not logged"
[ "$(series | json_expr 'sum(s["instances"] for s in d)')" = "$n0" ] || fail "an instance was kept although refused"
tmp_empty "$D" || fail "temporary file left after the refusal"
ok "free space below storage.min_free: A700 Out of Resources, logged, nothing kept"
kill -TERM "$(cat "$T/full.pid")"; wait_exit "$(cat "$T/full.pid")" 15
echo "all ingest checks passed"
