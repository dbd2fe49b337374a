"""Optional bundling: RLX_BUNDLE_LIBRARY=/path/to/librlx.so pip install ./python (or pip wheel)
copies that library into the package (rlx/_lib/, under its SONAME), so the wheel works without
RLX_LIBRARY or an installed rlx (it still needs librlx.so's own dependencies: jansson, and the
CUDA runtime and cuBLASLt for a CUDA build). Without it the package is pure Python and finds an
installed librlx.so at import time. Nothing is compiled either way."""
import os
import re
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

BUNDLE = os.environ.get("RLX_BUNDLE_LIBRARY")
HERE = os.path.dirname(os.path.abspath(__file__))


def soname():
    with open(os.path.join(HERE, "rlx", "_capi.py")) as f:
        m = re.search(r"^ABI_MAJOR, ABI_MINOR = (\d+), (\d+)$", f.read(), re.M)
    return "librlx.so.%s.%s" % m.groups()


class BuildPy(build_py):
    def run(self):
        super().run()
        if BUNDLE:
            if not os.path.isfile(BUNDLE):
                raise SystemExit("RLX_BUNDLE_LIBRARY=%s: no such file" % BUNDLE)
            dst = os.path.join(self.build_lib, "rlx", "_lib")
            os.makedirs(dst, exist_ok=True)
            shutil.copyfile(os.path.realpath(BUNDLE), os.path.join(dst, soname()))


class MaybeBinary(Distribution):
    # A bundled library makes the wheel specific to this platform.
    def has_ext_modules(self):
        return bool(BUNDLE)


setup(cmdclass={"build_py": BuildPy}, distclass=MaybeBinary)
