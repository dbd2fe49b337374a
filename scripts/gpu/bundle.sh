#!/usr/bin/env bash
# bundle.sh: builds the GPU session's bundle on this (CPU) machine; scripts/gpu-session.sh bundle.
#
#   bash scripts/gpu/bundle.sh [DIR]                 (default DIR: build-gpu-session in the repo)
#   bash scripts/gpu/bundle.sh --from BUILD [DIR]    assemble from an existing build tree, no
#                                                    build and no .debs (the dry-run test)
#   env: JOBS (2)  RLX_GPU_ARCHS (90a)  RLX_GPU_DEBS (1: fetch the fallback's .debs with
#        apt-get download; 0: none)  RLX_GPU_DEBS_CACHE (${TMPDIR:-/tmp}/rlx-gpu-debs)
#
# 1. The working tree (tracked + untracked-not-ignored files: what travels to the device) is
#    copied to the ANCHOR /tmp/rlx-gpu-session/src and built in /tmp/rlx-gpu-session/build:
#    Release, RLX_WERROR, CUDA for sm_90a only (H100/H200), no Criterion (CI's Release build:
#    scripts/test.sh). ctest's files hold absolute paths under the anchor; on the device run.sh
#    makes the anchor a folder whose build/ is the bundle's and whose src/ is the working tree.
# 2. DIR gets build/ (the CTestTestfile.cmake files and every ELF the build made, stripped;
#    librlx.so under its SONAME, as a file), lib/ (the non-system, non-CUDA shared libraries), lib-extra/ (common
#    distro libraries, used on the device only where it lacks them), lib-cuda/ (libcudart, a last
#    resort: the device's CUDA libraries come first; cuBLASLt, 0.5 GB, is never carried), debs/
#    (the fallback build's sysroot), src.sha256 (the staleness check), BUILD_INFO, libs.txt.
# 3. The anchor moves to /tmp/rlx-gpu-session.stage (kept for incremental rebuilds).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
FROM=
if [ "${1:-}" = --from ]; then
  FROM=$(cd "${2:?bundle.sh --from BUILD [DIR]}" && pwd -P)
  shift 2
fi
BUNDLE=${1:-$REPO/build-gpu-session}
case $BUNDLE in /*) ;; *) BUNDLE=$PWD/$BUNDLE ;; esac
ANCHOR=/tmp/rlx-gpu-session
JOBS=${JOBS:-2}
ARCHS=${RLX_GPU_ARCHS:-90a}
DEBS_CACHE=${RLX_GPU_DEBS_CACHE:-${TMPDIR:-/tmp}/rlx-gpu-debs}
export PATH=/usr/local/cuda/bin:$PATH
LIMIT_MIB=60

# What the fallback build needs that a fresh machine with CUDA may lack: jansson, pcre2, utf8proc, the toml++
# headers, pkg-config. Criterion is off in this configuration; boost (simt) is left out.
DEBS=(libjansson-dev libjansson4 libtomlplusplus-dev libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
      libutf8proc-dev libutf8proc2 pkgconf pkgconf-bin libpkgconf3)
GLIBC_RE='^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|librt|libpthread|libresolv|libutil|libanl)\.so'
CUDA_RE='^(libcudart|libcublasLt|libcublas|libnccl|libcuda)\.so'
EXTRA_RE='^(libstdc\+\+|libgcc_s|libz|libcrypto|libssl|libffi|libpcre2-8)\.so'
log() { printf '[gpu-session bundle] %s\n' "$*" >&2; }

COMMIT=$(git -C "$REPO" rev-parse HEAD)
DESCRIBE=$(git -C "$REPO" describe --always --dirty --abbrev=12)
if [ -z "$FROM" ]; then
  # ---- 1. the working tree at the anchor, built ------------------------------------------------
  [ -L "$ANCHOR" ] && rm -f "$ANCHOR"
  # a run.sh dry run here leaves the anchor as a folder of two symlinks
  [ -e "$ANCHOR/.rlx-gpu-run" ] && rm -rf "$ANCHOR"
  if [ -e "$ANCHOR" ] && [ ! -e "$ANCHOR/.rlx-gpu-stage" ]; then
    echo "bundle: $ANCHOR exists and is not this script's staging folder; move it away" >&2; exit 1
  fi
  [ ! -e "$ANCHOR" ] && [ -e "$ANCHOR.stage/.rlx-gpu-stage" ] && mv "$ANCHOR.stage" "$ANCHOR"
  mkdir -p "$ANCHOR"; touch "$ANCHOR/.rlx-gpu-stage"
  log "source $REPO at $DESCRIBE"
  rm -rf "$ANCHOR/src.new"; mkdir -p "$ANCHOR/src.new"
  (cd "$REPO" && git ls-files -co --exclude-standard -z \
     | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
     | tar --null -T - -cf -) | tar -xf - -C "$ANCHOR/src.new"
  # unchanged files keep their mtimes, so ninja rebuilds only what changed
  if [ -d "$ANCHOR/src" ]; then
    (cd "$ANCHOR/src.new" && find . -type f) | while IFS= read -r f; do
      cmp -s "$ANCHOR/src.new/$f" "$ANCHOR/src/$f" && continue
      mkdir -p "$(dirname "$ANCHOR/src/$f")" && cp -p "$ANCHOR/src.new/$f" "$ANCHOR/src/$f"
    done
    (cd "$ANCHOR/src" && find . -type f) | while IFS= read -r f; do
      [ -e "$ANCHOR/src.new/$f" ] || rm -f "$ANCHOR/src/$f"
    done
    rm -rf "$ANCHOR/src.new"
  else
    mv "$ANCHOR/src.new" "$ANCHOR/src"
  fi
  CMAKE_ARGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DRLX_WERROR=ON -DRLX_CUDA=ON "-DRLX_CUDA_ARCHS=$ARCHS" -DRLX_CRITERION=OFF)
  cmake -S "$ANCHOR/src" -B "$ANCHOR/build" "${CMAKE_ARGS[@]}" >"$ANCHOR/configure.log" 2>&1 \
    || { tail -30 "$ANCHOR/configure.log"; exit 1; }
  grep -q "rlx: CUDA backend ON" "$ANCHOR/configure.log" || { echo "bundle: the CUDA backend is off (nvcc?)" >&2; exit 1; }
  log "building ($JOBS jobs, sm_$ARCHS, Release)"
  t0=$(date +%s)
  cmake --build "$ANCHOR/build" -j "$JOBS" >"$ANCHOR/build.log" 2>&1 || { tail -40 "$ANCHOR/build.log"; exit 1; }
  log "built in $(($(date +%s) - t0)) s"
  B=$ANCHOR/build
  SRC=$ANCHOR/src
else
  B=$FROM
  SRC=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$B/CMakeCache.txt")
  CMAKE_ARGS=("(assembled from $B)")
  ARCHS=$(sed -n 's/^RLX_CUDA_ARCHS:[A-Z]*=//p' "$B/CMakeCache.txt")
fi

# ---- 2. the bundle -------------------------------------------------------------------------------
TMPB=$(mktemp -d "${TMPDIR:-/tmp}/rlx-gpu-bundle.XXXXXX")
trap 'rm -rf "$TMPB"' EXIT
mkdir -p "$TMPB/build" "$TMPB/lib" "$TMPB/lib-extra" "$TMPB/lib-cuda" "$TMPB/debs"
(cd "$B" && find . -name CTestTestfile.cmake -not -path '*/CMakeFiles/*') | while read -r f; do
  mkdir -p "$TMPB/build/$(dirname "$f")"; cp "$B/$f" "$TMPB/build/$f"
done
ELFS=()
while read -r f; do
  [ "$(od -An -N4 -c "$B/$f" 2>/dev/null | tr -d ' \n')" = '177ELF' ] && ELFS+=("$f")
done < <(cd "$B" && find . -type f \( -perm -u+x -o -name 'librlx.so*' \) -not -path '*/CMakeFiles/*' -not -name '*.o' | sort)
for f in "${ELFS[@]}"; do
  # librlx.so.X.Y.Z goes in under its SONAME (what the programs ask for), a file, not a link
  case "$f" in ./librlx.so*) dst=./$(objdump -p "$B/$f" | awk '$1 == "SONAME" {print $2}') ;; *) dst=$f ;; esac
  [ "$dst" = ./ ] && continue
  mkdir -p "$TMPB/build/$(dirname "$dst")"
  strip --strip-unneeded -o "$TMPB/build/$dst" "$B/$f"
done
# the shared libraries, by soname, as plain files (a symlink would travel as a link only)
for f in "${ELFS[@]}"; do ldd "$B/$f" 2>/dev/null || true; done | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
while read -r so path; do
  if [[ $so =~ $GLIBC_RE ]] || [[ $so == librlx.so* ]]; then continue; fi
  if [[ $so =~ $CUDA_RE ]]; then
    dest=none; [ "${so%%.so*}" = libcudart ] && dest=lib-cuda
  elif [[ $so =~ $EXTRA_RE ]]; then dest=lib-extra
  else dest=lib; fi
  printf '%-26s %-10s %s\n' "$so" "$dest" "$(readlink -f "$path")" >>"$TMPB/libs.txt"
  [ "$dest" = none ] || cp -L "$path" "$TMPB/$dest/$so"
done
# the fallback build's .debs (apt-get download: the ordinary client, no installation)
if [ -z "$FROM" ] && [ "${RLX_GPU_DEBS:-1}" != 0 ]; then
  mkdir -p "$DEBS_CACHE"
  for p in "${DEBS[@]}"; do
    if ! ls "$DEBS_CACHE/${p}_"*.deb >/dev/null 2>&1; then
      (cd "$DEBS_CACHE" && apt-get download "$p" >/dev/null 2>&1) \
        || log "WARNING: apt-get download $p failed: the fallback build will need it on the device"
    fi
    cp "$DEBS_CACHE/${p}_"*.deb "$TMPB/debs/" 2>/dev/null || true
  done
fi
# what the build was made from, file by file: run.sh compares the device's working tree with it
(cd "$SRC" && git -C "$REPO" ls-files -co --exclude-standard | while read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done \
   | grep -E '^(CMakeLists\.txt|cmake/|host/|kernels/|fusion/|include/|tests/|examples/|python/)' | tr '\n' '\0' \
   | xargs -0 -r sha256sum) >"$TMPB/src.sha256" || true
maxglibc=$(for f in "${ELFS[@]}"; do objdump -T "$B/$f" 2>/dev/null; done | grep -oE 'GLIBC_[0-9]+\.[0-9]+(\.[0-9]+)?' | sort -u -V | tail -1)
maxcxx=$(for f in "${ELFS[@]}"; do objdump -T "$B/$f" 2>/dev/null; done | grep -oE 'GLIBCXX_[0-9.]+' | sort -u -V | tail -1)
{
  echo "commit=$COMMIT"
  echo "describe=$DESCRIBE"
  echo "built_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "built_on=$(. /etc/os-release && echo "$PRETTY_NAME"), $(ldd --version | head -1)"
  echo "nvcc=$(nvcc --version 2>/dev/null | tail -2 | head -1)"
  echo "cuda_archs=$ARCHS"
  echo "cmake_args=${CMAKE_ARGS[*]}"
  echo "anchor=$ANCHOR"
  echo "from=${FROM:-}"
  echo "elf_files=${#ELFS[@]}"
  echo "needs=${maxglibc:-?} ${maxcxx:-}"
  echo "debs=$(ls "$TMPB/debs" | wc -l)"
} >"$TMPB/BUILD_INFO"
rm -rf "$BUNDLE"; mkdir -p "$(dirname "$BUNDLE")"; mv "$TMPB" "$BUNDLE"; chmod 755 "$BUNDLE"
trap - EXIT
if [ -z "$FROM" ]; then rm -rf "$ANCHOR.stage"; mv "$ANCHOR" "$ANCHOR.stage"; fi

size=$(du -sb "$BUNDLE" | cut -f1)
log "bundle: $BUNDLE: $(awk -v s="$size" 'BEGIN{printf "%.1f MiB", s / 1048576}'), ${#ELFS[@]} ELF files, needs ${maxglibc:-?}"
[ -n "$FROM" ] && exit 0 # a test's bundle: not carried anywhere
case $BUNDLE in
  "$REPO"/*) git -C "$REPO" check-ignore -q "$BUNDLE" || log "NOTE: $BUNDLE is not git-ignored: it would travel with every call" ;;
esac
if [ "$size" -gt $((LIMIT_MIB * 1024 * 1024)) ]; then
  echo "bundle: $((size >> 20)) MiB is over the ${LIMIT_MIB} MiB the session carries (64 MiB with the working tree)" >&2
  exit 1
fi
