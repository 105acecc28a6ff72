#!/usr/bin/python3
"""One training step of every stage of the recipes in the PyTorch twin (examples/pytorch/bnn_twin),
for comparison with benchmarks/bench_train_binary.cpp: the same stages, networks, losses,
optimiser, batch and threads.

A step is the twin's recipe.distillation_step, the step its trainer runs: the frozen teacher's
forward without a tape where the stage has one, the student's forward with the twin's simulated
binarisation (tanh, or sign with bnn's straight-through estimators, on float weights or on
sign(W) times the scale), the stage's losses (CE, attention matching, KD with the stage's
weights), backward, AdamW with the trainer's two parameter groups and the stage's rate and
decay, and the latent weights clipped. Networks and stage ids, numbered as the bnn benchmark's
`net` argument:

    0 real (stage real), 4 r2b-step1, 3 r2b-step2, 5 r2b-step3 (real-to-bin/step1..3),
    1 sb-binact, 2 sb-binary (baseline/stage1..2)

CIFAR stem, 32x32x3 inputs, 100 classes, freshly initialised weights (a step costs the same
whatever they are); width 16 uses batch 128 (the trainer's setting), width 64 batch 64.

Each case is timed with the model, teacher and images in NCHW and in channels_last, each from the
same seed, and reported at the faster format ("fmt"). The measure is the one bench_train_binary
uses: process CPU time at 1 thread (the work done, whatever else runs on the machine) and wall
time at more threads (CPU time would add up the threads' work). Prints images/s from the best
and from the median step; --json writes the cases for benchmarks/peer_tables.py.

Usage: /usr/bin/python3 benchmarks/torch_train_binary.py [--threads 1 2] [--widths 16 64]
       [--nets real r2b-step2 ...] [--steps 10]
(under benchmarks/run_peer_comparison.sh for the BLAS settings that make it a fair peer).
"""
import argparse
import os
import statistics
import sys
import time

import torch

from torch_common import FORMAT_ABBREV, add_peer_options, formats_to_time, time_formats, write_json

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples", "pytorch"))
import bnn_twin as bt  # noqa: E402
from bnn_twin import recipe  # noqa: E402

# net number (bench_train_binary's `net` argument) -> (short name, the trainer's stage id)
NETS = {0: ("real", "real"), 1: ("sb-binact", "baseline/stage1"), 2: ("sb-binary", "baseline/stage2"),
        3: ("r2b-step2", "real-to-bin/step2"), 4: ("r2b-step1", "real-to-bin/step1"),
        5: ("r2b-step3", "real-to-bin/step3")}
RECIPE_ORDER = [0, 4, 3, 5, 1, 2]
NET_BY_NAME = {name: net for net, (name, _) in NETS.items()}
NUM_CLASSES = 100


def batch_of(width):
    """The batch bench_train_binary uses at a width: the trainer's 128 at width 16, 64 at 64."""
    return 64 if width >= 64 else 128


def make_network(stage, width):
    return bt.ResNet18(stage.variant, "cifar", width, NUM_CLASSES, 3, mode=stage.mode)


def make_step(net, width, batch, memory_format):
    """The stage's student, frozen teacher, optimiser and one fixed batch in memory_format (seeded
    alike for every format), and its training step."""
    stage = recipe.find_stage(NETS[net][1])
    torch.manual_seed(7)
    student = make_network(stage, width).to(memory_format=memory_format)
    teacher = None
    if stage.teacher:
        teacher = make_network(recipe.find_stage(stage.teacher), width).to(memory_format=memory_format)
        recipe.freeze(teacher)
    c = stage.config
    optimizer = recipe.make_optimizer("adamw", student, recipe.f32(c.lr), recipe.f32(c.weight_decay))
    images = torch.randn(batch, 3, 32, 32).contiguous(memory_format=memory_format)
    labels = torch.randint(0, NUM_CLASSES, (batch,))

    def step():
        parts, _ = recipe.distillation_step(teacher, student, images, labels, c.weights, optimizer)
        return parts["total"]
    return step


def measure_case(net, width, threads, steps):
    """measure(memory_format) for time_formats: one warm-up step, then `steps` timed steps."""
    batch = batch_of(width)

    def measure(memory_format):
        step = make_step(net, width, batch, memory_format)
        step()  # warm-up: allocations, oneDNN primitive creation, optimiser state
        wall, cpu = [], []
        for _ in range(steps):
            t0, c0 = time.perf_counter(), time.process_time()
            loss = step()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        chosen = cpu if threads == 1 else wall
        return {"median": statistics.median(chosen), "best": min(chosen), "best_wall": min(wall),
                "median_wall": statistics.median(wall), "best_cpu": min(cpu), "median_cpu": statistics.median(cpu),
                "loss": loss}
    return measure


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--nets", nargs="+", choices=[NETS[n][0] for n in RECIPE_ORDER],
                        default=[NETS[n][0] for n in RECIPE_ORDER], help="stages to time (default: all)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case and format")
    add_peer_options(parser)
    args = parser.parse_args()
    if args.steps < 1 or min(args.threads) < 1 or min(args.widths) < 1:
        parser.error(f"steps, threads and widths must be >= 1, got steps {args.steps}, threads {args.threads}, "
                     f"widths {args.widths}")
    formats = formats_to_time(args)
    nets = [NET_BY_NAME[name] for name in args.nets]
    cases = []
    print(f"torch {torch.__version__}; images/s from the best (median) step: CPU time at 1 thread, wall time above")
    print(f"{'network':<10} {'stage':<18} {'width':>5} {'batch':>5} {'T':>2} {'clock':>5} {'fmt':>4} "
          f"{'img/s best':>10} {'median':>8} {'other fmt best':>14}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for width in args.widths:
            for net in nets:
                t = time_formats(measure_case(net, width, threads, args.steps), formats)
                batch = batch_of(width)
                name, stage = NETS[net]
                clock = "cpu" if threads == 1 else "wall"
                cases.append({"net": net, "name": name, "stage": stage, "width": width, "batch": batch,
                              "threads": threads, "steps": args.steps, "clock": clock, **t.record()})
                other = f"{batch / t.by_format[t.other]['best']:14.1f}" if t.other else f"{'-':>14}"
                print(f"{name:<10} {stage:<18} {width:5d} {batch:5d} {threads:2d} {clock:>5} "
                      f"{FORMAT_ABBREV[t.format]:>4} {batch / t.best:10.1f} {batch / t.median:8.1f} {other}",
                      flush=True)
    if args.json:
        write_json(args.json, "torch_train_binary", cases)


if __name__ == "__main__":
    main()
