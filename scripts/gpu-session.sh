#!/usr/bin/env bash
# gpu-session.sh: the project's GPU session, built here and run on a lent GPU machine in one call
# (docs/gpu-session.md).
#
#   scripts/gpu-session.sh bundle [DIR]        here (CPU machine, CUDA toolkit): a Release build for
#                                              sm_90a only, as CI's Release build, at the anchor path
#                                              /tmp/rlx-gpu-session, assembled into DIR (default
#                                              build-gpu-session, git-ignored: carry it), < 60 MiB
#   scripts/gpu-session.sh run [options]       there: checks the machine and the bundle's libraries,
#                                              then runs every step, each under its own timeout,
#                                              within the budget; logs and results in $OUT (at most
#                                              8 files); the summary table printed last. Without a
#                                              GPU it stops cleanly after the library checks
#                                              (exit 0), unless --simulate.
#   scripts/gpu-session.sh results [OUT]       prints a bench/RESULTS.md entry from OUT/summary.json
#
# run options (environment variables in brackets):
#   --bundle DIR       the bundle (default build-gpu-session in the repository) [RLX_GPU_BUNDLE]
#   --budget S         seconds from the start by which every step has ended (default 500: a
#                      9-minute command with room for the transfers) [RLX_GPU_BUDGET_S]
#   --steps A,B        run only these steps (names as in the summary) [RLX_GPU_STEPS]
#   --simulate         no GPU needed: every step on the simt/cpu devices with tiny shapes, the
#                      sanitizer and ncu steps without their tool; tests the plumbing, numbers mean
#                      nothing [RLX_GPU_SIMULATE=1]
#   --rebuild auto|0|1 rebuild from the working tree there when it differs from the bundle's
#                      source (auto, default), never, always [RLX_GPU_REBUILD]
#   --fallback auto|0|force  build from source there (from the bundle's .debs) when the prebuilt
#                      binaries do not load (auto) [RLX_GPU_FALLBACK]
#   --no-compile       HF baseline eager only [RLX_GPU_HF_COMPILE=0]
#   --python PY        the Python with torch + transformers (default python3) [RLX_GPU_PYTHON]
# OUT: the output folder ($OUT on the device; default ./out-gpu-session).
#
# A second call while the machine is warm runs what the budget skipped, e.g.
#   scripts/gpu-session.sh run --steps bench-8b,ncu-flash --budget 300
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  bundle) exec bash "$HERE/gpu/bundle.sh" "$@" ;;
  run) exec bash "$HERE/gpu/run.sh" "$@" ;;
  results) exec "${RLX_GPU_PYTHON:-python3}" "$HERE/gpu/summary.py" results "${1:-${OUT:-$PWD/out-gpu-session}}" ;;
  -h | --help | help)
    sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0 ;;
  *)
    echo "usage: scripts/gpu-session.sh bundle [DIR] | run [options] | results [OUT]   (--help)" >&2
    exit 2 ;;
esac
