#!/usr/bin/env bash
# Crash loop during segmentation and export: four phantom CT series are queued, then samdad (demo
# model, a storescp destination) is killed with -9 at random moments for 20 rounds and restarted
# each time. Afterwards: the data directory checks clean (PRAGMA integrity_check and every object's
# SHA-256), every job is done, each series has exactly one result, and every result's SEG reached
# the destination (at least once: a kill between the peer's Success and the index update re-sends
# the same SOP Instance UID, which is allowed).
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
ROUNDS=${ROUNDS:-20}
"$SAMDA" phantom --out "$T/ph" --site A --count 96 --seed 31 --slices-per-body 24 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port); pport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
  "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $pport"
sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = pacs/' "$T/s.conf"
# external kills are not the job's fault: enough attempts that 20 rounds cannot exhaust them
sed -i 's/^tick = 200ms/tick = 200ms\njob_max_attempts = 100\nexport_backoff = 1s\nexport_backoff_max = 1s/' "$T/s.conf"
mkdir -p "$T/recv"
storescp -aet PACS -od "$T/recv" "$pport" >"$T/storescp.log" 2>&1 &
_pids+=($!)
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
for b in 0 1 2 3; do
  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_0000$b" || fail "storescu $b"
done
wait_for_cmd 30 bash -c "'$SAMDA' jobs --data-dir '$T/data' | $PY -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin))==4 else 1)'"
ok "4 series stored, 4 jobs queued"

for r in $(seq "$ROUNDS"); do
  sleep "$($PY -c "import random; print(round(random.uniform(0.3, 3.0), 2))")"
  kill -9 "$(cat "$T/d.pid")"
  sleep 0.2
  cat "$T/d.log" >>"$T/all.log"
  "$SAMDA" check --data-dir "$T/data" >"$T/check.out" 2>&1 || fail "round $r: $(cat "$T/check.out")"
  start_samdad d "$T/s.conf"
  wait_for_text "$T/d.log" 'msg="ready"' 60
done
ok "$ROUNDS kill -9 rounds, the data directory checked clean after each"

done_all() {
  "$SAMDA" jobs --data-dir "$T/data" | $PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if len(d)==4 and all(j["state"]=="done" for j in d) else 1)'
}
wait_for_cmd 600 done_all
n=$(sqlite3 "$T/data/index.sqlite3" "SELECT count(*) FROM (SELECT series_uid FROM results GROUP BY series_uid HAVING count(*) = 1)")
t=$(sqlite3 "$T/data/index.sqlite3" "SELECT count(*) FROM results")
[ "$n" = 4 ] && [ "$t" = 4 ] || fail "expected one result per series (4), got $t results over $n series"
att=$("$SAMDA" jobs --data-dir "$T/data" | json_expr 'sorted(j["attempts"] for j in d)')
ok "every job done exactly once: 4 results for 4 series (attempts per job: $att)"

for sop in $(sqlite3 "$T/data/index.sqlite3" "SELECT seg_sop_uid FROM results"); do
  wait_for_cmd 60 test -f "$T/recv/SG.$sop"
done
sent=$(ls "$T/recv" | wc -l)
ok "every result's SEG reached the destination ($sent files for 4 SEGs)"
"$SAMDA" check --data-dir "$T/data" >"$T/check.out" 2>&1 || fail "final check: $(cat "$T/check.out")"
[ "$(sqlite3 "$T/data/index.sqlite3" 'PRAGMA integrity_check')" = ok ] || fail "integrity_check"
ok "final check clean, PRAGMA integrity_check ok"
