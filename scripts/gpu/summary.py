#!/usr/bin/env python3
"""The GPU session's summary (scripts/gpu-session.sh).

  summary.py table OUT TMPD   (run.sh, after every step) prints the bench table under the step
                              table and writes OUT/summary.json: the steps (TMPD/steps.tsv), the
                              notes, the machine and every bench row of OUT/bench-*.json
  summary.py results OUT      prints a bench/RESULTS.md entry from OUT/summary.json

A bench-*.json is either hf_prefill.py's JSON (rlx bench rows under "rlx", the HF sides under
"rows") or rlx bench's own list of rows. Standard library only: it runs on the GPU machine's python3.
"""
import datetime
import glob
import json
import os
import sys


def load_benches(out):
    benches = {}
    for f in sorted(glob.glob(os.path.join(out, "bench-*.json"))):
        name = os.path.basename(f)[:-5]
        try:
            with open(f) as fh:
                d = json.load(fh)
        except (OSError, ValueError) as e:
            benches[name] = {"error": f"unreadable: {e}"}
            continue
        if isinstance(d, dict):
            for x in d.get("rlx") or []:  # rlx bench --model DIR names the directory: the shape reads better
                if "/" in str(x.get("shape", "")) and d.get("shape"):
                    x["shape"] = d["shape"]
            benches[name] = {"rlx": d.get("rlx") or [], "hf": d.get("rows") or [], "card": d.get("card"),
                             "torch": d.get("torch"), "transformers": d.get("transformers"),
                             "compile_error": d.get("compile_error"), "logits": d.get("logits"), "smoke": d.get("smoke")}
        else:
            benches[name] = {"rlx": d, "hf": []}
    return benches


def fmt(x, k, f):
    v = x.get(k)
    return "-" if v is None else f % v


def rlx_lines(benches, md=False):
    head = ["shape", "b", "seq", "fusion", "median ms", "p10-p90 ms", "tokens/s", "TFLOP/s", "MFU", "fused x", "GiB", "finite"]
    rows = []
    for b in benches.values():
        for x in b.get("rlx", []):
            gib = "-" if x.get("peak_device_bytes") is None else "%.1f" % (x["peak_device_bytes"] / 2**30)
            rows.append([str(x.get("shape", "?")), str(x.get("batch")), str(x.get("seq")), str(x.get("fusion")),
                         fmt(x, "median_ms", "%.3f"), fmt(x, "p10_ms", "%.2f") + "-" + fmt(x, "p90_ms", "%.2f"),
                         fmt(x, "tokens_per_s", "%.0f"), fmt(x, "tflops", "%.1f"),
                         "-" if x.get("mfu") is None else "%.1f%%" % (100 * x["mfu"]),
                         fmt(x, "speedup_fused_vs_none", "%.2f"), gib, "yes" if x.get("output_finite") else "NO"])
    return table(head, rows, md)


def hf_lines(benches, md=False):
    head = ["bench", "b", "seq", "side", "median ms", "tokens/s", "TFLOP/s", "HF / rlx"]
    rows, extra = [], []
    for name, b in benches.items():
        for r in b.get("hf", []):
            for side, st in r.get("sides", {}).items():
                sp = st.get("rlx_speedup")
                rows.append([name, str(r.get("batch")), str(r.get("seq")), side, "%.3f" % st["median_ms"],
                             "%.0f" % st.get("tokens_per_s", 0), "%.1f" % st.get("tflops", 0), "-" if sp is None else "%.2fx" % sp])
        if b.get("hf"):
            lg = b.get("logits") or {}
            extra.append(f"{name}: {b.get('card')}, torch {b.get('torch')}, transformers {b.get('transformers')}; logits rlx vs HF: "
                         f"cosine min {lg.get('cosine_min', float('nan')):.6f}, argmax {lg.get('argmax_agree')}/{lg.get('prompts')}"
                         + (f"; torch.compile FAILED: {b['compile_error']}" if b.get("compile_error") else ""))
    return table(head, rows, md) + extra if rows else []


def table(head, rows, md):
    if not rows:
        return []
    if md:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda r: "  ".join(c.ljust(w[i]) if i in (0, 3) else c.rjust(w[i]) for i, c in enumerate(r))
    return [line(head)] + [line(r) for r in rows]


def cmd_table(out, tmpd):
    steps = []
    try:
        with open(os.path.join(tmpd, "steps.tsv")) as f:
            for ln in f:
                p = ln.rstrip("\n").split("\t")
                if len(p) == 3:
                    steps.append({"step": p[0], "status": p[1], "seconds": p[2]})
    except OSError:
        pass
    notes = []
    try:
        with open(os.path.join(tmpd, "notes.txt")) as f:
            notes = [ln.rstrip("\n") for ln in f if ln.strip()]
    except OSError:
        pass
    benches = load_benches(out)
    e = os.environ
    summary = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "gpu": e.get("GPU_NAME") or None, "driver": e.get("DRIVER") or None, "bundle": e.get("DESCRIBE") or None,
               "binaries": e.get("BIN_KIND"), "simulate": e.get("SIM") == "1", "budget_s": int(e.get("BUDGET", "0") or 0),
               "elapsed_s": int(e.get("ELAPSED", "0") or 0), "steps": steps, "notes": notes, "benches": benches}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    lines = rlx_lines(benches)
    if lines:
        print()
        print("\n".join(lines))
    lines = hf_lines(benches)
    if lines:
        print()
        print("\n".join(lines))
    for name, b in benches.items():
        if b.get("error"):
            print(f"{name}: {b['error']}")
    return 0


def cmd_results(out):
    path = os.path.join(out, "summary.json") if os.path.isdir(out) else out
    try:
        with open(path) as f:
            s = json.load(f)
    except (OSError, ValueError) as e:
        print(f"gpu-session results: {path}: {e}", file=sys.stderr)
        return 1
    gpu = s.get("gpu") or "no GPU"
    print(f"### {s.get('date', '?')[:10]} — {gpu} — GPU session\n")
    if s.get("simulate"):
        print("**SIMULATED (no GPU: simt/cpu devices, tiny shapes): not a result; do not record it.**\n")
    print(f"- commit: `{s.get('bundle')}` ({s.get('binaries')}); driver {s.get('driver') or '?'}")
    print(f"- command: `scripts/gpu-session.sh run` ({s.get('elapsed_s')} s of a {s.get('budget_s')} s budget)")
    print("- expected: <what the change should do>; measured: <what it did>\n")
    print("| step | status | s |\n|---|---|---|")
    for st in s.get("steps", []):
        print(f"| {st['step']} | {st['status']} | {st['seconds']} |")
    b = s.get("benches") or {}
    for lines in (rlx_lines(b, md=True), hf_lines(b, md=True)):
        if lines:
            print()
            print("\n".join(lines))
    for n in s.get("notes", []):
        print(f"\n- note: {n}")
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "table":
        return cmd_table(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "results":
        return cmd_results(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
