#!/usr/bin/env bash
# Installs the dependencies, builds, and runs every test (unit, integration against
# real SoftHSM tokens, CLI, layering check) with CTest.
#
#   scripts/test.sh            # release preset (what CI runs)
#   scripts/test.sh asan-ubsan # any other preset from CMakePresets.json
set -euo pipefail

preset="${1:-release}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" "$preset"
cd "$root"
ctest --preset "$preset" -j "$(nproc)"
