#!/usr/bin/env bash
# The depth sweep of docs/numerics.md ("The f32 residual stream"): error against depth with and
# without the f32 residual stream on the deep fixture, on simt (minutes on 2 cores; not part of
# CI: the CI test is simt_residual.deep_model_holds_cosine), then bytes per layer of the fused
# plan. Extra arguments go to the tool, e.g. --layers 1,8,32 --seeds 7 or --device cuda.
#   scripts/depth-sweep.sh [build dir] [rlx-depth-sweep options]
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then build=$1; shift; fi
cmake --build "$build" --target rlx-depth-sweep
"$build/tests/rlx-depth-sweep" --seeds 7,1,2 "$@"
