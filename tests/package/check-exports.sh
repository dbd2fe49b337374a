#!/usr/bin/env bash
# librlx.so exports exactly the public API: every dynamic symbol it defines is a function
# declared RLX_API in include/rlx/*.h, and every such function is exported. Nothing else leaks:
# no rlx__ internals, no toml++ or C++ standard library instantiations. Its SONAME is versioned.
#   check-exports.sh LIBRLX_SO SOURCE_DIR
set -u
lib=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' | sort -u > "$tmp/exported"
# The function name is the last identifier before the first '(' on an RLX_API line.
grep -h '^RLX_API' "$src"/include/rlx/*.h | sed 's/(.*//' | grep -oE '[A-Za-z_][A-Za-z0-9_]*$' | sort -u > "$tmp/declared"
fail=0
extra=$(comm -23 "$tmp/exported" "$tmp/declared")
missing=$(comm -13 "$tmp/exported" "$tmp/declared")
if [ -n "$extra" ]; then
  echo "FAIL: $lib exports symbols no public header declares (internals are rlx__ or static; see cmake/librlx.map):"
  echo "$extra" | head -40 | sed 's/^/  /'
  fail=1
fi
if [ -n "$missing" ]; then
  echo "FAIL: functions declared RLX_API in include/rlx/ that $lib does not export (undefined, or misnamed):"
  echo "$missing" | sed 's/^/  /'
  fail=1
fi
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
case "$soname" in
  librlx.so.[0-9]*) ;;
  *) echo "FAIL: SONAME '$soname' is not librlx.so.<version>"; fail=1 ;;
esac
echo "exports: $(wc -l < "$tmp/exported") exported, $(wc -l < "$tmp/declared") declared, soname $soname"
exit $fail
