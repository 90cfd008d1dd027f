#!/usr/bin/env bash
# Load: 16 storescu loops (a new study and series per association) for LOAD_SECONDS (default 60)
# while wrk runs 50 HTTP connections on QIDO and /health, and slow clients hold 50 HTTP connections
# and 4 DICOM connections open by sending a byte every 2 s. Asserts: every C-STORE succeeded and is
# indexed, wrk saw no non-2xx answer and no socket error, a fresh echoscu and curl /health answer
# within 2 s while the slow clients hold their connections, every series completes with exactly one
# job after the load, peak RSS (VmHWM) of samdad under LOAD_MAX_RSS_MIB (default 1024).
# Prints a figures line. Environment: LOAD_SECONDS, LOAD_SENDERS (16), LOAD_FILES (10 per series).
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
command -v wrk >/dev/null || fail "wrk missing (apt-get install wrk)"
SECS=${LOAD_SECONDS:-60}; SENDERS=${LOAD_SENDERS:-16}; FILES=${LOAD_FILES:-10}
MAX_RSS_MIB=${LOAD_MAX_RSS_MIB:-1024}
HERE=$(cd "$(dirname "$0")" && pwd)
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
# room for the 16 senders, the probes and the slow clients (which never finish negotiating)
sed -i "s/^max_associations = 16/max_associations = $((SENDERS + 8))\nmax_associations_per_peer = $((SENDERS + 8))/" "$T/s.conf"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"'
pid=$(cat "$T/d.pid"); D="$T/data"; H="http://127.0.0.1:$hport"
user=$("$SAMDA" token create load-user --role user --data-dir "$D" 2>/dev/null)
$PY "$HERE/load_batch.py" template "$MR" "$T/tpl" "$FILES" || fail "template"
run=$(( (RANDOM << 15 | RANDOM) % 1000000000 + 1 ))

# Slow clients first; they stay for the whole load.
$PY "$HERE/slowloris.py" 127.0.0.1 "$hport" 50 "$dport" 4 2 "$T/slow.status" & _pids+=($!); slow=$!
wait_for_cmd 10 test -s "$T/slow.status"
sleep 3
read -r sh sd _ _ <"$T/slow.status"
[ "$sh" -ge 45 ] && [ "$sd" -ge 3 ] || fail "slow clients could not hold connections: $(cat "$T/slow.status")"

# probe: a fresh association and a fresh HTTP request must each answer within 2 s
probe() {
  local t0 t1
  t0=$(date +%s%N)
  timeout 2 echoscu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" >/dev/null 2>&1 || { echo "echoscu"; return 1; }
  t1=$(date +%s%N)
  [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$H/health")" = 200 ] || { echo "curl /health"; return 1; }
  echo "$(( (t1 - t0) / 1000000 ))ms/$(( ($(date +%s%N) - t1) / 1000000 ))ms"
}
p=$(probe) || fail "with $sh slow HTTP and $sd slow DICOM connections held, a fresh $p did not answer within 2 s"
ok "slow clients hold $sh HTTP and $sd DICOM connections; fresh echoscu and /health answer ($p)"

sender() { # S: loops until the deadline; one association per batch
  local s=$1 b=0 rc
  while [ "$(date +%s)" -lt "$deadline" ]; do
    b=$((b + 1))
    $PY "$HERE/load_batch.py" batch "$T/tpl" "$T/b$s" "$run" "$s" "$b" >"$T/b$s.uids"
    rc=0
    storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/b$s" >"$T/b$s.out" 2>&1 || rc=$?
    if [ "$rc" != 0 ] || grep -qE '^(E|W|F):' "$T/b$s.out"; then
      { echo "sender $s batch $b: exit $rc"; cat "$T/b$s.out"; } >>"$T/failures"
    else
      cat "$T/b$s.uids" >>"$T/sent-$s"
    fi
    rm -rf "$T/b$s"
  done
}
deadline=$(( $(date +%s) + SECS ))
t0=$(date +%s%N)
spids=()
for s in $(seq 1 "$SENDERS"); do sender "$s" & spids+=($!); done
study=$(dcmdump -q +P 0020,000D "$MR/brain_002.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
wrk -t1 -c40 -d"${SECS}s" --timeout 5s --latency -H "Authorization: Bearer $user" \
  "$H/dicomweb/studies?ModalitiesInStudy=MR&limit=20" >"$T/wrk-qido.out" 2>&1 & wq=$!
wrk -t1 -c10 -d"${SECS}s" --timeout 5s --latency "$H/health" >"$T/wrk-health.out" 2>&1 & wh=$!
# probes while everything runs; RSS sampled as we go
probes=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 5
  [ "$(date +%s)" -lt "$deadline" ] || break
  p=$(probe) || fail "under load, a fresh $p did not answer within 2 s"
  probes=$((probes + 1))
  echo "  probe $probes: echoscu/health ${p}; slow clients (open http, dicom, closed http, dicom): $(cat "$T/slow.status"); $(grep VmRSS /proc/"$pid"/status | tr -s ' \t' ' ')"
done
for s in "${spids[@]}"; do wait "$s"; done
t1=$(date +%s%N)
wait "$wq" || fail "wrk QIDO: $(cat "$T/wrk-qido.out")"
wait "$wh" || fail "wrk health: $(cat "$T/wrk-health.out")"
read -r sh sd ch cd <"$T/slow.status"
kill "$slow"
[ ! -s "$T/failures" ] || fail "C-STORE failures: $(head -c 2000 "$T/failures")"
sent=$(cat "$T"/sent-* | wc -l)
[ "$sent" -gt 0 ] || fail "nothing sent"
ok "$SENDERS senders for ${SECS}s: $sent instances in $((sent / FILES)) associations, every C-STORE Success"
for w in qido health; do
  grep -q 'Non-2xx' "$T/wrk-$w.out" && fail "wrk $w: non-2xx answers: $(cat "$T/wrk-$w.out")"
  grep -q 'Socket errors' "$T/wrk-$w.out" && fail "wrk $w: socket errors: $(cat "$T/wrk-$w.out")"
done
ok "wrk: no non-2xx answer, no socket error (QIDO and /health); $probes probes answered within 2 s"
[ "$sh" -ge 45 ] || fail "slow HTTP clients lost their connections during the load: $sh open, $ch closed"
ok "slow clients at the end: $sh HTTP and $sd DICOM open ($ch HTTP and $cd DICOM closed by samdad and reopened)"

# every sent instance indexed
cat "$T"/sent-* | sort >"$T/sent.sorted"
sqlite3 "file:$D/index.sqlite3?mode=ro" "SELECT sop_uid FROM instances" | sort >"$T/indexed.sorted"
missing=$(comm -23 "$T/sent.sorted" "$T/indexed.sorted" | wc -l)
[ "$missing" = 0 ] || fail "$missing acknowledged instances are not indexed"
ok "all $sent acknowledged instances are indexed"

# The queue drains: every series completes (idle timer 1 s) and has exactly one segment job.
series=$((sent / FILES))
drained() {
  "$SAMDA" jobs --limit 100000 --data-dir "$D" >"$T/jobs.json" &&
    "$SAMDA" series --limit 100000 --data-dir "$D" >"$T/series.json" &&
    $PY - "$T/jobs.json" "$T/series.json" "$series" <<'PY'
import json, sys, collections
jobs = json.load(open(sys.argv[1])); series = json.load(open(sys.argv[2])); want = int(sys.argv[3])
per = collections.Counter(j["series_uid"] for j in jobs if j["kind"] == "segment")
ok = (len(series) == want and all(s.get("complete") or s.get("state") == "complete" for s in series)
      and len(per) == want and set(per.values()) == {1})
sys.exit(0 if ok else 1)
PY
}
t_end=$(date +%s)
wait_for_cmd 120 drained
ok "queue drained $(( $(date +%s) - t_end ))s after the load: $series series complete, exactly one job each"
# a listing cut by its limit says so (the 1000-row default once made this drain look unfinished)
"$SAMDA" series --limit 5 --data-dir "$D" 2>"$T/limit.err" | json_len | grep -qx 5 || fail "samda series --limit 5"
grep -q "the first 5 shown; there may be more" "$T/limit.err" || fail "samda series --limit: no note: $(cat "$T/limit.err")"
"$SAMDA" jobs --limit 0 --data-dir "$D" 2>"$T/limit.err" && fail "samda jobs --limit 0 accepted"
grep -q "samda jobs: '0' is not a --limit" "$T/limit.err" || fail "samda jobs --limit 0: $(cat "$T/limit.err")"
ok "samda series/jobs --limit: a cut listing is noted on stderr, a bad limit refused"

hwm=$(awk '/VmHWM/ {print $2}' /proc/"$pid"/status)
[ $((hwm / 1024)) -lt "$MAX_RSS_MIB" ] || fail "peak RSS $((hwm / 1024)) MiB over $MAX_RSS_MIB MiB"
"$SAMDA" check --data-dir "$D" >"$T/check.out" 2>&1 || fail "check: $(cat "$T/check.out")"
[ "$(sqlite3 "$D/index.sqlite3" 'PRAGMA integrity_check')" = ok ] || fail "integrity_check"
kill -TERM "$pid"; wait_exit "$pid" 30; [ "$WAIT_RC" = 0 ] || fail "samdad exit $WAIT_RC"
rps() { awk '/^Requests\/sec/ {print $2}' "$T/wrk-$1.out"; }
p99() { awk '$1 == "99%" {print $2}' "$T/wrk-$1.out"; }
$PY - <<PY
ns = $t1 - $t0
print("figures: %.1f C-STORE/s (%d instances, %d associations, %d senders, %.0f s); "
      "%.0f HTTP req/s (QIDO %s + health %s); wrk p99 QIDO $(p99 qido), health $(p99 health); "
      "peak RSS %.0f MiB; $(nproc) CPUs" % ($sent / (ns / 1e9), $sent, $sent // $FILES, $SENDERS, ns / 1e9,
      $(rps qido) + $(rps health), "$(rps qido)", "$(rps health)", $hwm / 1024))
PY
ok "samda check and PRAGMA integrity_check clean; samdad stopped cleanly"
