#!/usr/bin/env bash
# fallback-build.sh: builds rlx from source on the GPU machine when the bundle's prebuilt binaries
# cannot run there (or the working tree is newer than the bundle), with the bundle's Debian .debs
# unpacked (dpkg -x, or ar + tar) into a private sysroot instead of installed packages. run.sh
# calls it; it needs gcc/g++, cmake >= 3.25, ninja or make, and nvcc there.
#
#   bash scripts/gpu/fallback-build.sh SRC BUILD BUNDLE
#   env: SYSROOT (/tmp/rlx-sysroot)  JOBS (nproc)  RLX_GPU_ARCHS (90a)  RLX_GPU_FILL (fill-in libs)
#
# The sysroot gives CMake jansson, pcre2 and utf8proc (pkg-config: the sysroot's own pkgconf,
# confined to the sysroot's .pc files, PKG_CONFIG_SYSROOT_DIR = SYSROOT) and the toml++ headers
# (find_path through CMAKE_PREFIX_PATH = SYSROOT/usr). The configuration is the bundle's
# (Release, sm_90a, no Criterion); simt is on only where the machine has boost.context.
set -euo pipefail
export PATH="$PATH:/usr/local/cuda/bin"
SRC=${1:?usage: fallback-build.sh SRC BUILD BUNDLE}
BUILD=${2:?usage: fallback-build.sh SRC BUILD BUNDLE}
BUNDLE=${3:?usage: fallback-build.sh SRC BUILD BUNDLE}
SYSROOT=${SYSROOT:-/tmp/rlx-sysroot}
JOBS=${JOBS:-$(nproc)}
ARCHS=${RLX_GPU_ARCHS:-90a}
FILL=${RLX_GPU_FILL:-}
LIBDIR=$SYSROOT/usr/lib/x86_64-linux-gnu
echo "fallback-build: $SRC -> $BUILD, sysroot $SYSROOT, $JOBS jobs, sm_$ARCHS"
mkdir -p "$SYSROOT"
n=0
for d in "$BUNDLE"/debs/*.deb; do
  [ -e "$d" ] || continue
  if command -v dpkg-deb >/dev/null 2>&1; then
    dpkg-deb -x "$d" "$SYSROOT"
  else # a .deb is an ar archive holding data.tar.*
    tmp=$(mktemp -d); (cd "$tmp" && ar x "$d" && tar -xf data.tar.* -C "$SYSROOT"); rm -rf "$tmp"
  fi
  n=$((n + 1))
done
echo "fallback-build: $n .debs unpacked"
PCDIR=$LIBDIR/pkgconfig
args=(-S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DRLX_CUDA=ON "-DRLX_CUDA_ARCHS=$ARCHS" -DRLX_CRITERION=OFF
      "-DCMAKE_PREFIX_PATH=$SYSROOT/usr")
if [ -x "$SYSROOT/usr/bin/pkgconf" ]; then
  cat >"$SYSROOT/pkg-config" <<EOF
#!/bin/sh
export LD_LIBRARY_PATH="$LIBDIR\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PKG_CONFIG_LIBDIR="$PCDIR:$SYSROOT/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$SYSROOT"
unset PKG_CONFIG_PATH
exec "$SYSROOT/usr/bin/pkgconf" "\$@"
EOF
  chmod +x "$SYSROOT/pkg-config"
  args+=("-DPKG_CONFIG_EXECUTABLE=$SYSROOT/pkg-config")
  echo "pkg-config: jansson $("$SYSROOT/pkg-config" --modversion jansson 2>&1)"
fi
link="-Wl,-rpath-link,$LIBDIR${FILL:+:$FILL}"
args+=("-DCMAKE_EXE_LINKER_FLAGS=$link" "-DCMAKE_SHARED_LINKER_FLAGS=$link")
if command -v ninja >/dev/null 2>&1; then args+=(-G Ninja); else args+=(-G "Unix Makefiles"); fi
[ -x /usr/local/cuda/bin/nvcc ] && args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
echo "+ cmake ${args[*]}"
env -u PKG_CONFIG_PATH cmake "${args[@]}"
grep -E '^(pkgcfg_lib_[A-Z0-9_]+|RLX_TOMLPP_INCLUDE|CUDAToolkit_BIN_DIR)[:=]' "$BUILD/CMakeCache.txt" || true
targets=(rlx_cli test-gpu example-softcap-gpu)
grep -q "test-gpu-tp" "$BUILD"/build.ninja "$BUILD"/Makefile 2>/dev/null && targets+=(test-gpu-tp)
grep -q 'simt-mma-gpu' "$BUILD"/build.ninja "$BUILD"/Makefile 2>/dev/null && targets+=(simt-mma-gpu)
cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}"
echo "fallback-build: done: $BUILD/rlx"
