"""Shared by the PyTorch equivalence tests: runs bnn_torch_step (bnn's side of a training step)
and the same steps in the twin (examples/pytorch/bnn_twin), and compares what they computed."""
import json
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # nothing written into the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "pytorch"))

try:
    import torch
except ImportError:  # the test is listed as skipped, not passed (SKIP_REGULAR_EXPRESSION)
    print("SKIPPED: this python3 cannot import torch (scripts/setup.sh --torch installs python3-torch)")
    sys.exit(0)

import bnn_twin as bt  # noqa: E402
from bnn_twin import checkpoint, recipe, safetensors_io  # noqa: E402

torch.set_num_threads(1)


class Failures:
    """Collects every failed comparison, so one run reports them all."""

    def __init__(self):
        self.items = []
        self.checked = 0

    def check(self, ok, message):
        """Records one comparison; returns whether it passed."""
        self.checked += 1
        if not ok:
            self.items.append(message)
            print("FAIL:", message)
        return ok

    def finish(self, what):
        if self.checked == 0:
            print(f"FAIL: {what}: nothing was compared")
            sys.exit(1)
        if self.items:
            print(f"{what}: {len(self.items)} of {self.checked} comparisons failed")
            sys.exit(1)
        print(f"{what}: all {self.checked} comparisons passed")


def rel_err(a, b):
    """max |a - b| / max |b| (or max |a - b| when b is all zeros)."""
    a, b = a.double(), b.double()
    scale = b.abs().max().item() if b.numel() else 0.0
    diff = (a - b).abs().max().item() if b.numel() else 0.0
    return diff / scale if scale > 0 else diff


def make_student(plan, stem, width, classes, in_channels=3, init="bnn"):
    return bt.ResNet18(plan.variant, stem, width, classes, in_channels, mode=plan.mode, init=init)


def call_driver(driver, spec, tensors):
    """Runs one of bnn's drivers on a spec and input tensors (bnn layout); returns its outputs."""
    with tempfile.TemporaryDirectory(prefix="bnn_twin_") as tmp:
        paths = [os.path.join(tmp, n) for n in ("spec.json", "in.safetensors", "out.safetensors")]
        with open(paths[0], "w") as f:
            json.dump(spec, f)
        safetensors_io.save(paths[1], tensors)
        done = subprocess.run([driver] + paths, capture_output=True, text=True, errors="replace")
        if done.returncode != 0:
            raise RuntimeError(f"{os.path.basename(driver)} failed ({done.returncode}) on {spec}: "
                               f"{done.stderr.strip()}")
        return safetensors_io.load(paths[2])[0]


def run_driver(driver, spec, student, teacher, images, labels, soft_targets=None):
    """bnn's steps (bnn_torch_step) on the twin's student and teacher weights and the batch."""
    tensors = {f"student.{k}": v for k, v in checkpoint.bnn_state(student).items()}
    if teacher is not None:
        tensors.update({f"teacher.{k}": v for k, v in checkpoint.bnn_state(teacher).items()})
    tensors["images"] = checkpoint.to_bnn_layout(images)
    tensors["labels"] = labels.to(torch.int64)
    if soft_targets is not None:
        tensors["soft_targets"] = soft_targets.contiguous()
    return call_driver(driver, spec, tensors)


def run_twin(spec, student, teacher, images, labels, soft_targets=None):
    """The twin's steps, as bnn_torch_step runs bnn's. Returns outputs named as the driver's
    (bnn layout), so both compare key by key."""
    plan = recipe.find_stage(spec["stage"])
    config = plan.config
    weights = config.weights
    if "label_smoothing" in spec:
        weights.label_smoothing = spec["label_smoothing"]
    lr = recipe.f32(recipe.f32(config.lr) * recipe.f32(spec.get("lr_scale", 1.0)))
    weight_decay = spec.get("weight_decay", config.weight_decay)
    optimizer = recipe.make_optimizer(spec.get("optimizer", "adamw"), student, lr, recipe.f32(weight_decay))
    schedule = recipe.StageSchedule(config, spec.get("schedule", "cosine"), spec["epochs"])
    if teacher is not None:
        recipe.freeze(teacher)
    steps, batch = spec["steps"], spec["batch"]
    out = {"loss.total": [], "loss.ce": [], "loss.attention": [], "loss.kd": [], "lr": []}
    for i in range(steps):
        recipe.set_lr_factor(optimizer, schedule.factor((spec.get("first_step", 0) + i) / spec["steps_per_epoch"]))
        sl = slice(i * batch, (i + 1) * batch)
        parts, logits = recipe.distillation_step(teacher, student, images[sl], labels[sl], weights, optimizer,
                                                 None if soft_targets is None else soft_targets[sl])
        for k in ("total", "ce", "attention", "kd"):
            out[f"loss.{k}"].append(parts[k])
        out["lr"].append(optimizer.param_groups[0]["lr"])
        if i == 0:
            out["logits"] = logits.clone()
            for name, p in student.named_parameters():
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                out[f"grad.{name}"] = checkpoint.to_bnn_layout(g.detach().clone())
    for k in ("loss.total", "loss.ce", "loss.attention", "loss.kd", "lr"):
        out[k] = torch.tensor(out[k], dtype=torch.float32)
    for name, t in student.state_dict().items():
        out[f"after.{name}"] = checkpoint.to_bnn_layout(t.detach().clone())
    return out


def driver_path():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        print(f"usage: {sys.argv[0]} <path of bnn_torch_step> (ctest passes it)")
        sys.exit(2)
    return sys.argv[1]
