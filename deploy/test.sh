#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test:
#   1. a -Werror build and the whole suite (unit, integration, bench smoke)
#   2. the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   3. the libFuzzer targets for a short fixed time (when clang is there)
# Each integration test starts its own redis-server and peercached on free
# loopback ports in a temp directory; nothing else needs to be running.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash deploy/install-deps.sh

step() { printf '\n==== %s ====\n' "$*"; }

step "build (-Werror) and test"
bash deploy/build.sh build/ci -DPC_WERROR=ON
ctest --test-dir build/ci --output-on-failure --timeout 600

step "ASan + UBSan build and test"
bash deploy/build.sh build/asan -DPC_WERROR=ON -DPC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build/asan --output-on-failure --timeout 900 -LE bench

if command -v clang >/dev/null 2>&1; then
  step "fuzz smoke (libFuzzer, fixed time)"
  CC=clang bash deploy/build.sh build/fuzz -DPC_WERROR=ON -DPC_FUZZ=ON -DPC_BUILD_TESTS=ON
  ctest --test-dir build/fuzz --output-on-failure -L fuzz
else
  echo "clang not found: fuzz targets skipped"
fi
step "all tests passed"
