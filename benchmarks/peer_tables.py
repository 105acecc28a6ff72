#!/usr/bin/python3
"""Side-by-side markdown tables of bnn against its PyTorch peer, from the output directory of
benchmarks/run_peer_comparison.sh: OUT_DIR/bnn/<program>/*.json (Google Benchmark JSON, one case
per file) and OUT_DIR/torch/<script>.json (the PyTorch scripts' --json records).

Ratios are peer time over bnn time (above 1: bnn is faster). The PyTorch figure is the faster of
its two memory formats, named in the "fmt" column, with the other format's figure beside it.
Cells whose run is missing or failed (an ISA this CPU lacks, a crashed case) print as "-".

Usage: /usr/bin/python3 benchmarks/peer_tables.py OUT_DIR
"""
import glob
import json
import os
import sys

UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
ISA_NAMES = {0: "scalar", 1: "avx2", 2: "avx512"}


def case_args(name):
    """'BM_X/shape:0/batch:1/manual_time' -> ('BM_X', {'shape': 0, 'batch': 1})."""
    family, *parts = name.split("/")
    args = {}
    for part in parts:
        key, sep, value = part.partition(":")
        if sep and value.lstrip("-").isdigit():
            args[key] = int(value)
    return family, args


def load_bnn(out_dir, program):
    """[(family, args, entry)] of every case of program that ran without error."""
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "bnn", program, "*.json"))):
        try:
            with open(path) as f:
                entries = json.load(f)["benchmarks"]
        except (OSError, ValueError, KeyError):
            continue  # a crashed case leaves no or a truncated file; the runner lists it as failed
        for entry in entries:
            if entry.get("error_occurred") or entry.get("run_type", "iteration") != "iteration":
                continue
            family, args = case_args(entry["name"])
            rows.append((family, args, entry))
    return rows


def load_peer(out_dir, script):
    path = os.path.join(out_dir, "torch", script + ".json")
    if not os.path.exists(path):
        return {"meta": {}, "cases": []}
    with open(path) as f:
        return json.load(f)


def mean_seconds(entry):
    """Google Benchmark's per-iteration time (real time: the benchmarks use real or manual time)."""
    return entry["real_time"] * UNIT_SECONDS[entry["time_unit"]]


def ms(seconds, digits=3):
    return "-" if seconds is None else f"{seconds * 1e3:.{digits}f}"


def ratio(peer, bnn):
    return "-" if peer is None or bnn is None else f"{peer / bnn:.1f}x"


def fmt_cells(case, stat="best", digits=3):
    """The PyTorch cells: its figure, the winning format, the other format's figure."""
    if case is None:
        return ["-", "-", "-"]
    other = [name for name in case["by_format"] if name != case["format"]]
    return [ms(case[stat], digits), case["format"],
            ms(case["by_format"][other[0]][stat], digits) if other else "-"]


def table(title, header, rows, note=None):
    out = [f"### {title}", ""]
    if note:
        out += [note, ""]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


SHAPES = [("cifar", 64, 32), ("cifar", 128, 16), ("cifar", 256, 8), ("cifar", 512, 4),
          ("imagenet", 64, 56), ("imagenet", 128, 28), ("imagenet", 256, 14), ("imagenet", 512, 7)]


def binary_conv_table(out_dir):
    """bench_binary_conv against torch_binary_shapes.py: 3x3 conv, stride 1, Cin = Cout; bnn's
    binary conv on the widest ISA path this CPU ran (the one its dispatch picks)."""
    bnn_float, bnn_binary = {}, {}
    for family, a, e in load_bnn(out_dir, "bench_binary_conv"):
        if family not in ("BM_FloatConv", "BM_BinaryConv") or "best_MACs/s" not in e:
            continue
        net, c, side = SHAPES[a["shape"]]
        key = (a["shape"], a["batch"], a["threads"])
        seconds = a["batch"] * side * side * c * 9 * c / e["best_MACs/s"]
        if family == "BM_FloatConv":
            bnn_float[key] = seconds
        else:
            bnn_binary.setdefault(key, {})[a["isa"]] = (seconds, e.get("pct_of_peak"))
    peer = {(c["shape"], c["batch"], c["threads"]): c for c in load_peer(out_dir, "torch_binary_shapes")["cases"]}
    rows = []
    for key in sorted(set(bnn_float) | set(bnn_binary) | set(peer), key=lambda k: (k[2], k[0], k[1])):
        si, batch, threads = key
        net, c, side = SHAPES[si]
        paths = bnn_binary.get(key, {})
        isa = max(paths, default=None)  # the path bnn's dispatch runs: the widest this CPU has
        binary, peak = paths[isa] if isa is not None else (None, None)
        case = peer.get(key)
        rows.append([f"{net} {c}@{side}", batch, threads, *fmt_cells(case), ms(bnn_float.get(key)),
                     ms(binary), ISA_NAMES.get(isa, "-"), "-" if peak is None else f"{peak:.0f}%",
                     ratio(case and case["best"], binary), ratio(bnn_float.get(key), binary)])
    return table("Binary 3x3 conv against PyTorch fp32 conv (ms, fastest call)",
                 ["layer", "N", "T", "PyTorch", "fmt", "other fmt", "bnn float", "bnn binary", "ISA",
                  "% of peak", "binary vs PyTorch", "binary vs bnn float"], rows)


def inference_table(out_dir):
    """bench_inference against torch_resnet18.py: ResNet-18, ImageNet 224 and CIFAR 32."""
    bnn, sizes = {}, {}
    for family, a, e in load_bnn(out_dir, "bench_inference"):
        if family == "BM_ModelSizes":
            sizes = {k: e[k] for k in ("float_resnet18_bytes", "r2b_deploy_bytes", "float_over_deploy") if k in e}
        elif "best_ms" in e:
            bnn[(family, a["side"], a["batch"], a["threads"])] = e["best_ms"] * 1e-3
    peer = {(c["side"], c["batch"], c["threads"]): c for c in load_peer(out_dir, "torch_resnet18")["cases"]}
    keys = {k[1:] for k in bnn} | set(peer)
    rows = []
    for side, batch, threads in sorted(keys, key=lambda k: (k[2], -k[0], k[1])):
        fl, ops, graph = (bnn.get((family, side, batch, threads))
                          for family in ("BM_FloatResNet18", "BM_BinaryOps", "BM_BinaryGraph"))
        case = peer.get((side, batch, threads))
        rows.append(["ImageNet 224" if side == 224 else f"CIFAR {side}", batch, threads, *fmt_cells(case, digits=2),
                     ms(fl, 2), ms(ops, 2), ms(graph, 2), ratio(case and case["best"], graph), ratio(fl, graph)])
    note = None
    if sizes:
        note = (f"Model sizes: float ResNet-18 checkpoint {sizes.get('float_resnet18_bytes', 0):,.0f} bytes, "
                f"Real-to-Bin deployment file {sizes.get('r2b_deploy_bytes', 0):,.0f} bytes "
                f"(1/{sizes.get('float_over_deploy', 0):.2f}).")
    return table("ResNet-18 inference against PyTorch fp32 (ms per call, fastest call)",
                 ["input", "batch", "threads", "PyTorch", "fmt", "other fmt", "bnn float", "bnn binary, ops",
                  "bnn binary, graph", "graph vs PyTorch", "graph vs bnn float"], rows, note)


def float_conv_table(out_dir):
    """bench_float_conv (mean per call, on the widest ISA path, which bnn's dispatch picks; the
    scalar cases are the old Eigen path) against torch_float_conv.py (median)."""
    layers = [(64, 32), (128, 16), (256, 8), (512, 4)]
    bnn = {}
    for family, a, e in load_bnn(out_dir, "bench_float_conv"):
        passes = {"BM_FloatConvForward": "forward", "BM_FloatConvForwardBackward": "forward_backward"}
        if family not in passes or a["layer"] >= len(layers):
            continue
        key = (a["layer"], a["threads"], passes[family])
        if key not in bnn or a["isa"] > bnn[key][1]:  # the path bnn's dispatch runs: the widest
            bnn[key] = (mean_seconds(e), a["isa"])
    peer = {(c["layer"], c["threads"], c["pass"]): c for c in load_peer(out_dir, "torch_float_conv")["cases"]}
    rows = []
    for key in sorted(set(bnn) | set(peer), key=lambda k: (k[1], k[0], k[2] != "forward")):
        layer, threads, which = key
        c, side = layers[layer]
        seconds, isa = bnn.get(key, (None, None))
        case = peer.get(key)
        rows.append([f"{c}@{side}x{side}", threads, which.replace("_", " + "), *fmt_cells(case, "median", 2),
                     ms(seconds, 2), ISA_NAMES.get(isa, "-"), ratio(case and case["median"], seconds)])
    return table("Float 3x3 conv, batch 64, against PyTorch (ms per call: PyTorch median, bnn mean)",
                 ["layer", "threads", "pass", "PyTorch", "fmt", "other fmt", "bnn", "bnn ISA", "PyTorch / bnn"], rows)


def train_step_table(out_dir):
    """bench_train_step against torch_train_step.py: float ResNet-18, CIFAR, width 64, batch 64."""
    bnn = {}
    for family, a, e in load_bnn(out_dir, "bench_train_step"):
        if family == "BM_TrainStep" and "best_step_ms" in e:
            bnn[a["threads"]] = (e["best_step_ms"] * 1e-3, e.get("best_images_per_s"), e.get("peak_rss_MiB"))
    peer = {c["threads"]: c for c in load_peer(out_dir, "torch_train_step")["cases"]}
    rows = []
    for threads in sorted(set(bnn) | set(peer)):
        step, images_per_s, rss = bnn.get(threads, (None, None, None))
        case = peer.get(threads)
        batch = case["batch"] if case else 64
        rows.append([threads, *fmt_cells(case, digits=1), "-" if not case else f"{batch / case['best']:.1f}",
                     ms(step, 1), "-" if images_per_s is None else f"{images_per_s:.1f}",
                     "-" if rss is None else f"{rss:.0f}", ratio(case and case["best"], step)])
    return table("Float ResNet-18 training step, CIFAR, width 64, batch 64, SGD (ms per step, best step)",
                 ["threads", "PyTorch", "fmt", "other fmt", "PyTorch img/s", "bnn", "bnn img/s",
                  "bnn peak RSS MiB", "PyTorch / bnn"], rows)


def train_binary_table(out_dir):
    """bench_train_binary: no PyTorch peer yet (issue 13 item 6 compares with the PyTorch twin)."""
    names = {0: "real", 1: "sb-binact", 2: "sb-binary", 3: "r2b-step2"}
    rate = {}
    for family, a, e in load_bnn(out_dir, "bench_train_binary"):
        if family == "BM_TrainBinary" and "images_per_s" in e:
            rate[(a["width"], a["net"])] = e["images_per_s"]
    rows = []
    for width, net in sorted(rate):
        real = rate.get((width, 0))
        rows.append([names.get(net, net), width, 128 if width < 64 else 64, f"{rate[(width, net)]:.1f}",
                     "-" if real is None else f"{rate[(width, net)] / real:.2f}"])
    return table("Binary training throughput, one thread (images/s from the best step's CPU time)",
                 ["network", "width", "batch", "images/s", "vs real"], rows,
                 "Each network ran in its own process, so vs real is computed here, from the real network's process.")


def peer_note(out_dir):
    """One line on how the PyTorch side ran (from the first script record found)."""
    for script in ("torch_binary_shapes", "torch_resnet18", "torch_float_conv", "torch_train_step"):
        meta = load_peer(out_dir, script)["meta"]
        if meta:
            blas = ", ".join(os.path.basename(p) for p in meta.get("blas", [])) or "none loaded"
            env = ", ".join(f"{k}={v}" for k, v in meta.get("env", {}).items() if v is not None) or "none"
            return f"PyTorch {meta.get('torch')}, BLAS {blas}, environment {env}.\n"
    return "No PyTorch records found.\n"


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: peer_tables.py OUT_DIR (the output directory of run_peer_comparison.sh)")
    out_dir = sys.argv[1]
    machine = os.path.join(out_dir, "machine.txt")
    if os.path.exists(machine):
        with open(machine) as f:
            facts = dict(line.rstrip("\n").split(": ", 1) for line in f if ": " in line)
        quick = " (--quick: not a measurement)" if facts.get("quick") == "1" else ""
        print(f"{facts.get('date_utc', '?')} UTC, {facts.get('cpu_model', '?')} (CPUID family "
              f"{facts.get('cpuid_family', '?')}), load average {facts.get('load_average_before', '?')} before, "
              f"{facts.get('load_average_after', '?')} after{quick}.")
    print(peer_note(out_dir))
    for make in (binary_conv_table, inference_table, float_conv_table, train_step_table, train_binary_table):
        print(make(out_dir))


if __name__ == "__main__":
    main()
