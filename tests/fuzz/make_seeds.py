#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/). Small valid inputs
(and a few near misses) that show libFuzzer each format's structure; run from the repository
root after changing a format. Standard library only."""
import json
import os
import shutil
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape, raw bytes)] in data order."""
    header, off = {}, 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def main():
    for t in ("safetensors", "weights", "llama-config", "encoder-config", "index", "profile"):
        shutil.rmtree(os.path.join(ROOT, t), ignore_errors=True)
    st = {
        "empty": safetensors([]),
        "one_f32": safetensors([("w", "F32", [2, 2], f32(1, 2, 3, 4))]),
        "dtypes": safetensors([("a", "F32", [2], f32(1, -2)), ("b", "F16", [3], b"\x00\x3c\x00\xc0\x00\x7c"),
                               ("c", "BF16", [1, 2], b"\x80\x3f\x00\x40")]),
        "scalar_and_empty": safetensors([("s", "F32", [], f32(7)), ("z", "F32", [0, 3], b"")]),
        "metadata": safetensors([("x", "BF16", [2], b"\x80\x3f\x80\xbf")], metadata={"format": "pt"}),
        "unpadded_unaligned": safetensors([("h", "F16", [1], b"\x00\x3c"), ("f", "F32", [1], f32(1))], pad=False),
        "i64_unsupported": safetensors([("i", "I64", [1], b"\x01" + b"\x00" * 7)]),
        "gap": struct.pack("<Q", 8) + b'{"a":1} ' + b"",
        # found by fuzz-safetensors: "" is a JSON key but no tensor name
        "empty_name": safetensors([("", "F32", [1], f32(1))]),
    }
    for name, data in st.items():
        put("safetensors", name, data)
        put("weights", name, data)

    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
    for case in ("gqa_tied_f32", "llama3_scaling_f32", "legacy_config_f32", "head_dim_explicit_f32"):
        with open(os.path.join(fixtures, "llama", case, "config.json"), "rb") as f:
            put("llama-config", case, f.read())
    put("llama-config", "rope_parameters",
        json.dumps({"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
                    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "max_position_embeddings": 128,
                    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 8192}}))
    for case in ("bert_token_types_f32", "bert_single_type_f32", "nomic_bert_f32"):
        with open(os.path.join(fixtures, "bert", case, "config.json"), "rb") as f:
            put("encoder-config", case, f.read())
    put("encoder-config", "nomic_no_n_inner",
        json.dumps({"model_type": "nomic_bert", "vocab_size": 64, "n_embd": 32, "n_layer": 1, "n_head": 4,
                    "n_positions": 64, "rotary_emb_fraction": 1.0, "activation_function": "swiglu"}))

    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    put("index", "valid", json.dumps({"metadata": {"total_size": 24}, "weight_map": {"a": s1, "b": s1, "c": s2}}))
    put("index", "wrong_shard", json.dumps({"weight_map": {"a": s2, "b": s1, "c": s2}}))
    put("index", "escape", json.dumps({"weight_map": {"a": "../" + s1, "b": s1, "c": s2}}))

    put("profile", "every_key", """# every key
[fusion]
policy = "none"
target = "simt"
assert_clean = false
skip = false
[passes]
dce = false
constant_folding = true
verbose = true
[precision]
compute = "f32"
mixed = "none"
[kernels]
attention_block_q = 0
gemm_workspace_mb = 64
cuda_graphs = false
""")
    put("profile", "seed_spelling", '[fusion]\npolicy = "fusable"\n[precision]\ncompute = "bf16" # caf\u00e9\n')
    put("profile", "inline_table", 'fusion = { policy = "none" }\n"passes".dce = true\n')
    put("profile", "probe_cafe", "caf\u00e9 = 1\n")
    put("profile", "probe_two_bytes", b"\xc3\xa9")
    put("profile", "probe_bracket", b"[\n")


if __name__ == "__main__":
    main()
