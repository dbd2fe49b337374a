#!/usr/bin/env python3
"""The Python package's ctypes mirror (python/rlx/_capi.py) against the C headers and library:
every mirrored struct has the size, field offsets and field sizes the C compiler gives it, every
mirrored constant its value, and the library exports every function the package declares and
loads under the package's ABI check. Standard library only (no numpy), so ctest runs it in every
build: a header change that breaks the package fails here.

  check_python_abi.py CC INCLUDE_DIR LIBRLX_SO|-
"""
import ctypes
import importlib.util
import os
import subprocess
import sys
import tempfile

cc, include, lib = sys.argv[1:4]
here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("rlx_capi", os.path.join(here, "..", "..", "python", "rlx", "_capi.py"))
capi = importlib.util.module_from_spec(spec)
spec.loader.exec_module(capi)

lines = ["#include <rlx/flow.h>", "#include <rlx/encoder.h>", "#include <rlx/profile.h>", "#include <rlx/generate.h>",
         "#include <rlx/tokenizer.h>", "#include <stddef.h>",
         "#include <stdio.h>", "int main(void) {"]
for cls, cname in capi.STRUCTS.items():
    lines.append('    printf("S %s %%zu\\n", sizeof(%s));' % (cname, cname))
    for f in cls._fields_:
        lines.append('    printf("F %s %s %%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s *)0)->%s));' %
                     (cname, f[0], cname, f[0], cname, f[0]))
for name in capi.CONSTANTS:
    lines.append('    printf("C %s %%lld\\n", (long long)(%s));' % (name, name))
lines += ["    return 0;", "}"]

fail = []
with tempfile.TemporaryDirectory() as tmp:
    src, exe = os.path.join(tmp, "layout.c"), os.path.join(tmp, "layout")
    with open(src, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-I", include, src, "-o", exe], capture_output=True, text=True)
    if r.returncode:
        print("FAIL: the layout program does not compile (a mirrored struct, field or constant is gone?):\n" + r.stderr[:4000])
        sys.exit(1)
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.split("\n")

by_name = {cname: cls for cls, cname in capi.STRUCTS.items()}
n_fields = 0
for line in filter(None, out):
    kind, *rest = line.split()
    if kind == "S":
        cls = by_name[rest[0]]
        if ctypes.sizeof(cls) != int(rest[1]):
            fail.append("%s: sizeof is %s in C, %d in python/rlx/_capi.py (a field added or removed?)" %
                        (rest[0], rest[1], ctypes.sizeof(cls)))
    elif kind == "F":
        n_fields += 1
        cls, field, off, size = by_name[rest[0]], rest[1], int(rest[2]), int(rest[3])
        d = getattr(cls, field)
        if (d.offset, d.size) != (off, size):
            fail.append("%s.%s: offset %d size %d in C, offset %d size %d in the mirror" % (rest[0], field, off, size, d.offset, d.size))
    elif kind == "C":
        if capi.CONSTANTS[rest[0]] != int(rest[1]):
            fail.append("%s is %s in C, %d in the mirror" % (rest[0], rest[1], capi.CONSTANTS[rest[0]]))

if lib != "-":  # "-": a sanitized build, whose library python cannot load
    os.environ["RLX_LIBRARY"] = lib
    try:
        capi.load()
    except ImportError as e:
        fail.append(str(e))

for f in fail:
    print("FAIL:", f)
print("python ABI: %d structs, %d fields, %d constants, %s functions checked, %d failed" %
      (len(capi.STRUCTS), n_fields, len(capi.CONSTANTS), len(capi.FUNCTIONS) if lib != "-" else "no", len(fail)))
sys.exit(1 if fail else 0)
