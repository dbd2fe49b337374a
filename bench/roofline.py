#!/usr/bin/env python3
"""Roofline of rlx's fused LLaMA prefill plan per kernel family, before any GPU run.

Prints the markdown table of docs/bench.md ("Roofline and predictions"): for each kernel family of
the fused plan (last-token logits, last layer pruned), the FLOPs and bytes of one prefill, and two
floors on an H200: compute at the measured bf16 GEMM rate (790 TFLOP/s, PERF.md) and memory at the
measured copy bandwidth (4.3 TB/s); the larger is the family's floor. Bytes count what each kernel
reads and writes once (weights, activations, residual), as rlx__kernel_bytes does.

    python3 bench/roofline.py            # the table for docs/bench.md
"""

GEMM_TFLOPS = 790e12  # measured 8192^3 bf16 on this class of card (PERF.md)
PEAK_TFLOPS = 989e12  # datasheet dense bf16
BW = 4.3e12           # measured copy bandwidth, H200 (read + write counted)

SHAPES = {
    "llama-3.2-1b": dict(H=2048, I=8192, L=16, heads=32, kv=8, D=64, V=128256),
    "llama-3.2-3b": dict(H=3072, I=8192, L=28, heads=24, kv=8, D=128, V=128256),
    "llama-3.1-8b": dict(H=4096, I=14336, L=32, heads=32, kv=8, D=128, V=128256),
}


def families(c, B, S, pruned=True):
    """(family, flops, bytes) of one prefill of B sequences of S tokens, bf16 (2 bytes)."""
    T = B * S
    H, I, L, D = c["H"], c["I"], c["L"], c["D"]
    q, kv = c["heads"] * D, c["kv"] * D
    e = 2
    rows = {}

    def add(name, flops, nbytes):
        f, b = rows.get(name, (0.0, 0.0))
        rows[name] = (f + flops, b + nbytes)

    for layer in range(L):
        last = pruned and layer == L - 1
        R = B if last else T  # rows after the attention of the last layer
        qkv = q + 2 * kv
        add("gemm qkv", 2 * T * qkv * H, e * (T * H + qkv * H + T * qkv))
        # attention: causal half, FlashAttention's count; bytes: q, k, v read, o written (+ cos/sin)
        add("flash_attention", 2 * S * c["heads"] * D * T, e * (T * qkv + T * q) + 4 * T * D)
        if last:
            add("last_token gathers", 0, e * 2 * (B * q + B * H) )
        add("gemm o (+residual)", 2 * R * H * q, e * (R * q + H * q + 2 * R * H))
        add("rms_rowscale", 0, e * R * H + 4 * R)
        add("gemm gate+up", 2 * R * 2 * I * H, e * (R * H + 2 * I * H + R * 2 * I))
        add("swiglu_scaled", 0, e * (R * 2 * I + R * I) + 4 * R)
        add("gemm down (+residual)", 2 * R * H * I, e * (R * I + H * I + 2 * R * H))
        if not last:
            add("rms_rowscale", 0, e * T * H + 4 * T)
    add("embed_rowscale", 0, e * 2 * T * H + 4 * T)
    add("final norm", 0, e * 2 * B * H)
    add("gemm lm_head", 2 * B * H * c["V"], e * (B * H + c["V"] * H) + 4 * B * c["V"])
    return rows


def floor_ms(flops, nbytes):
    return max(flops / GEMM_TFLOPS, nbytes / BW) * 1e3


def table(name, B, S):
    c = SHAPES[name]
    rows = families(c, B, S)
    total_flops = sum(f for f, _ in rows.values())
    total_ms = sum(floor_ms(f, b) for f, b in rows.values())
    out = [f"**{name}, {B} x {S}** (floor {total_ms:.3f} ms; {total_flops / 1e12:.2f} TFLOP counted as run; "
           f"at the floor {total_flops / (total_ms * 1e-3) / PEAK_TFLOPS * 100:.0f}% MFU of 989)", "",
           "| kernel family | GFLOP | GB moved | compute floor ms | memory floor ms | floor ms | share |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for fam, (f, b) in sorted(rows.items(), key=lambda kv: -floor_ms(*kv[1])):
        ms = floor_ms(f, b)
        out.append(f"| {fam} | {f / 1e9:.1f} | {b / 1e9:.3f} | {f / GEMM_TFLOPS * 1e3:.4f} | {b / BW * 1e3:.4f} | "
                   f"{ms:.4f} | {ms / total_ms * 100:.1f}% |")
    return "\n".join(out)


def pruning_saving(name, B, S):
    c = SHAPES[name]
    a = sum(f for f, _ in families(c, B, S, pruned=True).values())
    b = sum(f for f, _ in families(c, B, S, pruned=False).values())
    return 1 - a / b


if __name__ == "__main__":
    for name, B, S in [("llama-3.2-1b", 4, 2048), ("llama-3.1-8b", 4, 2048), ("llama-3.2-1b", 1, 512)]:
        print(table(name, B, S))
        print()
    for name in SHAPES:
        print(f"pruning saves {pruning_saving(name, 4, 2048) * 100:.2f}% of the FLOPs of {name} at 4 x 2048, "
              f"{pruning_saving(name, 1, 512) * 100:.2f}% at 1 x 512")
