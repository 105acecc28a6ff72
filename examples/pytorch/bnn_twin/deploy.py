"""bnn deployment files (format bnn-deploy-2: include/bnn/io/deploy.hpp, module_tree.hpp): written
by the twin for bnn's io::load_deployed, infer::compile and examples/classify, and read by the twin
from bnn or from itself (load_deployed: the module tree rebuilt from the twin's modules).

  "<conv>.sign_bits"  U64 [Cout*KH*KW, ceil(Cin/64)]  bit c%64 of word c/64 = W[o,kh,kw,c] >= 0
  "<conv>.scale"      F32 [Cout]                       the conv's final per-channel factor
  "<conv>.geometry"   I32 [6]                          Cout, KH, KW, Cin, stride, padding
  "<name>"            F32                              every other parameter and buffer (bnn layout)
  __metadata__        format, module_tree (JSON), and the caller's entries
"""
import json
from collections import OrderedDict

import torch
import torch.nn as nn

from . import safetensors_io
from .blocks import BasicBlock, BinaryBasicBlock, BinaryHalfBlock, Downsample, Residual
from .checkpoint import load_bnn_state, to_bnn_layout
from .layers import FULLY_BINARY, SCALE_ALPHA, BatchNorm2d, BinaryConv2d, ChannelGate, Conv2d, Flatten, Linear, PReLU
from .resnet18 import GlobalAvgPool

DEPLOY_FORMAT = "bnn-deploy-2"


def _f32(x: float) -> float:
    """A float as bnn holds it (float32), so the JSON carries the same number."""
    return float(torch.tensor(x, dtype=torch.float32))


def _child(path, name):
    """The dotted module path of `name` under `path` ("" at the top)."""
    return f"{path}.{name}" if path else name


def _node(kind, options):
    return {"type": kind, "options": options}


def _half_options(h: BinaryHalfBlock):
    o = h.options
    return {"in_channels": o["in_channels"], "out_channels": o["out_channels"], "stride": o["stride"],
            "kernel_size": o["kernel_size"], "scale": o["scale"], "gate_reduction": o["gate_reduction"],
            "gate_hidden": o["gate_hidden"], "pad_value": o["pad_value"], "mode": FULLY_BINARY,
            "conv_scale": SCALE_ALPHA}


def describe_module(m: nn.Module, path=""):
    """The module tree JSON of bnn's describe_module(m, deployed=true) for the twin's modules."""
    if isinstance(m, Conv2d):
        return _node("Conv2d", {"in_channels": m.in_channels, "out_channels": m.out_channels,
                                "kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                                "bias": m.bias is not None})
    if isinstance(m, BinaryConv2d):
        return _node("BinaryConv2d", {"in_channels": m.in_channels, "out_channels": m.out_channels,
                                      "kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                                      "pad_value": m.pad_value, "mode": FULLY_BINARY, "scale": SCALE_ALPHA})
    if isinstance(m, BatchNorm2d):
        return _node("BatchNorm2d", {"channels": m.channels, "momentum": _f32(m.momentum), "eps": _f32(m.eps)})
    if isinstance(m, Linear):
        return _node("Linear", {"in_features": m.in_features, "out_features": m.out_features,
                                "bias": m.bias is not None})
    if isinstance(m, PReLU):
        return _node("PReLU", {"channels": m.channels})
    if isinstance(m, (nn.ReLU, nn.Tanh, nn.Sigmoid)):
        return _node(type(m).__name__, {})
    if isinstance(m, nn.Hardtanh) and not isinstance(m, nn.ReLU6):
        return _node("Hardtanh", {"lo": _f32(m.min_val), "hi": _f32(m.max_val)})
    if isinstance(m, Flatten):
        return _node("Flatten", {})
    if isinstance(m, Residual):
        return {"type": "Residual", "body": describe_module(m.body, _child(path, "body")),
                "shortcut": None if m.shortcut is None else
                describe_module(m.shortcut, _child(path, "shortcut"))}
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        def single(v):
            return v[0] if isinstance(v, (tuple, list)) else v
        stride = single(m.stride) if m.stride is not None else single(m.kernel_size)
        if isinstance(m, nn.AvgPool2d) and (m.ceil_mode or not m.count_include_pad):
            raise ValueError(f"describe_module: '{path}' is an AvgPool2d bnn cannot describe")
        return _node("MaxPool2d" if isinstance(m, nn.MaxPool2d) else "AvgPool2d",
                     {"kernel": single(m.kernel_size), "stride": stride, "padding": single(m.padding)})
    if isinstance(m, GlobalAvgPool):
        return _node("GlobalAvgPool", {})
    if isinstance(m, ChannelGate):
        return _node("ChannelGate", {"in_channels": m.in_channels, "out_channels": m.out_channels,
                                     "hidden_channels": m.hidden_channels})
    if isinstance(m, Downsample):
        return _node("Downsample", {"in_channels": m.in_channels, "out_channels": m.out_channels,
                                    "stride": m.stride})
    if isinstance(m, BinaryHalfBlock):
        return _node("BinaryHalfBlock", _half_options(m))
    if isinstance(m, BinaryBasicBlock):
        return _node("BinaryBasicBlock", _half_options(m.half1))
    if isinstance(m, BasicBlock):
        return _node("BasicBlock", {"in_channels": m.in_channels, "out_channels": m.out_channels,
                                    "stride": m.stride})
    # The ResNet-18 and nn.Sequential apply their children in order: a Sequential to bnn.
    children = [[name, describe_module(c, _child(path, name))] for name, c in m.named_children()]
    if not children:
        raise ValueError(f"describe_module: '{path or '<model>'}' is a {type(m).__name__}, which bnn cannot describe")
    return {"type": "Sequential", "children": children}


def pack_sign_bits(w_ohwi: torch.Tensor) -> torch.Tensor:
    """[Cout, KH, KW, Cin] -> int64 [Cout*KH*KW, ceil(Cin/64)] with bnn's U64 bits: bit c % 64 of
    word c // 64 is set where the weight is >= 0 (sign(0) = +1)."""
    rows = w_ohwi.reshape(-1, w_ohwi.shape[-1])
    cin = rows.shape[1]
    words = (cin + 63) // 64
    bits = torch.zeros(rows.shape[0], words * 64, dtype=torch.int64)
    bits[:, :cin] = (rows >= 0).to(torch.int64)
    weights = torch.ones(64, dtype=torch.int64) << torch.arange(64, dtype=torch.int64)  # bit 63 wraps: same bits
    return (bits.view(rows.shape[0], words, 64) * weights).sum(dim=2)


def save_deployed(path, model: nn.Module, metadata=None):
    """Writes the model (every BinaryConv2d deployed as fully binary) in bnn's deployment format.
    `metadata`: extra string entries (e.g. mean, std, class_names as JSON text, as bnn's trainer)."""
    tensors, u64, packed = {}, set(), set()
    for name, m in model.named_modules():
        if not isinstance(m, BinaryConv2d):
            continue
        for pname, _ in m.named_parameters():
            packed.add(f"{name}.{pname}" if name else pname)
        w = to_bnn_layout(m.weight.detach().float().cpu())
        tensors[f"{name}.sign_bits"] = pack_sign_bits(w)
        u64.add(f"{name}.sign_bits")
        tensors[f"{name}.scale"] = m.binary_weight_scale().float().cpu()
        tensors[f"{name}.geometry"] = torch.tensor([w.shape[0], w.shape[1], w.shape[2], w.shape[3], m.stride,
                                                    m.padding], dtype=torch.int32)
    for name, p in model.named_parameters():
        if name not in packed:
            tensors[name] = to_bnn_layout(p.detach().float().cpu())
    for name, b in model.named_buffers():
        tensors[name] = to_bnn_layout(b.detach().float().cpu())
    meta = dict(metadata or {})
    meta["format"] = DEPLOY_FORMAT
    meta["module_tree"] = json.dumps(describe_module(model))
    safetensors_io.save(path, tensors, meta, u64=u64)


def unpack_sign_bits(words: torch.Tensor, cin: int) -> torch.Tensor:
    """int64 [rows, ceil(Cin/64)] (bnn's U64 bits) -> float [rows, Cin] of +-1: pack_sign_bits undone."""
    shifts = torch.arange(64, dtype=torch.int64)
    bits = ((words.unsqueeze(-1) >> shifts) & 1).reshape(words.shape[0], -1)[:, :cin]
    return bits.float() * 2 - 1


def build_module(node, path=""):
    """The twin's modules for a module tree of bnn's describe_module (fresh parameters: load them
    afterwards). ValueError naming the module path for a node the twin does not know."""
    where = path or "<model>"
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        raise ValueError(f"module tree: '{where}' must be an object with a string 'type', got {str(node)[:200]}")
    kind, o = node["type"], node.get("options", {})

    def half():
        return dict(in_channels=o["in_channels"], out_channels=o["out_channels"], stride=o["stride"],
                    kernel_size=o["kernel_size"], scale=o["scale"], gate_reduction=o["gate_reduction"],
                    gate_hidden=o["gate_hidden"], pad_value=o["pad_value"], mode=o["mode"],
                    conv_scale=o["conv_scale"])

    try:
        if kind == "Sequential":
            children = OrderedDict()
            for name, child in node["children"]:
                children[name] = build_module(child, _child(path, name))
            return nn.Sequential(children)
        if kind == "Residual":
            body = build_module(node["body"], _child(path, "body"))
            shortcut = node.get("shortcut")
            return Residual(body, None if shortcut is None else
                            build_module(shortcut, _child(path, "shortcut")))
        if kind == "Conv2d":
            return Conv2d(o["in_channels"], o["out_channels"], o["kernel_size"], o["stride"], o["padding"], o["bias"])
        if kind == "BinaryConv2d":
            return BinaryConv2d(o["in_channels"], o["out_channels"], o["kernel_size"], o["stride"], o["padding"],
                                o["pad_value"], o["mode"], o["scale"])
        if kind == "BatchNorm2d":
            return BatchNorm2d(o["channels"], o["momentum"], o["eps"])
        if kind == "Linear":
            return Linear(o["in_features"], o["out_features"], o["bias"])
        if kind == "PReLU":
            return PReLU(o["channels"])
        if kind in ("ReLU", "Tanh", "Sigmoid"):
            return getattr(nn, kind)()
        if kind == "Hardtanh":
            return nn.Hardtanh(o["lo"], o["hi"])
        if kind == "MaxPool2d":
            return nn.MaxPool2d(o["kernel"], o["stride"], o["padding"])
        if kind == "AvgPool2d":  # bnn counts the zero padding, as PyTorch's default
            return nn.AvgPool2d(o["kernel"], o["stride"], o["padding"])
        if kind == "GlobalAvgPool":
            return GlobalAvgPool()
        if kind == "Flatten":
            return Flatten()
        if kind == "ChannelGate":
            return ChannelGate(o["in_channels"], o["out_channels"], o["hidden_channels"])
        if kind == "Downsample":
            return Downsample(o["in_channels"], o["out_channels"], o["stride"])
        if kind == "BinaryHalfBlock":
            return BinaryHalfBlock(**half())
        if kind == "BinaryBasicBlock":
            h = half()
            return BinaryBasicBlock(h.pop("in_channels"), h.pop("out_channels"), h.pop("stride"), **h)
        if kind == "BasicBlock":
            return BasicBlock(o["in_channels"], o["out_channels"], o["stride"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"module tree: '{where}' ({kind}): missing or malformed option {e}") from None
    raise ValueError(f"module tree: '{where}' has type {kind!r}, which the twin cannot build")


def load_deployed(path):
    """(model in eval mode, metadata) from a bnn deployment file: every binary conv fully binary
    with its +-1 weights and its stored scale as alpha, as bnn's io::load_deployed rebuilds it.
    ValueError for a file that is not one (format, missing or inconsistent tensors)."""
    tensors, meta, dtypes = safetensors_io.load(path)
    if meta.get("format") != DEPLOY_FORMAT:
        raise ValueError(f"load_deployed '{path}': expected format {DEPLOY_FORMAT!r}, found {meta.get('format')!r}")
    if "module_tree" not in meta:
        raise ValueError(f"load_deployed '{path}': the metadata has no module_tree")
    model = build_module(json.loads(meta["module_tree"]))
    state = dict(tensors)  # the binary convs' entries are replaced below; whatever is left must fit
    for name, m in model.named_modules():
        if not isinstance(m, BinaryConv2d):
            continue
        if m.mode != FULLY_BINARY or m.scale != SCALE_ALPHA:
            raise ValueError(f"load_deployed '{path}': binary conv '{name}' is {m.mode} with scale {m.scale}, "
                             f"expected {FULLY_BINARY} with scale {SCALE_ALPHA}")
        cout, cin, k = m.out_channels, m.in_channels, m.kernel_size
        expected = {"sign_bits": ("U64", [cout * k * k, (cin + 63) // 64]), "scale": ("F32", [cout]),
                    "geometry": ("I32", [6])}
        for suffix, (dtype, shape) in expected.items():
            key = f"{name}.{suffix}"
            if key not in tensors:
                raise ValueError(f"load_deployed '{path}': '{key}' is missing")
            if dtypes[key] != dtype or list(tensors[key].shape) != shape:
                raise ValueError(f"load_deployed '{path}': '{key}' must be {dtype} {shape}, found "
                                 f"{dtypes[key]} {list(tensors[key].shape)}")
        for suffix in expected:
            del state[f"{name}.{suffix}"]
        geometry = tensors[f"{name}.geometry"].tolist()
        if geometry != [cout, k, k, cin, m.stride, m.padding]:
            raise ValueError(f"load_deployed '{path}': '{name}.geometry' is {geometry}, the module tree says "
                             f"{[cout, k, k, cin, m.stride, m.padding]}")
        state[f"{name}.weight"] = unpack_sign_bits(tensors[f"{name}.sign_bits"], cin).reshape(cout, k, k, cin)
        state[f"{name}.alpha"] = tensors[f"{name}.scale"]
    for key, dtype in dtypes.items():
        if key in state and dtype != "F32":
            raise ValueError(f"load_deployed '{path}': '{key}' must be F32, found {dtype}")
    load_bnn_state(model, state, strict=True)
    return model.eval(), meta
