#!/usr/bin/env bash
# Quick start, step 1: install what is missing, build rlx, and run `rlx demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build
./build/rlx demo
