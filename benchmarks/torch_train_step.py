#!/usr/bin/python3
"""One training step of a float ResNet-18 (CIFAR stem) in PyTorch, for comparison with
benchmarks/bench_train_step.cpp: same model (3x3/1 stem conv, no max pool, basic blocks with
1x1 stride-2 conv + BN shortcuts, global average pool, linear to 100 classes), width 64,
batch 64, 32x32x3 inputs, SGD with momentum 0.9 and weight decay 5e-4, channels_last.

Prints images/s (median over the timed steps) and the process's peak resident memory.
Usage: /usr/bin/python3 benchmarks/torch_train_step.py [--threads 2] [--steps 10] [--profile]
"""
import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from torch_common import ResNet18


def peak_rss_mib():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--profile", action="store_true",
                        help="also print the autograd profiler's table of time per op type for one step")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    model = ResNet18(imagenet=False).to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(args.batch, 3, 32, 32).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 100, (args.batch,))
    rss_before = peak_rss_mib()

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up: allocations, oneDNN primitive creation, optimiser state
    times, cpu = [], []
    for _ in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    median = statistics.median(times)
    print(f"torch {torch.__version__}  threads {torch.get_num_threads()}  batch {args.batch}  "
          f"params {sum(p.numel() for p in model.parameters()) / 1e6:.4f} M")
    print(f"step ms: median {1e3 * median:.1f}  best {1e3 * min(times):.1f}  over {len(times)} steps")
    print(f"images_per_s {args.batch / median:.2f}  (best {args.batch / min(times):.2f})")
    # CPU time of all threads: with 1 thread it measures the work done, whatever else runs.
    print(f"cpu ms per step (all threads): median {1e3 * statistics.median(cpu):.1f}  best {1e3 * min(cpu):.1f}")
    print(f"peak_rss_MiB {peak_rss_mib():.1f}  (after import and model set-up {rss_before:.1f})")
    if args.profile:
        with torch.autograd.profiler.profile() as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
