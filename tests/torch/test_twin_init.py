"""The twin's initialisation against bnn's (issue 10): every parameter and buffer of a freshly
built network of each variant (real, Real-to-Bin, strong baseline) on both stems, as bnn_torch_step
writes them with "init_only". The step tests copy one side's weights into the other, so only this
test sees whether the two trainers start from the same distributions. The two draw from different
generators, so a random tensor is compared as a sample (two-sample Kolmogorov-Smirnov); a
constant one (batch-norm scales, PReLU slopes, running statistics) must be equal.

  test_twin_init.py <bnn_torch_step>"""
import math

import torch

from twin_harness import Failures, call_driver, checkpoint, driver_path, make_student, recipe

STAGES = ("real", "real-to-bin/step1", "baseline/stage1")
# Rejects a common distribution with probability 1e-4 when it holds. Both sides are seeded, so the
# outcome is the same on every run.
KS_ALPHA = 1e-4


def ks_statistic(a, b):
    """sup |F_a - F_b| of the empirical distribution functions of two samples."""
    a, b = a.flatten().double().sort().values, b.flatten().double().sort().values
    at = torch.cat([a, b])
    fa = torch.searchsorted(a, at, right=True).double() / a.numel()
    fb = torch.searchsorted(b, at, right=True).double() / b.numel()
    return (fa - fb).abs().max().item()


def ks_threshold(n, m):
    return math.sqrt(-0.5 * math.log(KS_ALPHA / 2)) * math.sqrt((n + m) / (n * m))


def compare(failures, case, ours, theirs):
    failures.check(ours.keys() == theirs.keys(), f"{case}: names bnn only {sorted(set(ours) - set(theirs))}, "
                                                 f"twin only {sorted(set(theirs) - set(ours))}")
    random = 0
    for name in sorted(set(ours) & set(theirs)):
        b, t = ours[name].double(), theirs[name].double()
        if not failures.check(b.shape == t.shape, f"{case} {name}: shape bnn {list(b.shape)}, twin {list(t.shape)}"):
            continue
        if bool((t == t.flatten()[0]).all()):
            failures.check(torch.equal(b, t), f"{case} {name}: the twin starts at {t.flatten()[0].item()} "
                                              f"everywhere, bnn at {b.min().item()}..{b.max().item()}")
            continue
        random += 1
        d, limit = ks_statistic(b, t), ks_threshold(b.numel(), t.numel())
        failures.check(d <= limit, f"{case} {name} ({t.numel()} values): KS distance {d:.4f} > {limit:.4f}; "
                                   f"bnn std {b.std().item():.4g} range {b.min().item():.4g}..{b.max().item():.4g}, "
                                   f"twin std {t.std().item():.4g} range {t.min().item():.4g}..{t.max().item():.4g}")
    failures.check(random > 0, f"{case}: no randomly initialised tensor was compared")


def main():
    driver = driver_path()
    failures = Failures()
    for seed, stage in enumerate(STAGES, start=11):
        plan = recipe.find_stage(stage)
        for stem in ("cifar", "imagenet"):
            spec = {"init_only": True, "stage": stage, "stem": stem, "width": 16, "classes": 100, "seed": seed}
            ours = call_driver(driver, spec, {})
            torch.manual_seed(seed)
            theirs = checkpoint.bnn_state(make_student(plan, stem, 16, 100))
            compare(failures, f"{plan.variant} ({stem} stem)", ours, theirs)
    failures.finish("test_twin_init")


if __name__ == "__main__":
    main()
