#!/usr/bin/env bash
# Quick start, step 2: build and run the whole test suite — a warnings-as-errors build, then
# the same suite under AddressSanitizer + UndefinedBehaviorSanitizer (RLX_TEST_SANITIZE=0 skips
# the second). The simt tests run in both thread orders inside ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
cmake -S . -B build-test -G Ninja -DRLX_WERROR=ON
cmake --build build-test -j "$jobs"
(cd build-test && ctest --output-on-failure -j "$jobs")
if [ "${RLX_TEST_SANITIZE:-1}" != 0 ]; then
  cmake -S . -B build-asan -G Ninja -DRLX_WERROR=ON -DRLX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  cmake --build build-asan -j "$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j "$jobs" -LE nvcc)
fi
