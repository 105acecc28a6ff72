#!/usr/bin/python3
"""One training step of a float ResNet-18 (CIFAR stem) in PyTorch, for comparison with
benchmarks/bench_train_step.cpp: same model (3x3/1 stem conv, no max pool, basic blocks with
1x1 stride-2 conv + BN shortcuts, global average pool, linear to 100 classes), width 64,
batch 64, 32x32x3 inputs, SGD with momentum 0.9 and weight decay 5e-4.

Each thread count is run with the model, its optimiser and the images in NCHW (contiguous) and in
channels_last (NHWC, as bnn), each from the same seed, and reported at the format with the faster
best step ("fmt"); both formats' figures are printed. Prints images/s (median over the timed
steps), the best step, CPU time per step and the process's peak resident memory (of the whole
process: with both formats timed it is the larger of the two; pass --memory-format to measure
one). --json writes the cases for benchmarks/peer_tables.py.
Usage: /usr/bin/python3 benchmarks/torch_train_step.py [--threads 1 2] [--steps 10] [--profile]
(under benchmarks/run_peer_comparison.sh for the BLAS settings that make it a fair peer).
"""
import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from torch_common import (FORMAT_ABBREV, MEMORY_FORMATS, ResNet18, add_peer_options, formats_to_time, time_formats,
                          write_json)


def peak_rss_mib():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_step(batch, memory_format):
    """A fresh model, optimiser and batch in memory_format (seeded alike for every format), and
    its training step."""
    torch.manual_seed(42)
    model = ResNet18(imagenet=False).to(memory_format=memory_format)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(batch, 3, 32, 32).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 100, (batch,))

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        return loss.item()
    return model, step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--profile", action="store_true",
                        help="also print the autograd profiler's table of time per op type for one step "
                             "(in the faster format)")
    add_peer_options(parser)
    args = parser.parse_args()
    formats = formats_to_time(args)
    rss_before = peak_rss_mib()
    cases = []
    for threads in args.threads:
        torch.set_num_threads(threads)

        def measure(memory_format):
            model, step = make_step(args.batch, memory_format)
            step()  # warm-up: allocations, oneDNN primitive creation, optimiser state
            times, cpu = [], []
            for _ in range(args.steps):
                t0, c0 = time.perf_counter(), time.process_time()
                step()
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            return {"median": statistics.median(times), "best": min(times), "cpu_median": statistics.median(cpu),
                    "cpu_best": min(cpu), "params": sum(p.numel() for p in model.parameters())}

        t = time_formats(measure, formats)
        cases.append({"threads": threads, "batch": args.batch, "steps": args.steps, **t.record()})
        print(f"torch {torch.__version__}  threads {torch.get_num_threads()}  batch {args.batch}  "
              f"params {t.by_format[t.format]['params'] / 1e6:.4f} M  faster format: {t.format}")
        for name in sorted(t.by_format, key=lambda n: n != t.format):
            r = t.by_format[name]
            print(f"  {FORMAT_ABBREV[name]:>4}  step ms: median {1e3 * r['median']:.1f}  best {1e3 * r['best']:.1f}"
                  f"  over {args.steps} steps  images_per_s {args.batch / r['median']:.2f}"
                  f" (best {args.batch / r['best']:.2f})")
            # CPU time of all threads: with 1 thread it measures the work done, whatever else runs.
            print(f"        cpu ms per step (all threads): median {1e3 * r['cpu_median']:.1f}"
                  f"  best {1e3 * r['cpu_best']:.1f}")
        if args.profile:
            _, step = make_step(args.batch, MEMORY_FORMATS[t.format])
            step()
            with torch.autograd.profiler.profile() as prof:
                step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    print(f"peak_rss_MiB {peak_rss_mib():.1f}  (after import {rss_before:.1f})")
    if args.json:
        write_json(args.json, "torch_train_step", cases)


if __name__ == "__main__":
    main()
