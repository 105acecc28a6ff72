"""A stage started in one trainer is finished by the other (issue 10): the twin
(examples/pytorch/train_cifar100.py) stops after epoch 1 of 2 and bnn's train_cifar100 --resume
finishes the stage from the twin's checkpoint, and the other way round, for the real network and
for the strong baseline's first stage (binary convs: alphas and latent weights, two parameter
groups), which the second trainer then follows with stage 2. Each resume must say so, restore
the optimiser (strict: every state tensor checked by shape), and continue its step count, so the
finished checkpoint has two epochs' steps; metrics.jsonl gets one line per epoch from each.

  test_twin_resume.py <bnn_torch_step>      (bnn's trainer from $BNN_TRAIN_CIFAR100)"""
import json
import os
import random
import subprocess
import sys
import tempfile

from twin_harness import Failures, safetensors_io

HERE = os.path.dirname(os.path.abspath(__file__))
TWIN = os.path.join(HERE, "..", "..", "examples", "pytorch", "train_cifar100.py")
TRAIN, TEST, BATCH, EPOCHS = 96, 40, 32, 2


def write_cifar100(path, count, rng):
    """Records of CIFAR-100's binary layout: [coarse label][fine label][3072 pixel bytes]."""
    with open(path, "wb") as f:
        for i in range(count):
            f.write(bytes([i % 20, i * 7 % 100]) + rng.randbytes(3072))


def epochs_logged(out, stage):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return [line["epoch"] for line in lines if line.get("stage") == stage and line.get("kind", "epoch") == "epoch"]


def main():
    bnn = os.environ.get("BNN_TRAIN_CIFAR100", "")
    if not bnn:
        print("SKIPPED: bnn's train_cifar100 is not built (-DBNN_BUILD_EXAMPLES=OFF)")
        return
    if not os.path.isfile(bnn):
        print(f"FAIL: $BNN_TRAIN_CIFAR100 names '{bnn}', which does not exist")
        sys.exit(1)
    failures = Failures()
    with tempfile.TemporaryDirectory(prefix="bnn_twin_resume_") as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        rng = random.Random(5)
        write_cifar100(os.path.join(data, "train.bin"), TRAIN, rng)
        write_cifar100(os.path.join(data, "test.bin"), TEST, rng)
        for recipe, stage in (("real", "real"), ("baseline", "baseline/stage1")):
            common = ["--data", data, "--recipe", recipe, "--width", "4", "--epochs", str(EPOCHS), "--batch",
                      str(BATCH), "--threads", "1", "--seed", "3"]
            twin = [sys.executable, TWIN] + common + ["--device", "cpu"]
            ours = [bnn] + common
            for first, then, order in ((twin, ours, "twin, then bnn"), (ours, twin, "bnn, then twin")):
                name = f"{stage}: {order}"
                out = os.path.join(tmp, recipe + "_" + order.replace(", ", "_").replace(" ", ""))
                stopped = subprocess.run(first + ["--out", out, "--stop-after-epochs", "1"], capture_output=True,
                                         text=True, timeout=300)
                failures.check(stopped.returncode == 130 and "interrupted" in stopped.stderr,
                               f"{name}: the first trainer should stop after epoch 1 with status 130, got "
                               f"{stopped.returncode}: {stopped.stderr[-500:]}")
                resumed = subprocess.run(then + ["--out", out, "--resume"], capture_output=True, text=True,
                                         timeout=300)
                failures.check(resumed.returncode == 0, f"{name}: the resumed run failed with status "
                               f"{resumed.returncode}: {resumed.stderr[-800:]}")
                failures.check(f"{stage}: resuming after epoch 1" in resumed.stdout,
                               f"{name}: the second trainer did not resume after epoch 1:\n{resumed.stdout[-800:]}")
                if resumed.returncode != 0:
                    continue
                _, meta, _ = safetensors_io.load(os.path.join(out, stage.replace("/", "-") + ".safetensors"))
                caller = json.loads(meta.get("metadata", "{}"))
                failures.check(caller.get("epoch") == EPOCHS and caller.get("complete") is True,
                               f"{name}: the finished checkpoint says epoch {caller.get('epoch')}, complete "
                               f"{caller.get('complete')}; expected {EPOCHS}, true")
                steps = int(meta.get("optim.step_count", "-1"))
                failures.check(steps == EPOCHS * (TRAIN // BATCH),
                               f"{name}: the optimiser's step count is {steps}, expected {EPOCHS * (TRAIN // BATCH)} "
                               "(the resumed run must continue the first one's)")
                logged = epochs_logged(out, stage)
                failures.check(logged == [1, 2], f"{name}: metrics.jsonl has the epochs {logged}, expected [1, 2]")
                if recipe == "baseline":
                    failures.check(epochs_logged(out, "baseline/stage2") == [1, 2],
                                   f"{name}: stage 2 did not follow the resumed stage 1")
    failures.finish("a stage started in one trainer, finished in the other")


if __name__ == "__main__":
    main()
