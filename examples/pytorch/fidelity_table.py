#!/usr/bin/python3
"""The table of docs/results.md from the runs of fidelity_runs.sh: every stage's final top-1 for
bnn and the PyTorch twin, per seed, mean and spread (half the range of the two seeds), the
difference of the means, and the paper's Table 3 beside them.

usage: fidelity_table.py OUT_DIR [EPOCHS]
OUT_DIR holds bnn-seed1/, twin-seed1/, ... as the script wrote them; EPOCHS per stage (default 3,
the script's). A stage still short of EPOCHS shows its latest epoch and stays out of the means.
"""
import glob
import json
import os
import sys

STAGES = ["real", "real-to-bin/step1", "real-to-bin/step2", "real-to-bin/step3", "baseline/stage1", "baseline/stage2"]
# ICLR 2020, Table 3 (ResNet-18 at width 64, 350 epochs per stage), top-1 where the paper gives it.
PAPER = {"real": 78.3, "real-to-bin/step2": 76.5, "real-to-bin/step3": 76.2, "baseline/stage1": 72.1,
         "baseline/stage2": 69.6}


def latest_top1(metrics_path):
    """{stage: (latest epoch, top-1 in % after it)} from a metrics.jsonl (bnn's or the twin's)."""
    last = {}
    with open(metrics_path) as f:
        for line in f:
            j = json.loads(line)
            if j.get("kind", "epoch") != "epoch":
                continue
            stage, epoch = j["stage"], j["epoch"]
            if stage not in last or epoch >= last[stage][0]:
                last[stage] = (epoch, j["test_top1"])
    return {s: (e, 100 * v) for s, (e, v) in last.items()}  # both write fractions


def summary(values):
    if not values:
        return None, None
    return sum(values) / len(values), (max(values) - min(values)) / 2


def main():
    out = sys.argv[1]
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, "*-seed*", "metrics.jsonl"))):
        impl, seed = os.path.basename(os.path.dirname(path)).split("-seed")
        runs.setdefault(impl, {})[int(seed)] = latest_top1(path)
    seeds = sorted({s for r in runs.values() for s in r})
    head = ["stage"] + [f"{impl} seed {s}" for impl in ("bnn", "twin") for s in seeds]
    head += ["bnn mean ± spread", "twin mean ± spread", "bnn - twin", "paper"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for stage in STAGES:
        row, means = [stage], {}
        for impl in ("bnn", "twin"):
            for s in seeds:
                e, v = runs.get(impl, {}).get(s, {}).get(stage, (0, None))
                row.append("-" if v is None else f"{v:.2f}" if e >= epochs else f"({v:.2f} after {e}/{epochs})")
        for impl in ("bnn", "twin"):
            vals = [v for s in seeds for e, v in [runs.get(impl, {}).get(s, {}).get(stage, (0, None))]
                    if e >= epochs]
            m, spread = summary(vals)
            means[impl] = m
            row.append("-" if m is None else f"{m:.2f} ± {spread:.2f} (n={len(vals)})")
        diff = None if None in means.values() else means["bnn"] - means["twin"]
        row.append("-" if diff is None else f"{diff:+.2f}")
        row.append(f"{PAPER[stage]:.1f}" if stage in PAPER else "-")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
