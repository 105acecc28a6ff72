"""bnn checkpoints (format bnn-checkpoint-1, docs/checkpoint-format.md) to and from the twin.
bnn's convolution weights are OHWI and its activations NHWC; the twin's are OIHW and NCHW: every
rank-4 tensor of a model's state is a convolution weight and is permuted on the way."""
import json

import torch

from . import safetensors_io

CHECKPOINT_FORMAT = "bnn-checkpoint-1"


def to_bnn_layout(t: torch.Tensor) -> torch.Tensor:
    """OIHW -> OHWI (and NCHW -> NHWC) for rank-4 tensors; others unchanged."""
    return t.permute(0, 2, 3, 1).contiguous() if t.dim() == 4 else t.contiguous()


def from_bnn_layout(t: torch.Tensor) -> torch.Tensor:
    """OHWI -> OIHW (and NHWC -> NCHW) for rank-4 tensors; others unchanged."""
    return t.permute(0, 3, 1, 2).contiguous() if t.dim() == 4 else t.contiguous()


def bnn_state(model: torch.nn.Module) -> dict:
    """Every parameter and buffer under bnn's name, in bnn's layout, float32 on the CPU."""
    return {k: to_bnn_layout(v.detach().float().cpu()) for k, v in model.state_dict().items()}


def load_bnn_state(model: torch.nn.Module, state: dict, strict=True) -> dict:
    """Copies tensors named and shaped like the model's (bnn layout) into it. Returns a report
    {"missing": [...], "unexpected": [...], "mismatched": [...]}; with strict, any of them raises
    ValueError and nothing is copied. Keys "optim.*" are bnn's optimiser state, never unexpected."""
    own = model.state_dict()
    report = {"missing": [], "unexpected": [], "mismatched": []}
    ready = {}
    for name, target in own.items():
        if name not in state:
            report["missing"].append(name)
            continue
        src = from_bnn_layout(state[name])
        if tuple(src.shape) != tuple(target.shape):
            report["mismatched"].append(f"{name}: file {list(state[name].shape)} (bnn layout), "
                                        f"model {list(to_bnn_layout(target).shape)}")
            continue
        if not src.is_floating_point():
            report["mismatched"].append(f"{name}: dtype {src.dtype}, expected a float")
            continue
        ready[name] = src
    report["unexpected"] = [k for k in state if k not in own and not k.startswith("optim.")]
    if strict and any(report.values()):
        raise ValueError("load_bnn_state: the file does not fit the model:" +
                         "".join(f"\n  {kind}: {', '.join(v)}" for kind, v in report.items() if v))
    with torch.no_grad():
        for name, src in ready.items():
            own[name].copy_(src.to(own[name].dtype))
    return report


def save_checkpoint(path, model: torch.nn.Module, metadata=None):
    """Writes the model as a bnn checkpoint that bnn::io::load_module reads (no optimiser state)."""
    meta = {"format": CHECKPOINT_FORMAT, "metadata": json.dumps(metadata if metadata is not None else {})}
    safetensors_io.save(path, bnn_state(model), meta)


def load_checkpoint(path, model: torch.nn.Module, strict=True):
    """Loads a bnn checkpoint (what bnn's trainer or save_checkpoint wrote) into the twin.
    Returns (report, the caller's metadata as a dict)."""
    tensors, meta, _ = safetensors_io.load(path)
    report = load_bnn_state(model, tensors, strict)
    return report, json.loads(meta.get("metadata", "{}"))
