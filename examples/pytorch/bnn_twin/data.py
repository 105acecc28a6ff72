"""The data of bnn's trainer (examples/trainer/data_source.hpp, include/bnn/data/): CIFAR-100 and
CIFAR-10 in their binary versions, Fashion-MNIST as IDX (plain or .gz) zero-padded to 32x32,
per-channel normalization with the training set's statistics, and the same augmentations:
random crop from the image zero-padded by 4 (offsets uniform in [-4, 4]), left-right flip with
probability 1/2, optional rotation (bilinear, zero fill) and batch-level mix-up (one
lambda ~ Beta(a, a) per batch, partners a permutation of the batch). The random streams are
PyTorch's, not bnn's: the same distributions, not the same draws.

Images are uint8 [N, H, W, C] as read (bnn's layout); batches come out float NCHW."""
import gzip
import math
import os
import struct
from dataclasses import dataclass, field
from typing import List

import torch

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]


@dataclass
class Dataset:
    images: torch.Tensor                     # uint8 [N, H, W, C]
    labels: torch.Tensor                     # int64 [N]
    num_classes: int
    class_names: List[str] = field(default_factory=list)


def detect_format(directory: str) -> str:
    def has(f):
        return os.path.exists(os.path.join(directory, f))
    if has("train.bin") and has("test.bin"):
        return "cifar100"
    if has("data_batch_1.bin") and has("test_batch.bin"):
        return "cifar10"
    if has("train-images-idx3-ubyte.gz") or has("train-images-idx3-ubyte"):
        return "fashion-mnist"
    return ""


def find_data(cli_dir: str, fmt: str):
    """(format, directory, reason) as the bnn trainer chooses: --data, $BNN_DATA,
    data/cifar-100-binary, else the Fashion-MNIST package."""
    def chosen(directory, why):
        if not os.path.isdir(directory):
            raise ValueError(f"data directory '{directory}' ({why}) does not exist")
        f = detect_format(directory) if fmt == "auto" else fmt
        if f not in ("cifar100", "cifar10", "fashion-mnist"):
            raise ValueError(f"no data set recognised in '{directory}' ({why}): expected CIFAR-100 (train.bin, "
                             "test.bin), CIFAR-10 (data_batch_1.bin ... test_batch.bin) or IDX files")
        return f, directory, why
    if cli_dir:
        return chosen(cli_dir, "--data")
    if os.environ.get("BNN_DATA"):
        return chosen(os.environ["BNN_DATA"], "$BNN_DATA")
    if os.path.isdir("data/cifar-100-binary"):
        return chosen("data/cifar-100-binary", "found in ./data")
    return chosen(FASHION_MNIST_DIR, "fallback: no CIFAR-100 found")


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _class_names(path, count):
    if not os.path.exists(path):
        return [f"class {k}" for k in range(count)]
    names = [line.strip() for line in open(path) if line.strip()]
    return names[:count] if len(names) >= count else [f"class {k}" for k in range(count)]


def _cifar_records(paths, record_size, label_byte, num_classes):
    blob = b"".join(_read(p) for p in paths)
    if len(blob) % record_size:
        raise ValueError(f"CIFAR reader: {paths} hold {len(blob)} bytes, not a multiple of the {record_size}-byte record")
    records = torch.frombuffer(bytearray(blob), dtype=torch.uint8).view(-1, record_size)
    labels = records[:, label_byte].long()
    if labels.numel() and labels.max().item() >= num_classes:
        raise ValueError(f"CIFAR reader: a label is outside [0, {num_classes})")
    images = records[:, record_size - 3072:].reshape(-1, 3, 32, 32).permute(0, 2, 3, 1).contiguous()
    return images, labels


def _idx(path):
    blob = _read(path)
    if path.endswith(".gz"):
        blob = gzip.decompress(blob)
    magic, = struct.unpack(">I", blob[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, blob[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(blob[4 + 4 * dims:]), dtype=torch.uint8).view(*shape)


def _idx_file(directory, stem):
    plain = os.path.join(directory, stem)
    return plain if os.path.exists(plain) else plain + ".gz"


def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pads [N, H, W, C] to size x size, centred (Fashion-MNIST's 28 -> 32)."""
    n, h, w, c = images.shape
    if h >= size and w >= size:
        return images
    out = torch.zeros(n, size, size, c, dtype=images.dtype)
    top, left = (size - h) // 2, (size - w) // 2
    out[:, top:top + h, left:left + w] = images
    return out


def load(fmt: str, directory: str, train: bool) -> Dataset:
    if fmt == "cifar100":
        images, labels = _cifar_records([os.path.join(directory, "train.bin" if train else "test.bin")], 3074, 1, 100)
        return Dataset(images, labels, 100, _class_names(os.path.join(directory, "fine_label_names.txt"), 100))
    if fmt == "cifar10":
        files = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
        images, labels = _cifar_records([os.path.join(directory, f) for f in files], 3073, 0, 10)
        return Dataset(images, labels, 10, _class_names(os.path.join(directory, "batches.meta.txt"), 10))
    prefix = "train" if train else "t10k"
    images = _idx(_idx_file(directory, f"{prefix}-images-idx3-ubyte")).unsqueeze(-1)
    labels = _idx(_idx_file(directory, f"{prefix}-labels-idx1-ubyte")).long()
    return Dataset(pad_to(images, 32), labels, 10, list(FASHION_MNIST_CLASSES))


def subset(d: Dataset, n: int, seed: int) -> Dataset:
    """A seeded random subset of n samples in their original order (n <= 0 keeps all)."""
    if n <= 0 or n >= len(d.labels):
        return d
    idx = torch.randperm(len(d.labels), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return Dataset(d.images[idx], d.labels[idx], d.num_classes, d.class_names)


def channel_statistics(images: torch.Tensor):
    """Per-channel mean and (population) standard deviation on the [0, 1] scale."""
    x = images.reshape(-1, images.shape[-1]).double() / 255.0
    mean = x.mean(dim=0)
    std = (x.pow(2).mean(dim=0) - mean.pow(2)).clamp(min=0).sqrt()
    return [float(v) for v in mean], [float(v) for v in std]


def normalize(images_u8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 [N, H, W, C] -> float NCHW, (x / 255 - mean) / std as one multiply-add per value."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32)
    return (images_u8.float() * scale + shift).permute(0, 3, 1, 2).contiguous()


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """Each image [N, C, H, W] shifted by (dy, dx) uniform in [-padding, padding], zero fill."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=g)
    return torch.stack([padded[i, :, oy:oy + h, ox:ox + w] for i, (oy, ox) in enumerate(offsets.tolist())])


def random_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    x = x.clone()
    x[flip] = x[flip].flip(-1)
    return x


def random_rotate(x: torch.Tensor, max_degrees: float, g: torch.Generator) -> torch.Tensor:
    """Rotation about the pixel grid's centre by an angle uniform in [-max, max], bilinear, zero fill."""
    n, _, h, w = x.shape
    angles = (torch.rand(n, generator=g) * 2 - 1) * max_degrees * math.pi / 180
    cos, sin = angles.cos(), angles.sin()
    # affine_grid works in [-1, 1] coordinates with align_corners=True: pixel centres at the ends.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * (h - 1) / max(w - 1, 1)
    theta[:, 1, 0], theta[:, 1, 1] = sin * (w - 1) / max(h - 1, 1), cos
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=True)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def mixup(x: torch.Tensor, labels: torch.Tensor, num_classes: int, alpha: float, g: torch.Generator):
    """(blended images, soft targets): lambda ~ Beta(alpha, alpha) per batch, partners a permutation."""
    # Beta from the global generator (torch.distributions takes no Generator), seeded by --seed.
    lam = float(torch.distributions.Beta(float(alpha), float(alpha)).sample())
    partner = torch.randperm(x.shape[0], generator=g)
    targets = torch.zeros(x.shape[0], num_classes)
    targets[torch.arange(x.shape[0]), labels] += lam
    targets[torch.arange(x.shape[0]), labels[partner]] += 1 - lam
    return lam * x + (1 - lam) * x[partner], targets


class BatchLoader:
    """Epochs of normalized, augmented batches. Epoch e's order and augmentation depend only on
    (seed, e), so a resumed run sees the batches an uninterrupted one would."""

    def __init__(self, data: Dataset, batch_size, mean, std, shuffle=True, drop_last=False, seed=0, augment=False,
                 rotation=0.0, mixup_alpha=0.0):
        self.data, self.batch_size, self.mean, self.std = data, batch_size, mean, std
        self.shuffle, self.drop_last, self.seed, self.augment = shuffle, drop_last, seed, augment
        self.rotation, self.mixup_alpha = rotation, mixup_alpha

    def batches_per_epoch(self):
        n = len(self.data.labels)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    def epoch(self, epoch: int):
        g = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
        n = len(self.data.labels)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for b in range(self.batches_per_epoch()):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = normalize(self.data.images[idx], self.mean, self.std)
            y = self.data.labels[idx]
            targets = None
            if self.augment:
                # bnn crops and rotates the byte image, then normalizes: zero fill is black there,
                # so fill with the normalized value of a 0 byte here.
                zero = normalize(torch.zeros(1, 1, 1, x.shape[1], dtype=torch.uint8), self.mean, self.std)
                x = random_crop(x - zero, 4, g) + zero
                x = random_flip(x, g)
                if self.rotation > 0:
                    x = random_rotate(x - zero, self.rotation, g) + zero
            if self.mixup_alpha > 0:
                x, targets = mixup(x, y, self.data.num_classes, self.mixup_alpha, g)
            yield x, y, targets
