"""rlx.run / Model.llama / Session against `rlx run --logits-out` (byte for byte: the same library
code on the CPU) and against transformers' own logits (NUMERICS.md: max|Δ|/max|ref| <= 1e-4,
argmax equal at every position)."""
import os

import numpy as np
import pytest

import rlx
from conftest import ids_arg, llama_tokens

CASES = ["gqa_tied_f32", "mqa_untied_bf16", "llama3_scaling_f32", "head_dim_explicit_f32", "sharded_bf16",
         "legacy_config_f32", "f16", "single_token_f32"]


@pytest.mark.parametrize("case", CASES)
def test_run_equals_cli_and_transformers(case, fixtures, cli, tmp_path):
    d = os.path.join(fixtures, "llama", case)
    toks = llama_tokens(d)
    out = tmp_path / "cli.npy"
    args = ["run", "--model", d, "--all-logits", "--device", "cpu", "--top-k", "0", "--logits-out", out]
    for t in toks:
        args += ["--tokens", ids_arg(t)]
    cli(*args)
    ref_cli = np.load(out)
    got = rlx.run(d, toks, all_logits=True, device="cpu")
    assert got.dtype == np.float32 and got.shape == ref_cli.shape
    assert np.array_equal(got, ref_cli), "max |Δ| %g" % np.abs(got - ref_cli).max()
    hf = np.load(os.path.join(d, "logits.npy")).reshape(got.shape)
    assert np.abs(got - hf).max() / np.abs(hf).max() <= 1e-4
    assert np.array_equal(got.argmax(-1), hf.argmax(-1))


def test_last_token_logits_and_session_reuse(fixtures, cli, tmp_path):
    d = os.path.join(fixtures, "llama", "gqa_tied_f32")
    toks = llama_tokens(d)
    out = tmp_path / "cli.npy"
    cli("run", "--model", d, "--tokens", ids_arg(toks[0]), "--tokens", ids_arg(toks[1][:4]), "--device", "cpu",
        "--logits-out", out)
    ref = np.load(out)
    with rlx.Weights(d) as w:
        m = rlx.Model.llama(w, batch=2, seq=7, device="cpu")
        assert (m.device, m.output_width, m.max_tokens, m.max_sequences) == ("cpu", 97, 14, 2)
        s = m.session()
        # one session, many prefills: ragged, then one sequence, then the ragged batch again
        a = s([toks[0], toks[1][:4]])
        assert s.output_shape == (2, 97)
        one = s(toks[0])
        b = s.prefill([np.array(toks[0]), np.array(toks[1][:4], dtype=np.int64)]).output()
    assert np.array_equal(a, ref) and np.array_equal(b, ref)
    assert np.array_equal(one[0], ref[0])


def test_random_weights_model_runs_and_plans():
    w = rlx.Weights.random_llama("tiny", seed=3, dtype="bf16")
    assert "model.embed_tokens.weight" in w and len(w) == len(w.names())
    assert w.config["model_type"] == "llama"
    m = rlx.Model.llama(w, batch=1, seq=8, device="cpu")
    logits = m.session()([1, 2, 3])
    assert logits.shape == (1, m.output_width) and np.isfinite(logits).all()
    assert "kernel plan" in m.plan()
