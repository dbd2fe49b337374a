#!/usr/bin/env python3
"""Hugging Face `tokenizers` (Rust) on the same corpus as bench-tokenizer, for comparison.

    python bench/tokenizer/bench_tokenizers.py TOKENIZER CORPUS.json [repeat=5]

TOKENIZER: a model directory or tokenizer.json (padding and truncation switched off, as rlx
encodes). Prints, like bench-tokenizer: encode() one text at a time (Python calls Rust per text),
encode_batch() on one thread (RAYON_NUM_THREADS=1 in a child process) and encode_batch() on every
core. Each figure is the median of `repeat` passes after one untimed pass. Measures, never asserts.
"""
import json
import os
import statistics
import subprocess
import sys
import time


def run(path, corpus_path, repeat, modes):
    from tokenizers import Tokenizer

    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    tok = Tokenizer.from_file(path)
    tok.no_padding()
    tok.no_truncation()
    texts = json.load(open(corpus_path, encoding="utf-8"))
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    for mode in modes:
        times = []
        for r in range(repeat + 1):
            t0 = time.perf_counter()
            if mode == "single":
                n = sum(len(tok.encode(t).ids) for t in texts)
            else:
                n = sum(len(e.ids) for e in tok.encode_batch(texts))
            times.append(time.perf_counter() - t0)
        med = statistics.median(times[1:])
        label = {"single": "tokenizers encode() per text", "batch1": "tokenizers batch, 1 thread",
                 "batch": "tokenizers batch, all threads"}[mode]
        print(f"{label:<28} {n:>10} tokens  median {med * 1e3:8.2f} ms  {n / med:12.0f} tokens/s  "
              f"{nbytes / med / 1e6:7.2f} MB/s", flush=True)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, corpus, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5
    if os.environ.get("RLX_BENCH_CHILD") == "batch1":
        run(path, corpus, repeat, ["batch1"])
        return
    import tokenizers

    print(f"tokenizers {tokenizers.__version__}, tokenizer {path}, corpus {corpus}", flush=True)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    run(path, corpus, repeat, ["single"])
    env = dict(os.environ, RLX_BENCH_CHILD="batch1", RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="true")
    subprocess.run([sys.executable, __file__, path, corpus, str(repeat)], env=env, check=True)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    run(path, corpus, repeat, ["batch"])


if __name__ == "__main__":
    main()
