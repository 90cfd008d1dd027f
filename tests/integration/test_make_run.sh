#!/usr/bin/env bash
# The README's first command, `make run`, as a newcomer runs it: it makes the local instance
# (configuration and data under RUN_DIR), builds what is missing and runs samdad in the foreground
# on its demo model; C-ECHO and /health answer, a phantom CT series sent with storescu is segmented
# out of the box, and Ctrl-C (SIGINT) stops it cleanly. Free ports instead of 11112/8080, so that
# the test cannot collide with a samdad already running here.
. "$(dirname "$0")/lib.sh"
[ -f "$SAMDA_SOURCE_DIR/deploy/demo/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
dport=$(free_port); hport=$(free_port)
RUN="$T/var"
make -C "$SAMDA_SOURCE_DIR" run BUILD="$SAMDA_BUILD_DIR" RUN_DIR="$RUN" DICOM_PORT="$dport" HTTP_PORT="$hport" \
  >"$T/run.log" 2>&1 &
make_pid=$!
_pids+=("$make_pid")
wait_for_text "$T/run.log" 'msg="ready"' 300
grep -q "make-run-config: wrote $RUN/samdad.conf" "$T/run.log" || fail "no configuration made: $(head -5 "$T/run.log")"
[ "$(stat -c %a "$RUN")" = 700 ] || fail "$RUN is not 0700"
grep -q 'msg="model loaded"' "$T/run.log" || fail "the demo model is not loaded: $(grep -m3 model "$T/run.log")"
ok "make run: configuration written to $RUN, samdad ready with the demo model"

echoscu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" || fail "C-ECHO"
[ "$(code "http://127.0.0.1:$hport/health")" = 200 ] || fail "/health: $(cat "$T/body")"
"$SAMDA_BUILD_DIR/daemon/samda" phantom --out "$T/ph" --site A --count 8 --seed 2 --slices-per-body 8 --dicom >/dev/null ||
  fail "phantom"
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000" || fail "storescu"
jobs() { "$SAMDA_BUILD_DIR/daemon/samda" jobs --config "$RUN/samdad.conf"; }
wait_for_cmd 300 bash -c "'$SAMDA_BUILD_DIR/daemon/samda' jobs --config '$RUN/samdad.conf' | $PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d and d[0][\"state\"]==\"done\" else 1)'"
ok "C-ECHO and /health answer; a phantom series sent with storescu is segmented (job done)"

samdad_pid=$(pgrep -f "daemon/samdad --config $RUN/samdad.conf" | head -1)
[ -n "$samdad_pid" ] || fail "samdad not found"
kill -INT "$samdad_pid"
wait_exit "$make_pid" 30
[ "$WAIT_RC" = 0 ] || fail "make run exited with $WAIT_RC: $(tail -5 "$T/run.log")"
grep -q 'msg="stopped"' "$T/run.log" || fail "not stopped cleanly"
ok "Ctrl-C (SIGINT): samdad drains and stops, make run exits 0"
