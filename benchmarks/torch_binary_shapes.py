#!/usr/bin/python3
"""PyTorch fp32 conv on the shapes of benchmarks/bench_binary_conv.cpp, for a side-by-side table.

Every ResNet-18 3x3 layer shape (stride 1, padding 1, Cin = Cout, no bias): CIFAR 64@32, 128@16,
256@8, 512@4 and ImageNet 64@56, 128@28, 256@14, 512@7, batch 1 and 16, 1 and 2 threads,
forward under no_grad. PyTorch 1.13 runs these through oneDNN, or for some small images through
its GEMM fallback on the system BLAS. Each case is timed with the conv and its input in NCHW
(contiguous) and in channels_last (NHWC, as bnn) and reported at the faster ("fmt"), with the
other format's fastest call beside it. Reports the median and the fastest call (the machine is
shared: the fastest call is the closest to a quiet machine, and bench_binary_conv reports its
best call too) and MAC/s from the fastest.

With --bnn-json (the output of bench_binary_conv --benchmark_out=FILE --benchmark_out_format=json)
it adds bnn's best binary conv time per ISA path and bnn's float conv, and the speedup of the
fastest binary path over PyTorch; --json writes the cases for benchmarks/peer_tables.py. Run with
Debian's /usr/bin/python3 (where python3-torch lives), under benchmarks/run_peer_comparison.sh for
the BLAS settings that make it a fair peer.
"""
import argparse
import json
import torch

from torch_common import (add_peer_options, format_cells, format_header, formats_to_time, no_grad_forward,
                          time_call_in_formats, write_json)

SHAPES = [("cifar", 64, 32), ("cifar", 128, 16), ("cifar", 256, 8), ("cifar", 512, 4),
          ("imagenet", 64, 56), ("imagenet", 128, 28), ("imagenet", 256, 14), ("imagenet", 512, 7)]
ISA_NAMES = {0: "scalar", 1: "avx2", 2: "avx512", 3: "avx512_vpopcntdq"}


def load_bnn(path):
    """{(shape index, batch, threads): {"float": s, "avx512_vpopcntdq": s, ...}} of best seconds per call."""
    table = {}
    with open(path) as f:
        for b in json.load(f)["benchmarks"]:
            if b.get("run_type") != "iteration" or "best_MACs/s" not in b:
                continue
            parts = dict(p.split(":") for p in b["name"].split("/")[1:] if ":" in p)
            if b["name"].startswith("BM_FloatConv"):
                kind = "float"
            elif b["name"].startswith("BM_BinaryConv"):
                kind = ISA_NAMES[int(parts["isa"])]
            else:
                continue
            si, batch, threads = int(parts["shape"]), int(parts["batch"]), int(parts["threads"])
            net, c, side = SHAPES[si]
            macs = batch * side * side * c * 9 * c
            key = (si, batch, threads)
            seconds = macs / b["best_MACs/s"]
            table.setdefault(key, {})[kind] = min(seconds, table.get(key, {}).get(kind, seconds))
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-seconds", type=float, default=0.5, help="time spent per measurement and format")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--bnn-json", help="bench_binary_conv JSON output for the side-by-side columns")
    add_peer_options(parser)
    args = parser.parse_args()
    bnn = load_bnn(args.bnn_json) if args.bnn_json else {}
    formats = formats_to_time(args)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, 3x3 stride 1 pad 1, fp32 forward under no_grad, formats {', '.join(formats)}")
    head = f"{'layer':>15} {'N':>3} {'T':>2} {'torch med ms':>12} {'torch best ms':>13} {format_header()} " \
           f"{'torch GMAC/s':>12}"
    if bnn:
        head += f" {'bnn float ms':>12} {'bnn vpopcntdq ms':>16} {'bnn avx2 ms':>11} {'bnn scalar ms':>13} {'x torch':>8}"
    print(head)
    cases = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for si, (net, c, side) in enumerate(SHAPES):
            for batch in (1, 16):
                conv = torch.nn.Conv2d(c, c, 3, stride=1, padding=1, bias=False)
                x = torch.randn(batch, c, side, side)
                t = time_call_in_formats(no_grad_forward(conv, x), formats, args.min_seconds)
                cases.append({"shape": si, "net": net, "channels": c, "side": side, "batch": batch,
                              "threads": threads, **t.record()})
                macs = batch * side * side * c * 9 * c
                line = f"{net + ' ' + str(c) + '@' + str(side):>15} {batch:>3} {threads:>2} {t.median * 1e3:12.3f} " \
                       f"{t.best * 1e3:13.3f} {format_cells(t)} {macs / t.best * 1e-9:12.1f}"
                if bnn:
                    row = bnn.get((si, batch, threads), {})
                    cell = lambda k, w: f" {row[k] * 1e3:{w}.3f}" if k in row else f" {'-':>{w}}"
                    line += cell("float", 12) + cell("avx512_vpopcntdq", 16) + cell("avx2", 11) + cell("scalar", 13)
                    fastest = min((row[k] for k in ("avx512_vpopcntdq", "avx2", "scalar") if k in row), default=None)
                    line += f" {t.best / fastest:8.1f}" if fastest else f" {'-':>8}"
                print(line, flush=True)
    if args.json:
        write_json(args.json, "torch_binary_shapes", cases)

if __name__ == "__main__":
    main()
