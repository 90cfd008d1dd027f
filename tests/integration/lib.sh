# Shared helpers for the integration scripts (sourced). Everything listens on 127.0.0.1 only.
set -euo pipefail
: "${SAMDA_BUILD_DIR:?run through ctest}"
: "${SAMDA_SOURCE_DIR:?run through ctest}"
SAMDAD="$SAMDA_BUILD_DIR/daemon/samdad"
SAMDA="$SAMDA_BUILD_DIR/daemon/samda"
FIXTURES="${SAMDA_FIXTURES:-$SAMDA_SOURCE_DIR/../shared/fixtures}"
PY=/usr/bin/python3

T=$(mktemp -d /tmp/samda-it.XXXXXX)
declare -a _pids=()
cleanup() {
  local p
  for p in "${_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

# A TCP port nobody listens on now.
free_port() {
  $PY - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# wait_for_file_text FILE TEXT [SECONDS]
wait_for_text() {
  local file=$1 text=$2 secs=${3:-20} i
  for ((i = 0; i < secs * 10; i++)); do
    grep -q -- "$text" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "--- $file" >&2; tail -n 30 "$file" >&2 || true
  fail "timed out waiting for '$text' in $file"
}

# start_samdad NAME CONF: runs samdad in the background, log in $T/NAME.log, pid in $T/NAME.pid
start_samdad() {
  local name=$1 conf=$2; shift 2
  "$SAMDAD" --config "$conf" "$@" >"$T/$name.log" 2>&1 &
  local pid=$!
  _pids+=("$pid")
  echo "$pid" >"$T/$name.pid"
}

# wait_exit PID SECONDS: sets WAIT_RC to the exit status of PID (a child of this shell);
# fails if it does not exit in time.
wait_exit() {
  local pid=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    if ! kill -0 "$pid" 2>/dev/null || [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ]; then
      WAIT_RC=0
      wait "$pid" || WAIT_RC=$?
      return 0
    fi
    sleep 0.1
  done
  fail "process $pid did not exit within ${secs}s"
}
