"""Pieces shared by the PyTorch comparison scripts: the timing loop and the ResNet-18 that
bnn's benchmarks are compared against (written out here: Debian ships no torchvision)."""
import statistics
import time

import torch
from torch import nn


def time_call(fn, min_seconds):
    """(median, best) seconds per call of fn, after two warm-up calls (oneDNN creates and caches
    its primitives on the first ones), over at least min_seconds and 5 calls."""
    fn()
    fn()
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(samples) < 5:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), min(samples)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet18(nn.Module):
    """ResNet-18 with the ImageNet stem (7x7/2 conv, max pool) or the CIFAR one (3x3/1 conv, no
    pool), the same layers as bnn's examples/resnet18.hpp (Variant::Real)."""

    def __init__(self, imagenet, width=64, classes=None):
        super().__init__()
        if imagenet:
            self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True))
        blocks, cin = [], width
        for b in range(8):
            cout = width << (b // 2)
            blocks.append(BasicBlock(cin, cout, 2 if b in (2, 4, 6) else 1))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes or (1000 if imagenet else 100))

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
