"""The twin's data pipeline against bnn's BatchLoader (issue 10), as the trainers use them: the
channel statistics and the normalized images exactly; each epoch a permutation with the last
partial batch dropped; and the training augmentation (random crop from the image zero-padded by
4, left-right flip) drawn from the same distribution. The step tests feed both sides the same
batches, so only this test sees the data each trainer makes for itself.

Every image is random bytes and labelled with its own index, so each augmented image can be
traced back to its source and to the one shift and flip that made it. The two loaders draw from
different generators: the shifts and flips are compared as samples, each against the uniform
distribution over the 9 x 9 x 2 choices (chi-square at a 1e-4 level; both sides are seeded, so the
outcome is the same on every run).

  test_twin_data.py <bnn_torch_step> (bnn_torch_parts is found beside it)"""
import math
import os

import torch

from twin_harness import Failures, call_driver, driver_path
from bnn_twin import data

N, H, W, C = 256, 10, 10, 3
PAD = 4
CHI2_Z = 3.719  # the standard normal's upper 1e-4 quantile


def bnn_loader(parts, images, batch, seed, epochs, augment, shuffle, drop_last):
    spec = {"kind": "loader", "batch": batch, "seed": seed, "epochs": epochs, "augment": augment,
            "shuffle": shuffle, "drop_last": drop_last}
    out = call_driver(parts, spec, {"images": images, "labels": torch.arange(N, dtype=torch.int64)})
    return out["images"], out["labels"], [float(v) for v in out["mean"]], [float(v) for v in out["std"]]


def twin_loader(images, batch, seed, epochs, augment, shuffle, drop_last):
    mean, std = data.channel_statistics(images)
    loader = data.BatchLoader(data.Dataset(images, torch.arange(N), N), batch, mean, std, shuffle=shuffle,
                              drop_last=drop_last, seed=seed, augment=augment)
    xs, ys = [], []
    for e in range(1, epochs + 1):
        for x, y, _ in loader.epoch(e):
            xs.append(x.permute(0, 2, 3, 1))
            ys.append(y)
    return torch.cat(xs), torch.cat(ys), mean, std


def to_bytes(x, mean, std):
    """Normalized NHWC floats back to the bytes they were made from, and the largest distance
    of a value from a whole byte."""
    b = (x.double() * torch.tensor(std, dtype=torch.float64) + torch.tensor(mean, dtype=torch.float64)) * 255.0
    return b.round().clamp(0, 255).to(torch.uint8), (b - b.round()).abs().max().item()


def candidates(images):
    """Every shift (dy, dx) in [-PAD, PAD]^2 of every image with zero fill, then flipped or not:
    a list of ((dy, dx, flip), [N, H, W, C] bytes)."""
    padded = torch.nn.functional.pad(images.permute(0, 3, 1, 2), (PAD, PAD, PAD, PAD)).permute(0, 2, 3, 1)
    out = []
    for dy in range(-PAD, PAD + 1):
        for dx in range(-PAD, PAD + 1):
            crop = padded[:, PAD + dy:PAD + dy + H, PAD + dx:PAD + dx + W]
            out.append(((dy, dx, 0), crop))
            out.append(((dy, dx, 1), crop.flip(2)))
    return out


def chi2_limit(df):
    """The upper 1e-4 quantile of chi-square with df degrees of freedom (Wilson-Hilferty; exact
    for one degree of freedom, where that approximation is poor)."""
    if df == 1:
        return 3.891 ** 2  # the standard normal's two-sided 1e-4 quantile, squared
    return df * (1 - 2 / (9 * df) + CHI2_Z * math.sqrt(2 / (9 * df))) ** 3


def uniform(failures, name, counts):
    """Chi-square test of counts against equal probabilities; returns the statistic."""
    counts = counts.double().flatten()
    expected = counts.sum() / counts.numel()
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    limit = chi2_limit(counts.numel() - 1)
    failures.check(chi2 <= limit, f"{name} are not uniform: chi-square {chi2:.1f} > {limit:.1f} "
                                  f"(counts {[int(c) for c in counts[:20]]}{' ...' if counts.numel() > 20 else ''})")
    return chi2


def check_plain(failures, parts, images):
    """No shuffle, no augmentation: the same statistics and the same normalized images."""
    bx, by, bmean, bstd = bnn_loader(parts, images, 64, 3, 1, False, False, False)
    tx, ty, tmean, tstd = twin_loader(images, 64, 3, 1, False, False, False)
    for what, b, t in (("mean", bmean, tmean), ("std", bstd, tstd)):
        failures.check(all(abs(u - v) <= 1e-6 * abs(v) for u, v in zip(b, t)), f"channel {what}: bnn {b}, twin {t}")
    failures.check(torch.equal(by, ty), "plain batches: the labels differ")
    if failures.check(bx.shape == tx.shape, f"plain batches: bnn {list(bx.shape)}, twin {list(tx.shape)}"):
        diff = (bx - tx).abs().max().item()
        failures.check(diff <= 1e-5, f"plain batches: normalized images differ by {diff}")


def check_epochs(failures, name, labels, batch, epochs):
    """Each epoch visits N // batch * batch distinct images (the last partial batch dropped),
    in an order that is not the identity and changes from epoch to epoch."""
    per_epoch = N // batch * batch
    if not failures.check(labels.numel() == epochs * per_epoch,
                          f"{name}: {labels.numel()} images in {epochs} epochs, expected {epochs * per_epoch}"):
        return
    orders = labels.view(epochs, per_epoch)
    for e in range(epochs):
        failures.check(orders[e].unique().numel() == per_epoch, f"{name}: epoch {e + 1} repeats an image")
        failures.check(not torch.equal(orders[e], torch.arange(per_epoch)), f"{name}: epoch {e + 1} is not shuffled")
    failures.check(not torch.equal(orders[0], orders[1]), f"{name}: epochs 1 and 2 visit in the same order")


def check_augmentation(failures, name, x, labels, mean, std, images):
    """Each image is one shift and flip of its source; the choices are uniform."""
    got, off = to_bytes(x, mean, std)
    failures.check(off < 0.01, f"{name}: a value is {off} away from a whole byte after undoing the normalization")
    choice = torch.full((labels.numel(),), -1, dtype=torch.int64)
    for k, (_, cand) in enumerate(candidates(images)):
        hit = (cand[labels] == got).flatten(1).all(dim=1) & (choice < 0)
        choice[hit] = k
    failures.check(bool((choice >= 0).all()), f"{name}: {(choice < 0).sum().item()} of {labels.numel()} images are "
                                              f"no shift (zero fill) and flip of their source")
    # Cell k is (dy, dx, flip) in the order candidates() makes them.
    counts = torch.bincount(choice[choice >= 0], minlength=(2 * PAD + 1) ** 2 * 2).view(2 * PAD + 1, 2 * PAD + 1, 2)
    joint = uniform(failures, f"{name}: the (shift, flip) choices", counts)
    uniform(failures, f"{name}: the vertical shifts", counts.sum((1, 2)))
    uniform(failures, f"{name}: the horizontal shifts", counts.sum((0, 2)))
    flips = counts.sum((0, 1))
    uniform(failures, f"{name}: the flips", flips)
    print(f"{name}: {labels.numel()} images traced; chi-square of the {counts.numel()} choices {joint:.1f}; "
          f"flipped {int(flips[1])}, not {int(flips[0])}")


def main():
    parts = os.path.join(os.path.dirname(driver_path()), "bnn_torch_parts")
    failures = Failures()
    images = torch.randint(0, 256, (N, H, W, C), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    check_plain(failures, parts, images)
    epochs = 8
    bx, by, bmean, bstd = bnn_loader(parts, images, 60, 7, epochs, True, True, True)
    tx, ty, tmean, tstd = twin_loader(images, 60, 7, epochs, True, True, True)
    for name, x, y, mean, std in (("bnn", bx, by, bmean, bstd), ("twin", tx, ty, tmean, tstd)):
        check_epochs(failures, name, y, 60, epochs)
        check_augmentation(failures, name, x, y, mean, std, images)
    failures.finish("test_twin_data")


if __name__ == "__main__":
    main()
