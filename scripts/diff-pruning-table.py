#!/usr/bin/env python3
"""Markdown tables of the diff-pruning runs under runs/diff-pruning (see
scripts/diff-pruning-results.sh): dev metric per task and method, bytes per task, what the
L0 stage did, the density sweep and training cost. Missing runs show as "–"."""
import json
import math
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "runs/diff-pruning"
TASKS = ["sst2", "mrpc", "stsb", "cola", "rte"]
METHODS = [
    ("full", "full fine-tuning"),
    ("diff-pruning", "diff pruning"),
    ("diff-pruning-struct", "structured diff pruning"),
    ("nonadaptive", "non-adaptive (full FT → prune → fixed-mask)"),
]


def load(*parts):
    path = os.path.join(ROOT, *parts)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def headline(task, method):
    m = load(task, method, "metrics.json")
    if not m or m.get("dev_headline") is None:
        return None
    return 100 * m["dev_headline"]


def artifact_bytes(task, method):
    for sub in ("artifact", "stage3/artifact"):
        d = os.path.join(ROOT, task, method, sub)
        if os.path.isdir(d):
            return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    return None


def fmt(v, spec="{:.1f}"):
    return "–" if v is None else spec.format(v)


def human(b):
    if b is None:
        return "–"
    for unit in ("B", "kB", "MB", "GB"):
        if b < 1000:
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1000
    return f"{b:.1f} TB"


tasks = [t for t in TASKS if os.path.isdir(os.path.join(ROOT, t))]
out = []
out.append("| method | " + " | ".join(tasks) + " | mean |")
out.append("|---|" + "---|" * (len(tasks) + 1))
for key, label in METHODS:
    vals = [headline(t, key) for t in tasks]
    done = [v for v in vals if v is not None]
    mean = sum(done) / len(done) if len(done) == len(vals) and done else None
    out.append(f"| {label} | " + " | ".join(fmt(v) for v in vals) + f" | {fmt(mean)} |")
out.append("")
out.append("Bytes per task (the artifact directory: diff or weights, head, metadata):")
out.append("")
out.append("| method | " + " | ".join(tasks) + " |")
out.append("|---|" + "---|" * len(tasks))
for key, label in METHODS:
    out.append(f"| {label} | " + " | ".join(human(artifact_bytes(t, key)) for t in tasks) + " |")
out.append("")
out.append("What each stage did (L0 stage density = nonzero entries of z⊙w before projection; "
           "position bits vs. log2 C(n,k); headline after projection, before and after fixed-mask "
           "fine-tuning):")
out.append("")
out.append("| task | method | L0-stage dev | density before projection | kept | bytes/entry | position bits/entry | ratio to bound | projected dev | fixed-mask dev |")
out.append("|---|---|---|---|---|---|---|---|---|---|")
for t in tasks:
    for key in ("diff-pruning", "diff-pruning-struct"):
        r = load(t, key, "diff-pruning.json")
        if not r:
            continue
        p = r["projection"]
        s = p["size"]
        nnz = max(p["kept"], 1)
        n = sum(t["numel"] for t in s["tensors"])
        k = sum(t["nnz"] for t in s["tensors"])
        # log2 C(n, k): the bits any code needs for an arbitrary k-subset of n positions.
        bound = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)
        out.append(
            f"| {t} | {key} | {fmt(100 * (r['stage1']['dev_headline'] or 0))} | {100 * p['density_before']:.2f}% | "
            f"{p['kept']} | {s['file_bytes'] / nnz:.2f} | {s['position_bits'] / nnz:.2f} | "
            f"{fmt(s['position_bits'] / bound if bound else None, '{:.3f}')} | "
            f"{fmt(100 * r['projected_dev_headline'] if r['projected_dev_headline'] is not None else None)} | "
            f"{fmt(100 * (r['stage3']['dev_headline'] or 0))} |"
        )
sweep = []
for t in tasks:
    for d, name in ((0.001, "diff-pruning-struct-0.001"), (0.005, "diff-pruning-struct"), (0.01, "diff-pruning-struct-0.01")):
        v = headline(t, name)
        if v is not None and (name != "diff-pruning-struct" or headline(t, "diff-pruning-struct-0.001") is not None):
            sweep.append((t, d, v, artifact_bytes(t, name)))
if sweep:
    out.append("")
    out.append("Density sweep (structured diff pruning; one L0 stage, projected to each density, then fixed-mask):")
    out.append("")
    out.append("| task | kept | dev | bytes |")
    out.append("|---|---|---|---|")
    for t, d, v, b in sweep:
        out.append(f"| {t} | {100 * d:.1f}% | {v:.1f} | {human(b)} |")
out.append("")
out.append("Training throughput (examples/s, same machine, same recipe; ratio = full FT / stage):")
out.append("")
out.append("| task | full FT | L0 stage (diff pruning) | ratio | L0 stage (structured) | ratio | fixed-mask stage | ratio |")
out.append("|---|---|---|---|---|---|---|---|")
for t in tasks:
    full = load(t, "full", "metrics.json")
    dp = load(t, "diff-pruning", "diff-pruning.json")
    sdp = load(t, "diff-pruning-struct", "diff-pruning.json")
    if not full:
        continue
    f = full["train_examples_per_s"]
    row = [f"{f:.1f}"]
    for r in (dp, sdp):
        s = r["stage1"]["train_examples_per_s"] if r else None
        row += [fmt(s), fmt(f / s if s else None, "{:.2f}×")]
    s3 = sdp["stage3"]["train_examples_per_s"] if sdp else None
    row += [fmt(s3), fmt(f / s3 if s3 else None, "{:.2f}×")]
    out.append(f"| {t} | " + " | ".join(row) + " |")
print("\n".join(out))
