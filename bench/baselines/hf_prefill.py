#!/usr/bin/env python3
"""Side-by-side prefill baseline: rlx against Hugging Face transformers on the same weights.

For a GPU machine with PyTorch + transformers (and an rlx build with its CUDA backend):

  1. writes a seeded random-weight Llama checkpoint with `rlx bench --shape X --save-checkpoint DIR`
     (config.json + model.safetensors, bf16), so both sides read byte-identical weights;
  2. runs `rlx bench --model DIR --device cuda --json F` on it (rlx's own CUDA-event timing);
  3. runs `rlx run --model DIR --logits-out F.npy` on a few prompts for the logits check;
  4. loads DIR with transformers (bf16, attn_implementation="sdpa") and times the prefill
     (last-token logits, use_cache=False) eager and under torch.compile with CUDA events:
     warmup, repeats, median; new random token ids every repeat; the SDPA backend that really
     ran (read off one profiled call) and the compile warm-up seconds are recorded, and a failed
     torch.compile keeps the eager figures; HF_HUB_OFFLINE=1 (the checkpoint is local);
  5. compares last-token logits of rlx and HF (cosine, argmax agreement, max |diff|) and prints one
     table with the ratios, plus a Markdown block for bench/RESULTS.md.

rlx runs first, in its own process, so the PyTorch caching allocator holds no GPU memory while it
runs. FLOPs (and so TFLOP/s) are counted once, by rlx (PERF.md counting), for both sides.

Without a GPU, --cpu-smoke exercises every step on the CPU instead: the tiny shape by default, rlx
with --device cpu (the f32 reference), HF in f32 on the CPU, host-clock timing, torch.compile skipped
unless --smoke-compile. Its numbers are CPU numbers and say nothing about a GPU. The GPU mode stops
at its first CUDA call (torch.cuda.is_available()) when there is no GPU.

Usage:
  python bench/baselines/hf_prefill.py --shape llama-3.2-1b --batch 4 --seq 2048
  python bench/baselines/hf_prefill.py --cpu-smoke
"""

import argparse
import datetime
import inspect
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# The checkpoint is a local directory and a GPU machine has no network: transformers must never
# try the hub (a lookup that hangs or fails would cost device minutes). Set before it is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHAPES = ("tiny", "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b")


def fail(msg, code=1):
    print(f"hf_prefill: error: {msg}", file=sys.stderr)
    sys.exit(code)


def int_list(text):
    try:
        vals = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers")
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': values must be >= 1")
    return vals


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=SHAPES, help="built-in shape (default llama-3.2-1b; tiny with --cpu-smoke)")
    p.add_argument("--batch", type=int_list, help="comma list (default 4; 1 with --cpu-smoke)")
    p.add_argument("--seq", type=int_list, help="comma list (default 2048; 32 with --cpu-smoke)")
    p.add_argument("--repeat", type=int, help="timed prefills per configuration (default 20; 3 with --cpu-smoke)")
    p.add_argument("--warmup", type=int, help="untimed prefills first (default 5; 1 with --cpu-smoke)")
    p.add_argument("--seed", type=int, default=1, help="weights seed (rlx bench --seed)")
    p.add_argument("--rlx", help="the rlx binary (default $RLX, else build/rlx in the repository)")
    p.add_argument("--workdir", help="where the checkpoint and outputs go (default a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the temporary workdir")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode (default, reduce-overhead, max-autotune, ...)")
    p.add_argument("--fusion", default="fused", choices=("fused", "none", "both"), help="rlx bench --fusion")
    p.add_argument("--logit-prompts", type=int, default=3, help="prompts in the logits comparison")
    p.add_argument("--logit-len", type=int, default=64, help="length of the longest comparison prompt")
    p.add_argument("--json", help="write the comparison as JSON here")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="no GPU: run every step on the CPU (rlx --device cpu, HF f32); not a benchmark")
    p.add_argument("--smoke-compile", action="store_true", help="with --cpu-smoke, also try torch.compile on the CPU")
    a = p.parse_args(argv)
    smoke = a.cpu_smoke
    a.shape = a.shape or ("tiny" if smoke else "llama-3.2-1b")
    a.batch = a.batch or ([1] if smoke else [4])
    a.seq = a.seq or ([32] if smoke else [2048])
    a.repeat = a.repeat if a.repeat is not None else (3 if smoke else 20)
    a.warmup = a.warmup if a.warmup is not None else (1 if smoke else 5)
    if a.repeat < 1 or a.warmup < 0 or a.logit_prompts < 1 or a.logit_len < 2:
        p.error("--repeat, --logit-prompts >= 1, --warmup >= 0, --logit-len >= 2")
    return a


# ---- rlx side -------------------------------------------------------------------------------------

def find_rlx(arg):
    cand = arg or os.environ.get("RLX") or os.path.join(REPO, "build", "rlx")
    path = shutil.which(cand) if os.sep not in cand else (cand if os.access(cand, os.X_OK) else None)
    if not path:
        fail(f"rlx binary '{cand}' not found or not executable (build it, or pass --rlx PATH)")
    return os.path.abspath(path)


def run(cmd, what):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        fail(f"{what} failed with exit code {r.returncode}")
    return r.stdout


def write_checkpoint(rlx, shape, seed, ckpt):
    if os.path.exists(os.path.join(ckpt, "model.safetensors")):
        print(f"checkpoint {ckpt} exists: reused", file=sys.stderr)
        return
    run([rlx, "bench", "--shape", shape, "--seed", str(seed), "--save-checkpoint", ckpt], "writing the checkpoint")


def rlx_bench(rlx, a, ckpt, device, out_json):
    cmd = [rlx, "bench", "--model", ckpt, "--device", device,
           "--batch", ",".join(map(str, a.batch)), "--seq", ",".join(map(str, a.seq)),
           "--repeat", str(a.repeat), "--warmup", str(a.warmup), "--fusion", a.fusion,
           "--json", out_json, "--no-progress"]
    if device == "cpu":
        cmd += ["--gemm", "0"]
    text = run(cmd, "rlx bench")
    with open(out_json) as f:
        return json.load(f), text, cmd


def prompts(vocab, n, longest, seed):
    import torch
    g = torch.Generator().manual_seed(seed + 4242)
    lens = [max(1, longest - 7 * i) for i in range(n)]
    return [torch.randint(0, vocab, (L,), generator=g).tolist() for L in lens]


def rlx_logits(rlx, ckpt, device, toks, out_npy):
    import numpy as np
    cmd = [rlx, "run", "--model", ckpt, "--device", device, "--top-k", "0", "--logits-out", out_npy]
    for t in toks:
        cmd += ["--tokens", ",".join(map(str, t))]
    run(cmd, "rlx run")
    return np.load(out_npy)  # [sequences, vocab] f32: the last token of each prompt


# ---- HF side -------------------------------------------------------------------------------------

def load_hf(ckpt, device, dtype):
    import torch
    from transformers import AutoModelForCausalLM
    kw = dict(attn_implementation="sdpa")
    try:  # transformers >= 4.56 calls it dtype; older versions torch_dtype
        model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=dtype, **kw)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=dtype, **kw)
    model = model.to(device).eval()
    params = inspect.signature(model.forward).parameters
    keep = "logits_to_keep" if "logits_to_keep" in params else "num_logits_to_keep" if "num_logits_to_keep" in params else None
    torch.manual_seed(0)
    return model, keep


def make_forward(model, keep):
    import torch
    kw = {"use_cache": False}
    if keep:
        kw[keep] = 1  # last-token logits only, as rlx bench computes them

    def fwd(ids):
        with torch.inference_mode():
            return model(input_ids=ids, **kw).logits[:, -1, :]
    return fwd


# The attention operator each SDPA backend dispatches to (torch >= 2.0). SDPA picks a backend per
# call and falls back silently (to memory-efficient or math attention when flash cannot take the
# shape, dtype or card), and a slower HF baseline would flatter rlx: so the backend that really ran
# is read off a profiled call and recorded beside the timings.
SDPA_OPS = (
    ("_scaled_dot_product_flash_attention", "flash"),  # also ..._for_cpu on the CPU
    ("_scaled_dot_product_cudnn_attention", "cudnn"),
    ("_scaled_dot_product_efficient_attention", "efficient"),
    ("_scaled_dot_product_fused_attention_overrideable", "overrideable"),
    ("_scaled_dot_product_attention_math", "math"),
    ("_flash_attention_forward", "flash"),
    ("_efficient_attention_forward", "efficient"),
)


def sdpa_backends(fwd, ids):
    """The SDPA backends one call of fwd ran (sorted names), from the profiler's operator names;
    ["none seen"] when no SDPA operator appeared (e.g. eager attention)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ids.is_cuda else [])
    with profile(activities=acts) as prof:
        fwd(ids)
        if ids.is_cuda:
            torch.cuda.synchronize()
    seen = set()
    for ev in prof.events():
        for op, name in SDPA_OPS:
            if op in ev.name:
                seen.add(name)
    return sorted(seen) or ["none seen"]


def time_prefill(fwd, vocab, batch, seq, warmup, repeat, device, seed, label, info=None):
    """Median and spread of `repeat` prefills, new random ids each time (generated outside the
    timed region). GPU: CUDA events around each call; CPU: the host clock. info (a dict), when
    given, gets the warm-up's wall seconds (for torch.compile: the compilation) and the SDPA
    backends a profiled call after the warm-up ran."""
    import torch
    g = torch.Generator().manual_seed(seed)
    ids = [torch.randint(0, vocab, (batch, seq), generator=g).to(device) for _ in range(min(repeat, 4))]
    cuda = device == "cuda"
    t0 = time.perf_counter()
    for i in range(warmup):
        print(f"\r[{label}] b={batch} s={seq}: warmup {i + 1}/{warmup}   ", end="", file=sys.stderr, flush=True)
        fwd(ids[i % len(ids)])
    if cuda:
        torch.cuda.synchronize()
    if info is not None:
        info["warmup_s"] = time.perf_counter() - t0
        info["sdpa"] = sdpa_backends(fwd, ids[0])
    times = []
    for i in range(repeat):
        print(f"\r[{label}] b={batch} s={seq}: repeat {i + 1}/{repeat}   ", end="", file=sys.stderr, flush=True)
        x = ids[i % len(ids)]
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fwd(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fwd(x)
            times.append((time.perf_counter() - t0) * 1e3)
    print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
    return times


def quantile(sorted_x, p):
    """numpy's default (linear) interpolation, as rlx bench computes p10/p90."""
    pos = p * (len(sorted_x) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_x) - 1)
    return sorted_x[lo] + (pos - lo) * (sorted_x[hi] - sorted_x[lo])


def stats(times):
    s = sorted(times)
    return {"median_ms": statistics.median(s), "min_ms": s[0], "max_ms": s[-1], "p10_ms": quantile(s, 0.1),
            "p90_ms": quantile(s, 0.9), "stdev_ms": statistics.stdev(s) if len(s) > 1 else 0.0, "times_ms": times}


def compare_logits(a, b):
    import numpy as np
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    cos = [float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b)]
    agree = [int(np.argmax(x) == np.argmax(y)) for x, y in zip(a, b)]
    return {"cosine": cos, "cosine_min": min(cos), "argmax_agree": sum(agree), "prompts": len(agree),
            "max_abs_diff": float(np.max(np.abs(a - b)))}


# ---- main -------------------------------------------------------------------------------------------

def main(argv):
    a = parse_args(argv)
    smoke = a.cpu_smoke
    try:
        import numpy  # noqa: F401
        import torch
        import transformers
    except ImportError as e:
        fail(f"{e}: this script needs numpy, torch and transformers")
    if not smoke and not torch.cuda.is_available():  # the first CUDA call of the GPU mode
        fail("no CUDA device visible to PyTorch: this script times a GPU (use --cpu-smoke to exercise it on the CPU)")
    rlx = find_rlx(a.rlx)
    device = "cpu" if smoke else "cuda"
    work = a.workdir or tempfile.mkdtemp(prefix="rlx-hf-")
    os.makedirs(work, exist_ok=True)
    ckpt = os.path.join(work, f"ckpt-{a.shape}-seed{a.seed}")
    if smoke:
        print("*** CPU SMOKE RUN: rlx --device cpu (the f32 reference) and HF f32 on the CPU. "
              "Not a benchmark: these numbers say nothing about a GPU. ***", flush=True)

    # 1. identical weights for both sides
    write_checkpoint(rlx, a.shape, a.seed, ckpt)
    with open(os.path.join(ckpt, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]

    # 2. rlx bench (its own process, first: torch holds no GPU memory yet)
    rlx_json, rlx_text, rlx_cmd = rlx_bench(rlx, a, ckpt, device, os.path.join(work, "rlx_bench.json"))
    sys.stdout.write(rlx_text)

    # 3. rlx logits on the comparison prompts
    toks = prompts(vocab, a.logit_prompts, a.logit_len, a.seed)
    rl = rlx_logits(rlx, ckpt, device, toks, os.path.join(work, "rlx_logits.npy"))

    # 4. HF: load, logits, eager timing
    dtype = torch.float32 if smoke else torch.bfloat16
    model, keep = load_hf(ckpt, device, dtype)
    fwd = make_forward(model, keep)
    hl = torch.stack([fwd(torch.tensor([t], device=device))[0] for t in toks]).float().cpu().numpy()
    logits = compare_logits(rl, hl)

    rows = []
    for b in a.batch:
        for s in a.seq:
            info = {}
            t = time_prefill(fwd, vocab, b, s, a.warmup, a.repeat, device, a.seed + b * 7919 + s, "HF eager", info)
            rows.append({"batch": b, "seq": s, "eager": dict(stats(t), **info)})
    # 5. torch.compile. A failure (no C compiler for Triton, an inductor error, out of memory) keeps
    # the eager figures already measured: the error is printed and recorded, the table still comes.
    do_compile = not a.no_compile and (not smoke or a.smoke_compile)
    compile_error = None
    if do_compile:
        try:
            # dynamic=False: every (batch, seq) gets kernels specialised to its shape, the best case
            # for torch.compile; the recompile limit is raised so a sweep never falls back to eager.
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 4 * len(rows) + 8)
            cfwd = make_forward(torch.compile(model, mode=a.compile_mode, dynamic=False), keep)
            for r in rows:
                # the first calls compile (and recompile per shape): a generous warmup, timed apart
                info = {}
                t = time_prefill(cfwd, vocab, r["batch"], r["seq"], max(a.warmup, 3), a.repeat, device,
                                 a.seed + 1 + r["batch"] * 7919 + r["seq"], "HF compile", info)
                r["compile"] = dict(stats(t), **info)
                print(f"torch.compile warm-up (compilation + {max(a.warmup, 3)} calls) b={r['batch']} s={r['seq']}: "
                      f"{info['warmup_s']:.1f} s", flush=True)
        except Exception as e:  # noqa: BLE001 - any compile failure: keep what was measured
            compile_error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:500]
            print(f"hf_prefill: torch.compile failed ({compile_error}); keeping the eager figures", file=sys.stderr, flush=True)
            for r in rows:
                r.pop("compile", None)
    if device == "cuda":
        for r in rows:
            for side in ("eager", "compile"):
                if side in r and r[side].get("sdpa") != ["flash"]:
                    print(f"hf_prefill: WARNING: HF {side} b={r['batch']} s={r['seq']} ran SDPA {'+'.join(r[side]['sdpa'])}, "
                          f"not flash: its times are not FlashAttention's", file=sys.stderr, flush=True)

    # 6. the table
    card = torch.cuda.get_device_name(0) if not smoke else f"CPU ({platform.processor() or platform.machine()})"
    commit = (rlx_json[0].get("commit") if rlx_json else None) or "unknown"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = []
    head = (f"| shape | batch | seq | side | median ms | p10–p90 ms | tokens/s | TFLOP/s | rlx speedup |\n"
            f"|---|---|---|---|---|---|---|---|---|")
    lines.append(head)
    out_rows = []
    for r in rows:
        fused = [x for x in rlx_json if x["batch"] == r["batch"] and x["seq"] == r["seq"] and x["fusion"] in ("fused", "n/a")]
        unfused = [x for x in rlx_json if x["batch"] == r["batch"] and x["seq"] == r["seq"] and x["fusion"] == "none"]
        ref = fused[0] if fused else unfused[0]
        flops = ref["flops"]
        tokens = r["batch"] * r["seq"]
        sides = [(f"HF eager (sdpa: {'+'.join(r['eager']['sdpa'])})", r["eager"])]
        if "compile" in r:
            sides.append((f"HF torch.compile ({a.compile_mode}; sdpa: {'+'.join(r['compile']['sdpa'])})", r["compile"]))
        for x in (fused + unfused):
            sides.append((f"rlx ({x['fusion']})", {k: x[k] for k in ("median_ms", "p10_ms", "p90_ms", "min_ms", "max_ms", "stdev_ms")}))
        entry = {"batch": r["batch"], "seq": r["seq"], "flops": flops, "sides": {}}
        for name, st in sides:
            med = st["median_ms"]
            sp = "" if name.startswith("rlx") else f"{st['median_ms'] / ref['median_ms']:.2f}x"
            lines.append(f"| {a.shape} | {r['batch']} | {r['seq']} | {name} | {med:.3f} | {st['p10_ms']:.3f}–{st['p90_ms']:.3f} "
                         f"| {tokens / (med * 1e-3):,.0f} | {flops / (med * 1e-3) / 1e12:.4g} | {sp} |")
            entry["sides"][name] = dict(st, tokens_per_s=tokens / (med * 1e-3), tflops=flops / (med * 1e-3) / 1e12,
                                        rlx_speedup=(st["median_ms"] / ref["median_ms"]) if not name.startswith("rlx") else None)
        out_rows.append(entry)
    cos = ", ".join(f"{c:.6f}" for c in logits["cosine"])
    logit_line = (f"logits (last token, {logits['prompts']} prompts of up to {a.logit_len} tokens, rlx vs HF): cosine {cos}; "
                  f"argmax agreement {logits['argmax_agree']}/{logits['prompts']}; max |diff| {logits['max_abs_diff']:.4g}")
    print()
    if smoke:
        print("*** CPU SMOKE RUN (f32 on the CPU): not a benchmark; never record these in RESULTS.md ***")
    print(f"card: {card}; rlx device: {rlx_json[0]['device_name'] if rlx_json else '?'}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; rlx commit {commit}; {date}")
    print("rlx speedup = that side's median / rlx's median (rlx fused, or the CPU reference); TFLOP/s by PERF.md counting for every side")
    print("\n".join(lines))
    print(logit_line)
    for r in rows:
        if "compile" in r:
            print(f"torch.compile warm-up b={r['batch']} s={r['seq']}: {r['compile']['warmup_s']:.1f} s "
                  f"(compilation + {max(a.warmup, 3)} calls; eager warm-up {r['eager']['warmup_s']:.1f} s)")
    if compile_error:
        print(f"torch.compile: FAILED ({compile_error}); eager figures only")
    elif not do_compile:
        print("torch.compile: not run" + (" (--no-compile)" if a.no_compile else " (CPU smoke run without --smoke-compile)"))
    if not smoke:
        print("targets (PERF.md): rlx >= 1.25x HF eager and >= 1.1x torch.compile, same weights and card, same run")
        print("\nfor bench/RESULTS.md:\n")
        print(f"### {date} — {card} — {a.shape}\n")
        print(f"- commit: `{commit}`\n- command: `python bench/baselines/hf_prefill.py {' '.join(argv)}`")
        print(f"- rlx: `{' '.join(rlx_cmd)}`\n- torch {torch.__version__}, transformers {transformers.__version__}\n")
        print("\n".join(lines))
        print(f"\n{logit_line}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"shape": a.shape, "card": card, "smoke": smoke, "commit": commit, "date": date,
                       "torch": torch.__version__, "transformers": transformers.__version__,
                       "rows": out_rows, "logits": logits, "rlx": rlx_json, "compile_mode": a.compile_mode if do_compile else None,
                       "compile_error": compile_error, "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE")}, f, indent=2)
    if not a.workdir and not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
