#!/usr/bin/env bash
# The GPU session's dry run on a machine without a GPU (ctest gpu-session-dry-run): a bundle
# assembled from this build tree (scripts/gpu-session.sh bundle --from, no rebuild), then
# `scripts/gpu-session.sh run` must check the libraries, stop cleanly (exit 0) before any step,
# write summary.txt and summary.json into OUT (at most 8 files) and print the table last; the
# results helper must turn that summary into a RESULTS.md entry; usage errors exit 2.
#   test-dry-run.sh SOURCE_DIR BUILD_DIR
set -u
SRC=$1 BUILD=$2
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "a GPU is present: the dry run does not apply here"; exit 77
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/rlx-gpu-dry.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; [ -f "$T/run.txt" ] && tail -40 "$T/run.txt"; exit 1; }
bash "$SRC/scripts/gpu-session.sh" bundle --from "$BUILD" "$T/bundle" >"$T/bundle.txt" 2>&1 || { cat "$T/bundle.txt"; fail "bundle --from"; }
[ -x "$T/bundle/build/rlx" ] && [ -f "$T/bundle/build/CTestTestfile.cmake" ] && [ -s "$T/bundle/BUILD_INFO" ] || fail "bundle layout"
[ -s "$T/bundle/src.sha256" ] || fail "no src.sha256"
# the programs find the bundle's librlx by its SONAME (not only through their RUNPATH into this tree)
n=0
for f in $(find "$T/bundle/build" -type f -perm -u+x); do
  objdump -p "$f" 2>/dev/null | grep -qE 'NEEDED +librlx\.so' || continue
  n=$((n + 1))
  LD_LIBRARY_PATH="$T/bundle/build" ldd "$f" | grep -qE "librlx\.so[.0-9]* => $T/bundle/build/" \
    || { LD_LIBRARY_PATH="$T/bundle/build" ldd "$f"; fail "$f: the bundle's librlx is not under its SONAME"; }
done
[ "$n" -gt 0 ] || fail "no program of the bundle links librlx.so (the examples do)"
# no LD_LIBRARY_PATH, as on a fresh machine
env -u LD_LIBRARY_PATH OUT="$T/out" bash "$SRC/scripts/gpu-session.sh" run --bundle "$T/bundle" --budget 60 >"$T/run.txt" 2>&1
rc=$?
[ "$rc" -eq 0 ] || fail "run exited $rc"
grep -q 'no GPU on this machine: stopping after the library checks' "$T/run.txt" || fail "no stop message"
grep -qE '^libraries +PASS: [0-9]+ ELF files resolve' "$T/run.txt" || fail "no libraries row"
tail -n 3 "$T/run.txt" | grep -q '^outputs: ' || fail "the summary is not printed last"
grep -qE '^(gpu-tests|check-fused|bench-1b) ' "$T/run.txt" && fail "a step ran without a GPU"
for f in session.log summary.txt summary.json; do [ -s "$T/out/$f" ] || fail "no $f in OUT"; done
n=$(find "$T/out" -type f | wc -l)
[ "$n" -le 8 ] || fail "$n files in OUT (at most 8 come back)"
bash "$SRC/scripts/gpu-session.sh" results "$T/out" >"$T/entry.md" 2>&1 || { cat "$T/entry.md"; fail "results"; }
grep -q '^### .* — no GPU — GPU session' "$T/entry.md" && grep -q '^| libraries | PASS' "$T/entry.md" || { cat "$T/entry.md"; fail "results entry"; }
# usage errors
bash "$SRC/scripts/gpu-session.sh" run --bundle "$T/nothing" >/dev/null 2>&1; [ $? -eq 2 ] || fail "a missing bundle must exit 2"
bash "$SRC/scripts/gpu-session.sh" run --budget x >/dev/null 2>&1; [ $? -eq 2 ] || fail "a bad --budget must exit 2"
bash "$SRC/scripts/gpu-session.sh" frobnicate >/dev/null 2>&1; [ $? -eq 2 ] || fail "an unknown command must exit 2"
bash "$SRC/scripts/gpu-session.sh" --help | grep -q -- '--simulate' || fail "--help"
echo "ok: dry run in $(grep -oE '\[ *[0-9]+s\]' "$T/run.txt" | tail -1)"
