#!/usr/bin/env bash
# Install every Debian 12 package that samda needs to build, test and run.
# Idempotent: packages already present are skipped, and nothing is printed when all are there.
# Usage: deploy/install-deps.sh [--runtime-only]
set -euo pipefail

build_pkgs=(
  build-essential cmake pkg-config
  libdcmtk-dev libtorch-dev libmicrohttpd-dev libsqlite3-dev libssl-dev libjansson-dev
  libinih-dev libsystemd-dev libcmocka-dev libpng-dev zlib1g-dev
)
# libtorch links libblas.so.3: without an optimised BLAS it is the reference netlib one (12x slower sgemm).
runtime_pkgs=( libopenblas0-openmp )
test_pkgs=(
  dcmtk dicom3tools python3-pydicom python3-numpy orthanc orthanc-dicomweb curl wrk sqlite3
  systemd clang libclang-rt-14-dev procps psmisc
  openssl  # test_tls makes its test CA and certificates with the openssl command
)

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
