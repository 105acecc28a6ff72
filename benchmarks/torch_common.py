"""Pieces shared by the PyTorch comparison scripts: the timing loop, the choice of the faster
memory format per case, the JSON record the peer tables read, and the ResNet-18 that bnn's
benchmarks are compared against (written out here, with the CIFAR stem torchvision lacks)."""
import json
import os
import statistics
import time

import torch
from torch import nn

# The two layouts PyTorch's CPU convolutions take: which one is faster depends on the shape and
# the thread count, so a fair peer is timed in both and reported at the faster.
MEMORY_FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def time_call(fn, min_seconds):
    """(median, best) seconds per call of fn, after two warm-up calls (oneDNN creates and caches
    its primitives on the first ones), over at least min_seconds and 5 calls."""
    fn()
    fn()
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(samples) < 5:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), min(samples)


def add_peer_options(parser):
    """The options every comparison script shares: which memory formats to time, and where to
    write the JSON record that benchmarks/peer_tables.py reads."""
    parser.add_argument("--memory-format", choices=["both", *MEMORY_FORMATS], default="both",
                        help="time both layouts and report the faster (default), or only one")
    parser.add_argument("--json", help="also write every case's timings to this file")


def formats_to_time(args):
    return list(MEMORY_FORMATS) if args.memory_format == "both" else [args.memory_format]


class FormatTiming:
    """One case timed in each memory format: by_format[name] holds at least "median" and "best"
    (seconds, or whatever unit the script times in). The winner is the format with the lower
    figure under `by`: "best" (the fastest call, the figure most tables compare: on a shared
    machine it is the closest to a quiet one) or "median" for scripts that report medians. The
    other format's figures stay in by_format."""

    def __init__(self, by_format, by="best"):
        self.by_format = by_format
        self.by = by
        self.format = min(by_format, key=lambda name: by_format[name][by])

    @property
    def best(self):
        return self.by_format[self.format]["best"]

    @property
    def median(self):
        return self.by_format[self.format]["median"]

    @property
    def other(self):
        """The losing format's name, or None when only one format was timed."""
        rest = [name for name in self.by_format if name != self.format]
        return rest[0] if rest else None

    def record(self):
        return {"format": self.format, "chosen_by": self.by, "best": self.best, "median": self.median,
                "by_format": self.by_format}


def time_formats(measure, formats, by="best"):
    """measure(memory_format) converts the case's module and inputs to memory_format, times it and
    returns {"median": ..., "best": ...} (extra keys are kept); called once per format in
    formats (names of MEMORY_FORMATS)."""
    return FormatTiming({name: measure(MEMORY_FORMATS[name]) for name in formats}, by)


def time_call_in_formats(make_call, formats, min_seconds, by="best"):
    """The common case of time_formats: make_call(memory_format) returns the zero-argument call
    to time with time_call."""
    def measure(memory_format):
        median, best = time_call(make_call(memory_format), min_seconds)
        return {"median": median, "best": best}
    return time_formats(measure, formats, by)


def no_grad_forward(module, x):
    """make_call for time_call_in_formats: module and x converted to the memory format, then a
    forward pass under no_grad."""
    def make_call(memory_format):
        module.to(memory_format=memory_format)
        xf = x.contiguous(memory_format=memory_format)

        def call():
            with torch.no_grad():
                module(xf)
        return call
    return make_call


# Short names for the format column of the printed tables.
FORMAT_ABBREV = {"nchw": "nchw", "channels_last": "cl"}


def format_header(by="best"):
    return f"{'fmt':>4} {'other ' + ('best' if by == 'best' else 'med'):>10}"


def format_cells(timing, scale=1e3, digits=3):
    """Printed cells for a case, under format_header(timing.by): the winner's format, then the
    other format's figure (scaled, default s -> ms), or '-' when only one format was timed."""
    other = timing.other
    cell = f"{timing.by_format[other][timing.by] * scale:10.{digits}f}" if other else f"{'-':>10}"
    return f"{FORMAT_ABBREV[timing.format]:>4} {cell}"


def blas_libraries():
    """The BLAS shared objects mapped into this process (Debian's python3-torch calls whatever
    libblas.so.3 resolves to for its GEMM fallback paths, where the reference Netlib BLAS is
    far slower than OpenBLAS)."""
    found = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if "blas" in os.path.basename(path):
                found.add(path)
    return sorted(found)


def write_json(path, script, cases):
    """The peer record: what ran (torch version, BLAS, OpenBLAS settings) and each case, as a
    dict of its keys plus a FormatTiming.record()."""
    meta = {"script": script, "torch": torch.__version__, "blas": blas_libraries(),
            "mkldnn": torch.backends.mkldnn.is_available(), "int8_engine": quantized_engine(),
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                                                   "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")}}
    with open(path, "w") as f:
        json.dump({"meta": meta, "cases": cases}, f, indent=1)


def quantized_engine():
    """The int8 engine this torch build has, the usual fastest on x86 first (Debian's torch has no
    fbgemm and no x86; it has onednn and qnnpack), or None."""
    engines = torch.backends.quantized.supported_engines
    return next((e for e in ("x86", "fbgemm", "onednn", "qnnpack") if e in engines), None)


def quantized_resnet18(imagenet, calibration_batches=4, batch=8):
    """The int8 peer: torchvision's quantizable ResNet-18 (in its CIFAR form for 32x32: 3x3/1 stem,
    no max pool, 100 classes), conv + BN (+ ReLU) fused, post-training static quantization on
    quantized_engine() with that engine's default qconfig, calibrated on a few batches of random
    images (the time of an int8 network does not depend on its values). Eval mode."""
    from torch.ao.quantization import convert, get_default_qconfig, prepare
    from torchvision.models.quantization import resnet18
    engine = quantized_engine()
    if engine is None:
        raise RuntimeError(f"this torch has no int8 engine (supported: {torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = engine
    model = resnet18(weights=None, quantize=False, num_classes=1000 if imagenet else 100)
    if not imagenet:
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    model.eval()
    model.fuse_model()
    model.qconfig = get_default_qconfig(engine)
    prepare(model, inplace=True)
    side = 224 if imagenet else 32
    with torch.no_grad():
        for _ in range(calibration_batches):
            model(torch.randn(batch, 3, side, side))
    return convert(model, inplace=True).eval()


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet18(nn.Module):
    """ResNet-18 with the ImageNet stem (7x7/2 conv, max pool) or the CIFAR one (3x3/1 conv, no
    pool), the same layers as bnn's examples/resnet18.hpp (Variant::Real)."""

    def __init__(self, imagenet, width=64, classes=None):
        super().__init__()
        if imagenet:
            self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True))
        blocks, cin = [], width
        for b in range(8):
            cout = width << (b // 2)
            blocks.append(BasicBlock(cin, cout, 2 if b in (2, 4, 6) else 1))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes or (1000 if imagenet else 100))

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
