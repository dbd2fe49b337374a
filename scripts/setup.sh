#!/usr/bin/env bash
# Quick start, step 1: install what is missing, build rlx, and run `rlx demo`.
#   scripts/setup.sh [--prefix P]    also install into P (headers, librlx.so/.a, rlx, CMake
#                                    package, rlx.pc): cmake --install build --prefix P
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { echo "setup.sh: --prefix needs a directory" >&2; exit 2; }; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option '$1' (--prefix P)" >&2; exit 2 ;;
  esac
done
scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build
./build/rlx demo
if [ -n "$prefix" ]; then
  cmake --install build --prefix "$prefix"
  echo "installed into $prefix: CMake find_package(rlx) with CMAKE_PREFIX_PATH=$prefix," \
       "pkg-config with PKG_CONFIG_PATH=$(dirname "$(find "$prefix" -path '*/pkgconfig/rlx.pc' | head -n 1)")"
fi
