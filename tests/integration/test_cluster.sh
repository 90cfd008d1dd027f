#!/usr/bin/env bash
# Issue 22: several samdad nodes over one PostgreSQL index. One PostgreSQL server (Debian's, in a
# temporary directory, Unix socket only); three samdad processes with their own ports sharing one
# data directory (the object store): "front" (ingest, api, export) and two workers "w1" and "w2"
# with the demo model. 8 series arrive over C-STORE; w1 is killed with -9 in the middle of a job.
# Every series gets exactly one result, every SEG reaches the destination once, no job runs twice
# to completion, the cluster view shows w1 dead, the lead passes on when the leader dies, and
# `samda check` is clean on the shared index.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
start_pg || fail "PostgreSQL test server"

"$SAMDA" phantom --out "$T/ph" --site A --count 384 --seed 5 --slices-per-body 48 --dicom >/dev/null || fail "phantom"
[ "$(ls -d "$T"/ph/dicom/A_0000? | wc -l)" = 8 ] || fail "expected 8 phantom series: $(ls "$T/ph/dicom")"
pport=$(free_port)
node_conf() { # node_conf NAME ROLES
  local f="$T/$1.conf"
  write_conf "$f" "$(free_port)" "$(free_port)" \
    "[cluster]" "node = $1" "roles = $2" "node_timeout = 3s" \
    "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
    "threads = 1" \
    "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $pport"
  sed -i "s|^min_free = 1MiB|min_free = 1MiB\nindex = postgresql\npostgresql = $PGC|" "$f"
  sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = pacs/' "$f"
  sed -i 's/^tick = 200ms/tick = 200ms\njob_lease = 5s\nexport_backoff = 1s\nexport_backoff_max = 2s/' "$f"
  sed -i 's/^\[http\]/[http]\nauth = false/' "$f"
}
node_conf front ingest,api,export
node_conf w1 worker
node_conf w2 worker
dport=$(sed -n 's/^port = //p' "$T/front.conf" | head -1)
hport=$(sed -n '/^\[http\]/,/^\[/s/^port = //p' "$T/front.conf")
w2h=$(sed -n '/^\[http\]/,/^\[/s/^port = //p' "$T/w2.conf")
mkdir -p "$T/recv"
storescp -aet PACS -od "$T/recv" "$pport" >"$T/storescp.log" 2>&1 &
_pids+=($!)

start_samdad front "$T/front.conf"
wait_for_text "$T/front.log" 'msg="ready"' 60
start_samdad w1 "$T/w1.conf"
start_samdad w2 "$T/w2.conf"
wait_for_text "$T/w1.log" 'msg="model loaded"' 120
wait_for_text "$T/w2.log" 'msg="model loaded"' 120
H="http://127.0.0.1:$hport"
wait_for_cmd 30 bash -c "curl -sf '$H/api/v1/cluster' | $PY -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin)[\"nodes\"]) == 3 else 1)'"
curl -sf "$H/api/v1/cluster" >"$T/cluster.json" || fail "cluster view"
json_expr 'sorted((n["name"], ",".join(n["roles"]), n["alive"]) for n in d["nodes"])' <"$T/cluster.json" |
  grep -qF "[('front', 'ingest,api,export', True), ('w1', 'worker', True), ('w2', 'worker', True)]" ||
  fail "cluster view: $(cat "$T/cluster.json")"
[ "$(json_expr 'd["index"]' <"$T/cluster.json")" = postgresql ] || fail "index: $(cat "$T/cluster.json")"
[ "$(json_expr 'sum(1 for n in d["nodes"] if n["leader"])' <"$T/cluster.json")" = 1 ] || fail "not one leader: $(cat "$T/cluster.json")"
c=$(code "$H/health"); [ "$c" = 200 ] || fail "front /health: $c"
json_expr 'd["checks"]["database"]["detail"]' <"$T/body" | grep -q '^PostgreSQL 1[0-9]' || fail "health names no PostgreSQL: $(cat "$T/body")"
ok "three nodes over one PostgreSQL index, one leader: $(json_expr 'd["leader"]' <"$T/cluster.json")"
c=$(code "http://127.0.0.1:$w2h/health"); [ "$c" = 200 ] || fail "worker /health: $c $(cat "$T/body")"
c=$(code "http://127.0.0.1:$w2h/metrics"); [ "$c" = 200 ] && grep -q '^samda_cluster_nodes{state="alive"} 3' "$T/body" ||
  fail "worker /metrics: $c"
c=$(code "http://127.0.0.1:$w2h/api/v1/jobs"); [ "$c" = 404 ] && grep -q 'api role' "$T/body" || fail "worker API: $c $(cat "$T/body")"
curl -s -D "$T/h" -o /dev/null "$H/api/v1/cluster" && grep -qi '^x-samda-node: front' "$T/h" || fail "X-Samda-Node: $(cat "$T/h")"
curl -s -D "$T/h" -o /dev/null "http://127.0.0.1:$w2h/health" && grep -qi '^x-samda-node: w2' "$T/h" || fail "X-Samda-Node on w2"
ok "a worker node answers /health and /metrics, and sends API requests to a node with the api role; every answer names its node (X-Samda-Node)"

for s in "$T"/ph/dicom/A_0000?; do
  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$s" || fail "storescu $s"
done
ok "8 series stored through the front node"
# w1 dies with -9 in the middle of a job: its last job line is a start, not a finish
w1_busy() { grep -E 'msg="job (started|done)' "$T/w1.log" | tail -1 | grep -q 'msg="job started"'; }
wait_for_cmd 120 w1_busy
kill -9 "$(cat "$T/w1.pid")"
w1_busy || fail "w1 finished its job before the kill; nothing was interrupted"
killed_job=$(sed -n 's/.*msg="job started".* job=\([0-9]*\).*/\1/p' "$T/w1.log" | tail -1)
ok "w1 killed with -9 during job $killed_job"
wait_for_cmd 60 bash -c "curl -sf '$H/api/v1/cluster' | $PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if [n for n in d[\"nodes\"] if n[\"name\"] == \"w1\" and not n[\"alive\"]] else 1)'"
ok "the cluster view shows w1 dead after node_timeout"

# every series done once, every SEG delivered once
wait_for_cmd 600 bash -c "curl -sf '$H/api/v1/cluster' | $PY -c 'import json,sys; q=json.load(sys.stdin)[\"queues\"]; sys.exit(0 if q[\"jobs\"][\"done\"] == 8 and q[\"jobs\"][\"pending\"] + q[\"jobs\"][\"running\"] == 0 else 1)'"
wait_for_cmd 120 bash -c "[ \$(ls '$T/recv' | wc -l) -ge 8 ]"
sleep 3
"$SAMDA" jobs --config "$T/front.conf" >"$T/jobs.json" || fail "samda jobs"
$PY - "$T/jobs.json" "$killed_job" <<'PY' || fail "jobs: $(cat "$T/jobs.json")"
import json, sys
jobs = json.load(open(sys.argv[1]))
seg = [j for j in jobs if j["kind"] == "segment"]
assert len(seg) == 8 and all(j["state"] == "done" for j in seg), [(j["id"], j["state"]) for j in seg]
assert len({j["series_uid"] for j in seg}) == 8
killed = [j for j in seg if str(j["id"]) == sys.argv[2]]
assert killed and killed[0]["attempts"] == 2, killed
print("attempts:", sorted(j["attempts"] for j in seg))
PY
done_logs=$(cat "$T/w1.log" "$T/w2.log" | grep -c 'msg="job done: DICOM-SEG recorded"')
[ "$done_logs" = 8 ] || fail "jobs run to completion: $done_logs, expected 8"
grep -q 'msg="job done: DICOM-SEG recorded".*job='"$killed_job"'\b' "$T/w2.log" || fail "w2 did not finish w1's job $killed_job"
n_seg=$(ls "$T/recv" | wc -l)
[ "$n_seg" = 8 ] || fail "expected 8 SEGs at the destination, got $n_seg"
$PY - "$T/recv" <<'PY' || fail "the destination's SEGs"
import os, sys, pydicom
ref = set()
for f in os.listdir(sys.argv[1]):
    d = pydicom.dcmread(os.path.join(sys.argv[1], f))
    assert d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    ref.add(d.ReferencedSeriesSequence[0].SeriesInstanceUID)
assert len(ref) == 8, ref
PY
ok "8 series, 8 jobs done once each (w1's job finished by w2 on attempt 2), 8 SEGs delivered, one per series"

# PostgreSQL goes down: a C-STORE is refused (nothing acknowledged that is not in the index), /health
# says why; once it is back, the nodes reconnect and the same instance is stored.
one=$(ls "$T/ph/dicom/A_00000" | head -1)
$PY - "$T/ph/dicom/A_00000/$one" "$T/extra.dcm" <<'PY'
import sys, pydicom
from pydicom.uid import generate_uid
d = pydicom.dcmread(sys.argv[1]); d.SeriesInstanceUID = generate_uid(); d.SOPInstanceUID = generate_uid()
d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID; d.save_as(sys.argv[2])
PY
sh "$PGS" down "$PGD"
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$T/extra.dcm" >"$T/down.out" 2>&1 && fail "C-STORE succeeded while the index was down"
c=$(code "$H/health"); [ "$c" = 503 ] && grep -q '"database"' "$T/body" || fail "health while PostgreSQL is down: $c $(cat "$T/body")"
sh "$PGS" up "$PGD"
wait_for_cmd 30 psql "$PGC" -qAtc 'SELECT 1'
# The first tries after the restart succeed: a pooled session the server dropped while it sat idle
# is replaced and the statement run again (storage/pg.c: revive), not failed once per connection.
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$T/extra.dcm" >"$T/up.out" 2>&1 ||
  fail "the first C-STORE after PostgreSQL came back failed: $(cat "$T/up.out")"
c=$(code "$H/health"); [ "$c" = 200 ] || fail "health after PostgreSQL came back: $c $(cat "$T/body")"
ok "PostgreSQL down: C-STORE refused and /health 503; back up: the first C-STORE and /health succeed"

# The leader dies: the other live node takes the lead (the leader's session, and its lock, end with it).
# after the outage either may have taken the lead: wait until exactly one of the two holds it
# (samda_node_leader is the node's own lock state at its last tick)
settled() {
  local f w
  f=$(curl -sf "$H/metrics" | sed -n 's/^samda_node_leader //p')
  w=$(curl -sf "http://127.0.0.1:$w2h/metrics" | sed -n 's/^samda_node_leader //p')
  [ "$f$w" = 10 ] && echo front >"$T/leader" || { [ "$f$w" = 01 ] && echo w2 >"$T/leader"; }
}
wait_for_cmd 30 settled
leader=$(cat "$T/leader")
# the cluster view is as of the last heartbeats: it names the same node within a beat
wait_for_cmd 10 bash -c "[ \"\$(curl -sf '$H/api/v1/cluster' | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"leader\"])')\" = $leader ]"
case $leader in front) other=w2 ;; *) other=front ;; esac
ohttp=$(sed -n '/^\[http\]/,/^\[/s/^port = //p' "$T/$other.conf")
before=$(grep -c 'msg="this node leads' "$T/$other.log" || true)
kill -9 "$(cat "$T/$leader.pid")"
took_lead() { [ "$(grep -c 'msg="this node leads' "$T/$other.log")" -gt "$before" ]; }
for i in $(seq 150); do took_lead && break; sleep 0.2; done
took_lead || { grep -h 'mod=scheduler' "$T/front.log" "$T/w2.log" | sort | tail -20 >&2; fail "$other did not take the lead"; }
wait_for_cmd 10 bash -c "curl -sf 'http://127.0.0.1:$ohttp/metrics' | grep -q '^samda_node_leader 1'"
ok "$leader (the leader) killed with -9: $other leads now"
kill -TERM "$(cat "$T/$other.pid")"
wait_exit "$(cat "$T/$other.pid")" 30
"$SAMDA" check --config "$T/front.conf" >"$T/check.txt" 2>&1 || fail "samda check: $(cat "$T/check.txt")"
ok "samda check is clean on the shared index and object store"
