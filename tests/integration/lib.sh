# Shared helpers for the integration scripts (sourced). Everything listens on 127.0.0.1 only.
set -euo pipefail
: "${SAMDA_BUILD_DIR:?run through ctest}"
: "${SAMDA_SOURCE_DIR:?run through ctest}"
SAMDAD="$SAMDA_BUILD_DIR/daemon/samdad"
SAMDA="$SAMDA_BUILD_DIR/daemon/samda"
FIXTURES="${SAMDA_FIXTURES:-$SAMDA_SOURCE_DIR/tests/data}"
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

# A TCP port nobody listens on now, and that no outgoing connection can take as its source port
# before the listener binds it: it is drawn below the kernel's ephemeral range, and never handed
# out twice in one test (the ports given are kept in $T/ports).
free_port() {
  $PY - "$T/ports" <<'PY'
import random, socket, sys
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
try:
    given = set(open(sys.argv[1]).read().split())
except OSError:
    given = set()
for _ in range(1000):
    p = random.randrange(10000, max(lo, 10001))
    if str(p) in given:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    open(sys.argv[1], "a").write(f"{p}\n")
    print(p)
    break
else:
    sys.exit("free_port: no free TCP port below the ephemeral range")
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

# write_conf FILE DPORT HPORT [extra INI text...]: a samdad configuration for tests (fast timers).
write_conf() {
  local f=$1 dport=$2 hport=$3; shift 3
  cat >"$f" <<CONF
[daemon]
data_dir = data
shutdown_timeout = 5s
[dicom]
port = $dport
ae_title = SAMDA
max_associations = 16
[http]
port = $hport
[storage]
min_free = 1MiB
[scheduler]
tick = 200ms
[site default]
modalities = CT,MR
series_idle = 1s
study_idle = 1s
max_wait = 1h
[peer storescu]
ae_title = STORESCU
host = 127.0.0.1
[peer orthanc]
ae_title = ORTHANC
host = 127.0.0.1
CONF
  local extra
  for extra in "$@"; do printf '%s\n' "$extra" >>"$f"; done
}

# json_len: number of elements of the JSON array on stdin
# code CURL-ARGS...: the HTTP status of a curl request; the body goes to $T/body.
code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }

json_len() { $PY -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
# json_expr EXPR: evaluate a Python expression over the JSON on stdin bound to `d`
json_expr() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# wait_for_cmd SECONDS CMD...: retry CMD until it succeeds
wait_for_cmd() {
  local secs=$1 i; shift
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "timed out after ${secs}s waiting for: $*"
}

# start_pg: a throw-away PostgreSQL server for this script (tests/pg/pg_server.sh: Debian's server, Unix
# socket only), stopped on exit. Sets PGS (the script), PGD (the server's folder) and PGC (a libpq
# connection string to its database). Fails (status 1) when the server cannot be started.
start_pg() {
  PGS="$SAMDA_SOURCE_DIR/tests/pg/pg_server.sh"
  PGD=$(mktemp -u /tmp/samda-pg.XXXXXX)
  trap 'sh "$PGS" stop "$PGD" >/dev/null 2>&1 || true; cleanup' EXIT
  sh "$PGS" start "$PGD" >/dev/null 2>&1 || return 1
  PGC="host=$PGD user=samda dbname=samda gssencmode=disable sslmode=disable"
}

# tmp_empty DATA_DIR: no file left under tmp/
tmp_empty() { [ -z "$(find "$1/tmp" -type f 2>/dev/null)" ]; }

# start_orthanc NAME HTTP_PORT DICOM_PORT SAMDA_DICOM_PORT [dicomweb] [USER:PASSWORD]: Debian's Orthanc on loopback
# with a temporary configuration naming samdad as modality "samda" (with USER:PASSWORD, HTTP basic
# authentication on); waits for its REST API.
start_orthanc() {
  local name=$1 hport=$2 dport=$3 sport=$4 web=${5:-} user=${6:-} auth=false users='{}'
  if [ -n "$user" ]; then auth=true; users="{\"${user%%:*}\": \"${user#*:}\"}"; fi
  command -v Orthanc >/dev/null || fail "Orthanc missing (deploy/install-deps.sh installs orthanc)"
  mkdir -p "$T/$name"
  local plugins='[]'
  [ -n "$web" ] && plugins='["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"]'
  cat >"$T/$name/orthanc.json" <<JSON
{
  "Name": "samda-test-orthanc",
  "StorageDirectory": "$T/$name/storage",
  "IndexDirectory": "$T/$name/index",
  "HttpPort": $hport,
  "DicomPort": $dport,
  "DicomAet": "ORTHANC",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": $auth,
  "RegisteredUsers": $users,
  "HttpServerEnabled": true,
  "DicomServerEnabled": true,
  "DicomCheckCalledAet": false,
  "DicomAlwaysAllowStore": true,
  "DicomAlwaysAllowEcho": true,
  "DicomModalities": { "samda": ["SAMDA", "127.0.0.1", $sport] },
  "Plugins": $plugins,
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/" },
  "StableAge": 1,
  "ConcurrentJobs": 2
}
JSON
  Orthanc "$T/$name/orthanc.json" >"$T/$name.log" 2>&1 &
  _pids+=($!)
  echo $! >"$T/$name.pid"
  wait_for_cmd 30 curl -sf ${user:+-u "$user"} "http://127.0.0.1:$hport/system"
}

# copy_series SRC DST: a copy of a series with a new SeriesInstanceUID and new SOP Instance UIDs
# (same study), rewritten by pydicom (which also drops trailing bytes after the data set).
copy_series() {
  mkdir -p "$2"
  $PY - "$1" "$2" <<'PY'
import os, sys, pydicom
from pydicom.uid import generate_uid
src, dst = sys.argv[1], sys.argv[2]
series = generate_uid()
for f in sorted(os.listdir(src)):
    ds = pydicom.dcmread(os.path.join(src, f))
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(os.path.join(dst, f))
PY
}
