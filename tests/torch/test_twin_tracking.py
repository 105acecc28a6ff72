"""A few hundred training steps in bnn and in the PyTorch twin, from the same start on the same
batches in the same order: the training losses track each other. Binary activations make two
runs that differ by rounding drift apart step by step, so the curves are compared as means over
windows of steps, not step by step (test_twin_step.py holds single steps to rounding).

  test_twin_tracking.py <bnn_torch_step>"""
from twin_harness import Failures, driver_path, make_student, recipe, run_driver, run_twin, torch

WIDTH, CLASSES, BATCH, STEPS, SIZE, WINDOW = 4, 10, 8, 200, 8, 40


def learnable_batches(seed):
    """Images of CLASSES noisy templates: a task the tiny network learns within the steps."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(CLASSES, 3, SIZE, SIZE, generator=g)
    labels = torch.randint(0, CLASSES, (STEPS * BATCH,), generator=g)
    images = templates[labels] + 0.8 * torch.randn(STEPS * BATCH, 3, SIZE, SIZE, generator=g)
    return images, labels


def main():
    driver = driver_path()
    failures = Failures()
    for n, stage in enumerate(["real-to-bin/step2", "baseline/stage1", "real-to-bin/step3"]):
        torch.manual_seed(100 + n)
        plan = recipe.find_stage(stage)
        student = make_student(plan, "cifar", WIDTH, CLASSES)
        teacher = make_student(recipe.find_stage(plan.teacher), "cifar", WIDTH, CLASSES) if plan.teacher else None
        images, labels = learnable_batches(200 + n)
        # lr_scale 3 and a 2-epoch cosine over the steps: the losses fall clearly within them.
        spec = {"stage": stage, "stem": "cifar", "width": WIDTH, "classes": CLASSES, "optimizer": "adamw",
                "lr_scale": 3.0, "schedule": "cosine", "epochs": 2, "steps_per_epoch": STEPS // 2,
                "first_step": 0, "steps": STEPS, "batch": BATCH}
        ref = run_driver(driver, spec, student, teacher, images, labels)["loss.total"]
        got = run_twin(spec, student, teacher, images, labels)["loss.total"]
        windows_ref = ref.view(-1, WINDOW).mean(dim=1)
        windows_got = got.view(-1, WINDOW).mean(dim=1)
        print(f"{stage}: mean training loss per {WINDOW} steps")
        print("  bnn  " + " ".join(f"{v:7.4f}" for v in windows_ref.tolist()))
        print("  twin " + " ".join(f"{v:7.4f}" for v in windows_got.tolist()))
        for w, (a, b) in enumerate(zip(windows_got.tolist(), windows_ref.tolist())):
            failures.check(abs(a - b) <= 0.15 * b + 0.03, f"{stage}: window {w}: twin {a:.4f}, bnn {b:.4f}")
        # Not a comparison of two flat lines: both runs learned something.
        for side, curve in (("bnn", windows_ref), ("twin", windows_got)):
            failures.check(curve[-1] < 0.8 * curve[0], f"{stage}: {side}'s loss did not fall: {curve.tolist()}")
    failures.finish("test_twin_tracking")


if __name__ == "__main__":
    main()
