#!/usr/bin/env bash
# The PostgreSQL index over TLS (issue 22): a server that accepts TCP connections only with TLS
# (pg_hba: hostssl, and hostnossl rejected), its certificate from a test CA made here with openssl.
#  - samdad with [storage] postgresql = "host=localhost ... sslmode=verify-full sslrootcert=CA"
#    starts, stores an instance, and its sessions are TLS (pg_stat_ssl);
#  - the same string with another CA's root is refused at start, naming the certificate problem and
#    never the connection string (which holds a password here: it is not in the log);
#  - sslmode=disable is refused by the server (no TLS, no entry).
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
P="$T/pki"; mkdir -p "$P"
(
  cd "$P"
  printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >ext.cnf
  for ca in ca rogueca; do openssl req -x509 -newkey rsa:2048 -nodes -keyout $ca.key -out $ca.crt -days 2 -subj "/CN=$ca"; done
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext.cnf
) >"$T/pki.log" 2>&1 || fail "making the test PKI: $(tail -5 "$T/pki.log")"
start_pg || fail "PostgreSQL test server"
cp "$P/server.crt" "$P/server.key" "$PGD/"
[ "$(id -u)" = 0 ] && chown postgres "$PGD/server.crt" "$PGD/server.key"
chmod 600 "$PGD/server.key"
printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n' >"$PGD/data/pg_hba.conf"
pgport=$(free_port)
sh "$PGS" down "$PGD"
PG_SERVER_OPTS="-c listen_addresses=127.0.0.1 -p $pgport -c ssl=on -c ssl_cert_file=$PGD/server.crt -c ssl_key_file=$PGD/server.key" \
  sh "$PGS" up "$PGD" || fail "PostgreSQL with TLS"
# the Unix socket is named after the port
LOCAL="host=$PGD port=$pgport user=samda dbname=samda"

dport=$(free_port); hport=$(free_port)
conf() { # conf FILE CONNINFO
  write_conf "$1" "$dport" "$hport"
  sed -i "s|^min_free = 1MiB|min_free = 1MiB\nindex = postgresql\npostgresql = $2|" "$1"
}
good="host=localhost port=$pgport user=samda dbname=samda password=tls-secret-42 sslmode=verify-full sslrootcert=$P/ca.crt"
conf "$T/good.conf" "$good"
start_samdad good "$T/good.conf"
wait_for_text "$T/good.log" 'msg="ready"' 30
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$MR/$(ls "$MR" | head -1)" || fail "storescu over a TLS index"
[ "$(psql "$LOCAL" -Atc 'SELECT count(*) FROM instances')" = 1 ] || fail "the instance is not in the index"
n_tls=$(psql "$LOCAL" -Atc "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.client_addr IS NOT NULL AND s.ssl")
n_all=$(psql "$LOCAL" -Atc "SELECT count(*) FROM pg_stat_activity WHERE client_addr IS NOT NULL")
[ "$n_all" -ge 1 ] && [ "$n_tls" = "$n_all" ] || fail "samdad's sessions: $n_tls of $n_all over TLS"
ok "samdad over sslmode=verify-full: stored an instance; its $n_all sessions to PostgreSQL are TLS"
kill -TERM "$(cat "$T/good.pid")"; wait_exit "$(cat "$T/good.pid")" 20

conf "$T/rogue.conf" "${good/ca.crt/rogueca.crt}"
start_samdad rogue "$T/rogue.conf"
wait_exit "$(cat "$T/rogue.pid")" 30
[ "$WAIT_RC" != 0 ] || fail "samdad started with a server certificate its root does not sign"
grep -qi 'certificate verify failed' "$T/rogue.log" || fail "the log does not say why: $(tail -3 "$T/rogue.log")"
! grep -q 'tls-secret-42' "$T/rogue.log" "$T/good.log" || fail "the connection string's password reached the log"
ok "another CA's root: samdad does not start, the log names the certificate failure and holds no password"

conf "$T/plain.conf" "host=127.0.0.1 port=$pgport user=samda dbname=samda sslmode=disable"
start_samdad plain "$T/plain.conf"
wait_exit "$(cat "$T/plain.pid")" 30
[ "$WAIT_RC" != 0 ] && grep -q 'no encryption' "$T/plain.log" || fail "a plain connection was not refused: $(tail -3 "$T/plain.log")"
ok "sslmode=disable: the server refuses the plain connection and samdad says so"
