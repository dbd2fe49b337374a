#!/usr/bin/env bash
# The downstream consumer test: install the build into a temporary prefix, build a tiny C program
# (consumer/consumer.c) against that prefix twice — CMake find_package(rlx) (rlx::rlx and
# rlx::rlx_static) and `pkg-config --cflags --libs rlx` — run each on an HF fixture, and require
# the logits byte-identical to what the installed `rlx run --logits-out` writes.
#   test-consumer.sh BUILD_DIR SOURCE_DIR C_COMPILER VERSION GENERATOR
set -u
build=$1 src=$2 cc=$3 version=$4 generator=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail=0
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
run() { # run LOG CMD...: quiet unless it fails
  local log=$1; shift
  "$@" > "$log" 2>&1 || { echo "FAIL: $*"; tail -n 30 "$log"; return 1; }
}

run "$tmp/install.log" cmake --install "$build" --prefix "$prefix" || exit 1
libdir=$(dirname "$(find "$prefix" -name rlx.pc -path '*/pkgconfig/*' | head -n 1)")/..
libdir=$(cd "$libdir" && pwd -P)
for f in bin/rlx include/rlx/rlx.h "${libdir#"$prefix"/}/librlx.so" "${libdir#"$prefix"/}/librlx.a" \
         "${libdir#"$prefix"/}/cmake/rlx/rlxConfig.cmake" "${libdir#"$prefix"/}/cmake/rlx/rlxConfigVersion.cmake" \
         "${libdir#"$prefix"/}/pkgconfig/rlx.pc"; do
  [ -e "$prefix/$f" ] || bad "the install has no $f"
done
for h in "$src"/include/rlx/*.h; do
  cmp -s "$h" "$prefix/include/rlx/$(basename "$h")" || bad "include/rlx/$(basename "$h") is not installed as it is in the tree"
done
[ -e "$(readlink -f "$libdir/librlx.so")" ] || bad "librlx.so is a dangling link"
soname=$(readelf -d "$libdir/librlx.so" | sed -n 's/.*soname: \[\(.*\)\].*/\1/p')
[ -e "$libdir/$soname" ] || bad "no $soname (the SONAME) in $libdir"

# 1. CMake: find_package(rlx <version> EXACT COMPONENTS static), a C-only project.
run "$tmp/cmake.log" cmake -S "$src/tests/package/consumer" -B "$tmp/cmake" -G "$generator" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_PREFIX_PATH="$prefix" -DRLX_EXPECT_VERSION="$version" -DCMAKE_BUILD_TYPE=Release &&
  run "$tmp/cmake-build.log" cmake --build "$tmp/cmake" || fail=$((fail + 1))

# 2. pkg-config
export PKG_CONFIG_PATH=$libdir/pkgconfig
pcver=$(pkg-config --modversion rlx 2>&1)
[ "$pcver" = "$version" ] || bad "pkg-config --modversion rlx says '$pcver', the build is $version"
flags=$(pkg-config --cflags --libs rlx) || bad "pkg-config --cflags --libs rlx failed"
pkg-config --static --libs rlx > /dev/null || bad "pkg-config --static --libs rlx failed (Requires.private)"
# shellcheck disable=SC2086 # the flags are words
run "$tmp/pc.log" "$cc" -std=c99 -Wall -Wextra -pedantic -Werror "$src/tests/package/consumer/consumer.c" \
  -o "$tmp/consumer-pkgconfig" $flags -Wl,-rpath,"$(pkg-config --variable=libdir rlx)" || fail=$((fail + 1))

# The reference: the installed command on the same prompts.
fixture=$src/tests/fixtures/llama/gqa_tied_f32
p1=96,88,16,65,13,19,6 p2=41,87,78,0,30,47,18
run "$tmp/cli.log" "$prefix/bin/rlx" run --model "$fixture" --tokens $p1 --tokens $p2 --all-logits --device cpu \
  --top-k 0 --logits-out "$tmp/cli.npy" || exit 1
rows=14 vocab=97 # 2 prompts x 7 tokens, every position; the fixture's vocabulary
bytes=$((rows * vocab * 4))
tail -c "$bytes" "$tmp/cli.npy" > "$tmp/cli.f32"

for exe in "$tmp/cmake/consumer-shared" "$tmp/cmake/consumer-static" "$tmp/consumer-pkgconfig"; do
  name=$(basename "$exe")
  [ -x "$exe" ] || { bad "$name was not built"; continue; }
  linked=$(ldd "$exe" | grep 'librlx\.so' || true)
  case "$name" in
    consumer-static) [ -z "$linked" ] || bad "$name loads a shared librlx: $linked" ;;
    *) case "$linked" in *"=> $libdir/"*) ;; *) bad "$name does not load the installed librlx.so: '$linked'" ;; esac ;;
  esac
  run "$tmp/$name.log" "$exe" "$fixture" "$tmp/$name.f32" $p1 $p2 || { fail=$((fail + 1)); continue; }
  size=$(stat -c %s "$tmp/$name.f32")
  if [ "$size" != "$bytes" ]; then
    bad "$name wrote $size bytes of logits, expected $bytes ([$rows, $vocab] float32)"
  elif ! cmp -s "$tmp/$name.f32" "$tmp/cli.f32"; then
    bad "$name's logits differ from rlx run --logits-out's: $(cmp "$tmp/$name.f32" "$tmp/cli.f32" | head -n 1)"
  else
    echo "ok: $name ($(head -n 1 "$tmp/$name.log")) matches rlx run byte for byte"
  fi
done
echo "consumer test: $fail failure(s)"
[ "$fail" -eq 0 ]
