#!/usr/bin/env bash
# Every public header (include/rlx/*.h, found by glob when the test runs, so new headers are
# covered without a reconfigure) compiles on its own as C99 and as C++17, pedantic, warnings as
# errors, with nothing on the include path but include/: no internal header (host/, fusion/,
# kernels/) and no CUDA header can be reached from a public one, and each has its extern "C".
#   check-headers.sh CC CXX SOURCE_DIR
set -u
cc=$1 cxx=$2 src=$(cd "$3" && pwd -P)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0 n=0
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
for h in "$src"/include/rlx/*.h; do
  name=rlx/$(basename "$h")
  n=$((n + 1))
  printf '#include <%s>\n' "$name" > "$tmp/one.c"
  cp "$tmp/one.c" "$tmp/one.cpp"
  "$cc" -std=c99 -pedantic-errors -Wall -Wextra -Werror -fsyntax-only -I "$src/include" "$tmp/one.c" > "$tmp/log" 2>&1 ||
    bad "$name" "does not compile alone as C99: $(head -c 2000 "$tmp/log")"
  "$cxx" -std=c++17 -pedantic-errors -Wall -Wextra -Werror -fsyntax-only -I "$src/include" "$tmp/one.cpp" > "$tmp/log" 2>&1 ||
    bad "$name" "does not compile alone as C++17: $(head -c 2000 "$tmp/log")"
  # Every file the header pulls in is a system header or another public header.
  if "$cc" -std=c99 -M -I "$src/include" "$tmp/one.c" > "$tmp/deps" 2> "$tmp/log"; then
    for d in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$tmp/deps"); do
      [ "$d" = "$tmp/one.c" ] && continue
      real=$(realpath -m "$d")
      case "$real" in
        "$src"/include/rlx/*.h) ;;
        "$src"/*) bad "$name" "reaches $real, which is not a public header" ;;
      esac
    done
  else
    bad "$name" "dependency scan failed: $(head -c 2000 "$tmp/log")"
  fi
  grep -q '^#include <cuda' "$h" && bad "$name" "includes a CUDA header: streams are void * so non-CUDA users compile"
  grep -q 'extern "C"' "$h" || bad "$name" 'has no extern "C" block for C++ users'
done
[ "$n" -gt 0 ] || bad include/rlx "no headers found under $src/include/rlx"
echo "public headers: $n checked, $fail failed"
[ "$fail" -eq 0 ]
