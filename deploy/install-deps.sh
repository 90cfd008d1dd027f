#!/usr/bin/env bash
# Install every Debian 12 package that samda needs to build, test and run.
# Idempotent: packages already present are skipped, and nothing is printed when all are there.
# Usage: deploy/install-deps.sh [--runtime-only]
set -euo pipefail

build_pkgs=(
  build-essential cmake pkg-config
  libdcmtk-dev libtorch-dev libmicrohttpd-dev libsqlite3-dev libssl-dev libjansson-dev
  libinih-dev libsystemd-dev libcmocka-dev libpng-dev zlib1g-dev
  libpq-dev  # the index on PostgreSQL ([storage] index = postgresql)
)
# libtorch links libblas.so.3: without an optimised BLAS it is the reference netlib one (12x slower sgemm).
runtime_pkgs=( libopenblas0-openmp )
test_pkgs=(
  dcmtk dicom3tools python3-pydicom python3-numpy orthanc orthanc-dicomweb curl wrk sqlite3
  systemd clang libclang-rt-14-dev procps psmisc
  openssl  # test_tls makes its test CA and certificates with the openssl command
  chromium  # it_ohif: the OHIF viewer in a real browser (headless, WebGL on the CPU)
  python3-requests  # it_monailabel: our MONAI Label client speaks HTTP with requests, as the published one does
  prometheus python3-yaml  # it_dashboards: promtool checks and tests the alert rules; a live Prometheus
  postgresql  # the storage tests' second engine, it_cluster, it_ingest_crash_pg (tests/pg/pg_server.sh)
)

# dcmjs (the DICOM library of the OHIF viewer) reads samda's DICOM-SEG in it_seg_dcmjs. It is not a Debian
# package: when node and npm are present it is installed from the npm registry into a cache folder outside the
# repository (best effort: without it that test skips and says why).
dcmjs_version=0.51.1
dcmjs_dir=${SAMDA_DCMJS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/samda/dcmjs}
install_dcmjs() {
  [ "${1:-}" = "--runtime-only" ] && return 0
  command -v node >/dev/null && command -v npm >/dev/null || return 0
  [ -f "$dcmjs_dir/node_modules/dcmjs/package.json" ] && return 0
  mkdir -p "$dcmjs_dir"
  if timeout 300 npm install --silent --no-audit --no-fund --prefix "$dcmjs_dir" "dcmjs@$dcmjs_version" >/dev/null 2>&1; then
    echo "install-deps: dcmjs $dcmjs_version installed in $dcmjs_dir" >&2
  else
    echo "install-deps: warning: could not install dcmjs from the npm registry (it_seg_dcmjs will skip)" >&2
  fi
}
install_dcmjs "${1:-}"

# The OHIF viewer (@ohif/app: its dist/ is a ready static site) and puppeteer-core, which drives Debian's
# chromium, for it_ohif: from the npm registry into a cache folder outside the repository, pinned, best
# effort (without them that test skips and says why). Only dist/ is kept, without ort/ (an ONNX runtime,
# 136 MB) and dicom-microscopy-viewer/, which samda's studies do not use.
ohif_version=3.13.2
puppeteer_version=25.19.0
ohif_dir=${SAMDA_OHIF_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/samda/ohif}
install_ohif() {
  [ "${1:-}" = "--runtime-only" ] && return 0
  command -v node >/dev/null && command -v npm >/dev/null || return 0
  if [ ! -f "$ohif_dir/dist-$ohif_version/index.html" ]; then
    local tmp
    tmp=$(mktemp -d)
    if (cd "$tmp" && timeout 600 npm pack --silent "@ohif/app@$ohif_version" >/dev/null 2>&1 &&
        tar -xzf ohif-app-"$ohif_version".tgz package/dist) && [ -f "$tmp/package/dist/index.html" ]; then
      rm -rf "$tmp/package/dist/ort" "$tmp/package/dist/dicom-microscopy-viewer"
      mkdir -p "$ohif_dir" && rm -rf "$ohif_dir/dist-$ohif_version" && mv "$tmp/package/dist" "$ohif_dir/dist-$ohif_version"
      echo "install-deps: OHIF viewer $ohif_version installed in $ohif_dir/dist-$ohif_version" >&2
    else
      echo "install-deps: warning: could not fetch @ohif/app $ohif_version from the npm registry (it_ohif will skip)" >&2
    fi
    rm -rf "$tmp"
  fi
  if [ ! -f "$ohif_dir/pptr/node_modules/puppeteer-core/package.json" ]; then
    mkdir -p "$ohif_dir/pptr"
    timeout 300 npm install --silent --no-audit --no-fund --prefix "$ohif_dir/pptr" "puppeteer-core@$puppeteer_version" >/dev/null 2>&1 ||
      echo "install-deps: warning: could not install puppeteer-core from the npm registry (it_ohif will skip)" >&2
  fi
}
install_ohif "${1:-}"

want=("${build_pkgs[@]}" "${runtime_pkgs[@]}")
[ "${1:-}" = "--runtime-only" ] || want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (or: sudo $0) to install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Say which package the archive does not have, rather than apt's generic failure.
for p in "${missing[@]}"; do
  if ! apt-cache show "$p" >/dev/null 2>&1; then
    echo "install-deps: package '$p' is not in the configured Debian archive (is this Debian 12 'bookworm' with main enabled?)" >&2
    exit 1
  fi
done
# orthanc's postinst starts a service where an init system runs; policy-rc.d keeps installs quiet in containers.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
