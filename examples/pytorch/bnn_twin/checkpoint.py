"""bnn checkpoints (format bnn-checkpoint-1, docs/checkpoint-format.md) to and from the twin.
bnn's convolution weights are OHWI and its activations NHWC; the twin's are OIHW and NCHW: every
rank-4 tensor of a model's state is a convolution weight and is permuted on the way."""
import json
import os

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
    """Every parameter and buffer under bnn's name, in bnn's layout, float32 on the CPU: copies,
    which later steps (running statistics updated in place) leave alone."""
    return {k: to_bnn_layout(v.detach().float().cpu().clone()) for k, v in model.state_dict().items()}


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


def optimizer_state(optimizer) -> dict:
    """The optimiser's state under bnn's names ("optim.group0.param3.exp_avg", bnn layout): Adam's
    exp_avg, exp_avg_sq and step, SGD's momentum_buffer; parameters without state get zeros, as
    bnn allocates its state up front."""
    out = {}
    for g, group in enumerate(optimizer.param_groups):
        for i, p in enumerate(group["params"]):
            st = optimizer.state.get(p, {})
            prefix = f"optim.group{g}.param{i}."
            if isinstance(optimizer, torch.optim.SGD):
                buf = st.get("momentum_buffer")
                out[prefix + "momentum_buffer"] = to_bnn_layout(buf.detach().float().cpu() if buf is not None
                                                                else torch.zeros(p.shape))
            else:
                for key in ("exp_avg", "exp_avg_sq"):
                    t = st.get(key)
                    out[prefix + key] = to_bnn_layout(t.detach().float().cpu() if t is not None
                                                      else torch.zeros(p.shape))
                out[prefix + "step"] = torch.tensor(float(st.get("step", 0.0)), dtype=torch.float32)
    return out


def load_optimizer_state(optimizer, tensors: dict) -> None:
    """Restores what optimizer_state() (or bnn's save_checkpoint) wrote. ValueError, with nothing
    restored, when a tensor is absent or of another shape than its parameter, or when the file
    holds optimiser state for parameters this optimiser does not have (another model or grouping)."""
    restored, used = [], set()
    for g, group in enumerate(optimizer.param_groups):
        for i, p in enumerate(group["params"]):
            prefix = f"optim.group{g}.param{i}."

            def get(key, shape):
                name = prefix + key
                if name not in tensors:
                    raise ValueError(f"load_optimizer_state: no tensor '{name}' in the checkpoint")
                t = from_bnn_layout(tensors[name])
                if (t.numel() != 1) if shape is None else (tuple(t.shape) != tuple(shape)):
                    raise ValueError(f"load_optimizer_state: '{name}' has shape {list(t.shape)} (torch layout), "
                                     f"expected {'one value' if shape is None else list(shape)}")
                used.add(name)
                return t.to(p.device)
            if isinstance(optimizer, torch.optim.SGD):
                restored.append((p, {"momentum_buffer": get("momentum_buffer", p.shape)}))
            else:
                restored.append((p, {"step": get("step", None).reshape(()).cpu(), "exp_avg": get("exp_avg", p.shape),
                                     "exp_avg_sq": get("exp_avg_sq", p.shape)}))
    left = sorted(k for k in tensors if k.startswith("optim.") and k not in used)
    if left:
        raise ValueError(f"load_optimizer_state: the checkpoint holds optimiser state this optimiser has no "
                         f"parameter for: {', '.join(left[:5])}{' ...' if len(left) > 5 else ''}")
    for p, state in restored:
        optimizer.state[p] = state


def save_checkpoint(path, model: torch.nn.Module, metadata=None, optimizer=None):
    """Writes the model (and the optimiser's state, when given) as a bnn checkpoint that
    bnn::io::load_module (and load_optimizer) read. Written to a temporary file and renamed, so a
    crash leaves the previous checkpoint."""
    meta = {"format": CHECKPOINT_FORMAT, "metadata": json.dumps(metadata if metadata is not None else {})}
    tensors = bnn_state(model)
    if optimizer is not None:
        tensors.update(optimizer_state(optimizer))
        meta["optim.step_count"] = str(max((int(t.item()) for k, t in tensors.items() if k.endswith(".step")),
                                           default=0))
    safetensors_io.save(path + ".tmp", tensors, meta)
    os.replace(path + ".tmp", path)


def load_checkpoint(path, model: torch.nn.Module, strict=True, optimizer=None):
    """Loads a bnn checkpoint (what bnn's trainer or save_checkpoint wrote) into the twin, and the
    optimiser's state when an optimiser is given. Returns (report, the caller's metadata)."""
    tensors, meta, _ = safetensors_io.load(path)
    report = load_bnn_state(model, tensors, strict)
    if optimizer is not None:
        load_optimizer_state(optimizer, tensors)
    return report, json.loads(meta.get("metadata", "{}"))
