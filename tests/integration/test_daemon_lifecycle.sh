#!/usr/bin/env bash
# samdad lifecycle: --check-config names the bad line; start; a second daemon on the same data
# directory is refused naming the first one's PID; SIGHUP reloads; SIGTERM stops within seconds.
. "$(dirname "$0")/lib.sh"

dport=$(free_port); hport=$(free_port)
cat >"$T/good.conf" <<CONF
[daemon]
data_dir = data
[dicom]
port = $dport
[http]
port = $hport
[storage]
min_free = 1MiB
CONF

# A broken configuration: exit status 2 and a message naming file, line, key and rule.
printf '[dicom]\nport = 11112\nmax_associations = 0\n' >"$T/bad.conf"
rc=0; out=$("$SAMDAD" --config "$T/bad.conf" --check-config 2>&1) || rc=$?
[ "$rc" = 2 ] || fail "check-config on a bad file exited $rc, expected 2"
[[ "$out" == *"bad.conf:3: [dicom] max_associations = 0: must be between 1 and 512"* ]] || fail "unexpected message: $out"
ok "check-config names file:line, key, value and rule"
out=$("$SAMDAD" --config "$T/good.conf" --check-config) || fail "good config refused: $out"
ok "check-config accepts a good file"

start_samdad one "$T/good.conf"
pid1=$(cat "$T/one.pid")
wait_for_text "$T/one.log" 'msg="ready"'
[ "$(stat -c %a "$T/data")" = 700 ] || fail "data directory mode is $(stat -c %a "$T/data"), expected 700"
ok "daemon ready, data directory 0700"

# Second daemon, same data directory (other ports so only the lock can stop it).
rc=0; "$SAMDAD" --config "$T/good.conf" --set dicom.port="$(free_port)" --set http.port="$(free_port)" \
  >"$T/two.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "second daemon on the same data directory started"
grep -q "in use by samdad PID $pid1" "$T/two.log" || { cat "$T/two.log"; fail "refusal does not name PID $pid1"; }
ok "second daemon refused, naming PID $pid1"

# SIGHUP: reload with a changed live option and a changed restart-only option.
sed -i "s/^\[storage\]/[daemon]\nlog_level = debug\n[storage]/" "$T/good.conf"
sed -i "0,/^data_dir = data/s//data_dir = data/" "$T/good.conf"
echo "[scheduler]" >>"$T/good.conf"; echo "tick = 500ms" >>"$T/good.conf"
sed -i "s/^port = $dport\$/port = $dport\nmax_associations = 8/" "$T/good.conf"   # restart-only (default 16)
kill -HUP "$pid1"
wait_for_text "$T/one.log" 'msg="configuration reloaded"'
grep -q 'level=warn mod=config msg="option changed but needs a restart to take effect" option=dicom.max_associations' "$T/one.log" ||
  fail "the restart-only change is not named in a warning"
grep -q 'option=scheduler.tick' "$T/one.log" && fail "a live option was reported as needing a restart"
ok "SIGHUP reloads the configuration; the restart-only change is named in a warning, the live one applied"
printf '[dicom]\nport = nope\n' >"$T/broken-now.conf"
cp "$T/good.conf" "$T/good.conf.bak"; cp "$T/broken-now.conf" "$T/good.conf"
kill -HUP "$pid1"
wait_for_text "$T/one.log" 'msg="reload refused, previous configuration kept"'
kill -0 "$pid1" || fail "daemon died on a bad reload"
cp "$T/good.conf.bak" "$T/good.conf"
ok "a broken reload is refused and the daemon keeps running"

start=$(date +%s%N)
kill -TERM "$pid1"
wait_exit "$pid1" 10; rc=$WAIT_RC
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$rc" = 0 ] || fail "SIGTERM exit status $rc"
grep -q 'msg="stopped"' "$T/one.log" || fail "no 'stopped' line"
ok "SIGTERM: clean exit in ${ms} ms"

# The lock went with the process: a new daemon starts.
start_samdad three "$T/good.conf"
wait_for_text "$T/three.log" 'msg="ready"'
kill -INT "$(cat "$T/three.pid")"
wait_exit "$(cat "$T/three.pid")" 10; [ "$WAIT_RC" = 0 ] || fail "SIGINT exit status $WAIT_RC"
ok "restart after stop works; SIGINT stops cleanly"
! grep -h "level=error" "$T/one.log" "$T/three.log" | grep -v "reload refused" || fail "unexpected error lines in the daemon log"
echo "all lifecycle checks passed"
