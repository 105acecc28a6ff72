#!/usr/bin/python3
"""PyTorch reference timings for benchmarks/bench_float_conv.cpp.

Same shapes: 3x3 convolution, stride 1, padding 1, Cin = Cout, batch 64, on the ResNet-18
CIFAR layer sizes (64@32x32, 128@16x16, 256@8x8, 512@4x4), forward alone under no_grad and
forward + backward (input, weight, bias gradients), on 1 and 2 threads. Each of the two is timed
with the conv, its input and the output gradient in NCHW (contiguous) and in channels_last (NHWC,
as bnn) and reported at the faster by median ("fmt"), with the other format's median beside
it: this script prints median milliseconds per call (bench_float_conv reports a mean, not a
fastest call) and GFLOP/s with the same flop counts; --json writes the cases for
benchmarks/peer_tables.py. Run it with Debian's interpreter (/usr/bin/python3), which is the one
python3-torch installs into, under benchmarks/run_peer_comparison.sh for the BLAS settings that
make it a fair peer.
"""
import argparse
import torch

from torch_common import (add_peer_options, format_cells, format_header, formats_to_time, no_grad_forward,
                          time_call_in_formats, write_json)

LAYERS = [(64, 32), (128, 16), (256, 8), (512, 4)]
BATCH = 64


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time spent per measurement and format")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    add_peer_options(parser)
    args = parser.parse_args()
    formats = formats_to_time(args)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, batch {BATCH}, 3x3 stride 1 pad 1, formats {', '.join(formats)}")
    print(f"{'layer':>12} {'threads':>7} {'fwd ms':>9} {format_header('median')} {'fwd GFLOP/s':>12} "
          f"{'fwd+bwd ms':>11} {format_header('median')} {'fwd+bwd GFLOP/s':>16}")
    cases = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for channels, size in LAYERS:
            conv = torch.nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=True)
            x = torch.randn(BATCH, channels, size, size)
            seed = torch.randn(BATCH, channels, size, size)
            flops = 2.0 * BATCH * size * size * channels * 9 * channels

            def make_forward_backward(memory_format):
                conv.to(memory_format=memory_format)
                conv.zero_grad(set_to_none=True)  # gradients accumulate in the layout of this format
                xf = x.detach().contiguous(memory_format=memory_format).requires_grad_(True)  # a leaf in either format
                seedf = seed.contiguous(memory_format=memory_format)

                def forward_backward():
                    conv(xf).backward(seedf)
                return forward_backward

            fwd = time_call_in_formats(no_grad_forward(conv, x), formats, args.min_seconds, by="median")
            fb = time_call_in_formats(make_forward_backward, formats, args.min_seconds, by="median")
            for name, t in (("forward", fwd), ("forward_backward", fb)):
                cases.append({"layer": LAYERS.index((channels, size)), "channels": channels, "side": size,
                              "batch": BATCH, "threads": threads, "pass": name, **t.record()})
            print(f"{channels:>4}@{size}x{size:<4} {threads:>7} {fwd.median * 1e3:9.2f} {format_cells(fwd, digits=2)} "
                  f"{flops / fwd.median * 1e-9:12.1f} {fb.median * 1e3:11.2f} {format_cells(fb, digits=2)} "
                  f"{3 * flops / fb.median * 1e-9:16.1f}", flush=True)
    if args.json:
        write_json(args.json, "torch_float_conv", cases)


if __name__ == "__main__":
    main()
