"""rlx.embed / Model.encoder against `rlx embed --out`, byte for byte, and against transformers'
pooled outputs (NUMERICS.md's 1e-4 bound)."""
import os

import numpy as np
import pytest

import rlx
from conftest import ids_arg

CASES = [("bert_token_types_f32", True), ("bert_single_type_f32", False), ("bert_prefixed_mlm_f32", False),
         ("nomic_bert_f32", False)]


def cli_embed(cli, d, seqs, types, pool, tmp_path, normalize=False):
    out = tmp_path / ("e-%s.npy" % pool)
    args = ["embed", "--model", d, "--pool", pool, "--device", "cpu", "--out", out]
    for s in seqs:
        args += ["--tokens", ids_arg(s)]
    for t in types or []:
        args += ["--token-types", ids_arg(t)]
    if normalize:
        args.append("--normalize")
    cli(*args)
    return np.load(out)


@pytest.mark.parametrize("case,typed", CASES)
@pytest.mark.parametrize("pool", ["mean", "cls", "none"])
def test_embed_equals_cli(case, typed, pool, fixtures, cli, tmp_path):
    d = os.path.join(fixtures, "bert", case)
    seqs = [[1, 7, 9, 2, 11], [1, 5, 2]]
    types = [[0, 0, 1, 1, 1], [0, 1, 1]] if typed else None
    ref = cli_embed(cli, d, seqs, types, pool, tmp_path)
    got = rlx.embed(d, seqs, token_types=types, pool=pool, device="cpu")
    assert got.shape == ref.shape == ((8 if pool == "none" else 2), ref.shape[1])
    assert np.array_equal(got, ref), "max |Δ| %g" % np.abs(got - ref).max()


def test_embed_normalized_and_against_transformers(fixtures, cli, tmp_path):
    import json
    d = os.path.join(fixtures, "bert", "bert_token_types_f32")
    with open(os.path.join(d, "inputs.json")) as f:
        inputs = json.load(f)
    ids, mask = np.array(inputs["input_ids"]), np.array(inputs["attention_mask"])
    seqs = [row[m == 1].tolist() for row, m in zip(ids, mask)]
    types = None
    if "token_type_ids" in inputs:
        tt = np.array(inputs["token_type_ids"])
        types = [row[m == 1].tolist() for row, m in zip(tt, mask)]
    got = rlx.embed(d, seqs, token_types=types, pool="mean", device="cpu")
    hf = np.load(os.path.join(d, "pooled_mean.npy"))
    assert np.abs(got - hf).max() / np.abs(hf).max() <= 1e-4
    unit = rlx.embed(d, seqs, token_types=types, pool="mean", normalize=True, device="cpu")
    assert np.allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)
    assert np.array_equal(unit, cli_embed(cli, d, seqs, types, "mean", tmp_path, normalize=True))


def test_sentence_transformers_directory_as_the_cli_reads_it(fixtures, cli, tmp_path):
    """No pool or normalize given: modules.json decides, for the package as for `rlx embed`, and
    the result is what SentenceTransformer.encode computed."""
    import json
    d = os.path.join(fixtures, "bert", "st_legacy_bert_f32")
    st = rlx.sentence_transformers(d)
    assert st["pool"] in ("cls", "mean") and st["pool_source"]
    with open(os.path.join(d, "inputs.json")) as f:
        inputs = json.load(f)
    ids, mask = np.array(inputs["input_ids"]), np.array(inputs["attention_mask"])
    seqs = [row[m == 1].tolist() for row, m in zip(ids, mask)]
    out = tmp_path / "st.npy"
    args = ["embed", "--model", d, "--device", "cpu", "--out", out]
    for s in seqs:
        args += ["--tokens", ids_arg(s)]
    cli(*args)
    got = rlx.embed(d, seqs, device="cpu")
    assert np.array_equal(got, np.load(out))
    ref = np.load(os.path.join(d, "sentence_embedding.npy"))
    assert got.shape == ref.shape and np.abs(got - ref).max() / np.abs(ref).max() <= 1e-4
    assert st["normalize"] == bool(np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5))
    raw = rlx.embed(d, seqs, device="cpu", ignore_modules=True)  # the encoder alone: mean, unnormalized
    assert np.array_equal(raw, rlx.embed(d, seqs, device="cpu", pool="mean", normalize=False))
