#!/usr/bin/python3
"""PyTorch reference timings for benchmarks/bench_float_conv.cpp.

Same shapes: 3x3 convolution, stride 1, padding 1, Cin = Cout, batch 64, on the ResNet-18
CIFAR layer sizes (64@32x32, 128@16x16, 256@8x8, 512@4x4), channels_last memory format (NHWC,
as bnn), forward alone under no_grad and forward + backward (input, weight, bias gradients),
on 1 and 2 threads. Prints median milliseconds per call and GFLOP/s with the same flop counts.
Run it with Debian's interpreter (/usr/bin/python3), which is the one python3-torch installs into.
"""
import argparse
import torch

from torch_common import time_call

LAYERS = [(64, 32), (128, 16), (256, 8), (512, 4)]
BATCH = 64


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time spent per measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, batch {BATCH}, 3x3 stride 1 pad 1, channels_last")
    print(f"{'layer':>12} {'threads':>7} {'fwd ms':>9} {'fwd GFLOP/s':>12} {'fwd+bwd ms':>11} {'fwd+bwd GFLOP/s':>16}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for channels, size in LAYERS:
            conv = torch.nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=True)
            conv = conv.to(memory_format=torch.channels_last)
            x = torch.randn(BATCH, channels, size, size).to(memory_format=torch.channels_last)
            x.requires_grad_(True)
            seed = torch.randn(BATCH, channels, size, size).to(memory_format=torch.channels_last)
            flops = 2.0 * BATCH * size * size * channels * 9 * channels

            def forward():
                with torch.no_grad():
                    conv(x)

            def forward_backward():
                conv(x).backward(seed)

            fwd = time_call(forward, args.min_seconds)[0]
            fb = time_call(forward_backward, args.min_seconds)[0]
            print(f"{channels:>4}@{size}x{size:<4} {threads:>7} {fwd * 1e3:9.2f} {flops / fwd * 1e-9:12.1f} "
                  f"{fb * 1e3:11.2f} {3 * flops / fb * 1e-9:16.1f}", flush=True)


if __name__ == "__main__":
    main()
