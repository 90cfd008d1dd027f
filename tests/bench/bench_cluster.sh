#!/usr/bin/env bash
# Scale-out benchmark (issue 22): the turnaround of a batch of series through a cluster over one
# PostgreSQL index and one object directory, with one and with two worker nodes (the demo model on
# the CPU, [model] threads = 1 per worker, so a node is one core here). A front node (ingest, api,
# export) receives S series over C-STORE; the clock runs from the first instance sent to the last
# DICOM-SEG acknowledged by a storescp destination. Prints series per hour per configuration, the
# ratio, and the index's own cost per series (the part that does not scale with workers).
# Measures and prints; never gates. Usage: bench_cluster.sh [SERIES] [SLICES]
. "$SAMDA_SOURCE_DIR/tests/integration/lib.sh"
S=${1:-8}; SLICES=${2:-48}
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
start_pg || { echo "SKIP: no PostgreSQL server binaries"; exit 77; }
"$SAMDA" phantom --out "$T/ph" --site A --count $((S * SLICES)) --seed 3 --slices-per-body "$SLICES" --dicom >/dev/null
echo "bench_cluster: $S series of $SLICES slices (256x256), demo model on the CPU, $(nproc) cores, PostgreSQL index"

node_conf() { # node_conf NAME ROLES DEST_PORT
  write_conf "$T/$1.conf" "$(free_port)" "$(free_port)" \
    "[cluster]" "node = $1" "roles = $2" \
    "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
    "threads = 1" \
    "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $3"
  sed -i "s|^min_free = 1MiB|min_free = 1MiB\nindex = postgresql\npostgresql = $PGC|" "$T/$1.conf"
  sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = pacs/; s/^series_idle = 1s/series_idle = 200ms/; s/^study_idle = 1s/study_idle = 200ms/' "$T/$1.conf"
  sed -i 's/^tick = 200ms/tick = 100ms/; s/^max_associations = 16/max_associations = 16\nmax_associations_per_peer = 8/' "$T/$1.conf"
}

run() { # run N_WORKERS: prints and records series/hour
  local k=$1 i pport start end
  rm -rf "$T/data" "$T/recv"; mkdir -p "$T/recv"
  PGOPTIONS='-c client_min_messages=warning' psql "$PGC" -qc 'DROP SCHEMA public CASCADE; CREATE SCHEMA public' >/dev/null
  pport=$(free_port)
  storescp -aet PACS -od "$T/recv" "$pport" >/dev/null 2>&1 & local scp=$!; _pids+=($scp)
  node_conf front ingest,api,export "$pport"
  start_samdad front "$T/front.conf"; wait_for_text "$T/front.log" 'msg="ready"' 60
  for i in $(seq "$k"); do
    node_conf "w$i" worker "$pport"
    start_samdad "w$i" "$T/w$i.conf"; wait_for_text "$T/w$i.log" 'msg="ready"' 120
  done
  local dport; dport=$(sed -n 's/^port = //p' "$T/front.conf" | head -1)
  start=$(date +%s%N)
  local senders=()
  for d in "$T"/ph/dicom/A_?????; do storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$d" >/dev/null 2>&1 & senders+=($!); done
  for i in "${senders[@]}"; do wait "$i" || fail "a storescu failed"; done
  wait_for_cmd 1800 bash -c "[ \$(ls '$T/recv' | wc -l) -ge $S ]"
  end=$(date +%s%N)
  for p in front $(seq -f 'w%g' "$k"); do kill -TERM "$(cat "$T/$p.pid")"; done
  for p in front $(seq -f 'w%g' "$k"); do wait_exit "$(cat "$T/$p.pid")" 30; done
  kill "$scp" 2>/dev/null || true
  $PY -c "
s=$S; sec=($end - $start)/1e9
print('  %d worker node(s): %d series in %6.1f s = %7.1f series/hour' % ($k, s, sec, s * 3600 / sec))
open('$T/rates', 'a').write('%d %f\n' % ($k, s * 3600 / sec))"
}
run 1
run 2
$PY - "$T/rates" <<'PY'
import sys
r = dict((int(a), float(b)) for a, b in (l.split() for l in open(sys.argv[1])))
print("  ratio 2 workers / 1 worker: %.2fx" % (r[2] / r[1]))
PY
