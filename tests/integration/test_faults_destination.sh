#!/usr/bin/env bash
# A destination PACS that misbehaves (issue 8, faults): between samdad and a real storescp sits a
# proxy (faultproxy.py) that first stalls (reads a little, then nothing, and answers nothing), then
# resets the connection in the middle of the C-STORE, then passes traffic slowly. A second, healthy
# destination gets the same SEG meanwhile, before the stalled send gives up (each destination has a
# sender of its own). Each failed send is logged naming the destination, its address and the cause,
# and retried after the back-off; samdad stays responsive while the peer stalls (the send gives up
# after [dicom] dimse_timeout); the SEG arrives once the peer behaves, without a restart; nothing is
# sent twice.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }

"$SAMDA" phantom --out "$T/ph" --site A --count 96 --seed 17 --slices-per-body 24 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port); pport=$(free_port); sport=$(free_port); gport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
  "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $pport" \
  "[destination good]" "ae_title = GOOD" "host = 127.0.0.1" "port = $gport"
sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = pacs, good/' "$T/s.conf"
sed -i 's/^tick = 200ms/tick = 200ms\nexport_backoff = 1s\nexport_backoff_max = 2s/' "$T/s.conf"
sed -i 's/^ae_title = SAMDA/ae_title = SAMDA\ndimse_timeout = 3s/' "$T/s.conf"

mkdir -p "$T/recv" "$T/recv_good"
# --fork: one process per association, so that an association the proxy breaks does not end storescp
storescp --fork -aet PACS -od "$T/recv" "$sport" >"$T/storescp.log" 2>&1 &
_pids+=($!)
storescp -aet GOOD -od "$T/recv_good" "$gport" >"$T/storescp_good.log" 2>&1 &
_pids+=($!)
echo "stall 3000" >"$T/mode"
$PY "$(dirname "$0")/faultproxy.py" "$pport" "$sport" "$T/mode" >"$T/proxy.log" 2>&1 &
_pids+=($!)
wait_for_text "$T/proxy.log" "listening" 10
start_samdad d "$T/s.conf"
pid=$(cat "$T/d.pid")
wait_for_text "$T/d.log" 'msg="ready"' 60

storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000" || fail "storescu"
wait_for_text "$T/d.log" 'msg="job done: DICOM-SEG recorded"' 240
sop=$(sqlite3 "$T/data/index.sqlite3" "SELECT seg_sop_uid FROM results")

# 1. the peer stalls: reads a little, then nothing, and never answers
n_before=0
wait_for_text "$T/proxy.log" "stall: open" 30
t0=$(date +%s.%N)
# the healthy destination is served while pacs's send hangs
wait_for_cmd 10 test -f "$T/recv_good/SG.$sop"
[ "$(grep -c 'msg="send failed' "$T/d.log")" = 0 ] || fail "the healthy destination waited for the stalled one's send to give up"
ok "the healthy destination got the SEG $($PY -c "print(round($(date +%s.%N) - $t0, 1))") s into the stalled send to pacs"
# samdad answers while its exporter waits on the stalled peer
code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$hport/health")
[ "$code" = 200 ] || fail "/health answered $code while the destination stalls"
echoscu -aet STORESCU -aec SAMDA -to 2 127.0.0.1 "$dport" || fail "C-ECHO failed while the destination stalls"
ok "while the destination stalls: /health 200 and C-ECHO answered"
wait_for_cmd 30 bash -c "[ \$(grep -c 'msg=\"send failed, will retry\"' '$T/d.log') -gt $n_before ]"
t1=$(date +%s.%N)
line=$(grep 'msg="send failed, will retry"' "$T/d.log" | tail -1)
echo "$line"
echo "$line" | grep -qi "time\|response" || fail "the stalled send's failure does not say it timed out"
ok "stalled peer: the send gave up after $($PY -c "print(round($t1 - $t0, 1))") s ([dicom] dimse_timeout = 3s), retry scheduled"

# 2. the peer resets the connection in the middle of the C-STORE
echo "reset 3000" >"$T/mode"
wait_for_text "$T/proxy.log" "reset after" 30
wait_for_cmd 10 bash -c "grep 'msg=\"send failed, will retry\"' '$T/d.log' | grep -qi 'reset'"
line=$(grep 'msg="send failed, will retry"' "$T/d.log" | grep -i reset | head -1)
echo "$line"
echo "$line" | grep -q "destination=pacs" || fail "the failure does not name the destination"
echo "$line" | grep -q "127.0.0.1:$pport" || fail "the failure does not name the peer's address"
[ -z "$(ls "$T/recv")" ] || fail "the peer stored something from a broken association"
ok "reset mid-C-STORE: logged as a transient failure naming destination pacs and 127.0.0.1:$pport; nothing stored"

# 3. the peer works again, slowly
echo "slow 0.2" >"$T/mode"
wait_for_cmd 60 test -f "$T/recv/SG.$sop"
wait_for_cmd 10 grep -q 'msg="sent".*destination=pacs' "$T/d.log"
kill -0 "$pid" || fail "samdad is not running"
[ "$(cat "$T/d.pid")" = "$pid" ] || fail "samdad was restarted"
pacs_id="(SELECT id FROM destinations WHERE name = 'pacs')"
att=$(sqlite3 "$T/data/index.sqlite3" "SELECT attempts FROM exports WHERE destination_id = $pacs_id")
state=$(sqlite3 "$T/data/index.sqlite3" "SELECT state FROM exports WHERE destination_id = $pacs_id")
size=$(stat -c %s "$T/recv/SG.$sop")
ok "slow peer: the SEG arrived without a restart (export $state after $att attempts; SEG $size bytes)"
sleep 3
[ "$(ls "$T/recv" | wc -l)" = 1 ] || fail "expected one file at the destination, got: $(ls "$T/recv")"
[ "$(ls "$T/recv_good" | wc -l)" = 1 ] || fail "expected one file at the healthy destination, got: $(ls "$T/recv_good")"
errs=$(sqlite3 "$T/data/index.sqlite3" "SELECT count(*) FROM audit_log WHERE action = 'export.seg' AND outcome = 'error'")
[ "$errs" -ge 2 ] || fail "expected the failed sends in the audit log, found $errs"
"$SAMDA" check --data-dir "$T/data" >"$T/check.out" 2>&1 || fail "check: $(cat "$T/check.out")"
ok "one copy at the destination, $errs failed sends audited, data directory checks clean"
cat "$T/proxy.log"
