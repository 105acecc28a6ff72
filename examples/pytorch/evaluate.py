#!/usr/bin/python3
"""Test top-1 of trainer checkpoints, bnn's or the twin's, evaluated by the twin and, given bnn's
bnn_torch_step (built with the tests in tests/torch), by bnn as well: both read the same file, so
a difference between the two columns is a difference of evaluation, not of training.

usage: evaluate.py --data DIR [--bnn PATH/bnn_torch_step] CHECKPOINT...

Each checkpoint's metadata (written by either trainer) gives its stage, variant, width, classes
and the normalization it was trained with; the test set is the one the trainers use (CIFAR-100,
CIFAR-10 or Fashion-MNIST in DIR)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bnn_twin as bt  # noqa: E402
from bnn_twin import checkpoint, data, recipe, safetensors_io  # noqa: E402


def twin_logits(tensors, meta, images):
    stage = recipe.find_stage(meta["stage"])
    model = bt.ResNet18(stage.variant, "cifar", meta["width"], meta["num_classes"], meta["in_channels"],
                        mode=stage.mode)
    checkpoint.load_bnn_state(model, tensors)
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x) for x in images.split(250)])


def bnn_logits(driver, path, meta, images):
    spec = {"eval_only": True, "student_file": os.path.abspath(path), "stage": meta["stage"], "stem": "cifar",
            "width": meta["width"], "classes": meta["num_classes"], "threads": os.cpu_count() or 1}
    with tempfile.TemporaryDirectory(prefix="bnn_evaluate_") as tmp:
        spec_path, in_path, out_path = (os.path.join(tmp, n) for n in ("spec.json", "in.safetensors", "out.safetensors"))
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        safetensors_io.save(in_path, {"images": checkpoint.to_bnn_layout(images),
                                      "labels": torch.zeros(images.shape[0], dtype=torch.int64)})
        done = subprocess.run([driver, spec_path, in_path, out_path], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{driver} failed on {path}: {done.stderr.strip()}")
        return safetensors_io.load(out_path)[0]["logits"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the data directory the checkpoints were trained on")
    p.add_argument("--bnn", default="", help="path of bnn_torch_step: evaluate in bnn too")
    p.add_argument("checkpoints", nargs="+")
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    fmt, directory, _ = data.find_data(a.data, "auto")
    test = data.load(fmt, directory, False)
    print(f"{'checkpoint':<60} {'trained':>8} {'twin':>8} {'bnn':>8}  (test top-1 %: as the trainer logged it, "
          f"evaluated by each)")
    for path in a.checkpoints:
        tensors, header, _ = safetensors_io.load(path)
        meta = json.loads(header.get("metadata", "{}"))
        images = data.normalize(test.images, meta["mean"], meta["std"])
        ours = twin_logits(tensors, meta, images)
        top1 = lambda logits: 100.0 * (logits.argmax(1) == test.labels).double().mean().item()  # noqa: E731
        row = f"{path:<60} {100 * meta.get('test_top1', float('nan')):8.2f} {top1(ours):8.2f}"
        if a.bnn:
            theirs = bnn_logits(a.bnn, path, meta, images)
            agree = (theirs.argmax(1) == ours.argmax(1)).double().mean().item()
            row += f" {top1(theirs):8.2f}  top-1 class the same on {100 * agree:.2f}% of images"
        print(row, flush=True)


if __name__ == "__main__":
    main()
