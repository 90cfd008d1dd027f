#!/usr/bin/env bash
# Issue 14's DICOM attacks through samdad, which runs under a memory limit (a memory cgroup where
# this machine lets us make one, else an address-space limit): hostile_dicom.py's cases over C-STORE
# (a raw client of ours, dimse_raw.py, sends what storescu cannot: a data set whose last PDV stops
# short) and STOW-RS. Nothing that cannot be read back is acknowledged, every refusal names its
# attribute, samdad answers C-ECHO after each; the valid series (32 bits allocated, UIDs with a
# leading zero, 64-character UIDs) are segmented; a series without PixelSpacing and one with two
# slices at one position fail once, for good, with their whole cause; conflicting instances of two
# patients or two SOP classes are refused at intake.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
HERE=$(dirname "$0")
$PY "$HERE/hostile_dicom.py" "$T/h" || fail "hostile_dicom.py"

dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu"
sed -i 's/^modalities = CT,MR/modalities = CT,MR\nmin_slices = 3/' "$T/s.conf"

# The memory limit: 1.5 GiB for samdad (it needs about 0.4 GiB with the demo model).
LIMIT_MB=1536
CG=""
for base in /sys/fs/cgroup/memory /sys/fs/cgroup/unified /sys/fs/cgroup; do
  [ -w "$base" ] || continue
  if [ -f "$base/memory.limit_in_bytes" ] || grep -qw memory "$base/cgroup.controllers" 2>/dev/null; then
    d="$base/samda-it-hostile-$$"
    mkdir "$d" 2>/dev/null || continue
    if echo $((LIMIT_MB << 20)) >"$d/memory.limit_in_bytes" 2>/dev/null ||
       echo $((LIMIT_MB << 20)) >"$d/memory.max" 2>/dev/null; then
      CG=$d; break
    fi
    rmdir "$d" 2>/dev/null || true
  fi
done
trap 'cleanup; [ -n "$CG" ] && rmdir "$CG" 2>/dev/null; true' EXIT
if [ -n "$CG" ]; then
  # samdad starts inside the cgroup (the subshell joins it, then execs samdad).
  (echo $BASHPID >"$CG/cgroup.procs" && exec "$SAMDAD" --config "$T/s.conf") >"$T/d.log" 2>&1 &
  pid=$!
  _pids+=("$pid")
  echo "memory limit: cgroup $CG, ${LIMIT_MB} MiB"
else
  (ulimit -v $((LIMIT_MB * 4 << 10)) && exec "$SAMDAD" --config "$T/s.conf") >"$T/d.log" 2>&1 &
  pid=$!
  _pids+=("$pid")
  echo "memory limit: no writable memory cgroup here; address space limited to $((LIMIT_MB * 4)) MiB"
fi
wait_for_text "$T/d.log" 'msg="ready"' 60
grep -q 'msg="model loaded"' "$T/d.log" || fail "model not loaded: $(tail -5 "$T/d.log")"
D="$T/data"
alive() {
  kill -0 "$pid" 2>/dev/null || fail "samdad died after $1: $(tail -5 "$T/d.log")"
  echoscu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" || fail "no C-ECHO after $1"
}
n_instances() { "$SAMDA" series --data-dir "$D" | json_expr 'sum(s["instances"] for s in d)'; }
ingest=$("$SAMDA" token create stow --role ingest --data-dir "$D" 2>/dev/null)
admin=$("$SAMDA" token create boss --role admin --data-dir "$D" 2>/dev/null)
H="http://127.0.0.1:$hport"

# 1. Refused at intake, over C-STORE and over STOW-RS, naming the attribute.
declare -A want=(
  [frames_bomb]='(7FE0,0010) PixelData holds'
  [enhanced_no_groups]='NumberOfFrames 100000'
  [truncated]='does not parse to its end'
  [zero_spacing]='(0028,0030) PixelSpacing'
  [negative_spacing]='(0028,0030) PixelSpacing'
  [huge_position]='(0020,0032) ImagePositionPatient'
  [slope_zero]='(0028,1053) RescaleSlope'
  [nul_uid]='(0008,0018) SOPInstanceUID contains a NUL'
)
for c in "${!want[@]}"; do
  f="$T/h/$c/IMG0001.dcm"
  n0=$(n_instances)
  $PY "$HERE/dimse_raw.py" 127.0.0.1 "$dport" --calling STORESCU --called SAMDA "store:$f" release >"$T/$c.dimse" ||
    fail "$c: association ended early: $(cat "$T/$c.dimse")"
  line=$(grep '"step": "store' "$T/$c.dimse")
  echo "$line" | json_expr 'd["result"] == "status" and d["status"] != 0' | grep -q True || fail "$c acknowledged: $line"
  if [ "$c" != nul_uid ]; then # its command's UID stops at the NUL: refused for the mismatch or the NUL
    echo "$line" | json_expr 'd["comment"]' | grep -qF "${want[$c]:0:30}" || fail "$c: ErrorComment does not name the cause: $line"
  fi
  alive "C-STORE of $c"
  # STOW-RS: the same file as one part.
  $PY "$HERE/stow.py" "$H/dicomweb/studies" "$ingest" "$f" >"$T/$c.stow" 2>&1 || true
  grep -q '"00081198"' "$T/$c.stow" || fail "$c over STOW: no FailedSOPSequence: $(head -c 600 "$T/$c.stow")"
  grep -q '"00081199"' "$T/$c.stow" && fail "$c over STOW: listed as stored: $(head -c 600 "$T/$c.stow")"
  alive "STOW of $c"
  [ "$(n_instances)" = "$n0" ] || fail "$c: an instance was indexed"
  grep -qF "${want[$c]:0:30}" "$T/d.log" || fail "$c: no log line names the cause"
done
tmp_empty "$D" || fail "temporary files left after the refusals"
"$SAMDA" check --data-dir "$D" >/dev/null || fail "samda check after the refusals"
ok "8 hostile instances refused over C-STORE and STOW-RS naming the attribute; samdad alive after each; nothing kept"

# 2. Conflicts with what is indexed: the first three instances of each series are stored, the
#    fourth (another patient; another SOP class) is refused naming the attribute.
for c in two_patients ct_mr_mix; do
  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$T/h/$c/IMG0001.dcm" "$T/h/$c/IMG0002.dcm" \
    "$T/h/$c/IMG0003.dcm" || fail "$c: the consistent instances were refused"
  $PY "$HERE/dimse_raw.py" 127.0.0.1 "$dport" --calling STORESCU --called SAMDA "store:$T/h/$c/IMG0004.dcm" release \
    >"$T/$c.dimse" || fail "$c: association ended early"
  line=$(grep '"step": "store' "$T/$c.dimse")
  echo "$line" | json_expr 'd["status_hex"]' | grep -qi "c000" || fail "$c: not refused 0xC000: $line"
  exp='(0010,0020) PatientID differs'; [ $c = ct_mr_mix ] && exp='(0008,0060) Modality MR differs'
  echo "$line" | json_expr 'd["comment"]' | grep -qF "${exp:0:28}" || fail "$c: comment: $line"
  alive "$c"
done
ok "an instance of another patient, and one of another SOP class, refused in an indexed series (0xC000, named)"

# 3. Series that are valid (segmented) or refused when segmented (failed once, for good).
for c in ok_bits32 ok_leading_zero ok_long_uids no_spacing duplicate_position; do
  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/h/$c" >"$T/$c.store" 2>&1 || fail "$c refused: $(tail -3 "$T/$c.store")"
done
alive "the valid series"
wait_for_cmd 600 bash -c "'$SAMDA' jobs --data-dir '$D' | $PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if len(d)==7 and all(j[\"state\"] in (\"done\",\"failed\") for j in d) else 1)'"
"$SAMDA" jobs --data-dir "$D" >"$T/jobs.json"
series_of() { $PY -c "import pydicom,sys; print(pydicom.dcmread(sys.argv[1]).SeriesInstanceUID)" "$T/h/$1/IMG0001.dcm"; }
job_field() { json_expr "[j['$2'] for j in d if j['series_uid']=='$(series_of "$1")'][0]" <"$T/jobs.json"; }
for c in ok_bits32 ok_leading_zero ok_long_uids two_patients ct_mr_mix; do
  [ "$(job_field $c state)" = done ] || fail "$c not segmented: $(job_field $c error)"
done
ok "segmented: 32 bits allocated, UIDs with a leading zero, 64-character UIDs, and the consistent parts of the conflicting series"
[ "$(job_field no_spacing state)" = failed ] && [ "$(job_field no_spacing attempts)" = 1 ] || fail "no_spacing: $(cat "$T/jobs.json")"
job_field no_spacing error | grep -q '^(0028,0030) PixelSpacing missing' || fail "no_spacing error: $(job_field no_spacing error)"
err=$(job_field duplicate_position error)
[ "$(job_field duplicate_position attempts)" = 1 ] || fail "duplicate_position retried"
for k in 2 3; do
  uid=$($PY -c "import pydicom,sys; print(pydicom.dcmread(sys.argv[1]).SOPInstanceUID)" "$T/h/duplicate_position/IMG000$k.dcm")
  echo "$err" | grep -qF "instance $k (SOP Instance UID $uid)" || fail "the job's error lacks instance $k whole: $err"
done
case "$err" in duplicate\ slices*\)) ;; *) fail "error does not start with the cause or is cut: $err" ;; esac
echo "$err" | grep -q "$D" && fail "the job's error names a path: $err"
id=$(job_field duplicate_position id)
code -H "Authorization: Bearer $admin" "$H/api/v1/jobs/$id" >/dev/null
json_expr 'd["error"]' <"$T/body" | grep -qF "$err" || fail "the API's job view differs: $(cat "$T/body")"
grep 'msg="job failed"' "$T/d.log" | grep -q "1.2.826.0.1.3680043.10" && fail "a UID in a log line with log_uids off"
ok "no PixelSpacing and duplicate slices: failed once, permanently, the cause first and whole (both 64-character UIDs), in the index and the API; the log line without UIDs"

# 4. Still up, and what it used.
alive "everything"
echo "samdad peak RSS: $(grep VmHWM /proc/$pid/status)"
kill -TERM "$pid"; wait_exit "$pid" 30; [ "$WAIT_RC" = 0 ] || fail "exit status $WAIT_RC"
"$SAMDA" check --data-dir "$D" >/dev/null || fail "samda check"
ok "samdad stayed up under its memory limit and stops cleanly"
