#!/usr/bin/env python3
"""The CIFAR-100 trainer of bnn (examples/train_cifar100) in PyTorch, on the CPU or a GPU: real
ResNet-18, the strong binary baseline and Real-to-Bin with its progressive teacher-student steps,
with bnn's stage table, loss weights, optimiser groups, schedules and data handling
(bnn_twin/). Checkpoints are bnn checkpoints and fully binary stages also write bnn deployment
files, so what is trained here runs in bnn (examples/classify, infer::compile).

  train_cifar100.py --data DIR                     short Real-to-Bin + baseline run
  train_cifar100.py --data DIR --schedule paper    the paper's CIFAR-100 schedule
  train_cifar100.py --resume                       continue an interrupted run in --out
"""
import argparse
import copy
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bnn_twin as bt  # noqa: E402
from bnn_twin import data, recipe  # noqa: E402


def fnv1a(s: str) -> int:
    """The trainer's stable string hash, for seeds."""
    h = 0xcbf29ce484222325
    for c in s.encode():
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train ResNet-18 on CIFAR-100 with the Real-to-Binary recipe (PyTorch twin of bnn)")
    p.add_argument("--recipe", default="real-to-bin,baseline",
                   help="recipes to run, in order: real, baseline, real-to-bin (comma separated)")
    p.add_argument("--data", default="", help="data directory (default: $BNN_DATA, data/cifar-100-binary, else Fashion-MNIST)")
    p.add_argument("--format", default="auto", choices=["auto", "cifar100", "cifar10", "fashion-mnist"])
    p.add_argument("--width", type=int, default=16, help="channels of ResNet-18's first stage (64 in the paper)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per stage (--schedule paper sets 350)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr-scale", type=float, default=1.0, help="factor on every stage's learning rate")
    p.add_argument("--schedule", default="short", choices=["short", "cosine", "paper"],
                   help="short/cosine: cosine over --epochs; paper: 350 epochs, steps at 150/250/320, batch 128, "
                        "rotation and mix-up")
    p.add_argument("--mixup", type=float, default=0.0, help="mix-up alpha (0: off)")
    p.add_argument("--rotation", type=float, default=0.0, help="random rotation in degrees (0: off)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=1, help="seed of initialisation, order and augmentation")
    p.add_argument("--out", default="runs/latest-torch", help="output directory: checkpoints, metrics.jsonl")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--stop-after-epochs", type=int, default=0,
                   help="stop as if interrupted after this many epochs in all (tests of --resume; 0: never)")
    p.add_argument("--train-limit", type=int, default=0, help="train on a random subset of this many images (0: all)")
    p.add_argument("--test-limit", type=int, default=0, help="test on a random subset of this many images (0: all)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    p.add_argument("--init", default="bnn", choices=["bnn", "kaiming"],
                   help="initialisation: bnn's (PyTorch's default) or Kaiming normal (docs/pytorch.md)")
    p.add_argument("--binary-init", default="", choices=["", "bnn", "kaiming"],
                   help="initialisation of the binary convs' latent weights only (default: --init's)")
    a = p.parse_args(argv)
    a.recipes = [r for r in a.recipe.split(",") if r]
    for r in a.recipes:
        if r not in ("real", "baseline", "real-to-bin"):
            p.error(f"unknown recipe '{r}', expected real, baseline or real-to-bin")
    if a.schedule == "paper":
        a.batch = 128
        a.rotation = a.rotation or 15.0
        a.mixup = a.mixup or 0.2
    if min(a.width, a.epochs, a.batch) <= 0:
        p.error("width, epochs and batch must be positive")
    return a


class Trainer:
    def __init__(self, args):
        self.a = args
        self.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if args.device == "auto" else args.device))
        self.shape = "step" if args.schedule == "paper" else "cosine"
        self.plan = recipe.plan_recipes(args.recipes)
        self.epochs_run = 0  # in this process, for --stop-after-epochs

    def path(self, stage, deploy=False):
        return os.path.join(self.a.out, stage.file_stem() + (".deploy" if deploy else "") + ".safetensors")

    def find(self, stage_id):
        return next(s for s in self.plan if s.id == stage_id)

    def make_model(self, stage):
        torch.manual_seed((self.a.seed * 1000003 + fnv1a(stage.id)) % (1 << 63))
        return bt.ResNet18(stage.variant, "cifar", self.a.width, self.num_classes, self.in_channels,
                           mode=stage.mode, init=self.a.init,
                           binary_init=self.a.binary_init or None).to(self.device)

    def epochs_of(self, stage):
        return stage.config.epochs if self.shape == "step" else self.a.epochs

    def log(self, text):
        print(text, flush=True)

    def run(self):
        torch.set_num_threads(self.a.threads)
        torch.manual_seed(self.a.seed)
        fmt, directory, why = data.find_data(self.a.data, self.a.format)
        self.log(f"data: {fmt} from {directory} ({why}); device {self.device}")
        train = data.subset(data.load(fmt, directory, True), self.a.train_limit, self.a.seed)
        test = data.subset(data.load(fmt, directory, False), self.a.test_limit, self.a.seed + 1)
        self.mean, self.std = data.channel_statistics(train.images)
        self.num_classes, self.in_channels = train.num_classes, train.images.shape[-1]
        self.dataset, self.class_names = fmt, train.class_names
        self.image_size = 28 if fmt == "fashion-mnist" else 32
        self.log(f"      {len(train.labels)} training and {len(test.labels)} test images of "
                 f"{'x'.join(map(str, train.images.shape[1:]))}, {self.num_classes} classes")
        os.makedirs(self.a.out, exist_ok=True)
        self.train_loader = data.BatchLoader(train, self.a.batch, self.mean, self.std, shuffle=True, drop_last=True,
                                             seed=self.a.seed, augment=True, rotation=self.a.rotation,
                                             mixup_alpha=self.a.mixup)
        self.test_loader = data.BatchLoader(test, 250, self.mean, self.std, shuffle=False)
        results = [self.run_stage(s) for s in self.plan]
        self.log(f"\n{'stage':<22} {'top-1':>8} {'top-5':>8}")
        for sid, top1, top5 in results:
            self.log(f"{sid:<22} {100 * top1:7.2f}% {100 * top5:7.2f}%")
        return results

    def metadata(self, stage, epoch, epochs, top1, top5):
        return {"stage": stage.id, "variant": stage.variant,
                "student": "real" if stage.config.student == "real" else stage.config.student.replace("_", "-"),
                "epoch": epoch, "epochs": epochs, "complete": epoch == epochs, "test_top1": top1,
                "test_top5": top5, "seed": self.a.seed, "width": self.a.width, "num_classes": self.num_classes,
                "in_channels": self.in_channels, "image_size": self.image_size, "input_size": 32,
                "dataset": self.dataset, "mean": self.mean, "std": self.std, "class_names": self.class_names,
                "trained_by": "examples/pytorch/train_cifar100.py"}

    def run_stage(self, s):
        c, path = s.config, self.path(s)
        model = self.make_model(s)
        epochs = self.epochs_of(s)
        schedule = recipe.StageSchedule(c, self.shape, epochs)
        lr = recipe.f32(recipe.f32(c.lr) * recipe.f32(self.a.lr_scale))
        optimizer = recipe.make_optimizer("adamw", model, lr, recipe.f32(c.weight_decay))
        first_epoch = 1
        if self.a.resume and os.path.exists(path):
            _, meta = bt.checkpoint.load_checkpoint(path, model)
            if meta.get("complete"):
                self.log(f"== {s.id}: complete in {path}, skipped")
                return s.id, meta.get("test_top1", 0.0), meta.get("test_top5", 0.0)
            bt.checkpoint.load_checkpoint(path, model, optimizer=optimizer)
            first_epoch = meta["epoch"] + 1
            self.log(f"== {s.id}: resuming after epoch {first_epoch - 1} from {path}")
        elif s.init_from:
            report, _ = bt.checkpoint.load_checkpoint(self.path(self.find(s.init_from)), model, strict=False)
            self.log(f"== {s.id}: initialised from {s.init_from} (missing {len(report['missing'])}, "
                     f"unexpected {len(report['unexpected'])})")
        teacher = None
        if s.teacher:
            teacher = self.make_model(self.find(s.teacher))
            bt.checkpoint.load_checkpoint(self.path(self.find(s.teacher)), teacher)
            recipe.freeze(teacher)
        self.log(f"== {s.id}: {s.variant} student, {c.student}, {bt.count_parameters(model)} parameters, "
                 f"{epochs} epochs, lr {lr:g}, weight decay {c.weight_decay:g}")
        steps_per_epoch = self.train_loader.batches_per_epoch()
        top1 = top5 = 0.0
        for epoch in range(first_epoch, epochs + 1):
            start, seen, loss_sum, hits = time.time(), 0, 0.0, 0
            batches = self.train_loader.epoch((fnv1a(s.id) % 100000) * 1000 + epoch)
            for step, (x, y, targets) in enumerate(batches):
                recipe.set_lr_factor(optimizer, schedule.factor(epoch - 1 + step / steps_per_epoch))
                x, y = x.to(self.device), y.to(self.device)
                targets = targets.to(self.device) if targets is not None else None
                parts, logits = recipe.distillation_step(teacher, model, x, y, c.weights, optimizer, targets)
                seen += len(y)
                loss_sum += parts["total"] * len(y)
                hits += (logits.argmax(1) == y).sum().item()
            top1, top5 = self.evaluate(model)
            seconds = time.time() - start
            record = {"stage": s.id, "epoch": epoch, "train_loss": loss_sum / max(seen, 1),
                      "train_acc": hits / max(seen, 1), "test_top1": top1, "test_top5": top5,
                      "images_per_s": seen / max(seconds, 1e-9), "seconds": seconds}
            with open(os.path.join(self.a.out, "metrics.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
            self.log(f"   {s.id} epoch {epoch}: train loss {record['train_loss']:.4f} acc "
                     f"{100 * record['train_acc']:.2f}%  test top-1 {100 * top1:.2f}% top-5 {100 * top5:.2f}%  "
                     f"({record['images_per_s']:.0f} img/s, {seconds:.0f} s)")
            # The deployment file goes first, as in bnn's trainer: a stop between the two leaves
            # the stage incomplete, so --resume redoes its last epoch and writes both again.
            if epoch == epochs and c.student == bt.FULLY_BINARY:
                self.save_deployment(s, model, top1, top5)
            bt.checkpoint.save_checkpoint(path, model, self.metadata(s, epoch, epochs, top1, top5), optimizer)
            self.epochs_run += 1
            if 0 < self.a.stop_after_epochs <= self.epochs_run:
                raise KeyboardInterrupt
        return s.id, top1, top5

    def save_deployment(self, s, model, top1, top5):
        """The 1-bit deployment file of a fully binary stage, with what a classifier needs."""
        epochs = self.epochs_of(s)
        meta = self.metadata(s, epochs, epochs, top1, top5)
        extra = {k: json.dumps(meta[k]) for k in ("dataset", "mean", "std", "class_names", "image_size",
                                                  "input_size", "in_channels")}
        extra.update({"model": "resnet18", "variant": s.variant, "stem": "cifar", "width": str(self.a.width),
                      "num_classes": str(self.num_classes), "gate_reduction": "8"})
        bt.deploy.save_deployed(self.path(s, deploy=True), copy.deepcopy(model).cpu(), extra)
        self.log(f"   {s.id}: deployment file {self.path(s, deploy=True)}")

    @torch.no_grad()
    def evaluate(self, model):
        model.eval()
        n = top1 = top5 = 0
        for x, y, _ in self.test_loader.epoch(0):
            logits = model(x.to(self.device))
            best = logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu()
            top1 += (best[:, 0] == y).sum().item()
            top5 += (best == y[:, None]).any(dim=1).sum().item()
            n += len(y)
        return top1 / max(n, 1), top5 / max(n, 1)


def main(argv=None):
    args = parse_args(argv)
    try:
        Trainer(args).run()
    except KeyboardInterrupt:
        print(f"\ninterrupted: every finished epoch is saved in {args.out}; continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
