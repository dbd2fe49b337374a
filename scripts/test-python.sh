#!/usr/bin/env bash
# The Python package (python/) in a fresh virtualenv, against an install of the build:
#   1. cmake --install BUILD into a temporary prefix;
#   2. a new venv with numpy and pytest from PyPI;
#   3. pip install of the package with that prefix's librlx.so bundled (RLX_BUNDLE_LIBRARY), then
#      python -m pytest python/tests, comparing the package's outputs with the installed rlx's;
#   4. pip install of the plain package over it: it must find the prefix's librlx.so through
#      pkg-config alone.
#   scripts/test-python.sh [BUILD_DIR]      (default build-test)
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
build=${1:-build-test}
work=$src/$build/python-test
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" > "$work/install.log"
pcdir=$(dirname "$(find "$prefix" -path '*/pkgconfig/rlx.pc' | head -n 1)")
lib=$(cd "$pcdir/.." && pwd)/librlx.so

python3 -m venv "$work/venv" || { echo "test-python: python3 -m venv failed (Debian: apt install python3-venv)" >&2; exit 1; }
py=$work/venv/bin/python
pip=("$py" -m pip --disable-pip-version-check -q)
"${pip[@]}" install numpy pytest
# pip builds in the directory it is given: a copy keeps build/ and *.egg-info out of the tree.
cp -r "$src/python" "$work/src"

RLX_BUNDLE_LIBRARY=$lib "${pip[@]}" install "$work/src"
(cd "$work" && env -u RLX_LIBRARY RLX_CLI="$prefix/bin/rlx" RLX_FIXTURES="$src/tests/fixtures" RLX_EXPECT_LIBRARY=bundled \
   "$py" -m pytest -p no:cacheprovider -q -rs "$src/python/tests")

"${pip[@]}" install --force-reinstall --no-deps "$work/src"
(cd "$work" && env -u RLX_LIBRARY PKG_CONFIG_PATH="$pcdir" "$py" - "$prefix" "$src/tests/fixtures" <<'PY'
import os, sys, rlx
prefix, fixtures = os.path.realpath(sys.argv[1]), sys.argv[2]
path = os.path.realpath(rlx.library_path())
assert path.startswith(prefix + os.sep), "rlx found %s, not the install in %s" % (path, prefix)
assert rlx.run(os.path.join(fixtures, "llama", "single_token_f32"), [[3]]).shape == (1, 97)
print("test-python: the plain package found %s through pkg-config and ran" % path)
PY
)
