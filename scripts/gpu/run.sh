#!/usr/bin/env bash
# run.sh: the GPU session on the device machine; scripts/gpu-session.sh run (options there).
#
# Order: (a) the machine (nvidia-smi, driver, glibc, tools); (b) the bundle's libraries (every ELF
# resolves against the machine's own libraries first, the bundle's copies fill only what is
# missing); no GPU: stop here (exit 0 when the libraries resolve) unless --simulate; (c) a rebuild
# from the working tree when it differs from the bundle's source, or a fallback build when the
# binaries do not load; then the steps, each under `timeout` clipped to the budget left (a step
# that cannot fit is skipped and says so):
#   gpu-tests    ctest -L gpu
#   check-fused  rlx check --device cuda --fusion fused          check-none: --fusion none
#   memcheck     compute-sanitizer --tool memcheck  rlx check --device cuda
#   racecheck    compute-sanitizer --tool racecheck rlx check --device cuda
#   bench-1b     bench/baselines/hf_prefill.py (rlx bench --fusion both + HF eager and
#                torch.compile on the same checkpoint) at 4 x 2048; plain rlx bench without torch
#   ncu-flash    ncu on one flash_attention launch of a 1B prefill
#   bench-3b, bench-8b   as bench-1b
# Outputs in OUT (at most 8 files): session.log (everything), summary.txt (the table, rewritten
# after every step), summary.json (steps, notes, machine, bench rows: `gpu-session.sh results`
# reads it), bench-1b.json, bench-3b.json, bench-8b.json, flash.ncu-rep.
set -u -o pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
BUNDLE=${RLX_GPU_BUNDLE:-$REPO/build-gpu-session}
BUDGET=${RLX_GPU_BUDGET_S:-500}
STEPS=${RLX_GPU_STEPS:-}
SIM=${RLX_GPU_SIMULATE:-0}
REBUILD=${RLX_GPU_REBUILD:-auto}
FALLBACK=${RLX_GPU_FALLBACK:-auto}
HF_COMPILE=${RLX_GPU_HF_COMPILE:-auto}
PY=${RLX_GPU_PYTHON:-python3}
usage() { echo "usage: scripts/gpu-session.sh run [--bundle DIR] [--budget S] [--steps A,B] [--simulate] [--rebuild auto|0|1] [--fallback auto|0|force] [--no-compile] [--python PY]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --bundle) BUNDLE=${2:?}; shift 2 ;;
    --budget) BUDGET=${2:?}; shift 2 ;;
    --steps) STEPS=${2:?}; shift 2 ;;
    --simulate) SIM=1; shift ;;
    --rebuild) REBUILD=${2:?}; shift 2 ;;
    --fallback) FALLBACK=${2:?}; shift 2 ;;
    --no-compile) HF_COMPILE=0; shift ;;
    --python) PY=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
case $BUDGET in '' | *[!0-9]*) usage ;; esac
[ -d "$BUNDLE" ] || { echo "gpu-session: no bundle at $BUNDLE (scripts/gpu-session.sh bundle, here, first)" >&2; exit 2; }
BUNDLE=$(cd "$BUNDLE" && pwd -P)
# cmake/ctest/ninja may be only in a Python venv there, nvcc and the tools in the toolkit
export PATH="$PATH:/usr/local/cuda/bin:/opt/torch/.venv/bin"
T0=$(date +%s)
OUT=${OUT:-$PWD/out-gpu-session}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd -P)
LOG=$OUT/session.log
TMPD=$(mktemp -d /tmp/rlx-gpu-run.XXXXXX)
: >"$LOG"
: >"$TMPD/steps.tsv"
: >"$TMPD/notes.txt"
STEP_OUT=$TMPD/none.out
FAILED=0
ANCHOR=/tmp/rlx-gpu-session

el() { echo $(($(date +%s) - T0)); }
left() { echo $((BUDGET - $(el))); }
say() { printf '[%4ss] %s\n' "$(el)" "$*" | tee -a "$LOG"; }
note() { printf '%s\n' "$*" >>"$TMPD/notes.txt"; say "NOTE: $*"; }
want() { [ -z "$STEPS" ] || [[ ",$STEPS," == *",$1,"* ]]; }
row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$TMPD/steps.tsv"; }
is_elf() { [ "$(od -An -N4 -c "$1" 2>/dev/null | tr -d ' \n')" = '177ELF' ]; }
join_colon() { local IFS=:; echo "$*"; }
amend_last() { # appends to the status of the last row
  local last; last=$(tail -n 1 "$TMPD/steps.tsv")
  sed -i '$d' "$TMPD/steps.tsv"
  IFS=$'\t' read -r a b c <<<"$last"
  row "$a" "$b: $1" "$c"
}

write_summary() {
  {
    echo
    echo "================ rlx GPU session ($(date -u +%Y-%m-%dT%H:%M:%SZ), ${GPU_NAME:-no GPU}, $(el)s of ${BUDGET}s$([ "$SIM" = 1 ] && echo ', SIMULATE: CPU only, numbers meaningless')) ================"
    echo "bundle: ${DESCRIBE:-?} built ${BUILT:-?}; binaries: ${BIN_KIND:-prebuilt}; glibc ${GLIBC_VER:-?}; driver ${DRIVER:-?} (CUDA ${DRIVER_CUDA:-?})"
    printf '%-14s %-58s %6s\n' step status seconds
    while IFS=$'\t' read -r a b c; do printf '%-14s %-58s %6s\n' "$a" "$b" "$c"; done <"$TMPD/steps.tsv"
    if command -v "${SUMPY:-python3}" >/dev/null 2>&1; then
      GPU_NAME="${GPU_NAME:-}" DRIVER="${DRIVER:-}" DESCRIBE="${DESCRIBE:-}" SIM="$SIM" BUDGET="$BUDGET" ELAPSED="$(el)" \
        BIN_KIND="${BIN_KIND:-prebuilt}" "${SUMPY:-python3}" "$REPO/scripts/gpu/summary.py" table "$OUT" "$TMPD" 2>&1
    else
      echo "(no python3: the bench table and summary.json are left out; the JSON files are in $OUT)"
    fi
    while read -r n; do echo "note: $n"; done <"$TMPD/notes.txt"
    echo "outputs: $( (cd "$OUT" && ls; echo summary.txt) | sort -u | tr '\n' ' ')"
  } >"$TMPD/summary.txt" 2>&1
  cp -f "$TMPD/summary.txt" "$OUT/summary.txt"
}
finish() {
  write_summary
  tee -a "$LOG" <"$OUT/summary.txt"
  rm -rf "$TMPD"
  exit "$1"
}

# step NAME TIMEOUT NEED CMD...: CMD under `timeout` (clipped to the budget left) when at least
# NEED seconds are left; output to session.log and $TMPD/NAME.out. Returns CMD's status, 99 when
# not selected, 98 when skipped for time.
step() {
  local name=$1 tmo=$2 need=$3 l t1 rc dt st
  shift 3
  STEP_OUT=$TMPD/$name.out
  : >"$STEP_OUT"
  want "$name" || return 99
  l=$(left)
  if [ "$l" -lt "$need" ]; then
    row "$name" "skipped: ${l}s left, needs ${need}s" 0
    say "$name: skipped (${l}s left, needs ${need}s)"
    write_summary
    return 98
  fi
  [ "$tmo" -gt "$l" ] && tmo=$l
  say "$name: start (timeout ${tmo}s)"
  printf '\n===== %s (t=%ss, timeout %ss)\n+ %s\n' "$name" "$(el)" "$tmo" "$*" >>"$LOG"
  t1=$(date +%s)
  timeout -k 10 "$tmo" "$@" </dev/null 2>&1 | tee "$STEP_OUT" >>"$LOG"
  rc=${PIPESTATUS[0]}
  dt=$(($(date +%s) - t1))
  case $rc in
    0) st=PASS ;;
    77) st=SKIP ;;
    124 | 137) st="TIMEOUT after ${tmo}s" ;;
    *) st="FAIL rc=$rc" ;;
  esac
  printf '===== %s: %s in %ss\n' "$name" "$st" "$dt" >>"$LOG"
  say "$name: $st (${dt}s)"
  row "$name" "$st" "$dt"
  case $st in PASS | SKIP) ;; *) FAILED=$((FAILED + 1)) ;; esac
  write_summary
  return $rc
}
skip() { row "$1" "skipped: $2" 0; say "$1: skipped ($2)"; }

# ---- (a) the machine -------------------------------------------------------------------------------
DESCRIBE=$(sed -n 's/^describe=//p' "$BUNDLE/BUILD_INFO" 2>/dev/null)
BUILT=$(sed -n 's/^built_utc=//p' "$BUNDLE/BUILD_INFO" 2>/dev/null)
GLIBC_VER=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
say "rlx GPU session: bundle $BUNDLE ($DESCRIBE) -> $OUT (budget ${BUDGET}s$([ "$SIM" = 1 ] && echo ', SIMULATE'))"
{
  echo "--- uname: $(uname -a)"
  echo "--- os: $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"); glibc ${GLIBC_VER:-?}; cpus $(nproc); $(free -g 2>/dev/null | awk '/Mem:/{print $2 " GiB memory"}'); /tmp $(df -h /tmp | awk 'NR==2{print $4 " free"}')"
  echo "--- bundle:"; sed 's/^/    /' "$BUNDLE/BUILD_INFO" 2>/dev/null
  echo "--- tools: nvcc $(command -v nvcc) cmake $(cmake --version 2>/dev/null | head -1) ctest $(command -v ctest) ninja $(command -v ninja) gcc $(gcc -dumpfullversion 2>/dev/null) python $PY ($("$PY" --version 2>&1)) compute-sanitizer $(command -v compute-sanitizer) ncu $(command -v ncu) dpkg-deb $(command -v dpkg-deb)"
} 2>&1 | tee -a "$LOG"
[ "$(uname -m)" = x86_64 ] || note "this machine is $(uname -m): the bundle is x86_64; only a build from source there can work"
GPU=0
if command -v nvidia-smi >/dev/null 2>&1; then
  timeout 30 nvidia-smi 2>&1 | tee -a "$LOG"
  timeout 20 nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && GPU=1
  [ "$GPU" = 0 ] && [ -e /dev/nvidia0 ] && { GPU=1; note "nvidia-smi lists no GPU but /dev/nvidia0 exists: trying anyway"; }
  GPU_NAME=$(timeout 20 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  DRIVER=$(timeout 20 nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
  DRIVER_CUDA=$(timeout 20 nvidia-smi 2>/dev/null | grep -oE 'CUDA Version: [0-9.]+' | awk '{print $3}')
  [ "$GPU" = 1 ] && timeout 20 nvidia-smi -q >>"$LOG" 2>&1
else
  say "nvidia-smi: not found"
  [ -e /dev/nvidia0 ] && { GPU=1; note "no nvidia-smi, but /dev/nvidia0 exists: trying the GPU"; }
fi
if [ "$GPU" = 1 ] && [ -n "${DRIVER_CUDA:-}" ] && [ "${DRIVER_CUDA%%.*}" -lt 13 ]; then
  note "the driver supports CUDA $DRIVER_CUDA < 13.0: binaries built with CUDA 13 fail with 'driver version is insufficient'"
fi

# ---- (b) the libraries -----------------------------------------------------------------------------
# ctest's files name /tmp/rlx-gpu-session/{build,src}/...: the anchor becomes a folder whose build
# is the bundle's and whose src is this working tree.
ANCHOR_OK=0
FROM_BUILD=$(sed -n 's/^from=//p' "$BUNDLE/BUILD_INFO" 2>/dev/null)
if [ -n "$FROM_BUILD" ]; then
  say "bundle assembled from the build tree $FROM_BUILD (a test's): its ctest files name that tree, the anchor is left alone"
elif [ ! -e "$ANCHOR" ] || [ -e "$ANCHOR/.rlx-gpu-run" ]; then
  mkdir -p "$ANCHOR" && touch "$ANCHOR/.rlx-gpu-run" && ln -sfn "$BUNDLE/build" "$ANCHOR/build" && ln -sfn "$REPO" "$ANCHOR/src" \
    && ANCHOR_OK=1
fi
if [ "$ANCHOR_OK" = 1 ]; then BUILD=$ANCHOR/build; else
  [ -z "$FROM_BUILD" ] && note "$ANCHOR exists and is not this script's: ctest cannot resolve its paths, the gpu test programs run directly"
  BUILD=$BUNDLE/build
fi
BIN_KIND=prebuilt
FILL=$TMPD/fill
mkdir -p "$FILL"
find_cuda_dirs() {
  local cands=() d sp lib found
  [ -n "${RLX_GPU_CUDA_LIBDIR:-}" ] && cands+=("$RLX_GPU_CUDA_LIBDIR")
  cands+=(/usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib)
  for d in /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/targets/x86_64-linux/lib; do cands+=("$d"); done
  for sp in /opt/torch/.venv/lib/python3*/site-packages /usr/local/lib/python3*/dist-packages; do
    cands+=("$sp/nvidia/cu13/lib" "$sp/nvidia/cublas/lib" "$sp/nvidia/cuda_runtime/lib")
  done
  CUDA_DIRS=()
  for lib in libcublasLt.so.13 libcudart.so.13; do
    found=
    for d in "${cands[@]}"; do [ -e "$d/$lib" ] && { found=$d; break; }; done
    if [ -z "$found" ] && [ -d /opt/torch/.venv ]; then
      found=$(find /opt/torch/.venv -maxdepth 7 -name "$lib" -print -quit 2>/dev/null)
      found=${found%/*}
    fi
    if [ -n "$found" ]; then
      [[ " ${CUDA_DIRS[*]} " == *" $found "* ]] || CUDA_DIRS+=("$found")
      say "  $lib: $found"
    elif ldconfig -p 2>/dev/null | grep -q " $lib "; then
      say "  $lib: in the system's ldconfig cache"
    else
      say "  $lib: not found on this machine"
    fi
  done
}
set_ldp() { LDP=$(join_colon "$@" "${CUDA_DIRS[@]}" "$FILL"); }
ldd_problems() {
  local f
  for f in "$@"; do
    LD_LIBRARY_PATH=$LDP ldd -r "$f" 2>&1 | grep -E 'not found|undefined symbol|not a dynamic|wrong ELF|No such file' | sed "s|^|$f: |"
  done
}
check_libs() { # ELF files: fills $FILL from the bundle until they all resolve; else prints what is left
  local probs sos so n i d
  for i in 1 2 3 4 5 6; do
    probs=$(ldd_problems "$@")
    [ -z "$probs" ] && return 0
    sos=$( { printf '%s\n' "$probs" | grep -oE '[^[:space:]]+ => not found' | awk '{print $1}'
             printf '%s\n' "$probs" | grep -oE '/[^:[:space:]]+: version' | sed 's/: version$//' | xargs -r -n1 basename; } | sort -u)
    n=0
    for so in $sos; do
      [ -e "$FILL/$so" ] && continue
      for d in lib lib-extra lib-cuda; do
        if [ -e "$BUNDLE/$d/$so" ]; then
          ln -sf "$BUNDLE/$d/$so" "$FILL/$so"; say "  $so: missing here (or too old): the bundle's $d/$so"; n=$((n + 1)); break
        fi
      done
    done
    [ "$n" -eq 0 ] && break
  done
  LAST_PROBS=$probs
  printf '%s\n' "$probs" | sort -u | tee -a "$LOG" | head -12
  return 1
}
LAST_PROBS=
say "CUDA libraries (the machine's own first; the bundle carries only libcudart, as a last resort):"
find_cuda_dirs
mapfile -t ELVES < <(find "$BUNDLE/build" "$BUNDLE/lib" -type f | sort | while read -r f; do is_elf "$f" && echo "$f"; done)
chmod u+x "${ELVES[@]}" 2>/dev/null
set_ldp "$BUNDLE/build"
LIBS_OK=0
if check_libs "${ELVES[@]}" && v=$(env LD_LIBRARY_PATH="$LDP" LD_BIND_NOW=1 "$BUNDLE/build/rlx" --version 2>&1); then
  LIBS_OK=1
  say "libraries: all ${#ELVES[@]} ELF files of the bundle resolve (${v%%$'\n'*}, LD_BIND_NOW)"
  row libraries "PASS: ${#ELVES[@]} ELF files resolve" -
else
  say "libraries: the prebuilt binaries do NOT load here (above: file: problem)"
  if printf '%s' "$LAST_PROBS" | grep -q 'libcublasLt.so.13 => not found'; then
    note "libcublasLt.so.13 (CUDA 13, not carried) is neither in the toolkit nor in the pip wheels here: set RLX_GPU_CUDA_LIBDIR"
    FALLBACK=0
  fi
  row libraries "FAIL: the prebuilt binaries do not load" -
  FAILED=$((FAILED + 1))
fi
set_ldp "$BUILD"
RLX=$BUILD/rlx

# is the working tree here the source the bundle was built from?
STALE=0
if [ -s "$BUNDLE/src.sha256" ]; then
  changed=$(cd "$REPO" && sha256sum -c --quiet "$BUNDLE/src.sha256" 2>/dev/null | head -10 | tr '\n' ' ')
  if [ -n "$changed" ]; then
    STALE=1
    note "the working tree differs from the bundle's source ($DESCRIBE): ${changed:0:300}"
  else
    say "source: the working tree matches the bundle's source ($DESCRIBE)"
  fi
fi

if [ "$GPU" = 0 ] && [ "$SIM" != 1 ]; then
  say "no GPU on this machine: stopping after the library checks (--simulate runs every step on the simt/cpu devices)"
  [ "$LIBS_OK" = 1 ] && finish 0
  finish 2
fi

# ---- (c) a build there, when needed ----------------------------------------------------------------
do_fb=0
[ "$FALLBACK" = force ] && do_fb=1
[ "$LIBS_OK" = 0 ] && [ "$FALLBACK" != 0 ] && do_fb=1
[ "$STALE" = 1 ] && [ "$REBUILD" = auto ] && [ "$SIM" != 1 ] && do_fb=1
[ "$REBUILD" = 1 ] && do_fb=1
if [ "$do_fb" = 1 ]; then
  FB_BUILD=/tmp/rlx-gpu-fallback
  if step fallback-build 300 120 env RLX_GPU_FILL="$FILL" JOBS="$(nproc)" bash "$REPO/scripts/gpu/fallback-build.sh" "$REPO" "$FB_BUILD" "$BUNDLE"; then
    mapfile -t FB_ELVES < <(find "$FB_BUILD" -maxdepth 3 -type f \( -name rlx -o -name test-gpu -o -name simt-mma-gpu -o -name example-softcap-gpu -o -name 'librlx.so*' \) -not -path '*/CMakeFiles/*')
    OLD_LDP=$LDP
    set_ldp "$FB_BUILD"
    if check_libs "${FB_ELVES[@]}" && env LD_LIBRARY_PATH="$LDP" LD_BIND_NOW=1 "$FB_BUILD/rlx" --version >/dev/null 2>&1; then
      BUILD=$FB_BUILD; RLX=$FB_BUILD/rlx; ANCHOR_OK=0; LIBS_OK=1; CTEST_DIR=$FB_BUILD
      BIN_KIND="built here from the working tree"
      DESCRIBE="$DESCRIBE+working-tree-built-there"
      say "using the binaries built here: $BUILD"
    else
      LDP=$OLD_LDP
      note "the fallback build's binaries do not load either"
    fi
  fi
fi
[ "$LIBS_OK" = 1 ] || { note "no loadable rlx binary: nothing left to run"; finish 2; }
export RLX_BENCH_COMMIT=${DESCRIBE:-unknown}
[ "$STALE" = 1 ] && [ "$BIN_KIND" = prebuilt ] && RLX_BENCH_COMMIT="$DESCRIBE (bundle; the working tree differs)"
R=(env LD_LIBRARY_PATH="$LDP" RLX_BENCH_COMMIT="$RLX_BENCH_COMMIT")
say "rlx: $RLX; LD_LIBRARY_PATH for rlx: $LDP"
# rlx for Python (hf_prefill.py): a wrapper sets the path for rlx alone, torch keeps its libraries
printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" RLX_BENCH_COMMIT="%s" exec "%s" "$@"\n' "$LDP" "$RLX_BENCH_COMMIT" "$RLX" >"$TMPD/rlx"
chmod +x "$TMPD/rlx"
DEV=cuda
[ "$SIM" = 1 ] && DEV=simt

# ---- gpu tests and rlx check -------------------------------------------------------------------------
CTEST_DIR=${CTEST_DIR:-$BUILD}
if [ "$ANCHOR_OK" = 1 ] || [ "$BIN_KIND" != prebuilt ] && command -v ctest >/dev/null 2>&1; then
  step gpu-tests 150 30 "${R[@]}" bash -c 'cd "$0" && exec ctest -L gpu --output-on-failure --timeout 120' "$CTEST_DIR"
else
  step gpu-tests 150 30 "${R[@]}" bash -c '
    rc=0
    for t in tests/test-gpu tests/simt/simt-mma-gpu examples/example-softcap-gpu; do
      [ -x "$0/$t" ] || { echo "$t: not built"; continue; }
      echo "=== $t"; "$0/$t"; r=$?; echo "=== $t: exit $r"
      [ $r -eq 0 ] || [ $r -eq 77 ] || rc=1
    done; exit $rc' "$BUILD"
fi
if [ -s "$STEP_OUT" ]; then
  np=$(grep -cE 'Test +#[0-9]+: .* Passed|=== .*: exit 0$' "$STEP_OUT")
  ns=$(grep -cE '\*\*\*Skipped|: exit 77$' "$STEP_OUT")
  amend_last "$np passed, $ns skipped"
  if [ "$GPU" = 1 ] && [ "$ns" -gt 0 ]; then note "gpu tests SKIPPED on a GPU machine: the device was not usable (session.log)"; FAILED=$((FAILED + 1)); fi
fi
checks() { local c; c=$(grep -E '^[0-9]+ checks, [0-9]+ failed' "$STEP_OUT" | tail -1); [ -n "$c" ] && amend_last "$c"; }
for fu in fused none; do
  step "check-$fu" 90 20 "${R[@]}" "$RLX" check --device "$DEV" --fusion "$fu"
  checks
done

# ---- compute-sanitizer on the rlx check shapes -------------------------------------------------------
CS=$(command -v compute-sanitizer 2>/dev/null || ls /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck racecheck; do
  want "$tool" || continue
  if [ "$SIM" = 1 ]; then # the plumbing only: simt's own checks, the reverse thread order for races
    ord=forward; [ "$tool" = racecheck ] && ord=reverse
    step "$tool" 150 20 "${R[@]}" RLX_SIMT_ORDER=$ord "$RLX" check --device simt --fusion fused
  elif [ -z "$CS" ]; then
    skip "$tool" "no compute-sanitizer on this machine"; continue
  else
    step "$tool" 150 40 "${R[@]}" "$CS" --tool "$tool" --error-exitcode 3 --print-limit 20 "$RLX" check --device cuda --fusion fused
  fi
  e=$(grep -E 'ERROR SUMMARY: [0-9]+ error|RACECHECK SUMMARY: [0-9]+ hazard' "$STEP_OUT" | tail -1 | sed 's/^=* *//')
  [ -n "$e" ] && amend_last "$e"
  checks
done

# ---- benchmarks: rlx bench, with HF side by side when torch is there ----------------------------------
HAVE_TORCH=0
"$PY" -c 'import torch, transformers, numpy' >>"$LOG" 2>&1 && HAVE_TORCH=1
[ "$HAVE_TORCH" = 0 ] && note "$PY cannot import torch, transformers and numpy: rlx bench without the HF baseline"
if [ "$HAVE_TORCH" = 1 ] && [ "$HF_COMPILE" = auto ]; then
  why=$("$PY" - <<'EOF'
import os, shutil, sysconfig
inc = sysconfig.get_paths().get("include", "")
h = os.path.exists(os.path.join(inc, "Python.h"))
cc = shutil.which("cc") or shutil.which("gcc")
print("ok" if h and cc else f"Python.h {'found' if h else 'missing'} in {inc}, C compiler {cc or 'missing'}")
EOF
)
  if [ "$why" = ok ]; then HF_COMPILE=1; else HF_COMPILE=0; note "torch.compile left out (Triton needs them): $why"; fi
fi
bench() { # NAME SHAPE TIMEOUT NEED
  local name=$1 shape=$2 tmo=$3 need=$4 json=$OUT/$1.json
  # simulate: the HF plumbing once (hf_prefill.py --cpu-smoke takes minutes on a CPU), then rlx alone
  if [ "$HAVE_TORCH" = 1 ] && { [ "$SIM" != 1 ] || [ "$name" = bench-1b ]; }; then
    local hf=(--rlx "$TMPD/rlx" --workdir /tmp/rlx-gpu-hf --json "$json" --fusion both)
    if [ "$SIM" = 1 ]; then hf+=(--cpu-smoke --no-compile); need=20; else hf+=(--shape "$shape" --batch 4 --seq 2048 --repeat 10 --warmup 3); fi
    [ "$HF_COMPILE" = 1 ] || hf+=(--no-compile)
    step "$name" "$tmo" "$need" env PYTHONUNBUFFERED=1 "$PY" "$REPO/bench/baselines/hf_prefill.py" "${hf[@]}"
    # the checkpoint stays for a second call; the next shape's replaces it (disk)
    find /tmp/rlx-gpu-hf -maxdepth 1 -name 'ckpt-*' ! -name "ckpt-$shape-*" -exec rm -rf {} + 2>/dev/null
  elif [ "$SIM" = 1 ]; then
    step "$name" "$tmo" 20 "${R[@]}" "$RLX" bench --shape tiny --device simt --batch 1 --seq 16 --repeat 2 --warmup 1 \
      --gemm 0 --fusion both --json "$json" --no-progress
  else
    step "$name" "$tmo" "$need" "${R[@]}" "$RLX" bench --shape "$shape" --device cuda --batch 4 --seq 2048 --fusion both \
      --repeat 10 --warmup 3 --json "$json" --no-progress
  fi
}
bench bench-1b llama-3.2-1b 240 80

# ---- ncu: one flash attention launch -----------------------------------------------------------------
NCU=$(command -v ncu 2>/dev/null || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if want ncu-flash; then
  if [ "$SIM" = 1 ]; then # the plumbing: the same prefill without the profiler, on simt
    step ncu-flash 120 20 "${R[@]}" "$RLX" bench --shape tiny --device simt --batch 1 --seq 16 --fusion fused --warmup 0 \
      --repeat 1 --gemm 0 --no-progress --no-breakdown
  elif [ -z "$NCU" ]; then
    skip ncu-flash "no ncu on this machine"
  else
    # warmup 1 + repeat 1: the 16 layers' launches of the warm-up prefill are skipped; the first
    # launch of the timed prefill is profiled (the full section set, one launch), clocks untouched
    step ncu-flash 120 50 "${R[@]}" "$NCU" --clock-control none --target-processes all --kernel-name regex:flash_attention \
      --launch-skip 16 --launch-count 1 --set full -f -o "$OUT/flash" \
      "$RLX" bench --shape llama-3.2-1b --device cuda --batch 4 --seq 2048 --fusion fused --warmup 1 --repeat 1 \
      --gemm 0 --no-progress --no-breakdown
    if [ -f "$OUT/flash.ncu-rep" ]; then
      timeout 60 "$NCU" --import "$OUT/flash.ncu-rep" --page details >>"$LOG" 2>&1
      d=$(timeout 30 "$NCU" --import "$OUT/flash.ncu-rep" --page details 2>/dev/null \
        | grep -E 'Duration|Registers Per Thread|Achieved Occupancy|Compute \(SM\) Throughput|Memory Throughput|Dynamic Shared Memory' \
        | head -6 | tr -s ' ' | tr '\n' ';')
      [ -n "$d" ] && note "flash attention (ncu): $d"
    elif grep -q ERR_NVGPUCTRPERM "$STEP_OUT"; then
      note "ncu: no permission for the GPU performance counters (ERR_NVGPUCTRPERM)"
    fi
  fi
fi

bench bench-3b llama-3.2-3b 240 100
bench bench-8b llama-3.1-8b 300 150

[ "$FAILED" -gt 0 ] && finish 1
finish 0
