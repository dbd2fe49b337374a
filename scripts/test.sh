#!/usr/bin/env bash
# Quick start, step 2: build and run the whole test suite — a warnings-as-errors build (unit,
# simt in both thread orders, nvcc compile checks, examples); a Release build (-O3 warns where
# -O2 does not) in the GPU session's configuration (sm_90a only, no Criterion)
# with the tests that need no Criterion; the Python package's tests in a fresh virtualenv
# (scripts/test-python.sh; RLX_TEST_PYTHON=0 skips them); then the suite under AddressSanitizer +
# UndefinedBehaviorSanitizer with a short smoke run of every fuzz target (RLX_TEST_SANITIZE=0
# skips it, RLX_TEST_RELEASE=0 the Release build).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export PATH="/usr/local/cuda/bin:$PATH"
jobs=$(nproc)
# RLX_REQUIRE_NCCL=1 (CI): the NCCL backend must be built (configure fails without nccl.h >= 2.14)
nccl=()
if [ "${RLX_REQUIRE_NCCL:-0}" = 1 ]; then nccl=(-DRLX_NCCL=ON); fi
cmake -S . -B build-test -G Ninja -DRLX_WERROR=ON ${nccl[@]+"${nccl[@]}"}
cmake --build build-test -j "$jobs"
(cd build-test && ctest --output-on-failure -j "$jobs")
# The Python package in a fresh virtualenv against an install of that build (RLX_TEST_PYTHON=0 skips it).
if [ "${RLX_TEST_PYTHON:-1}" != 0 ]; then
  scripts/test-python.sh build-test
fi
if [ "${RLX_TEST_RELEASE:-1}" != 0 ]; then
  cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DRLX_WERROR=ON -DRLX_CUDA_ARCHS=90a -DRLX_CRITERION=OFF ${nccl[@]+"${nccl[@]}"}
  cmake --build build-release -j "$jobs"
  (cd build-release && ctest --output-on-failure -j "$jobs" -LE 'nvcc|gpu')
fi
if [ "${RLX_TEST_SANITIZE:-1}" != 0 ]; then
  # CUDA off: nothing here runs the cuda device, and nvcc time is better spent once, above.
  # The fuzz targets (clang, libFuzzer) build here too; ctest runs each for a few seconds (label fuzz).
  cmake -S . -B build-asan -G Ninja -DRLX_WERROR=ON -DRLX_SANITIZE=ON -DRLX_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug -DRLX_FUZZ=ON
  cmake --build build-asan -j "$jobs"
  # Criterion does not fail a test whose worker leaks (LeakSanitizer reports at process exit),
  # so the sanitizer reports are also searched for in the full log.
  log=build-asan/ctest.log
  set +e
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -V -j "$jobs" -LE 'nvcc|gpu') > "$log" 2>&1
  rc=$?
  set -e
  tail -n 25 "$log"
  if grep -nE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log" | head -20; then
    echo "sanitizer reports in $log" >&2
    exit 1
  fi
  exit $rc
fi
