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
ISA_NAMES = {0: "scalar", 1: "avx2", 2: "avx512", 3: "avx512_vpopcntdq"}


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
    """A markdown table, or "" when no case of it was run (a run with --only)."""
    if not rows:
        return ""
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
    """bench_inference against torch_resnet18.py: ResNet-18, ImageNet 224 and CIFAR 32, PyTorch in
    fp32 and in int8 (cases without a precision are fp32: records from before the int8 peer)."""
    bnn, sizes = {}, {}
    for family, a, e in load_bnn(out_dir, "bench_inference"):
        if family == "BM_ModelSizes":
            sizes = {k: e[k] for k in ("float_resnet18_bytes", "r2b_deploy_bytes", "float_over_deploy") if k in e}
        elif "best_ms" in e:
            bnn[(family, a["side"], a["batch"], a["threads"])] = e["best_ms"] * 1e-3
    peer = {(c["side"], c["batch"], c["threads"], c.get("precision", "fp32")): c
            for c in load_peer(out_dir, "torch_resnet18")["cases"]}
    keys = {k[1:] for k in bnn} | {k[:3] for k in peer}
    rows = []
    for side, batch, threads in sorted(keys, key=lambda k: (k[2], -k[0], k[1])):
        fl, ops, graph, int_stem = (bnn.get((family, side, batch, threads))
                                    for family in ("BM_FloatResNet18", "BM_BinaryOps", "BM_BinaryGraph",
                                                   "BM_BinaryGraphIntStem"))
        case, int8 = (peer.get((side, batch, threads, precision)) for precision in ("fp32", "int8"))
        peer_best, int8_best = case and case["best"], int8 and int8["best"]
        rows.append(["ImageNet 224" if side == 224 else f"CIFAR {side}", batch, threads, *fmt_cells(case, digits=2),
                     *fmt_cells(int8, digits=2), ms(fl, 2), ms(ops, 2), ms(graph, 2), ms(int_stem, 2),
                     ratio(peer_best, graph), ratio(int8_best, graph), ratio(peer_best, int_stem),
                     ratio(int8_best, int_stem), ratio(fl, graph)])
    note = None
    if sizes:
        note = (f"Model sizes: float ResNet-18 checkpoint {sizes.get('float_resnet18_bytes', 0):,.0f} bytes, "
                f"Real-to-Bin deployment file {sizes.get('r2b_deploy_bytes', 0):,.0f} bytes "
                f"(1/{sizes.get('float_over_deploy', 0):.2f}).")
    return table("ResNet-18 inference against PyTorch fp32 and int8 (ms per call, fastest call)",
                 ["input", "batch", "threads", "PyTorch fp32", "fmt", "other fmt", "PyTorch int8", "fmt", "other fmt",
                  "bnn float", "bnn binary, ops", "bnn binary, graph", "graph, int16 stem", "graph vs fp32",
                  "graph vs int8", "int16 stem vs fp32", "int16 stem vs int8", "graph vs bnn float"], rows, note)


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


# bench_train_binary's `net` argument -> (name, the trainer's stage id), in the recipes' order.
TRAIN_BINARY_NETS = [(0, "real", "real"), (4, "r2b-step1", "real-to-bin/step1"), (3, "r2b-step2", "real-to-bin/step2"),
                     (5, "r2b-step3", "real-to-bin/step3"), (1, "sb-binact", "baseline/stage1"),
                     (2, "sb-binary", "baseline/stage2")]


def rate(value):
    return "-" if value is None else f"{value:.1f}"


def train_binary_table(out_dir):
    """bench_train_binary against torch_train_binary.py (the PyTorch twin of examples/pytorch):
    every stage of the recipes, images/s from the best and the median step, CPU time at 1
    thread and wall time at 2 on both sides. vs real is bnn's rate over bnn's real network at
    the same width and threads (each case ran in its own process, so it is computed here)."""
    bnn = {}
    for family, a, e in load_bnn(out_dir, "bench_train_binary"):
        if family == "BM_TrainBinary" and "images_per_s" in e:
            bnn[(a.get("threads", 1), a["width"], a["net"])] = (e["images_per_s"], e.get("median_images_per_s"))
    peer = {(c["threads"], c["width"], c["net"]): c for c in load_peer(out_dir, "torch_train_binary")["cases"]}
    order = {net: i for i, (net, _, _) in enumerate(TRAIN_BINARY_NETS)}
    names = {net: (name, stage) for net, name, stage in TRAIN_BINARY_NETS}
    rows = []
    for key in sorted(set(bnn) | set(peer), key=lambda k: (k[0], k[1], order.get(k[2], len(order)))):
        threads, width, net = key
        name, stage = names.get(net, (str(net), "?"))
        best, med = bnn.get(key, (None, None))
        real = bnn.get((threads, width, 0), (None, None))[0]
        case = peer.get(key)
        batch = case["batch"] if case else (64 if width >= 64 else 128)
        twin_best = twin_med = twin_other = None
        if case:
            twin_best, twin_med = batch / case["best"], batch / case["median"]
            other = [f for f in case["by_format"] if f != case["format"]]
            twin_other = batch / case["by_format"][other[0]]["best"] if other else None
        rows.append([name, stage, width, batch, threads, "cpu" if threads == 1 else "wall", rate(twin_best),
                     case["format"] if case else "-", rate(twin_other), rate(twin_med), rate(best), rate(med),
                     "-" if best is None or real is None else f"{best / real:.2f}", ratio(best, twin_best),
                     ratio(med, twin_med)])
    return table("Binary training: bnn vs twin, images/s, ratio",
                 ["network", "stage", "width", "batch", "threads", "clock", "twin img/s", "fmt", "other fmt",
                  "twin median", "bnn img/s", "bnn median", "bnn vs real", "bnn / twin", "bnn / twin median"], rows,
                 "One training step of each stage of the recipes (forward with the frozen teacher's, the stage's "
                 "losses, backward, AdamW, clipping): bnn's bench_train_binary against the PyTorch twin "
                 "(examples/pytorch, simulated binarisation), same network, batch, optimiser and threads. images/s "
                 "from the best step (and the median step) by process CPU time at 1 thread and wall time at 2; "
                 "bnn / twin above 1: bnn is faster.")


def peer_note(out_dir):
    """One line on how the PyTorch side ran (from the first script record found)."""
    for script in ("torch_binary_shapes", "torch_resnet18", "torch_float_conv", "torch_train_step",
                   "torch_train_binary"):
        meta = load_peer(out_dir, script)["meta"]
        if meta:
            blas = ", ".join(os.path.basename(p) for p in meta.get("blas", [])) or "none loaded"
            env = ", ".join(f"{k}={v}" for k, v in meta.get("env", {}).items() if v is not None) or "none"
            engine = f", int8 engine {meta['int8_engine']}" if meta.get("int8_engine") else ""
            return f"PyTorch {meta.get('torch')}, BLAS {blas}{engine}, environment {env}.\n"
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
        text = make(out_dir)
        if text:
            print(text)


if __name__ == "__main__":
    main()
