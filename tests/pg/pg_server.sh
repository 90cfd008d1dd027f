#!/bin/sh
# tests/pg/pg_server.sh start|stop|down|up DIR: a throw-away PostgreSQL server for the tests, from Debian's
# postgresql package: a cluster in DIR/data listening only on a Unix socket in DIR (no TCP port to
# collide with), trust authentication for the superuser "samda", database "samda", C collation.
# As root the server runs as the package's "postgres" user (PostgreSQL refuses to run as root).
# start prints the libpq connection string and leaves it in DIR/conninfo; stop stops the server and
# removes DIR. Starting where a server already runs stops that one first (a crashed earlier run).
# down stops the server and keeps its data; up starts it again (an outage, for the tests that need one).
# PG_SERVER_OPTS: more server options for start and up (e.g. TCP and TLS for it_pg_tls).
set -eu
cmd=${1:?start, stop, down or up}
dir=${2:?directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/pg_ctl" ] || { echo "pg_server.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

run_server() {
    # fsync stays on: the storage tests' durability claims hold against the real thing.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -k $dir -c max_connections=200 -c shared_buffers=64MB ${PG_SERVER_OPTS:-}" start >/dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
}

stop() {
    if [ -f "$dir/data/postmaster.pid" ]; then as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true; fi
    rm -rf "$dir"
}

case $cmd in
stop) stop ;;
start)
    stop
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U samda -A trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    run_server
    as_owner "$bin/createdb" -h "$dir" -U samda samda
    echo "host=$dir user=samda dbname=samda gssencmode=disable sslmode=disable" | tee "$dir/conninfo"
    ;;
down) as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
up) run_server ;;
*) echo "pg_server.sh: start, stop, down or up, not $cmd" >&2; exit 2 ;;
esac
