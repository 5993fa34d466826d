#!/usr/bin/env python3
"""Markdown tables from the runs of scripts/design-space-results.sh.

Usage: python3 scripts/design-space-table.py runs/design-space > table.md

One row per method: stored delta as % of the base (He et al.'s "#params"), the headline dev
metric of each task (accuracy for SST-2 and RTE, mean of accuracy and F1 for MRPC, mean of
Pearson and Spearman for STS-B, Matthews correlation for CoLA; x100), their average over the
tasks run. Then the SST-2 insertion/site ablation. (Throughput is left out: these runs share
the CPU with whatever else runs, so their examples/s are not comparable.)
"""
import json
import sys
from pathlib import Path

TASKS = ["sst2", "rte", "mrpc", "stsb", "cola"]
METHODS = ["full", "bitfit", "prefix-l16", "lora-r8", "houlsby-r8", "pa-ffn-r16", "scaled-pa-r16",
           "mh-pa-l16", "mam-glue"]
ABLATION = ["sa-attn-r16", "pa-attn-r16", "sa-ffn-r16", "pa-ffn-r16"]


def load(root, task, method):
    path = root / task / method / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def cell(m):
    return "—" if m is None or m.get("dev_headline") is None else f"{100 * m['dev_headline']:.1f}"


def main():
    root = Path(sys.argv[1])
    tasks = [t for t in TASKS if (root / t).is_dir()]
    print("| method | delta % of base | " + " | ".join(tasks) + " | avg |")
    print("|---|---|" + "---|" * len(tasks) + "---|")
    for method in METHODS:
        runs = {t: load(root, t, method) for t in tasks}
        any_run = next((r for r in runs.values() if r), None)
        if any_run is None:
            continue
        scores = [100 * r["dev_headline"] for r in runs.values() if r and r.get("dev_headline") is not None]
        avg = f"{sum(scores) / len(scores):.1f}" if len(scores) == len(tasks) else "—"
        print(f"| {method} | {any_run['delta_percent']:.3f} | "
              + " | ".join(cell(runs[t]) for t in tasks) + f" | {avg} |")
    rows = [(m, load(root, "sst2", m)) for m in ABLATION]
    if any(r for _, r in rows):
        print()
        print("SST-2 insertion × site at r = 16 (Table 3's comparison):")
        print()
        print("| method | insertion | site | delta % | SST-2 acc |")
        print("|---|---|---|---|---|")
        for m, r in rows:
            ins = "parallel" if m.startswith("pa") else "sequential"
            site = "attention" if "attn" in m else "FFN"
            pct = f"{r['delta_percent']:.3f}" if r else "—"
            print(f"| {m} | {ins} | {site} | {pct} | {cell(r)} |")


if __name__ == "__main__":
    main()
