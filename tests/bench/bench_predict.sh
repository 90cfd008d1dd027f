#!/usr/bin/env bash
# Interactive predict latency with a cached embedding (demo model): one session on a phantom CT
# slice, then N box predictions over HTTP, one at a time; prints p50/p90/p99 of the round trip and
# of the decoder time samdad reports. Measures and prints; never gates on time.
# Usage: bench_predict.sh [N]
set -euo pipefail
: "${SAMDA_BUILD_DIR:?run through ctest or set SAMDA_BUILD_DIR}"
: "${SAMDA_SOURCE_DIR:?}"
N=${1:-200}
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
SAMDA="$SAMDA_BUILD_DIR/daemon/samda"; SAMDAD="$SAMDA_BUILD_DIR/daemon/samdad"; PY=/usr/bin/python3
T=$(mktemp -d /tmp/samda-bench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$T"' EXIT
port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dport=$(port); hport=$(port)
"$SAMDA" phantom --out "$T/ph" --site A --count 8 --seed 5 --slices-per-body 8 --dicom >/dev/null
cat >"$T/s.conf" <<CONF
[daemon]
data_dir = data
[dicom]
port = $dport
[http]
port = $hport
[storage]
min_free = 1MiB
[model]
checkpoint = $DEMO/sam_demo_base.pth
adapter = $DEMO/site_A_adapter.safetensors
device = cpu
[site default]
modalities = MR
[peer storescu]
ae_title = STORESCU
host = 127.0.0.1
CONF
"$SAMDAD" --config "$T/s.conf" >"$T/d.log" 2>&1 & pids+=($!)
for i in $(seq 300); do grep -q 'msg="ready"' "$T/d.log" && break; sleep 0.1; done
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000"
tok=$("$SAMDA" token create bench --role user --data-dir "$T/data" 2>/dev/null)
series=$($PY -c "import pydicom; print(pydicom.dcmread('$T/ph/dicom/A_00000/IMG00004.dcm').SeriesInstanceUID)")
sid=$(curl -sf -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' -d "{\"series\":\"$series\",\"slice\":4}" \
      "http://127.0.0.1:$hport/api/v1/sessions" | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for i in $(seq "$N"); do
  x=$((60 + i % 20))
  curl -s -w ' %{time_total}\n' -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
       -d "{\"box\":[$x,70,170,180]}" "http://127.0.0.1:$hport/api/v1/sessions/$sid/predict" |
    $PY -c 'import json,sys; t=sys.stdin.read(); b,_,w=t.rpartition(" "); print(json.loads(b)["decode_ms"], float(w)*1000)'
done >"$T/lat"
$PY - "$T/lat" "$N" <<'PY'
import sys, os
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(p / 100 * len(v)))]
dec = [r[0] for r in rows]; rt = [r[1] for r in rows]
print("interactive predict, demo model (256 px), box prompt, cached embedding, CPU (%d cores), %s requests" % (os.cpu_count(), sys.argv[2]))
print("| | p50 ms | p90 ms | p99 ms |")
print("|---|---|---|---|")
print("| decoder (samdad's decode_ms) | %.1f | %.1f | %.1f |" % (pct(dec, 50), pct(dec, 90), pct(dec, 99)))
print("| HTTP round trip (curl) | %.1f | %.1f | %.1f |" % (pct(rt, 50), pct(rt, 90), pct(rt, 99)))
PY
