"""rlx.generate / Model.generate against transformers' generate (the fixtures' generate.json and
tokenizer/llama_bpe/generate_text.json) and against `rlx generate --out` (the same library code on
the CPU, so equal token for token, sampling included)."""
import json
import os

import pytest

import rlx
from conftest import ids_arg

CASES = ["gqa_tied_f32", "mqa_untied_bf16", "llama3_scaling_f32", "head_dim_explicit_f32", "sharded_bf16",
         "legacy_config_f32", "f16", "single_token_f32", "legacy_buffers_f32"]


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def cli_generate(cli, tmp_path, d, prompts, *opts):
    out = tmp_path / "g.json"
    args = ["generate", "--model", d, "--device", "cpu", "--out", out, *opts]
    for p in prompts:
        args += ["--prompt", p] if isinstance(p, str) else ["--tokens", ids_arg(p)]
    cli(*args)
    return read(out)["sequences"]


@pytest.mark.parametrize("case", CASES)
def test_greedy_equals_transformers_and_cli(case, fixtures, cli, tmp_path):
    d = os.path.join(fixtures, "llama", case)
    hf = read(os.path.join(d, "generate.json"))
    got = rlx.generate(d, hf["prompts"], max_new_tokens=hf["max_new_tokens"], device="cpu")
    assert isinstance(got, rlx.Generations) and len(got) == len(hf["prompts"])
    for i, g in enumerate(got):
        assert g.prompt == hf["prompts"][i]
        assert g.tokens == hf["tokens"][i], "prompt %d" % i
        assert g.finish == hf["finish"][i]
        assert g.text is None  # no tokenizer.json here
    ref = cli_generate(cli, tmp_path, d, hf["prompts"], "--max-new-tokens", hf["max_new_tokens"])
    assert [g.as_dict() for g in got] == ref
    assert got.stats["calls"] > 0 and got.stats["kv_pages"] > 0 and got.stats["decode_tokens"] > 0


def test_text_prompts_equal_transformers_and_cli(fixtures, cli, tmp_path):
    d = os.path.join(fixtures, "tokenizer", "llama_bpe")
    fx = read(os.path.join(d, "generate_text.json"))
    cases = [c for c in fx["cases"] if "stop_tokens" not in c]
    texts = [c["text"] for c in cases]
    n = fx["max_new_tokens"]
    got = rlx.generate(d, texts, max_new_tokens=n, device="cpu")
    tok = rlx.Tokenizer(d)
    for g, c in zip(got, cases):
        assert g.prompt == c["ids"] == tok.encode(c["text"])  # transformers' ids, rlx tokenize's
        assert g.tokens == c["tokens"] and g.finish == c["finish"]
        assert g.text == c["decode_skip_special"]  # tokenizer.decode(skip_special_tokens=True)
        assert tok.decode(g.tokens) == c["decode"]
    # the command, given the same texts, writes the same
    assert [g.as_dict() for g in got] == cli_generate(cli, tmp_path, d, texts, "--max-new-tokens", n)
    # ids in, and texts mixed with ids: the same sequences, with text
    mixed = [c["ids"] if i % 2 else c["text"] for i, c in enumerate(cases)]
    assert [g.as_dict() for g in rlx.generate(d, mixed, max_new_tokens=n, device="cpu")] == [g.as_dict() for g in got]
    # tokenizer=False: ids only
    plain = rlx.generate(d, [c["ids"] for c in cases], max_new_tokens=n, device="cpu", tokenizer=False)
    assert [g.tokens for g in plain] == [g.tokens for g in got] and all(g.text is None for g in plain)
    # an extra end token: transformers stopped on it too
    for c in fx["cases"]:
        if "stop_tokens" in c:
            g = rlx.generate(d, c["text"], max_new_tokens=n, stop_tokens=c["stop_tokens"], device="cpu")[0]
            assert (g.tokens, g.finish, g.text) == (c["tokens"], "stop", c["decode_skip_special"])


def test_model_generate_small_capacity_and_tokenizer(fixtures):
    # a capacity of one short sequence: prompts prefilled in chunks, decode one sequence per call
    d = os.path.join(fixtures, "llama", "gqa_tied_f32")
    hf = read(os.path.join(d, "generate.json"))
    with rlx.Weights(d) as w:
        assert rlx.eos_token_ids(w) == hf["eos_token_id"]
        m = rlx.Model.llama(w, batch=1, seq=4, max_context=48, device="cpu")
        assert m.max_context == 48
        got = m.generate(hf["prompts"], max_new_tokens=32, page_size=1, layout="hnd")
        assert [g.tokens for g in got] == hf["tokens"]
        assert [g.finish for g in got] == hf["finish"]
        # eos=False: no end token, every sequence runs to max_new_tokens
        assert all(g.finish == "length" and len(g.tokens) == 32 for g in m.generate(hf["prompts"], 32, eos=False))
        with pytest.raises(rlx.RlxError) as e:  # 13 + 40 > the context of 48
            m.generate(hf["prompts"], max_new_tokens=40)
        assert "prompt 2" in e.value.message
        with pytest.raises(ValueError):
            m.generate(["text"], max_new_tokens=4)  # text needs a tokenizer
        with pytest.raises(ValueError):
            m.generate(hf["prompts"], max_new_tokens=4, layout="xyz")
    d = os.path.join(fixtures, "tokenizer", "llama_bpe")
    fx = read(os.path.join(d, "generate_text.json"))["cases"][0]
    tok = rlx.Tokenizer(d)
    with rlx.Weights(d) as w:
        m = rlx.Model.llama(w, batch=2, seq=16, max_context=64, device="cpu")
        g = m.generate([fx["text"]], max_new_tokens=24, tokenizer=tok)[0]
        assert (g.prompt, g.tokens, g.text) == (fx["ids"], fx["tokens"], fx["decode_skip_special"])
        assert m.generate([fx["ids"]], max_new_tokens=24, tokenizer=d)[0].text == fx["decode_skip_special"]


def test_sampling_seeded_equals_cli(fixtures, cli, tmp_path):
    d = os.path.join(fixtures, "llama", "llama3_scaling_f32")
    prompts = read(os.path.join(d, "generate.json"))["prompts"]
    kw = dict(max_new_tokens=16, temperature=0.9, top_k=20, top_p=0.9, seed=11, device="cpu")
    a = rlx.generate(d, prompts, **kw)
    assert [g.as_dict() for g in a] == [g.as_dict() for g in rlx.generate(d, prompts, **kw)]
    ref = cli_generate(cli, tmp_path, d, prompts, "--max-new-tokens", 16, "--temperature", 0.9, "--top-k", 20,
                       "--top-p", 0.9, "--seed", 11)
    assert [g.as_dict() for g in a] == ref
    # sequence i's draws depend on (seed, i) only: the first prompt alone gives the same tokens
    assert rlx.generate(d, prompts[:1], **kw)[0].tokens == a[0].tokens
    # top-k 1 is greedy
    greedy = rlx.generate(d, prompts, max_new_tokens=16, device="cpu")
    assert [g.tokens for g in rlx.generate(d, prompts, max_new_tokens=16, temperature=0.7, top_k=1, seed=3,
                                           device="cpu")] == [g.tokens for g in greedy]


def test_generate_errors(fixtures):
    d = os.path.join(fixtures, "llama", "gqa_tied_f32")
    with pytest.raises(rlx.RlxError) as e:  # vocabulary 97
        rlx.generate(d, [[1, 97]], max_new_tokens=4, device="cpu")
    assert e.value.name in ("RLX_ERR_TOKEN_RANGE", "RLX_ERR_INVALID_ARGUMENT") and "97" in e.value.message
    with pytest.raises(rlx.RlxError) as e:  # top_p in (0, 1]
        rlx.generate(d, [[1, 2]], max_new_tokens=4, temperature=1.0, top_p=0.0, device="cpu")
    with pytest.raises(rlx.RlxError) as e:  # no tokenizer.json: text prompts say so
        rlx.generate(d, ["hello"], max_new_tokens=4, tokenizer=d, device="cpu")
    assert "missing" in e.value.message
    with pytest.raises(ValueError):
        rlx.generate(d, ["hello"], max_new_tokens=4, device="cpu")
    with pytest.raises(ValueError):
        rlx.generate(d, [[]], max_new_tokens=4, device="cpu")
    with pytest.raises(ValueError):
        rlx.generate(d, [[1, 2]], max_new_tokens=4, stop_tokens=[-1], device="cpu")
