"""rlx.Tokenizer against Hugging Face tokenizers (tests/fixtures/tokenizer/expected/*.json, written
by gen_tokenizer_fixtures.py: the ids, decodes and truncations of the 2,001-line corpus) and
against `rlx tokenize`."""
import json
import os

import pytest

import rlx

NAMES = ["llama_bpe", "bert_wordpiece"]


def load(fixtures, *rel):
    with open(os.path.join(fixtures, "tokenizer", *rel), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def corpus(fixtures):
    return load(fixtures, "corpus.json")


@pytest.mark.parametrize("name", NAMES)
def test_encode_decode_equal_tokenizers(name, fixtures, corpus):
    exp = load(fixtures, "expected", name + ".json")
    tok = rlx.Tokenizer(os.path.join(fixtures, "tokenizer", name))
    assert tok.model == ("bpe" if name == "llama_bpe" else "wordpiece")
    ids = tok.encode_batch(corpus)
    assert len(ids) == len(exp["ids"]) == len(corpus)
    bad = [i for i in range(len(corpus)) if ids[i] != exp["ids"][i]]
    assert not bad, "lines %s differ, first: %r -> %r, tokenizers %r" % (bad[:10], corpus[bad[0]], ids[bad[0]],
                                                                         exp["ids"][bad[0]])
    n = len(exp["ids_no_special"])
    assert tok.encode_batch(corpus[:n], add_special_tokens=False) == exp["ids_no_special"]
    assert tok.encode(corpus[0]) == exp["ids"][0]
    for i, line in enumerate(corpus):
        want = exp["decode"][i] if exp["decode"][i] is not None else line
        want_skip = exp["decode_skip_special"][i] if exp["decode_skip_special"][i] is not None else want
        assert tok.decode(exp["ids"][i]) == want, "line %d" % i
        assert tok.decode(exp["ids"][i], skip_special_tokens=True) == want_skip, "line %d" % i
    tr = exp["truncated"]
    for side in ("right", "left"):
        lines = [i for i, _ in tr[side]]
        got = tok.encode_batch([corpus[i] for i in lines], max_length=tr["max_length"], truncate_left=side == "left")
        assert got == [ids for _, ids in tr[side]], side


@pytest.mark.parametrize("name", NAMES)
def test_equals_rlx_tokenize(name, fixtures, corpus, cli):
    d = os.path.join(fixtures, "tokenizer", name)
    tok = rlx.Tokenizer(d)
    texts = [t for t in corpus[:60] if "\0" not in t and t]
    args = ["tokenize", "--model", d]
    for t in texts:
        args += ["--text", t]
    lines = cli(*args).stdout.split("\n")
    assert lines[-1] == "" and len(lines) == len(texts) + 1
    ids = tok.encode_batch(texts)
    assert [",".join(map(str, i)) for i in ids] == lines[:-1]
    # --decode back, and --no-special / --max-length as the keyword arguments
    out = cli("tokenize", "--model", d, "--decode", ",".join(map(str, ids[3]))).stdout
    assert out == tok.decode(ids[3]) + "\n"
    out = cli("tokenize", "--model", d, "--no-special", "--max-length", "5", "--text", texts[2]).stdout
    assert out == ",".join(map(str, tok.encode(texts[2], add_special_tokens=False, max_length=5))) + "\n"


def test_lookups_and_paths(fixtures):
    d = os.path.join(fixtures, "tokenizer", "llama_bpe")
    tok = rlx.Tokenizer(os.path.join(d, "tokenizer.json"))  # the file works as well as the directory
    with rlx.Tokenizer(d) as t2:
        assert t2.encode("hello there") == tok.encode("hello there")
    assert tok.vocab_size == len(tok) == 1802
    assert tok.model_max_length == 2048
    assert tok.bos_token_id == tok.token_to_id("<|begin_of_text|>") == 0
    assert tok.eos_token_id == tok.token_to_id("<|eot_id|>")
    assert tok.is_special(0) and not tok.is_special(100)
    assert tok.id_to_token(tok.token_to_id("Ġreturn")) == "Ġreturn"
    assert tok.token_to_id("no such token here") is None and tok.id_to_token(10**6) is None
    assert tok.special_id("mask") is None or tok.is_special(tok.special_id("mask"))
    b = rlx.Tokenizer(os.path.join(fixtures, "tokenizer", "bert_wordpiece"))
    assert (b.special_id("cls"), b.special_id("sep")) == (b.token_to_id("[CLS]"), b.token_to_id("[SEP]"))
    assert b.encode("a b c d e f g", max_length=4)[0] == b.special_id("cls")
    assert b.encode("a b c d e f g", max_length="model") == b.encode("a b c d e f g")
    assert tok.encode_batch([]) == [] and tok.decode([]) == ""


def test_errors(fixtures, cli):
    d = os.path.join(fixtures, "tokenizer", "llama_bpe")
    tok = rlx.Tokenizer(d)
    with pytest.raises(rlx.RlxError) as e:
        tok.encode(b"ok\xff")
    assert "offset 2" in e.value.message
    # replaced as the command's --replace-invalid does
    assert tok.encode(b"ok\xff", replace_invalid=True) == [0, 333, 177, 129, 127]
    assert tok.encode("ok\ud800", replace_invalid=True) == tok.encode(b"ok\xed\xa0\x80", replace_invalid=True)
    with pytest.raises(rlx.RlxError) as e:
        tok.decode([1, 999999])
    assert e.value.name == "RLX_ERR_TOKEN_RANGE" and "999999" in e.value.message
    with pytest.raises(ValueError):
        tok.encode("x", max_length=0)
    with pytest.raises(TypeError):
        tok.encode(3)
    with pytest.raises(rlx.RlxError) as e:
        rlx.Tokenizer(os.path.join(fixtures, "llama", "gqa_tied_f32"))
    assert e.value.name == "RLX_ERR_IO" and "tokenizer.json" in e.value.message and "missing" in e.value.message
