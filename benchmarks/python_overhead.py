#!/usr/bin/python3
"""bnn from Python (issue 25): the Python call's overhead against the C++ call, and bnn from
Python against the same network in the PyTorch twin's eval mode from Python, at batch 1.

Networks: a fully binary Real-to-Bin ResNet-18 (width 64) with the ImageNet stem at 224x224 and
1000 classes, and with the CIFAR stem at 32x32 and 100 classes, built by the twin
(examples/pytorch/bnn_twin) with random weights and batch norm statistics, written with the twin's
save_deployed and loaded with bnn.load. Per network and thread count:

- C++ call: Graph._time_runs, each infer::Graph::run timed in C++ (no Python in between);
- Python call: graph(x) timed from Python (buffer checks, GIL release, the logits copied out);
- twin: net(x) under torch.no_grad() with torch.set_num_threads, NCHW and channels_last, the faster.

The C++ and Python calls are timed in alternating rounds on the same graph and input, so drift
on a shared machine falls on both. Reports the median and fastest call of each and the overhead
(Python median - C++ median). Run with the module built (-DBNN_BUILD_PYTHON=ON, with
-DBNN_NATIVE=ON as the other benchmarks) and Debian's interpreter:

  PYTHONPATH=build-bench/python /usr/bin/python3 benchmarks/python_overhead.py [--threads 1 2] [--seconds 2]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

import bnn
from torch_common import MEMORY_FORMATS, no_grad_forward, time_call_in_formats

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "pytorch"))
import bnn_twin as bt  # noqa: E402

CASES = [("imagenet", 224, 1000), ("cifar", 32, 100)]


def twin_network(stem, classes):
    torch.manual_seed(25)
    net = bt.ResNet18("real-to-bin", stem, 64, classes, mode=bt.FULLY_BINARY)
    with torch.no_grad():
        for name, t in net.named_buffers():
            if t.is_floating_point():
                t.copy_(0.5 + torch.rand(t.shape) if name.endswith("running_var") else 0.2 * torch.randn(t.shape))
    return net.eval()


def cpp_and_python(graph, x, seconds, rounds=5):
    """(C++ samples, Python samples) in seconds per call, over alternating rounds."""
    graph(x)
    graph(x)
    per_call = min(graph._time_runs(x, 3))
    n = max(5, int(seconds / rounds / max(per_call, 1e-6)))
    cpp, py = [], []
    for _ in range(rounds):
        cpp += graph._time_runs(x, n)
        for _ in range(n):
            t0 = time.perf_counter()
            graph(x)
            py.append(time.perf_counter() - t0)
    return cpp, py


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per case and side")
    args = parser.parse_args()
    print(f"{'network':<24} {'thr':>3} {'C++ med':>9} {'C++ best':>9} {'Py med':>9} {'Py best':>9} "
          f"{'overhead':>14} {'twin med':>9} {'twin best':>9} {'twin/bnn':>8}   (ms)")
    with tempfile.TemporaryDirectory(prefix="bnn_python_bench_") as tmp:
        for stem, size, classes in CASES:
            net = twin_network(stem, classes)
            path = os.path.join(tmp, f"{stem}.deploy.safetensors")
            bt.deploy.save_deployed(path, net, {"num_classes": str(classes)})
            images = torch.randn(1, 3, size, size)
            x = images.permute(0, 2, 3, 1).contiguous().numpy()
            loaded = bnn.load(path)
            for threads in args.threads:
                graph = loaded.compile(x.shape, threads=threads)
                cpp, py = cpp_and_python(graph, x, args.seconds)
                cpp_med, py_med = statistics.median(cpp), statistics.median(py)
                torch.set_num_threads(threads)
                twin = time_call_in_formats(no_grad_forward(net, images), list(MEMORY_FORMATS), args.seconds,
                                            by="median")
                twin_med, twin_best = twin.by_format[twin.format]["median"], twin.by_format[twin.format]["best"]
                overhead = py_med - cpp_med
                print(f"{'Real-to-Bin ' + stem + f' {size}':<24} {threads:>3} {1e3 * cpp_med:9.3f} {1e3 * min(cpp):9.3f} "
                      f"{1e3 * py_med:9.3f} {1e3 * min(py):9.3f} {1e6 * overhead:7.1f} us {100 * overhead / cpp_med:+4.1f}% "
                      f"{1e3 * twin_med:9.3f} {1e3 * twin_best:9.3f} {twin_med / py_med:8.2f}")
                assert np.isfinite(graph(x)).all()


if __name__ == "__main__":
    main()
