#!/usr/bin/env bash
# Ingest benchmark: the whole samdad (receive, header check, fsync, rename, SQLite index, audit), and
# the same with the index in PostgreSQL (samdad-pg), against DCMTK's storescp (receive and write, no fsync, no index) and Orthanc when installed,
# on the same synthetic 512x512 16-bit CT instances, over 1 association and over 8.
# Each is run REPEAT times (default 3, fresh data each time); the ratios use the medians, since one
# fsync-bound run on a virtual disk can be far off the next.
# Prints figures; never gates. Usage (from ctest, label bench): bench_ingest.sh [N_INSTANCES] (ctest: 2000)
. "$SAMDA_SOURCE_DIR/tests/integration/lib.sh"
N=${1:-2000}
REPEAT=${REPEAT:-3}
$PY "$SAMDA_SOURCE_DIR/tests/bench/make_ct_series.py" "$T/ct" "$N" 8 >/dev/null || fail "generating CT instances"
bytes=$(du -sb "$T/ct" | cut -f1)
echo "bench_ingest: $N instances, $((bytes / 1048576)) MiB, $(nproc) CPUs, $(uname -m)"

# send LABEL PORT AET ASSOCS: prints instances/s and MB/s
send() {
  local label=$1 port=$2 aec=$3 assocs=$4
  local start end i pids=()
  # the instances split over the associations (subfolders 0..7 made by make_ct_series.py)
  start=$(date +%s%N)
  if [ "$assocs" = 1 ]; then
    storescu -aet STORESCU -aec "$aec" 127.0.0.1 "$port" +sd +r "$T/ct" >/dev/null 2>&1 || echo "  ($label: storescu failed)"
  else
    for i in $(seq 0 $((assocs - 1))); do
      storescu -aet STORESCU -aec "$aec" 127.0.0.1 "$port" +sd "$T/ct/g$i" >/dev/null 2>&1 & pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || echo "  ($label: a storescu failed)"; done
  fi
  end=$(date +%s%N)
  $PY -c "
ns=$((end - start)); n=$N; b=$bytes
print('  %-32s %2d assoc: %7.1f instances/s  %6.1f MB/s' % ('$label', $assocs, n/(ns/1e9), b/1e6/(ns/1e9)))
open('$T/rates', 'a').write('%s|%d|%f\\n' % ('${label%% *}', $assocs, n/(ns/1e9)))"
}

dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
# one sender opening 8 associations, as a PACS pushing a study in parallel does
sed -i 's/^max_associations = 16/max_associations = 16\nmax_associations_per_peer = 8/' "$T/s.conf"
for a in 1 8; do for rep in $(seq "$REPEAT"); do
  rm -rf "$T/data"
  start_samdad "d$a" "$T/s.conf"
  wait_for_text "$T/d$a.log" 'msg="ready"'
  send "samdad (fsync + SQLite index)" "$dport" SAMDA "$a"
  kill -TERM "$(cat "$T/d$a.pid")"; wait_exit "$(cat "$T/d$a.pid")" 20
  stored=$($PY -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM instances').fetchone()[0])" "$T/data/index.sqlite3")
  [ "$stored" = "$N" ] || echo "  (samdad stored $stored of $N instances: the figure above is not comparable)"
done; done
# The same samdad with its index in PostgreSQL (a server of Debian's package started for the run,
# Unix socket, fsync on), as a cluster node uses it.
if [ "${BENCH_PG:-1}" = 1 ] && start_pg; then
  sed "s|^min_free = 1MiB|min_free = 1MiB\nindex = postgresql\npostgresql = $PGC|" "$T/s.conf" >"$T/pg.conf"
  for a in 1 8; do for rep in $(seq "$REPEAT"); do
    rm -rf "$T/data"
    PGOPTIONS='-c client_min_messages=warning' psql "$PGC" -qc 'DROP SCHEMA public CASCADE; CREATE SCHEMA public' >/dev/null
    start_samdad "p$a" "$T/pg.conf"
    wait_for_text "$T/p$a.log" 'msg="ready"'
    send "samdad-pg (fsync + PostgreSQL index)" "$dport" SAMDA "$a"
    kill -TERM "$(cat "$T/p$a.pid")"; wait_exit "$(cat "$T/p$a.pid")" 20
    stored=$(psql "$PGC" -Atc 'SELECT count(*) FROM instances')
    [ "$stored" = "$N" ] || echo "  (samdad-pg stored $stored of $N instances: the figure above is not comparable)"
  done; done
else
  echo "  (PostgreSQL server binaries not found: samdad-pg skipped)"
fi
for a in 1 8; do for rep in $(seq "$REPEAT"); do
  sport=$(free_port); rm -rf "$T/scp"; mkdir -p "$T/scp"
  storescp --fork -od "$T/scp" "$sport" >/dev/null 2>&1 & _pids+=($!); spid=$!
  sleep 0.5
  send "dcmtk storescp --fork (no fsync)" "$sport" ANY-SCP "$a"
  kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null || true
done; done
if command -v Orthanc >/dev/null; then
  for a in 1 8; do for rep in $(seq "$REPEAT"); do
    ohttp=$(free_port); odicom=$(free_port); rm -rf "$T/orthanc$a"
    start_orthanc "orthanc$a" "$ohttp" "$odicom" "$dport"
    send "Orthanc 1.10 (SQLite index)" "$odicom" ORTHANC "$a"
    kill "$(cat "$T/orthanc$a.pid")"; sleep 1
  done; done
fi

# the ratios the issue asks for, same run, same machine
$PY - "$T/rates" <<'PY'
import sys
import statistics
rates = {}
for line in open(sys.argv[1]):
    who, a, r = line.strip().split("|")
    rates.setdefault((who, int(a)), []).append(float(r))
med = {k: statistics.median(v) for k, v in rates.items()}
for (who, a), v in sorted(rates.items()):
    print("  median %-8s %d assoc: %7.1f instances/s over %d runs (%s)" % (who, a, med[(who, a)], len(v), ", ".join("%.1f" % x for x in v)))
for a in (1, 8):
    for mine in ("samdad", "samdad-pg"):
        me = med.get((mine, a))
        for peer in ("Orthanc", "dcmtk"):
            if me and med.get((peer, a)):
                print("  ratio %-9s / %-7s %d assoc: %5.1fx (medians)" % (mine, peer, a, me / med[(peer, a)]))
PY
