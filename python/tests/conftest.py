"""Shared fixtures: the committed HF fixtures (RLX_FIXTURES, default ../../tests/fixtures) and the
rlx command the package is compared with (RLX_CLI, default `rlx` on PATH)."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def fixtures():
    d = os.environ.get("RLX_FIXTURES") or os.path.join(HERE, "..", "..", "tests", "fixtures")
    if not os.path.isdir(os.path.join(d, "llama")):
        pytest.fail("no HF fixtures at %s (set RLX_FIXTURES to the tree's tests/fixtures)" % d)
    return d


@pytest.fixture(scope="session")
def cli():
    exe = os.environ.get("RLX_CLI") or shutil.which("rlx")
    if not exe:
        pytest.fail("the rlx command is needed to compare against: set RLX_CLI or put rlx on PATH")

    def run(*args, ok=True):
        r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=600)
        if ok:
            assert r.returncode == 0, "rlx %s: exit %d: %s" % (" ".join(map(str, args)), r.returncode, r.stderr)
        return r

    return run


def llama_tokens(case_dir):
    with open(os.path.join(case_dir, "tokens.json")) as f:
        return json.load(f)["tokens"]


def ids_arg(seq):
    return ",".join(str(int(t)) for t in seq)


def npy(path):
    return np.load(path)
