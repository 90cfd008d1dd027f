#!/usr/bin/env bash
# Fault: the data directory fills up while a segmentation job runs (a size-limited tmpfs, needs root
# to mount; skipped with 77 otherwise). The job's DICOM-SEG cannot be written, and neither can its
# failure (the index's write-ahead log is truncated first, so the index cannot grow either).
# Expected: samdad stays up, says once that it cannot record the failure and takes no other job
# meanwhile; once space is freed it records the failure with its own cause (no space), not "lease
# expired", and the retried job then succeeds; the data directory checks clean.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
command -v sqlite3 >/dev/null || fail "sqlite3 missing (deploy/install-deps.sh installs it)"
mkdir -p "$T/data"
if ! mount -t tmpfs -o size=64M tmpfs "$T/data" 2>"$T/mount.err"; then
  echo "SKIP: cannot mount a size-limited tmpfs (needs root): $(cat "$T/mount.err")"
  exit 77
fi
trap 'for p in "${_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null; umount "$T/data" 2>/dev/null; cleanup' EXIT

"$SAMDA" phantom --out "$T/ph" --site A --count 40 --seed 5 --slices-per-body 40 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu"
sed -i 's/^min_free = 1MiB/min_free = 0/; s/^tick = 200ms/tick = 200ms\njob_lease = 10m/' "$T/s.conf"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
D="$T/data"
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000" || fail "storescu"
wait_for_text "$T/d.log" 'msg="job started"' 60

# The job runs: empty the index's write-ahead log, then fill the disk to the last block.
sqlite3 "$D/index.sqlite3" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null || fail "checkpoint"
dd if=/dev/zero of="$D/filler" bs=4096 status=none 2>/dev/null || true
echo "disk full: $(df -B1 --output=avail "$D" | tail -1) bytes free"
wait_for_text "$T/d.log" 'msg="cannot record a job failure: trying again before any new job"' 300
kill -0 "$(cat "$T/d.pid")" || fail "samdad died"
sleep 3
[ "$(grep -c 'msg="cannot record a job failure' "$T/d.log")" = 1 ] || fail "the failure to record was logged more than once a minute"
grep 'msg="cannot record a job failure' "$T/d.log" | head -1 | sed 's/^/log: /'
ok "the SEG and the job's failure could not be written; logged once, samdad up"

rm -f "$D/filler"
wait_for_text "$T/d.log" 'msg="job failure recorded late"' 30
"$SAMDA" jobs --data-dir "$D" >"$T/jobs.json"
err=$(json_expr 'd[0].get("error") or ""' <"$T/jobs.json")
state=$(json_expr 'd[0]["state"]' <"$T/jobs.json")
echo "job after the space came back: state=$state error=$err"
echo "$err" | grep -qi "lease expired" && fail "the cause was lost to the lease"
echo "$err" | grep -qiE "space|full|ENOSPC" || { [ "$state" = done ] || fail "the job's error does not say why: $err"; }
ok "space freed: the failure recorded with its own cause, not 'lease expired'"

# The attempt failed transiently: the job runs again and now succeeds.
wait_for_cmd 300 bash -c "'$SAMDA' jobs --data-dir '$D' | $PY -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[0][\"state\"]==\"done\" else 1)'"
ok "the retried job is done"
kill -TERM "$(cat "$T/d.pid")"; wait_exit "$(cat "$T/d.pid")" 30; [ "$WAIT_RC" = 0 ] || fail "exit $WAIT_RC"
"$SAMDA" check --data-dir "$D" >"$T/check.out" || fail "data directory check: $(cat "$T/check.out")"
ok "data directory consistent"
