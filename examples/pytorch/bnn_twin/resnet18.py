"""The ResNet-18 variants of examples/resnet18.hpp: "real", "strong-baseline", "real-to-bin", with
the "cifar" stem (3x3/1 conv, BN, ReLU) or the "imagenet" stem (7x7/2 conv, BN, ReLU or PReLU for
the strong baseline, max pool 3x3/2). Children: stem, block1..block8, pool, fc; parameter names
are bnn's. forward_features(x) returns (logits, [("block1", map), ..., ("block8", map)]), the
transfer points of attention matching. Input NCHW. `init` is "bnn" (bnn's initialisation, PyTorch's
default) or "kaiming" (Kaiming normal); `binary_init` overrides it for the binary convs' latent
weights."""
import torch.nn as nn

from .blocks import BasicBlock, BinaryBasicBlock
from .layers import BINARY_ACTIVATIONS, BatchNorm2d, BinaryConv2d, Conv2d, Linear, PReLU, set_binary_mode

VARIANTS = ("real", "strong-baseline", "real-to-bin")
STEMS = ("cifar", "imagenet")


def block_channels(width: int, b: int) -> int:
    """Output channels of block b (0-based): w, w, 2w, 2w, 4w, 4w, 8w, 8w."""
    return width << (b // 2)


def block_stride(b: int) -> int:
    """Stride 2 at the first conv of blocks 3, 5 and 7 (1-based)."""
    return 2 if b > 0 and b % 2 == 0 else 1


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class ResNet18(nn.Module):
    def __init__(self, variant="real", stem="cifar", width=64, num_classes=100, in_channels=3, gate_reduction=8,
                 mode=BINARY_ACTIVATIONS, init="bnn", binary_init=None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"ResNet18: variant must be one of {VARIANTS}, got {variant!r}")
        if stem not in STEMS:
            raise ValueError(f"ResNet18: stem must be one of {STEMS}, got {stem!r}")
        if width <= 0 or num_classes <= 0 or in_channels <= 0:
            raise ValueError(f"ResNet18: width, num_classes and in_channels must be positive, got "
                             f"{width}, {num_classes}, {in_channels}")
        self.variant, self.stem_kind, self.width = variant, stem, width
        self.num_classes, self.in_channels, self.gate_reduction = num_classes, in_channels, gate_reduction
        self.mode = mode
        w = width
        layers = [Conv2d(in_channels, w, 3, 1, 1, init=init) if stem == "cifar" else
                  Conv2d(in_channels, w, 7, 2, 3, init=init), BatchNorm2d(w)]
        layers.append(PReLU(w) if stem == "imagenet" and variant == "strong-baseline" else nn.ReLU())
        if stem == "imagenet":
            layers.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*layers)
        cin = w
        for b in range(8):
            out = block_channels(w, b)
            if variant == "real":
                block = BasicBlock(cin, out, block_stride(b), init=init)
            else:
                block = BinaryBasicBlock(cin, out, block_stride(b),
                                         scale="gate" if variant == "real-to-bin" else "alpha",
                                         gate_reduction=gate_reduction, mode=mode, init=init,
                                         binary_init=binary_init)
            self.add_module(f"block{b + 1}", block)
            cin = out
        self.pool = GlobalAvgPool()
        self.fc = Linear(cin, num_classes, init=init)

    def blocks(self):
        return [getattr(self, f"block{b + 1}") for b in range(8)]

    def forward_features(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResNet18: expected input [N, {self.in_channels}, H, W], got {list(x.shape)}")
        h = self.stem(x)
        maps = []
        for b, block in enumerate(self.blocks()):
            h = block(h)
            maps.append((f"block{b + 1}", h))
        return self.fc(self.pool(h)), maps

    def forward(self, x):
        return self.forward_features(x)[0]

    def set_mode(self, mode):
        if self.variant == "real":
            raise ValueError("ResNet18.set_mode: the real variant has no binary convs")
        self.mode = mode
        set_binary_mode(self, mode)

    def binary_convs(self):
        return [m for m in self.modules() if isinstance(m, BinaryConv2d)]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
