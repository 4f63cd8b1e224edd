#!/usr/bin/env bash
# Installs every Debian 12 package persoflow needs (idempotent; apt-get update first)
# and builds it with the given CMake preset (default: release).
#
#   scripts/setup.sh [PRESET]
#
# PERSOFLOW_SKIP_INSTALL=1 skips the package step (for quick rebuilds on a machine
# that already ran it once).
set -euo pipefail

preset="${1:-release}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # libraries
  libssl-dev openssl libtbb-dev libpugixml-dev libzstd-dev zstd libsqlite3-dev sqlite3
  libcli11-dev nlohmann-json3-dev libp11-kit-dev libjemalloc-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # the HSM for tests and the demo, and the independent PKCS#11 tools
  softhsm2 opensc
  # used by the demo and the end-to-end benchmarks (bench/e2e.py is Python 3, standard library)
  xxd time python3
)

if [[ "${PERSOFLOW_SKIP_INSTALL:-0}" != "1" ]]; then
  sudo=""
  if [[ "$(id -u)" != "0" ]]; then
    command -v sudo >/dev/null || { echo "setup: run as root (or install sudo)" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "setup: installing Debian packages (${#packages[@]})"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

cd "$root"
echo "setup: configuring (preset ${preset})"
cmake --preset "$preset" >/dev/null
echo "setup: building with $(nproc) jobs"
cmake --build --preset "$preset" -j "$(nproc)"
