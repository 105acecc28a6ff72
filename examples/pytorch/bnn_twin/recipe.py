"""The training recipe as bnn runs it: the stage table (include/bnn/train/stages.hpp), the
trainer's plans (examples/trainer/recipes.hpp), the optimiser's parameter groups
(include/bnn/train/param_groups.hpp), the learning-rate schedule
(include/bnn/train/stage_schedule.hpp, include/bnn/optim/lr_schedule.hpp), the optimisers
(include/bnn/optim/: PyTorch's Adam, AdamW and SGD compute what bnn's do) and one
teacher-student step (include/bnn/train/distillation.hpp, train_step.hpp)."""
import copy
import math
import struct
from dataclasses import dataclass, field
from typing import List, Optional

import torch

from . import losses
from .layers import BINARY_ACTIVATIONS, FULLY_BINARY, SOFT_ACTIVATIONS, BinaryConv2d, apply_constraints


def f32(x: float) -> float:
    """x rounded to float32, as bnn holds its rates and factors."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


@dataclass
class LossWeights:
    ce: float = 1.0
    attention: float = 0.0          # beta of attention matching (0: off)
    kd: float = 0.0                 # weight of logit matching (0: off)
    temperature: float = 1.0
    label_smoothing: float = 0.0
    attention_norm: str = "l2"
    attention_distance: str = "squared"


@dataclass
class StageConfig:
    stage: int = 0
    name: str = ""
    student: str = "real"           # "real" or a binary mode (soft/binary activations, fully binary)
    has_teacher: bool = False
    init_from_previous: bool = False
    weights: LossWeights = field(default_factory=LossWeights)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_epochs: int = 5
    epochs: int = 350
    milestones: List[int] = field(default_factory=lambda: [150, 250, 320])
    decay: float = 0.3


def real_to_binary_stages() -> List[StageConfig]:
    """Stages 0-3 with the paper's defaults, exactly as bnn::train::real_to_binary_stages()."""
    s0 = StageConfig(stage=0, name="real", student="real")
    s1 = StageConfig(stage=1, name="soft-activations", student=SOFT_ACTIVATIONS, has_teacher=True,
                     weights=LossWeights(attention=30.0, kd=3.0))
    s2 = copy.deepcopy(s1)
    s2.stage, s2.name, s2.student, s2.init_from_previous = 2, "binary-activations", BINARY_ACTIVATIONS, True
    s3 = StageConfig(stage=3, name="fully-binary", student=FULLY_BINARY, has_teacher=True, init_from_previous=True,
                     weights=LossWeights(kd=0.8), lr=2e-4, weight_decay=0.0, warmup_epochs=0)
    return [s0, s1, s2, s3]


@dataclass
class StagePlan:
    id: str
    config: StageConfig
    variant: str
    teacher: str = ""
    init_from: str = ""
    paper_top1: Optional[float] = None

    @property
    def mode(self) -> str:
        return self.config.student if self.config.student != "real" else BINARY_ACTIVATIONS

    def file_stem(self) -> str:
        return self.id.replace("/", "-")


def plan_recipes(recipes) -> List[StagePlan]:
    """The stages of the named recipes ("real", "real-to-bin", "baseline") in bnn's trainer order."""
    r2b = real_to_binary_stages()
    plan: List[StagePlan] = []

    def add_real():
        if not any(s.id == "real" for s in plan):
            plan.append(StagePlan("real", r2b[0], "real", "", "", 0.783))

    for recipe in recipes:
        if recipe == "real":
            add_real()
        elif recipe == "real-to-bin":
            add_real()
            plan.append(StagePlan("real-to-bin/step1", r2b[1], "real-to-bin", "real", "", None))
            plan.append(StagePlan("real-to-bin/step2", r2b[2], "real-to-bin", "real-to-bin/step1",
                                  "real-to-bin/step1", 0.765))
            plan.append(StagePlan("real-to-bin/step3", r2b[3], "real-to-bin", "real-to-bin/step2",
                                  "real-to-bin/step2", 0.762))
        elif recipe == "baseline":
            s1, s2 = copy.deepcopy(r2b[2]), copy.deepcopy(r2b[3])
            for s in (s1, s2):
                s.has_teacher = False
                s.weights = LossWeights()
                s.decay = 0.1
            s1.init_from_previous = False
            plan.append(StagePlan("baseline/stage1", s1, "strong-baseline", "", "", 0.721))
            plan.append(StagePlan("baseline/stage2", s2, "strong-baseline", "", "baseline/stage1", 0.696))
        else:
            raise ValueError(f"unknown recipe {recipe!r}, expected real, baseline or real-to-bin")
    return plan


def find_stage(stage_id: str) -> StagePlan:
    for s in plan_recipes(["real", "real-to-bin", "baseline"]):
        if s.id == stage_id:
            return s
    raise ValueError(f"unknown stage {stage_id!r}, expected real, real-to-bin/step1..3 or baseline/stage1..2")


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float):
    """Group 0: every parameter but the latent binary weights, with weight_decay; group 1: the
    latent weights of every BinaryConv2d, without decay (absent when there are none)."""
    latent = {id(m.weight) for m in model.modules() if isinstance(m, BinaryConv2d)}
    rest = [p for p in model.parameters() if id(p) not in latent]
    lat = [p for p in model.parameters() if id(p) in latent]
    groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay, "base_lr": lr}]
    if lat:
        groups.append({"params": lat, "lr": lr, "weight_decay": 0.0, "base_lr": lr})
    return groups


def make_optimizer(kind: str, model: torch.nn.Module, lr: float, weight_decay: float):
    """"adamw" (the trainer's: Adam with decoupled decay), "adam" (L2 decay) or "sgd" (momentum
    0.9, L2 decay, no Nesterov), betas 0.9 / 0.999 and eps 1e-8 as bnn's AdamOptions."""
    groups = param_groups(model, lr, weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, dampening=0.0, nesterov=False)
    raise ValueError(f"optimizer must be adamw, adam or sgd, got {kind!r}")


def set_lr_factor(optimizer, factor: float) -> None:
    """Every group's rate = its base rate times `factor`, both float32 as in bnn."""
    for g in optimizer.param_groups:
        g["lr"] = f32(f32(g["base_lr"]) * f32(factor))


class StageSchedule:
    """factor(epoch) of a stage: a linear warm-up from 0 over the stage's warm-up, times either
    "step" (the stage's milestones and decay) or "cosine" (half a cosine over `epochs`, with the
    warm-up scaled to the same fraction of the run as warmup_epochs of the stage's epochs)."""

    def __init__(self, config: StageConfig, shape: str, epochs: int):
        if epochs <= 0:
            raise ValueError(f"StageSchedule: expected epochs > 0, got {epochs}")
        if shape not in ("step", "cosine"):
            raise ValueError(f"StageSchedule: shape must be step or cosine, got {shape!r}")
        self.shape, self.epochs, self.config = shape, epochs, config
        self.warmup = float(config.warmup_epochs) if shape == "step" else config.warmup_epochs * epochs / config.epochs

    def inner(self, epoch: float) -> float:
        if self.shape == "step":
            passed = sum(1 for m in self.config.milestones if m <= epoch)
            return f32(math.pow(f32(self.config.decay), passed))
        progress = min(max(epoch / self.epochs, 0.0), 1.0)
        return f32(0.5 * (1.0 + math.cos(math.pi * progress)))

    def factor(self, epoch: float) -> float:
        inner = self.inner(epoch)
        if self.warmup <= 0 or epoch >= self.warmup:
            return inner
        return f32(max(epoch, 0.0) / self.warmup * inner)


def freeze(teacher: torch.nn.Module) -> None:
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)


def distillation_loss(teacher, student, images, labels, weights: LossWeights, soft_targets=None):
    """(total, parts dict, student logits): w_ce CE + beta L_att + w_kd L_KD, the teacher in eval
    mode without a tape, attention at every transfer point both networks name."""
    needs_teacher = weights.attention > 0 or weights.kd > 0
    if needs_teacher and teacher is None:
        raise ValueError(f"distillation_loss: attention {weights.attention} and KD {weights.kd} need a teacher")
    t_logits, t_maps = None, []
    if teacher is not None and needs_teacher:
        teacher.eval()
        with torch.no_grad():
            t_logits, t_maps = teacher.forward_features(images)
    logits, s_maps = student.forward_features(images)
    ce = losses.cross_entropy(logits, labels, weights.label_smoothing, soft_targets)
    parts = {"ce": float(ce), "attention": 0.0, "kd": 0.0}
    total = ce * weights.ce
    if weights.attention > 0:
        teacher_maps = dict(t_maps)
        pairs = [(m, teacher_maps[name]) for name, m in s_maps if name in teacher_maps]
        if not pairs:
            raise ValueError("distillation_loss: attention matching needs transfer points named alike")
        att = losses.attention_transfer(pairs, weights.attention_norm, weights.attention_distance)
        parts["attention"] = float(att)
        total = total + att * weights.attention
    if weights.kd > 0:
        kd = losses.logit_matching(logits, t_logits, weights.temperature)
        parts["kd"] = float(kd)
        total = total + kd * weights.kd
    parts["total"] = float(total)
    return total, parts, logits


def distillation_step(teacher, student, images, labels, weights: LossWeights, optimizer, soft_targets=None):
    """One step as bnn's train_step: train mode, zeroed gradients (kept allocated, as bnn and
    PyTorch 1.13), loss, backward, the optimiser's step, then the latent weights clipped."""
    student.train()
    optimizer.zero_grad(set_to_none=False)
    total, parts, logits = distillation_loss(teacher, student, images, labels, weights, soft_targets)
    total.backward()
    optimizer.step()
    apply_constraints(student)
    return parts, logits.detach()
