"""librlx.so does not link NCCL: it loads libnccl.so.2 at its first NCCL call. So importing rlx
maps no NCCL, torch (which ships its own) imports fine after rlx, and rlx's NCCL calls then use
torch's copy: one NCCL per process, whichever came first."""
import subprocess
import sys

import pytest


def python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


def test_import_maps_no_nccl():
    r = python("import rlx\nprint(any('libnccl' in line for line in open('/proc/self/maps')))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False", "importing rlx mapped a libnccl: librlx.so links NCCL"


def test_torch_imports_after_rlx():
    pytest.importorskip("torch", reason="torch is not installed (optional dependency)")
    r = python("import rlx\nimport torch\nprint(torch.__version__)")
    assert r.returncode == 0, "import torch after rlx failed: %s" % r.stderr
