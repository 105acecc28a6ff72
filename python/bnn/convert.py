"""ONNX -> bnn deployment file (docs/onnx.md): finds the binary convolutions of a network exported
from PyTorch in eval mode and writes it as bnn's module tree, every binary conv packed 1 bit per
weight.

    python -m bnn.convert model.onnx -o model.deploy.safetensors

    report = bnn.convert.convert("model.onnx", "model.deploy.safetensors")
    print(report)      # what became binary, what stayed float, parameters, file sizes

The file is written from Python (safetensors: a JSON header and the raw tensors), with the
module tree and tensor names that bnn's io::load_deployed reads (include/bnn/io/deploy.hpp).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import onnx

from .onnx_graph import ConversionError, Graph, refuse

DEPLOY_FORMAT = "bnn-deploy-2"

__all__ = ["ConversionError", "Report", "convert", "main"]


class Mod:
    """One bnn module being built: its module-tree type and options, its tensors (relative names,
    bnn layout), its children (Sequential), body and shortcut (Residual), and the ONNX node it came
    from. Kinds in lower case are the converter's own and must be folded away before writing."""

    def __init__(self, kind, options=None, tensors=None, node=None, **extra):
        self.kind, self.options, self.tensors, self.node = kind, options or {}, tensors or {}, node
        self.children, self.body, self.shortcut = None, None, None
        self.extra = extra


# ---------------------------------------------------------------------------------------------
# Rewrites on the canonical ops (onnx_graph.Op): the sign spellings, thresholds, binary convs.

def _live(g):
    """The ops the output depends on, in order; producers and consumers of each value."""
    producer = {op.out: op for op in g.ops}
    needed, stack = set(), [g.resolve(g.output)]
    while stack:
        v = stack.pop()
        op = producer.get(v)
        if op is not None and id(op) not in needed:
            needed.add(id(op))
            stack.extend(op.ins)
    g.ops = [op for op in g.ops if id(op) in needed]
    consumers = {}
    for op in g.ops:
        for v in op.ins:
            consumers.setdefault(v, []).append(op)
    return producer, consumers


def _resolve_inputs(g):
    for op in g.ops:
        op.ins = [g.resolve(v) for v in op.ins]


def _straight_through(g):
    """out.detach() - soft.detach() + soft exports as (S - T) + T: that is S, the sign."""
    producer, _ = _live(g)
    for op in g.ops:
        if op.kind != "add":
            continue
        for a, b in (op.ins, op.ins[::-1]):
            sub = producer.get(a)
            if sub is not None and sub.kind == "sub" and sub.ins[1] == b and producer.get(sub.ins[0]) is not None \
                    and producer[sub.ins[0]].kind == "sign":
                g.alias[op.out] = sub.ins[0]
                op.kind = "dead"
                break
    _resolve_inputs(g)


def _thresholds(g):
    """sign(x + c) with x + c read only by the sign: the sign of x with threshold -c."""
    producer, consumers = _live(g)
    for op in g.ops:
        if op.kind != "sign":
            continue
        while True:
            p = producer.get(op.ins[0])
            if p is None or p.kind != "addc" or len(consumers[p.out]) != 1:
                break
            op.attrs["threshold"] = op.attrs["threshold"] - p.attrs["c"]
            op.ins = [p.ins[0]]


def _two_valued(w):
    """Per output channel, the magnitude when every weight of the channel has it, else None and why."""
    flat = w.reshape(w.shape[0], -1).astype(np.float32)
    mag = np.abs(flat)
    scale = mag.max(axis=1)
    off = np.nonzero(np.any(mag != scale[:, None], axis=1))[0]
    if len(off):
        o = int(off[0])
        return None, (f"weights not two-valued per channel (output channel {o} has {len(np.unique(mag[o]))} "
                      f"magnitudes{', zeros among them' if np.any(flat[o] == 0) else ''}; {len(off)} of "
                      f"{w.shape[0]} channels differ)")
    return scale, None


def _binary_convs(g):
    """A conv reading a sign: binary (packed) when its weights are +-a per channel, else float after a Sign."""
    producer, consumers = _live(g)
    for op in g.ops:
        if op.kind != "conv":
            continue
        s = producer.get(op.ins[0])
        if s is None or s.kind != "sign":
            continue
        scale, why = _two_valued(op.attrs["w"])
        before = producer.get(s.ins[0])
        while before is not None and before.kind in ("maxpool", "avgpool"):
            before = producer.get(before.ins[0])
        s.attrs["after_relu"] = before is not None and before.kind == "relu"
        op.attrs.update(sign=s.attrs, scale=scale, why=why)
        op.ins = [s.ins[0]]
    _live(g)


# ---------------------------------------------------------------------------------------------
# Ops to modules.

def _channels(g, op):
    """The channel count of op's input [N, C, ...]."""
    shape = g.shape(op.ins[0])
    if not shape or shape[1] is None:
        refuse(op.node, "an activation of unknown channel count", "an export with fixed input shapes")
    return shape[1]


def _per_channel(g, op, c, name):
    """A constant broadcast over an activation [N, C, ...] (ONNX broadcasting) as a vector [C]."""
    shape = g.shape(op.ins[0])
    c = np.asarray(c, dtype=np.float32)
    full = c.reshape((1,) * (len(shape) - c.ndim) + c.shape) if c.ndim <= len(shape) else c
    if full.ndim != len(shape) or full.shape[0] != 1 or any(d != 1 for d in full.shape[2:]) or \
            full.shape[1] not in (1, shape[1]):
        refuse(op.node, f"a {name} of shape {list(c.shape)} on an activation of shape {shape}",
               f"one {name} per channel or one for all")
    return np.ascontiguousarray(np.broadcast_to(full.reshape(-1), (shape[1],)), dtype=np.float32)


# eps of a batch norm that only shifts (and perhaps negates): 1 + eps rounds to 1 in float, so
# its scale is exactly +-1 and it computes x - mean (or mean - x) as written.
EXACT_EPS = 1e-30


def _shift_bn(channels, shift, negate=False, bias=None):
    """A batch norm computing (x - shift) * (-1 if negate else 1) + bias, exactly."""
    return Mod("BatchNorm2d", {"channels": channels, "momentum": 0.1, "eps": EXACT_EPS},
               {"weight": np.full(channels, -1.0 if negate else 1.0, np.float32),
                "bias": np.zeros(channels, np.float32) if bias is None else bias.astype(np.float32),
                "running_mean": np.asarray(shift, np.float32), "running_var": np.ones(channels, np.float32)},
               shift_only=bias is None)


def _sign_prefix(g, op, sign):
    """The modules before bnn's sign (sign(0) = +1) that make it the source's sign: a BN shift for a
    threshold (sign(x - t)), which the binary conv's packing pass folds in, and a negation (with
    the weights negated after) where the source gives -1 at 0: bnn's sign(t - x) is -1 there."""
    negate = sign["zero"] == "minus"
    t = _per_channel(g, op, sign["threshold"], "sign threshold")
    if negate or np.any(t != 0):
        return [_shift_bn(len(t), t, negate)], negate
    return [], False


def _sign_note(sign):
    """What the report says of a sign bnn computes differently from the source: at 0 only."""
    if sign["zero"] != "zero":
        return ""
    if sign.get("after_relu"):
        return ("WARNING: torch.sign gives 0 at 0, bnn +1, and this sign reads a ReLU's output, "
                "which is often exactly 0: the outputs will differ; binarise with where(x >= 0, 1, -1)")
    return "sign(0) = 0 in the source, +1 in bnn"


def _conv(g, op):
    a, w = op.attrs, op.attrs["w"].astype(np.float32)
    cout, cin = w.shape[0], w.shape[1]
    sign = a.get("sign")
    mods, negate = _sign_prefix(g, op, sign) if sign else ([], False)
    if negate:
        w = -w
    geometry = {"in_channels": cin, "out_channels": cout, "kernel_size": a["kernel"], "stride": a["stride"],
                "padding": a["padding"]}
    if sign and a["why"] is None:
        bits = _pack_signs(np.transpose(w, (0, 2, 3, 1)))
        mods.append(Mod("BinaryConv2d", dict(geometry, pad_value="zero", mode="fully_binary", scale="alpha"),
                        {"sign_bits": bits, "scale": a["scale"].astype(np.float32),
                         "geometry": np.array([cout, a["kernel"], a["kernel"], cin, a["stride"], a["padding"]],
                                              np.int32)},
                        op.node, report=("binary", w.size, _sign_note(sign))))
        if a["b"] is not None and np.any(a["b"] != 0):  # a batch norm torch folded into the conv
            mods.append(Mod("ChannelShift", {"channels": cout}, {"shift": a["b"].astype(np.float32)}, op.node))
        return mods
    if sign:
        mods.append(Mod("Sign", node=op.node))
    tensors = {"weight": np.ascontiguousarray(np.transpose(w, (0, 2, 3, 1)))}
    if a["b"] is not None:
        tensors["bias"] = a["b"].astype(np.float32)
    mods.append(Mod("Conv2d", dict(geometry, bias=a["b"] is not None), tensors, op.node,
                    report=("float", w.size, a["why"] if sign else "its input is not binarised")))
    return mods


def _lift(g, op):
    k, a = op.kind, op.attrs
    if k == "conv":
        return _conv(g, op)
    if k == "bn":
        c = _channels(g, op)
        return [Mod("BatchNorm2d", {"channels": c, "momentum": 0.1, "eps": float(np.float32(a["eps"]))},
                    {"weight": a["weight"], "bias": a["bias"], "running_mean": a["mean"], "running_var": a["var"]},
                    op.node)]
    if k in ("relu", "sigmoid", "tanh"):
        return [Mod({"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh"}[k], node=op.node)]
    if k == "hardtanh":
        return [Mod("Hardtanh", {"lo": a["lo"], "hi": a["hi"]}, node=op.node)]
    if k == "prelu":
        slope = _per_channel(g, op, a["slope"].reshape((1,) + a["slope"].shape), "PReLU slope") \
            if a["slope"].ndim >= 1 and a["slope"].size > 1 else np.full(_channels(g, op), float(a["slope"].flat[0]),
                                                                         np.float32)
        return [Mod("PReLU", {"channels": len(slope)}, {"weight": slope}, op.node)]
    if k == "sign":
        if a["zero"] == "minus":
            refuse(op.node, "a sign with sign(0) = -1 read by something other than a convolution",
                   "a sign with sign(0) = +1 (x >= t), or the sign read by a convolution")
        mods, _ = _sign_prefix(g, op, a)
        return mods + [Mod("Sign", node=op.node)]
    if k == "addc":
        c = _per_channel(g, op, a["c"], "added constant")
        return [Mod("ChannelShift", {"channels": len(c)}, {"shift": c}, op.node)]
    if k == "mulc":
        return [Mod("mulc", node=op.node, c=_per_channel(g, op, a["c"], "factor"))]
    if k in ("maxpool", "avgpool"):
        return [Mod("MaxPool2d" if k == "maxpool" else "AvgPool2d",
                    {"kernel": a["kernel"], "stride": a["stride"], "padding": a["padding"]}, node=op.node)]
    if k == "gap":
        return [Mod("GlobalAvgPool", node=op.node)]
    if k == "flatten":
        return [Mod("Flatten", node=op.node, chw=a["chw"])]
    if k == "linear":
        w = a["weight"].astype(np.float32)
        tensors = {"weight": np.ascontiguousarray(w)}
        if a["bias"] is not None:
            tensors["bias"] = a["bias"].astype(np.float32).reshape(-1)
        return [Mod("Linear", {"in_features": w.shape[1], "out_features": w.shape[0], "bias": a["bias"] is not None},
                    tensors, op.node, report=("float", w.size, "the classifier" if a["bias"] is not None else ""))]
    if k == "expand":
        return [Mod("expand", node=op.node)]
    if k == "unsupported":
        raise a["error"]
    if k == "compare":
        refuse(op.node, "a comparison that is not part of a sign", "a sign: where(x >= t, 1, -1)")
    refuse(op.node, f"an operation on two activations ({k}) outside a residual or a gate",
           "a residual addition or a channel gate")


def _fold(mods):
    """Folds into their neighbours what bnn applies inside a module: a factor into the conv, BN or
    Linear before it, a BN shift into the BN before it, a bias into a Linear; a Flatten of
    [C, H, W] reorders the Linear after it to bnn's [H, W, C]."""
    out = []
    for m in mods:
        prev = out[-1] if out else None
        if m.kind == "mulc":
            c = m.extra["c"]
            if prev is not None and prev.kind == "BinaryConv2d":
                prev.tensors["scale"] = (prev.tensors["scale"] * c).astype(np.float32)
            elif prev is not None and prev.kind in ("Conv2d", "Linear"):
                prev.tensors["weight"] = (prev.tensors["weight"] * c.reshape((-1,) + (1,) *
                                                                             (prev.tensors["weight"].ndim - 1)))
                if "bias" in prev.tensors:
                    prev.tensors["bias"] = prev.tensors["bias"] * c
            elif prev is not None and prev.kind == "BatchNorm2d" and not prev.extra.get("shift_only"):
                prev.tensors["weight"] = prev.tensors["weight"] * c
                prev.tensors["bias"] = prev.tensors["bias"] * c
            else:
                refuse(m.node, f"a factor per channel after {prev.kind if prev else 'the input'}",
                       "a convolution, batch norm or linear layer before it to fold it into")
            continue
        if m.kind == "ChannelShift" and prev is not None and prev.kind == "Linear":
            prev.tensors["bias"] = prev.tensors.get("bias", 0) + m.tensors["shift"]
            prev.options["bias"] = True
            continue
        if m.extra.get("shift_only") and prev is not None and prev.kind == "BatchNorm2d" and \
                not prev.extra.get("shift_only"):
            s = m.tensors["weight"]  # +-1
            prev.tensors["weight"] = prev.tensors["weight"] * s
            prev.tensors["bias"] = (prev.tensors["bias"] - m.tensors["running_mean"]) * s
            continue
        if m.kind == "Linear" and prev is not None and prev.kind == "Flatten" and prev.extra.get("chw"):
            c, h, w = prev.extra["chw"]
            if h * w > 1:
                wt = m.tensors["weight"]
                m.tensors["weight"] = np.ascontiguousarray(
                    wt.reshape(wt.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(wt.shape[0], -1))
        out.append(m)
    return out


# ---------------------------------------------------------------------------------------------
# The graph's series-parallel structure: chains, residuals and gates.

class _Walker:
    def __init__(self, g):
        self.g = g
        self.producer, self.consumers = _live(g)
        self.output = g.resolve(g.output)

    def chain(self, v):
        """Modules from value v on until the output or a join (an op reading two activations):
        (modules, last value, the join or None)."""
        mods = []
        while v != self.output:
            readers = self.consumers.get(v, [])
            if len(readers) == 1:
                op = readers[0]
                if op.kind in ("add", "mul", "sub"):
                    return mods, v, op
                mods += _lift(self.g, op)
                v = op.out
                continue
            if len(readers) != 2:
                raise ConversionError(f"ONNX value '{v}' is read by {len(readers)} operations "
                                      f"({', '.join(r.node.name for r in readers)}); bnn's module tree joins two "
                                      "branches (a residual or a gate), not more")
            mod, v = self.fork(v, readers)
            mods.append(mod)
        return mods, v, None

    def branch(self, v, op):
        """The branch of v that starts with op, as chain()."""
        if op.kind in ("add", "mul", "sub"):
            return [], v, op
        mods, end, join = self.chain(op.out)
        return _lift(self.g, op) + mods, end, join

    def fork(self, v, readers):
        (m1, _, j1), (m2, _, j2) = self.branch(v, readers[0]), self.branch(v, readers[1])
        if j1 is None or j1 is not j2:
            raise ConversionError(f"ONNX value '{v}': its two branches do not meet in one addition or product "
                                  f"(they end at {j1.node.name if j1 else 'the output'} and "
                                  f"{j2.node.name if j2 else 'the output'})")
        m1, m2 = _fold(m1), _fold(m2)
        if j1.kind == "mul":
            return _gated(j1, m1, m2), j1.out
        if j1.kind == "sub":
            refuse(j1.node, "a difference of two activations", "a residual addition")
        body, shortcut = (m1, m2) if len(m1) >= len(m2) else (m2, m1)
        return _residual(body, shortcut or None), j1.out


def _is_gate(mods):
    kinds = [m.kind for m in mods if m.kind not in ("Flatten", "expand")]
    return kinds == ["GlobalAvgPool", "Linear", "ReLU", "Linear", "Sigmoid"] and \
        not any(m.options.get("bias") for m in mods if m.kind == "Linear") and mods[-1].kind == "expand"


def _gated(join, m1, m2):
    """Real-to-Bin's gate: conv(h) * G(h) with G = sigmoid(W2 relu(W1 mean_hw(h)))."""
    gate, conv = (m1, m2) if _is_gate(m1) else (m2, m1)
    if not _is_gate(gate) or len(conv) != 1 or conv[0].kind != "BinaryConv2d":
        refuse(join.node, "a product of two activations that is not a binary conv times a channel gate "
               "(sigmoid(W2 relu(W1 mean(h))))", "a bnn module that computes it")
    w1, w2 = [m.tensors["weight"] for m in gate if m.kind == "Linear"]
    return Mod("gated", node=join.node, conv=conv[0], w1=w1, w2=w2)


def _residual(body, shortcut):
    half = _half_block(body, shortcut)
    if half is not None:
        return half
    for m in body + (shortcut or []):
        if m.kind == "gated":
            refuse(m.node, "a gated binary conv outside BN -> gated conv -> PReLU + shortcut",
                   "Real-to-Bin's half-block: out = PReLU(conv(BN(x)) * G(BN(x))) + shortcut(x)")
    r = Mod("Residual")
    r.body = _sequential(body)
    r.shortcut = None if shortcut is None else _sequential(shortcut)
    return r


def _sequential(mods):
    s = Mod("Sequential")
    s.children = mods
    return s


def _half_block(body, shortcut):
    """BN -> gated binary conv -> PReLU, plus the identity or a Downsample: bnn's BinaryHalfBlock."""
    if [m.kind for m in body] != ["BatchNorm2d", "gated", "PReLU"]:
        return None
    bn, gated, prelu = body
    conv = gated.extra["conv"]
    o = conv.options
    stride = o["stride"]
    if shortcut and shortcut[-1].kind == "Conv2d" and shortcut[-1].options["bias"]:
        # torch folded the downsample's BN into its conv: bnn's Downsample has the BN.
        c = shortcut[-1]
        bias = c.tensors["bias"]
        shortcut = shortcut[:-1] + [Mod("Conv2d", dict(c.options, bias=False), {"weight": c.tensors["weight"]},
                                        c.node, **c.extra), _shift_bn(len(bias), np.zeros_like(bias), bias=bias)]
    kinds = [m.kind for m in shortcut or []]
    if shortcut is None:
        if stride != 1 or o["in_channels"] != o["out_channels"]:
            return None
    elif kinds not in (["AvgPool2d", "Conv2d", "BatchNorm2d"], ["Conv2d", "BatchNorm2d"]) or \
            shortcut[-2].options["kernel_size"] != 1 or shortcut[-2].options["bias"] or \
            (kinds[0] == "AvgPool2d") != (stride != 1) or \
            (stride != 1 and shortcut[0].options != {"kernel": stride, "stride": stride, "padding": 0}):
        return None
    if o["padding"] != o["kernel_size"] // 2:
        return None
    h = Mod("BinaryHalfBlock", {"in_channels": o["in_channels"], "out_channels": o["out_channels"], "stride": stride,
                                "kernel_size": o["kernel_size"], "scale": "gate", "gate_reduction": 8,
                                "gate_hidden": int(gated.extra["w1"].shape[0]), "pad_value": "zero",
                                "mode": "fully_binary", "conv_scale": "alpha"}, node=gated.node)
    h.parts = [("bn", bn), ("conv", conv), ("gate", Mod("ChannelGate", tensors={
        "weight1": np.ascontiguousarray(gated.extra["w1"]), "weight2": np.ascontiguousarray(gated.extra["w2"])})),
        ("prelu", prelu)]
    if shortcut is not None:
        ds = Mod("Downsample")
        ds.parts = [(str(i), m) for i, m in enumerate(shortcut)]
        h.parts.append(("shortcut", ds))
    return h


# ---------------------------------------------------------------------------------------------
# Writing: the module tree, the tensors, the report.

def _pack_signs(w_ohwi):
    """[Cout, KH, KW, Cin] -> uint64 [Cout*KH*KW, ceil(Cin/64)]: bit c % 64 of word c // 64 set where
    the weight is >= 0 (sign(0) = +1), as io::save_deployed packs."""
    rows = w_ohwi.reshape(-1, w_ohwi.shape[-1])
    words = (rows.shape[1] + 63) // 64
    bits = np.zeros((rows.shape[0], words * 64), dtype=np.uint64)
    bits[:, :rows.shape[1]] = rows >= 0
    return (bits.reshape(rows.shape[0], words, 64) << np.arange(64, dtype=np.uint64)).sum(axis=2, dtype=np.uint64)


def _emit(m, path, tensors, entries):
    def at(name):
        return f"{path}.{name}" if path else name
    if m.kind[0].islower():
        refuse(m.node, f"an internal pattern ({m.kind}) left unmapped", "a bnn module for it")
    for name, t in m.tensors.items():
        tensors[at(name)] = t
    if "report" in m.extra:
        entries.append((m.node.name or m.node.output[0], path, m.kind) + m.extra["report"])
    if m.kind == "Sequential":
        return {"type": "Sequential", "children": [[str(i), _emit(c, at(str(i)), tensors, entries)]
                                                   for i, c in enumerate(m.children)]}
    if m.kind == "Residual":
        return {"type": "Residual", "body": _emit(m.body, at("body"), tensors, entries),
                "shortcut": None if m.shortcut is None else _emit(m.shortcut, at("shortcut"), tensors, entries)}
    for name, part in getattr(m, "parts", []):
        _emit(part, at(name), tensors, entries)
    return {"type": m.kind, "options": m.options}


def _save_safetensors(path, tensors, metadata):
    """safetensors (docs/checkpoint-format.md): u64 header length, JSON header padded with spaces to
    a multiple of 8, the tensors' bytes little-endian. Float tensors are written as F32."""
    names = {np.dtype(np.int32): "I32", np.dtype(np.uint64): "U64"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        t = np.asarray(t)
        dtype = t.dtype if t.dtype in names else np.dtype(np.float32)
        data = np.ascontiguousarray(t, dtype=dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": names.get(dtype, "F32"), "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    os.replace(tmp, path)


class Report:
    """What the converter made: `convs` lists (ONNX node, module path, bnn type, "binary" or
    "float", weights, note) for every conv and linear layer; counts and file sizes beside."""

    def __init__(self, entries, tensors, bytes_before, bytes_after, path):
        self.convs = entries
        self.binary = [e for e in entries if e[3] == "binary"]
        self.float = [e for e in entries if e[3] == "float"]
        self.binary_weights = sum(e[4] for e in self.binary)
        self.float_parameters = sum(int(t.size) for n, t in tensors.items() if t.dtype.kind == "f")
        self.bytes_before, self.bytes_after, self.path = bytes_before, bytes_after, path

    def __str__(self):
        lines = [f"bnn.convert -> {self.path}",
                 f"  binary convs (packed, 1 bit per weight): {len(self.binary)}, {self.binary_weights:,} weights",
                 f"  float layers kept: {len(self.float)}; float parameters in the file (with BN, PReLU, scales): "
                 f"{self.float_parameters:,}",
                 f"  file size: {self.bytes_before:,} bytes (ONNX) -> {self.bytes_after:,} bytes "
                 f"({self.bytes_before / max(self.bytes_after, 1):.1f}x smaller)"]
        for node, path, kind, how, weights, note in self.convs:
            lines.append(f"  {how:6} {kind:12} {path or '<model>':28} {weights:>9,} weights  <- {node}"
                         + (f"  ({note})" if note else ""))
        return "\n".join(lines)


# What classify needs to read images for a network (examples/trained_model.hpp): all or none.
CLASSIFY_KEYS = ("mean", "std", "class_names")


def _metadata(metadata, input_shape):
    """The caller's entries as strings; with mean, std and class_names, the image size and channels
    classify also needs, from the ONNX input [N, C, H, W] (unless given)."""
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    given = [k for k in CLASSIFY_KEYS if k in meta]
    if given and len(given) != len(CLASSIFY_KEYS):
        raise ConversionError(f"metadata: classify needs all of {', '.join(CLASSIFY_KEYS)} or none, found only "
                              f"{', '.join(given)}")
    if given:
        _, c, h, w = input_shape
        if h != w:
            raise ConversionError(f"metadata: classify takes square images, the ONNX input is {h}x{w}")
        for key, value in (("image_size", h), ("input_size", h), ("in_channels", c)):
            meta.setdefault(key, str(value))
    return meta


def convert(model, output, metadata=None):
    """Converts an ONNX model (a path or an onnx.ModelProto, exported from PyTorch in eval mode) into
    the bnn deployment file `output`; returns the Report. `metadata`: extra string entries for the
    file (e.g. mean, std, class_names, image_size, input_size, in_channels as JSON text, which
    classify reads). ConversionError (a ValueError) names the ONNX node an op it cannot map."""
    if isinstance(model, (str, os.PathLike)):
        bytes_before = os.path.getsize(model)
        model = onnx.load(str(model))
    else:
        bytes_before = model.ByteSize()
    g = Graph(model)
    _straight_through(g)
    _thresholds(g)
    _binary_convs(g)
    mods, end, join = _Walker(g).chain(g.input)
    if join is not None:
        refuse(join.node, "an operation on two activations that is not the join of two branches",
               "a residual addition of one value's two branches")
    tensors, entries = {}, []
    tree = _emit(_sequential(_fold(mods)), "", tensors, entries)
    meta = _metadata(metadata, g.input_shape)
    meta.update(format=DEPLOY_FORMAT, module_tree=json.dumps(tree))
    _save_safetensors(str(output), tensors, meta)
    return Report(entries, tensors, bytes_before, os.path.getsize(output), str(output))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bnn.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="an ONNX file exported from PyTorch in eval mode")
    p.add_argument("-o", "--output", required=True, help="the bnn deployment file to write")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="a metadata entry (JSON text), e.g. mean=[0.5,0.5,0.5]; repeatable")
    args = p.parse_args(argv)
    meta = {}
    for entry in args.meta:
        key, sep, value = entry.partition("=")
        if not sep:
            p.error(f"--meta expects KEY=VALUE, got {entry!r}")
        meta[key] = value
    try:
        report = convert(args.model, args.output, meta)
    except (ConversionError, OSError) as e:
        print(f"bnn.convert: {e}", file=sys.stderr)
        return 1
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
