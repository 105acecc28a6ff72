#!/usr/bin/python3
"""Merges several output directories of benchmarks/run_peer_comparison.sh into one that holds, for
every case, the run where it was fastest: on a shared machine each run is slowed by whatever else
ran then, so the fastest of a few runs is the closest to what the code does on idle cores.

- bnn: per case file (bnn/<program>/<case>.json), the run with the lowest best_ms, else the highest
  best_MACs/s, else the lowest mean time per iteration;
- PyTorch: per case of each script's JSON, the run with the lowest "best" (its faster format);
- machine.txt: the first run's, with the dates and load averages of every run appended.

Usage: /usr/bin/python3 benchmarks/merge_peer_runs.py MERGED_DIR RUN_DIR RUN_DIR...
then:  /usr/bin/python3 benchmarks/peer_tables.py MERGED_DIR
"""
import glob
import json
import os
import shutil
import sys

from peer_tables import mean_seconds


def bnn_speed(path):
    """A key that is smaller for the faster run of one case file (None when the case failed)."""
    try:
        with open(path) as f:
            entries = [e for e in json.load(f)["benchmarks"]
                       if not e.get("error_occurred") and e.get("run_type", "iteration") == "iteration"]
    except (OSError, ValueError, KeyError):
        return None
    if not entries:
        return None
    e = entries[0]
    if "best_ms" in e:
        return e["best_ms"]
    if "best_MACs/s" in e:
        return -e["best_MACs/s"]
    return mean_seconds(e)


def case_key(case):
    return json.dumps({k: v for k, v in case.items() if k not in ("format", "chosen_by", "best", "median", "by_format")
                       and not isinstance(v, (float, dict, list))}, sort_keys=True)


def main():
    if len(sys.argv) < 3 or any(not os.path.isdir(d) for d in sys.argv[2:]):
        sys.exit("usage: merge_peer_runs.py MERGED_DIR RUN_DIR RUN_DIR... (output directories of run_peer_comparison.sh)")
    merged, runs = sys.argv[1], sys.argv[2:]
    os.makedirs(merged, exist_ok=True)
    files = {os.path.relpath(p, run) for run in runs for p in glob.glob(os.path.join(run, "bnn", "*", "*.json"))}
    for rel in sorted(files):
        timed = [(bnn_speed(os.path.join(run, rel)), run) for run in runs if os.path.exists(os.path.join(run, rel))]
        timed = [t for t in timed if t[0] is not None] or [(0, run) for run in runs if os.path.exists(os.path.join(run, rel))]
        best_run = min(timed, key=lambda t: t[0])[1]
        os.makedirs(os.path.dirname(os.path.join(merged, rel)), exist_ok=True)
        shutil.copyfile(os.path.join(best_run, rel), os.path.join(merged, rel))
    scripts = {os.path.basename(p) for run in runs for p in glob.glob(os.path.join(run, "torch", "*.json"))}
    for script in sorted(scripts):
        meta, best = {}, {}
        for run in runs:
            path = os.path.join(run, "torch", script)
            if not os.path.exists(path):
                continue
            with open(path) as f:
                data = json.load(f)
            meta = meta or data.get("meta", {})
            for case in data.get("cases", []):
                key = case_key(case)
                if key not in best or case["best"] < best[key]["best"]:
                    best[key] = case
        os.makedirs(os.path.join(merged, "torch"), exist_ok=True)
        with open(os.path.join(merged, "torch", script), "w") as f:
            json.dump({"meta": meta, "cases": list(best.values())}, f, indent=1)
    lines = []
    for i, run in enumerate(runs):
        path = os.path.join(run, "machine.txt")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            text = f.read()
        if not lines:
            lines.append(text.rstrip("\n"))
        facts = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
        lines.append(f"run_{i + 1}: {run} {facts.get('date_utc', '?')} to {facts.get('date_utc_after', '?')}, "
                     f"load {facts.get('load_average_before', '?')} / {facts.get('load_average_after', '?')}")
    with open(os.path.join(merged, "machine.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
