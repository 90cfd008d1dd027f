#!/usr/bin/env bash
# Turnaround of the daemon's main job with the demo model, timers at their minimum: a generated
# 100-slice CT series over C-STORE -> DICOM-SEG acknowledged by a storescp destination. Prints the
# stages (completion wait, queue, volume load, encode, decode, post-process, SEG write, export) and
# the share of everything but encode + decode. Measures and prints; never gates on time.
# Usage: bench_turnaround.sh [SLICES] [SIZE]
set -euo pipefail
: "${SAMDA_BUILD_DIR:?run through ctest or set SAMDA_BUILD_DIR}"
: "${SAMDA_SOURCE_DIR:?}"
N=${1:-100}; SIZE=${2:-256}
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
SAMDA="$SAMDA_BUILD_DIR/daemon/samda"; SAMDAD="$SAMDA_BUILD_DIR/daemon/samdad"; PY=/usr/bin/python3
T=$(mktemp -d /tmp/samda-bench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$T"' EXIT
port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dport=$(port); hport=$(port); pport=$(port)
"$SAMDA" phantom --out "$T/ph" --site A --count "$N" --seed 9 --slices-per-body "$N" --size "$SIZE" --dicom >/dev/null
cat >"$T/s.conf" <<CONF
[daemon]
data_dir = data
[dicom]
port = $dport
ae_title = SAMDA
[http]
port = $hport
[storage]
min_free = 1MiB
[model]
checkpoint = $DEMO/sam_demo_base.pth
adapter = $DEMO/site_A_adapter.safetensors
device = cpu
[scheduler]
tick = 50ms
[site default]
series_idle = 100ms
study_idle = 100ms
destinations = pacs
[peer storescu]
ae_title = STORESCU
host = 127.0.0.1
[destination pacs]
ae_title = PACS
host = 127.0.0.1
port = $pport
CONF
mkdir -p "$T/recv"
storescp -aet PACS -od "$T/recv" "$pport" >/dev/null 2>&1 & pids+=($!)
"$SAMDAD" --config "$T/s.conf" >"$T/d.log" 2>&1 & pids+=($!)
for i in $(seq 300); do grep -q 'msg="ready"' "$T/d.log" && break; sleep 0.1; done
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000"
for i in $(seq 6000); do ls "$T/recv" | grep -q . && break; sleep 0.1; done
sleep 0.5
seg=$(ls "$T/recv"/* | head -1)
recv_ms=$($PY -c "import os,sys; print(int(os.stat(sys.argv[1]).st_mtime * 1000))" "$seg")
"$SAMDA" series --data-dir "$T/data" >"$T/series.json"
"$SAMDA" jobs --data-dir "$T/data" >"$T/jobs.json"
$PY - "$T/series.json" "$T/jobs.json" "$recv_ms" "$N" "$SIZE" <<'PY'
import json, sys, os
series = [s for s in json.load(open(sys.argv[1])) if s["modality"] == "CT"][0]
job = json.load(open(sys.argv[2]))[0]
recv, n, size = int(sys.argv[3]), sys.argv[4], sys.argv[5]
t = job["result"]["timings"]
wait = (job["created_ms"] - series["last_received_ms"]) / 1000
run_total = t["total"]
queue = (job["finished_ms"] - job["created_ms"]) / 1000 - run_total
export = (recv - job["finished_ms"]) / 1000
rows = [("completion wait", wait), ("queue + job claim", max(queue, 0)), ("volume load", t["load"]),
        ("test-time adaptation", t["tta"]), ("encode", t["encode"]), ("decode", t["decode"]),
        ("3-D post-process", t["postprocess"]), ("SEG write + commit", t["seg"]),
        ("export (C-STORE, file time resolution)", max(export, 0))]
total = sum(v for _, v in rows)
print("turnaround: %s slices %sx%s, demo model, CPU (%d cores)" % (n, size, size, os.cpu_count()))
print("| stage | seconds | share |")
print("|---|---|---|")
for k, v in rows:
    print("| %s | %.3f | %.1f%% |" % (k, v, 100 * v / total))
other = total - t["encode"] - t["decode"]
print("| **total** | %.3f | 100%% |" % total)
print("everything but encode + decode: %.3f s = %.1f%% of the total (target < 10%%)" % (other, 100 * other / total))
PY
