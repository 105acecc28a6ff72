#!/usr/bin/env python3
"""Scaling model of data-parallel training (docs/distributed.md), from dist_throughput's output.

    python3 benchmarks/dist_scaling_model.py results.jsonl [--alpha-us 25] [--link-efficiency 0.9]

results.jsonl holds the JSON lines dist_throughput printed: "run" lines (one per configuration)
and "bytes" lines (dist_throughput --bytes). Prints Markdown: the measured comparison of
1 process x 2 threads against 2 processes x 1 thread, the bytes per step, and for every
single-process run the modelled images/s and efficiency at 2..64 machines on 10, 25 and
100 Gb/s networks.

The model (one machine = one process computing a batch share b in T_f + T_b + T_o, measured):
  all-reduce of S bytes over P machines (ring): C = 2 (P-1)/P * S / (efficiency * bandwidth)
                                                 + 2 (P-1) * alpha * buckets
  the buckets start during the backward, as their gradients become final; assuming the bytes
  become final evenly over the backward, communication ends max(C, T_b + c_last) after the
  backward started, c_last the all-reduce of the last bucket (first layers), so the step grows by
      exposed = max(C - T_b, c_last)
  images/s(P) = P * b / (T_f + T_b + T_o + exposed),  efficiency = (T_f + T_b + T_o) / that step.
Communication stops hiding behind the backward where C > T_b.
"""
import argparse
import json
import sys

MACHINES = [2, 4, 8, 16, 32, 64]
LINKS_GBPS = [10, 25, 100]


def load(path):
    runs, sizes = [], {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            j = json.loads(line)
            if j.get("kind") == "run":
                runs.append(j)
            elif j.get("kind") == "bytes":
                sizes[(j["variant"], j["width"])] = j["bytes_per_step"]
    return runs, sizes


def allreduce_seconds(nbytes, machines, gbps, alpha, efficiency, buckets):
    if machines == 1:
        return 0.0
    bandwidth = gbps * 1e9 / 8 * efficiency  # bytes/s
    return 2 * (machines - 1) / machines * nbytes / bandwidth + 2 * (machines - 1) * alpha * buckets


def model(run, machines, gbps, alpha, efficiency):
    compute = run["forward_s"] + run["backward_s"] - run["comm_wait_s"] + run["optimizer_s"]
    backward = run["backward_s"] - run["comm_wait_s"]
    c = allreduce_seconds(run["bytes_per_step"], machines, gbps, alpha, efficiency, run["buckets"])
    c_last = allreduce_seconds(run["last_bucket_bytes"], machines, gbps, alpha, efficiency, 1)
    exposed = max(c - backward, c_last)
    step = compute + exposed
    return machines * run["global_batch"] / step, compute / step, c > backward


def name(run):
    return f'{run["variant"]} ({run["mode"]}), width {run["width"]}, batch {run["global_batch"]}'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--alpha-us", type=float, default=25.0, help="latency per message step of the ring (microseconds)")
    ap.add_argument("--link-efficiency", type=float, default=0.9, help="fraction of the line rate MPI reaches")
    args = ap.parse_args()
    runs, sizes = load(args.results)
    if not runs:
        sys.exit(f"{args.results}: no 'run' lines (dist_throughput's output)")
    alpha = args.alpha_us * 1e-6
    out = []

    out.append("### Measured on this machine: 1 process x 2 threads against 2 processes x 1 thread\n")
    out.append("| network | 1x2 img/s | 2x1 img/s | ratio | 2x1 backward s | 2x1 waiting on communication s | buckets started in the backward |")
    out.append("|---|---|---|---|---|---|---|")
    for one in runs:
        if one["ranks"] != 1 or one["threads_per_rank"] != 2:
            continue
        for two in runs:
            if (two["ranks"] == 2 and two["threads_per_rank"] == 1 and
                    all(two[k] == one[k] for k in ("variant", "mode", "width", "global_batch"))):
                out.append(f'| {name(one)} | {one["images_per_s"]:.1f} | {two["images_per_s"]:.1f} | '
                           f'{two["images_per_s"] / one["images_per_s"]:.3f} | {two["backward_s"]:.3f} | '
                           f'{two["comm_wait_s"]:.4f} | {two["buckets_started_in_backward"]} of {two["buckets"]} |')
    out.append("")

    if sizes:
        out.append("### Bytes all-reduced per step (float gradients of every trainable parameter)\n")
        out.append("| variant | " + " | ".join(f"width {w}" for w in sorted({w for _, w in sizes})) + " |")
        out.append("|---|" + "---|" * len({w for _, w in sizes}))
        for variant in sorted({v for v, _ in sizes}):
            cells = [f"{sizes[(variant, w)] / 1e6:.2f} MB" for w in sorted({w for _, w in sizes}) if (variant, w) in sizes]
            out.append(f"| {variant} | " + " | ".join(cells) + " |")
        out.append("")

    out.append(f"### Modelled: images/s and efficiency at P machines (alpha {args.alpha_us:g} us, "
               f"{args.link_efficiency:g} of the line rate)\n")
    out.append("One machine = the measured single-process run (its batch per machine). `*`: communication no "
               "longer hides behind the backward (C > T_b).\n")
    for run in runs:
        if run["ranks"] != 1:
            continue
        out.append(f"**{name(run)}**, {run['threads_per_rank']} threads, one machine {run['images_per_s']:.1f} img/s, "
                   f"{run['bytes_per_step'] / 1e6:.1f} MB per step, backward {run['backward_s']:.3f} s\n")
        out.append("| link | " + " | ".join(f"P={p}" for p in MACHINES) + " |")
        out.append("|---|" + "---|" * len(MACHINES))
        for gbps in LINKS_GBPS:
            cells = []
            for p in MACHINES:
                rate, eff, exposed = model(run, p, gbps, alpha, args.link_efficiency)
                cells.append(f'{rate:.0f} img/s, {100 * eff:.1f}%{"*" if exposed else ""}')
            out.append(f"| {gbps} Gb/s | " + " | ".join(cells) + " |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
