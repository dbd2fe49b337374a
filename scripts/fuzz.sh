#!/usr/bin/env bash
# Runs the fuzz targets (tests/fuzz/fuzz-*.c) long: scripts/fuzz.sh [target|all] [seconds].
# Builds them with clang (libFuzzer, ASan + UBSan) in build-fuzz/, then runs each target for
# `seconds` (default 600) on a working corpus build-fuzz/corpus/<target> grown from the
# committed seeds (tests/fuzz/corpus/<target>, only read). A crash, leak or UB report stops the
# target and leaves its input in build-fuzz/artifacts/; the script then exits 1.
# Extra libFuzzer flags: RLX_FUZZ_ARGS (e.g. RLX_FUZZ_ARGS=-runs=1000000 to stop after 10^6
# executions, -jobs=2 for parallel runs). ctest -L fuzz (CI) runs each target for 3 seconds only.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-all}
seconds=${2:-600}
cc=$(command -v clang || command -v clang-14 || true)
cxx=$(command -v clang++ || command -v clang++-14 || true)
if [ -z "$cc" ] || [ -z "$cxx" ]; then
  echo "fuzz: clang is needed (scripts/deps.sh installs it)" >&2
  exit 2
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S tests/fuzz -B build-fuzz "${gen[@]}" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build build-fuzz -j "$(nproc)"
if [ "$target" = all ]; then
  targets=$(ls tests/fuzz/fuzz-*.c | sed 's|.*/fuzz-||; s|\.c$||')
else
  [ -f "tests/fuzz/fuzz-$target.c" ] || { echo "fuzz: no target '$target' (tests/fuzz/fuzz-$target.c)" >&2; exit 2; }
  targets=$target
fi
mkdir -p build-fuzz/artifacts
status=0
for t in $targets; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "fuzz: $t for ${seconds}s"
  # Run inside build-fuzz/, where the targets were compiled: a target may find files beside its
  # source through a relative __FILE__.
  # shellcheck disable=SC2086
  if ! (cd build-fuzz && ASAN_OPTIONS=detect_leaks=1 "./fuzz-$t" -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="artifacts/$t-" ${RLX_FUZZ_ARGS:-} \
      "corpus/$t" "../tests/fuzz/corpus/$t" 2> "$t.log"); then
    echo "fuzz: $t FAILED (build-fuzz/$t.log, input in build-fuzz/artifacts/)" >&2
    grep -E "ERROR|runtime error|invariant" "build-fuzz/$t.log" | head -5 >&2
    status=1
  fi
  grep -E "stat::number_of_executed_units|^Done" "build-fuzz/$t.log" | sed "s/^/fuzz: $t: /"
done
exit $status
