#!/usr/bin/env bash
# Fault: another process holds a write lock on the index (BEGIN EXCLUSIVE) for longer than
# storage.busy_timeout while a PACS sends a series. Expected: no crash; every instance that was
# acknowledged is indexed afterwards (the rest are refused with a failure status or the
# association is refused transiently); a log line says the index is locked; once the lock is
# released the same daemon ingests the whole series; PRAGMA integrity_check is ok.
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
start_samdad d "$T/s.conf" --set storage.busy_timeout=1s
wait_for_text "$T/d.log" 'msg="ready"'
D="$T/data"
indexed() { "$SAMDA" series --data-dir "$D" | json_expr 'sum(s["instances"] for s in d)'; }

# Hold the write lock for 6 s (busy timeout 1 s).
$PY - "$D/index.sqlite3" "$T/locked" <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
c.execute("BEGIN EXCLUSIVE")
open(sys.argv[2], "w").close()
time.sleep(6)
c.execute("ROLLBACK")
PY
locker=$!
_pids+=("$locker")
wait_for_cmd 10 test -f "$T/locked"

rc=0
timeout 60 storescu -v -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$MR" >"$T/s1.out" 2>&1 || rc=$?
wait "$locker" || fail "the lock holder failed"
n_ok=$(grep -c "Received Store Response (Success)" "$T/s1.out" || true)
echo "send under lock: rc=$rc success=$n_ok; responses: $(grep -o 'Received Store Response ([^)]*)' "$T/s1.out" | sort | uniq -c | tr '\n' ';')"
kill -0 "$(cat "$T/d.pid")" || fail "samdad died under a locked index"
grep -E 'index locked|index unavailable' "$T/d.log" | head -2 | sed 's/^/log: /'
grep -qE 'locked by another process' "$T/d.log" || fail "no log line says the index is locked: $(tail -5 "$T/d.log")"
# The refusal itself is logged: the association (transient reject, the PACS retries) or each instance.
grep -qE 'msg="association refused: index unavailable".*locked by another process|msg="instance refused".*locked' "$T/d.log" ||
  fail "the refusal under the lock is not logged with its cause: $(grep dicom "$T/d.log" | tail -5)"
grep -E 'msg="association refused: index unavailable"|msg="instance refused"' "$T/d.log" | head -1 | sed 's/^/log: /'
[ "$n_ok" -lt 20 ] || fail "all 20 acknowledged although the index was locked for 6 s with a 1 s busy timeout"
[ "$(indexed)" = "$n_ok" ] || fail "index holds $(indexed) instances, $n_ok were acknowledged"
tmp_empty "$D" || fail "temporary files left: $(find "$D/tmp" -type f)"
ok "locked index: $n_ok acknowledged = indexed, the rest refused, logged, samdad alive"

storescu -v -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$MR" >"$T/s2.out" 2>&1 || fail "send after the lock was released failed: $(grep -v DcmItem "$T/s2.out" | tail -5)"
[ "$(indexed)" = 20 ] || fail "index holds $(indexed) instances after release, expected 20"
ok "lock released: same daemon ingests the whole series"

"$SAMDA" check --data-dir "$D" >"$T/check.out" || fail "data directory check: $(cat "$T/check.out")"
$PY -c "import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0]; sys.exit(r!='ok')" "$D/index.sqlite3" ||
  fail "index integrity_check failed"
ok "data directory consistent, index integrity ok"
kill -TERM "$(cat "$T/d.pid")"; wait_exit "$(cat "$T/d.pid")" 15; [ "$WAIT_RC" = 0 ] || fail "exit $WAIT_RC"
echo "sqlite-busy checks passed"
