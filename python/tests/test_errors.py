"""Every rlx failure is an RlxError carrying rlx_last_error()'s text; misuse of the Python side
is a ValueError; the package, the library and the CLI agree on the version."""
import os
import re

import numpy as np
import pytest

import rlx


def test_missing_model_names_the_path():
    with pytest.raises(rlx.RlxError) as e:
        rlx.Weights("/nonexistent/rlx-model")
    assert e.value.name == "RLX_ERR_IO" and e.value.status == 2
    assert "/nonexistent/rlx-model" in e.value.message and "/nonexistent/rlx-model" in str(e.value)


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "model.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{\"a\":1}  ")
    with pytest.raises(rlx.RlxError) as e:
        rlx.run(tmp_path, [[1, 2]])
    assert e.value.name == "RLX_ERR_FORMAT" and "model.safetensors" in e.value.message


def test_bad_config(fixtures, tmp_path):
    d = os.path.join(fixtures, "llama", "gqa_tied_f32")
    for f in os.listdir(d):
        os.symlink(os.path.join(d, f), tmp_path / f) if f != "config.json" else None
    (tmp_path / "config.json").write_text('{"model_type": "llama", "hidden_size": 64}')
    with pytest.raises(rlx.RlxError) as e:
        rlx.run(tmp_path, [[1, 2]])
    assert e.value.name == "RLX_ERR_CONFIG" and "reading the config" in e.value.message


def test_token_out_of_range_and_over_capacity(fixtures):
    d = os.path.join(fixtures, "llama", "gqa_tied_f32")  # vocab 97
    with pytest.raises(rlx.RlxError) as e:
        rlx.run(d, [[1, 97]], device="cpu")
    assert e.value.name == "RLX_ERR_TOKEN_RANGE" and "97" in e.value.message
    with rlx.Weights(d) as w:
        s = rlx.Model.llama(w, batch=1, seq=4, device="cpu").session()
        with pytest.raises(rlx.RlxError) as e:
            s.prefill([1, 2, 3, 4, 5])
        assert e.value.name == "RLX_ERR_INVALID_ARGUMENT" and e.value.message
        with pytest.raises(rlx.RlxError):
            s.prefill([[1], [2]])  # two sequences, capacity one


def test_python_side_misuse(fixtures):
    d = os.path.join(fixtures, "llama", "gqa_tied_f32")
    for bad in ([], [[]], [[1, -1]], [[1.5, 2]], [[2**31]]):
        with pytest.raises(ValueError):
            rlx.run(d, bad)
    with rlx.Weights(d) as w:
        with pytest.raises(ValueError, match="device"):
            rlx.Model.llama(w, device="gpu")
        with pytest.raises(ValueError, match="fusion"):
            rlx.Model.llama(w, fusion="sometimes")
        with pytest.raises(KeyError):
            w["no.such.tensor"]
        m = rlx.Model.llama(w, batch=1, seq=8, device="cpu")
        s = m.session()
        with pytest.raises(rlx.RlxError, match="no prefill"):
            s.output()
        s.close()
        with pytest.raises(ValueError, match="closed"):
            s.prefill([1, 2])
    with pytest.raises(ValueError, match="closed"):
        w.names()


def test_simt_is_not_in_the_library(fixtures):
    with rlx.Weights(os.path.join(fixtures, "llama", "gqa_tied_f32")) as w:
        with pytest.raises(rlx.RlxError) as e:
            rlx.Model.llama(w, device="simt")
    assert e.value.name == "RLX_ERR_NO_DEVICE" and "simt" in e.value.message


def test_profile_errors_name_the_file(fixtures, tmp_path):
    p = tmp_path / "bad.rlx.toml"
    p.write_text("[fusion]\npolicy = 7\n")
    with rlx.Weights(os.path.join(fixtures, "llama", "gqa_tied_f32")) as w:
        with pytest.raises(rlx.RlxError) as e:
            rlx.Model.llama(w, profile=p)
    assert e.value.name == "RLX_ERR_PROFILE" and "bad.rlx.toml" in e.value.message


def test_versions_agree(cli):
    out = cli("version").stdout.splitlines()
    assert out[0] == "rlx " + rlx.version()
    assert rlx.__version__ == rlx.version()
    assert set(rlx.devices()) <= set(out[1].split()[1:]) and "cpu" in rlx.devices()
    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml")) as f:
        assert re.search(r'^version = "%s"$' % re.escape(rlx.__version__), f.read(), re.M)


def test_weights_read_tensors_as_stored(fixtures):
    import json
    import struct
    d = os.path.join(fixtures, "llama", "gqa_tied_f32")
    raw = open(os.path.join(d, "model.safetensors"), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    with rlx.Weights(d) as w:
        names = sorted(k for k in header if k != "__metadata__")
        assert w.names() == names
        for name in names[:6]:
            h = header[name]
            a, b = h["data_offsets"]
            ref = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(h["shape"])
            assert np.array_equal(w[name], ref), name
    bf = os.path.join(fixtures, "llama", "mqa_untied_bf16")
    with rlx.Weights(bf) as w:
        t = w["model.norm.weight"]
        assert t.dtype == np.float32 and t.ndim == 1 and np.isfinite(t).all()


def test_the_library_it_was_told_to_use():
    """scripts/test-python.sh installs the package with the library bundled: it must be that copy
    (and the installed package, not the source tree) that the tests ran."""
    want = os.environ.get("RLX_EXPECT_LIBRARY")
    if not want:
        pytest.skip("RLX_EXPECT_LIBRARY is not set (scripts/test-python.sh sets it)")
    assert want == "bundled"
    pkg = os.path.dirname(os.path.realpath(rlx.__file__))
    assert os.path.realpath(rlx.library_path()).startswith(os.path.join(pkg, "_lib") + os.sep), rlx.library_path()
    assert "site-packages" in pkg, pkg
