#!/usr/bin/env bash
# kill -9 of samdad while 4 storescu processes send: after a restart, every instance a sender saw
# acknowledged is present and indexed, and no temporary or partial file remains; after every round
# `samda check` (every object's SHA-256) and PRAGMA integrity_check pass. CRASH_ROUNDS (default 20).
# CRASH_INDEX=postgresql: the same with the index in PostgreSQL (a server started for the test).
. "$(dirname "$0")/lib.sh"
INDEX=${CRASH_INDEX:-sqlite}
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
D="$T/data"
if [ "$INDEX" = postgresql ]; then
  start_pg || fail "PostgreSQL test server"
  sed -i "s|^min_free = 1MiB|min_free = 1MiB\nindex = postgresql\npostgresql = $PGC|" "$T/s.conf"
fi
# the SOP Instance UIDs in the index
indexed_sops() {
  if [ "$INDEX" = postgresql ]; then psql "$PGC" -Atc 'SELECT sop_uid FROM instances'
  else sqlite3 "file:$D/index.sqlite3?mode=ro" 'SELECT sop_uid FROM instances'; fi
}
# Four distinct series (new UIDs per sender) so every acknowledged SOP UID is unambiguous.
for s in 1 2 3 4; do
  mkdir -p "$T/in$s"
  $PY - "$MR" "$T/in$s" "$s" <<'PY'
import os, sys, pydicom
from pydicom.uid import generate_uid
src, dst, tag = sys.argv[1], sys.argv[2], sys.argv[3]
series = generate_uid()
for f in sorted(os.listdir(src)):
    ds = pydicom.dcmread(os.path.join(src, f))
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(os.path.join(dst, f))
PY
done
rounds=${CRASH_ROUNDS:-20}
for r in $(seq 1 "$rounds"); do
  start_samdad "r$r" "$T/s.conf"
  wait_for_text "$T/r$r.log" 'msg="ready"'
  pid=$(cat "$T/r$r.pid")
  spids=()
  for s in 1 2 3 4; do
    storescu -v -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/in$s" >"$T/r$r-s$s.out" 2>&1 & spids+=($!)
  done
  # 0.05 to 0.44 s: four series of 20 take about half a second here, so most kills land mid-transfer
  after="0.$(printf %02d $((RANDOM % 40 + 5)))"
  sleep "$after"
  kill -9 "$pid"
  for p in "${spids[@]}"; do wait "$p" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
  # Restart: the store's opening removes temporary leftovers; then check everything acknowledged.
  start_samdad "r${r}b" "$T/s.conf"
  wait_for_text "$T/r${r}b.log" 'msg="ready"'
  kill -TERM "$(cat "$T/r${r}b.pid")"; wait_exit "$(cat "$T/r${r}b.pid")" 15
  acked=0
  for s in 1 2 3 4; do
    # storescu -v prints the file it sent, then "Received Store Response (Success)"
    $PY - "$T/r$r-s$s.out" "$T/in$s" >>"$T/acked.txt" <<'PY'
import sys, pydicom, re
out, folder = sys.argv[1], sys.argv[2]
cur = None
for line in open(out, errors="replace"):
    m = re.search(r"Sending file: (\S+)", line)
    if m: cur = m.group(1)
    if "Received Store Response (Success)" in line and cur:
        print(pydicom.dcmread(cur, stop_before_pixels=True).SOPInstanceUID); cur = None
PY
  done
  "$SAMDA" check --config "$T/s.conf" >"$T/check$r.out" 2>&1 || fail "round $r: data directory inconsistent: $(cat "$T/check$r.out")"
  if [ "$INDEX" = sqlite ]; then
    [ "$(sqlite3 "$D/index.sqlite3" 'PRAGMA integrity_check')" = ok ] || fail "round $r: PRAGMA integrity_check"
  fi
  tmp_empty "$D" || fail "round $r: temporary files remain after the restart"
  ok "round $r: killed after ${after}s ($(cat "$T"/r$r-s*.out | grep -c 'Received Store Response (Success)') stores acknowledged this round), data directory consistent after restart"
done
sort -u "$T/acked.txt" >"$T/acked.sorted"
[ -s "$T/acked.sorted" ] || fail "no instance was acknowledged before the kills (timing too tight)"
# every acknowledged SOP UID is indexed
indexed_sops >"$T/indexed.txt" || fail "reading the index"
$PY - "$T/indexed.txt" "$T/acked.sorted" <<'PY' || fail "acknowledged instances missing from the index"
import sys
have = {l.strip() for l in open(sys.argv[1]) if l.strip()}
want = [l.strip() for l in open(sys.argv[2]) if l.strip()]
missing = [u for u in want if u not in have]
print("acknowledged=%d indexed=%d missing=%d" % (len(want), len(have), len(missing)))
sys.exit(1 if missing else 0)
PY
tmp_empty "$D" || fail "temporary files remain"
ok "every acknowledged instance is indexed ($INDEX index); no temporary or partial file remains"

# The PACS sends again what was not acknowledged: every series completes and gets exactly one job.
start_samdad final "$T/s.conf"
wait_for_text "$T/final.log" 'msg="ready"'
for s in 1 2 3 4; do
  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/in$s" >/dev/null 2>&1 || fail "re-send of series $s failed"
done
check_jobs() {
  "$SAMDA" jobs --config "$T/s.conf" | $PY -c '
import json, sys
jobs = json.load(sys.stdin)
series = {j["series_uid"] for j in jobs}
sys.exit(0 if len(jobs) == 4 and len(series) == 4 else 1)'
}
wait_for_cmd 30 check_jobs
[ "$("$SAMDA" series --config "$T/s.conf" | json_expr 'sum(s["instances"] for s in d)')" = 80 ] || fail "not all 80 instances indexed after the re-send"
ok "after the re-send: 80 instances, 4 series complete, exactly one job each"
