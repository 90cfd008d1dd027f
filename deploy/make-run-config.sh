#!/usr/bin/env bash
# Create the local instance used by `make run`: RUN_DIR/samdad.conf and RUN_DIR/data.
# Usage: make-run-config.sh [RUN_DIR [BUILD [DICOM_PORT [HTTP_PORT]]]] (var, build, 11112, 8080).
# An existing configuration is never overwritten (edit it freely).
set -euo pipefail
run_dir=${1:-var}
build=${2:-build}
dicom_port=${3:-11112}
http_port=${4:-8080}
mkdir -p "$run_dir"
chmod 0700 "$run_dir"
conf="$run_dir/samdad.conf"
hint() { # where the operator console is (the [http] port the configuration has), and a token for it
    local port
    port=$(awk '/^\[/ { h = ($0 == "[http]") } h && $1 == "port" && $2 == "=" { print $3 }' "$conf" | tail -1)
    echo "make-run-config: the console is at http://127.0.0.1:${port:-8080}/ui/ (a token to sign in with:" \
         "$build/daemon/samda token create me --role admin --config $conf)" >&2
}
[ -f "$conf" ] && { hint; exit 0; }
top=$(cd "$(dirname "$0")/.." && pwd)
model=""
if [ -f "$top/deploy/demo/sam_demo_base.pth" ]; then
    # The demo model (synthetic CT, not for clinical use; see deploy/demo/README.md) and its
    # site adapter (liver, kidney, spleen, aorta), so that a fresh instance segments out of the box.
    model="checkpoint = $top/deploy/demo/sam_demo_base.pth
adapter = $top/deploy/demo/site_A_adapter.safetensors
device = cpu"
fi
cat > "$conf" <<CONF
# Local samdad instance made by 'make run' (deploy/make-run-config.sh). Every key is documented
# in deploy/samdad.conf.example. Paths are relative to this file.
[daemon]
data_dir = data

[dicom]
bind = 127.0.0.1
port = $dicom_port
ae_title = SAMDA

[http]
bind = 127.0.0.1
port = $http_port

[storage]
min_free = 256MiB

[model]
$model

# Local senders: dcmtk's storescu (calling AE STORESCU) and Orthanc (ORTHANC), from this machine only.
[site default]
modalities = CT,MR
series_idle = 5s
study_idle = 10s

[peer storescu]
ae_title = STORESCU
host = 127.0.0.1
site = default

[peer orthanc]
ae_title = ORTHANC
host = 127.0.0.1
site = default
CONF
echo "make-run-config: wrote $conf" >&2
hint
