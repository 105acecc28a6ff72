#!/usr/bin/python3
"""PyTorch ResNet-18 inference in fp32 and int8, the peers of benchmarks/bench_inference.cpp.

The standard ResNet-18 (basic blocks, 1x1 stride-2 downsample + BN), written out here to have
torchvision's form and a CIFAR one built alike: the ImageNet form (7x7/2 stem + max pool, 1000 classes, 224x224
input) and the CIFAR form (3x3/1 stem, no max pool, 100 classes, 32x32), as bnn's
examples/resnet18.hpp builds them. Eval mode, torch.no_grad(), batch 1 and 16,
torch.set_num_threads 1 and 2. PyTorch 1.13 runs the convs on oneDNN, and some small-spatial
ones on its GEMM fallback (the system BLAS). Every case is timed with the model and the input in
NCHW (contiguous) and in channels_last (NHWC, as bnn), and reported at the faster ("fmt"), with
the other format's fastest call beside it.

The int8 peer (precision "int8") is what a CPU user would run instead of a binary network:
torchvision's quantizable ResNet-18, fused and statically quantized on the engine this torch has
(torch_common.quantized_resnet18: Debian's torch has onednn and qnnpack, no fbgemm), timed the
same way. --precision fp32 or int8 times one only.

Reports the median and the fastest call (the machine is shared: the fastest call is the closest
to a quiet machine; bench_inference reports its fastest call too), images/s from the fastest,
and the size of the state_dict saved with torch.save. With --bnn-json (the output of
bench_inference --benchmark_out=FILE --benchmark_out_format=json) it prints bnn's float and
binary graph times beside PyTorch's and the speedup of the binary graph over both; --json writes
the cases for benchmarks/peer_tables.py. Run with Debian's /usr/bin/python3 (where python3-torch
lives), under benchmarks/run_peer_comparison.sh for the BLAS settings that make it a fair peer.
"""
import argparse
import io
import json
import torch

from torch_common import (ResNet18, add_peer_options, format_cells, format_header, formats_to_time, no_grad_forward,
                          quantized_engine, quantized_resnet18, time_call_in_formats, write_json)


def load_bnn(path):
    """{(name, side, batch, threads): best ms} from bench_inference's JSON output."""
    table = {}
    with open(path) as f:
        for b in json.load(f)["benchmarks"]:
            parts = dict(p.split(":") for p in b["name"].split("/")[1:] if ":" in p)
            if "side" not in parts:
                continue
            key = (b["name"].split("/")[0], int(parts["side"]), int(parts["batch"]), int(parts["threads"]))
            table[key] = b["best_ms"]
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--min-seconds", type=float, default=2.0, help="time per configuration and format")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--bnn-json", help="bench_inference JSON output to compare against")
    ap.add_argument("--precision", choices=["both", "fp32", "int8"], default="both",
                    help="the fp32 network, the int8 one, or both (default)")
    add_peer_options(ap)
    args = ap.parse_args()
    bnn = load_bnn(args.bnn_json) if args.bnn_json else {}
    formats = formats_to_time(args)
    torch.manual_seed(0)
    precisions = ["fp32", "int8"] if args.precision == "both" else [args.precision]
    print(f"torch {torch.__version__}, MKLDNN {torch.backends.mkldnn.is_available()}, formats {', '.join(formats)}, "
          f"int8 engine {quantized_engine()}")
    for imagenet in (True, False):
        model = ResNet18(imagenet).eval()
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        print(f"{'ImageNet' if imagenet else 'CIFAR'} ResNet-18 state_dict: {buf.getbuffer().nbytes} bytes")
    header = f"{'input':>8} {'batch':>5} {'thr':>3} {'prec':>4} {'median ms':>10} {'best ms':>9} {format_header()} " \
             f"{'img/s':>8}"
    if bnn:
        header += f" {'bnn float':>10} {'bnn binary':>10} {'vs torch':>9} {'vs float':>9}"
    print(header)
    cases = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for side in (224, 32):
            for precision in precisions:
                model = ResNet18(side == 224).eval() if precision == "fp32" else quantized_resnet18(side == 224)
                for batch in (1, 16):
                    time_case(model, side, batch, threads, precision, formats, args, bnn, cases)
    if args.json:
        write_json(args.json, "torch_resnet18", cases)


def time_case(model, side, batch, threads, precision, formats, args, bnn, cases):
    """Times one case in every format, records it in `cases` and prints its line."""
    x = torch.randn(batch, 3, side, side)
    t = time_call_in_formats(no_grad_forward(model, x), formats, args.min_seconds)
    cases.append({"side": side, "batch": batch, "threads": threads, "precision": precision, **t.record()})
    line = f"{side:>8} {batch:>5} {threads:>3} {precision:>4} {t.median * 1e3:>10.2f} {t.best * 1e3:>9.2f} " \
           f"{format_cells(t, digits=2)} {batch / t.best:>8.1f}"
    fl = bnn.get(("BM_FloatResNet18", side, batch, threads))
    bi = bnn.get(("BM_BinaryGraph", side, batch, threads))
    if fl and bi:
        line += f" {fl:>10.2f} {bi:>10.2f} {t.best * 1e3 / bi:>8.1f}x {fl / bi:>8.1f}x"
    print(line, flush=True)


if __name__ == "__main__":
    main()
