"""The paper's blocks as bnn builds them (include/bnn/nn/basic_block.hpp, downsample.hpp,
binary_half_block.hpp, binary_basic_block.hpp), with bnn's child and parameter names."""
import torch.nn as nn
import torch.nn.functional as F

from .layers import (BINARY_ACTIVATIONS, SCALE_LEARNED, SCALE_MEAN_ABS, BatchNorm2d, BinaryConv2d, ChannelGate,
                     Conv2d, PReLU)


class BasicBlock(nn.Module):
    """Real ResNet basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the
    shortcut is the identity or downsample.0 (1x1 strided conv) + downsample.1 (BN)."""

    def __init__(self, in_channels, out_channels, stride=1, init="bnn"):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride, 1, init=init)
        self.bn1 = BatchNorm2d(out_channels)
        self.conv2 = Conv2d(out_channels, out_channels, 3, 1, 1, init=init)
        self.bn2 = BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(Conv2d(in_channels, out_channels, 1, stride, 0, init=init),
                                            BatchNorm2d(out_channels))
        else:
            self.downsample = None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Downsample(nn.Sequential):
    """The shortcut of a binary half-block whose shape changes: "0" AvgPool s x s (when strided),
    then the 1x1 Conv2d and the BatchNorm2d."""

    def __init__(self, in_channels, out_channels, stride=1, init="bnn"):
        layers = [nn.AvgPool2d(stride, stride)] if stride != 1 else []
        layers += [Conv2d(in_channels, out_channels, 1, 1, 0, init=init), BatchNorm2d(out_channels)]
        super().__init__(*layers)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride


class BinaryHalfBlock(nn.Module):
    """h = bn(x); y = conv(h) (its binarisation by mode); y *= alpha (scale "alpha": the conv's
    learned scale) or y *= gate(h) (scale "gate": per sample and channel); out = prelu(y) + shortcut(x).
    Children: bn, conv, gate (scale "gate"), prelu, shortcut (when the shape changes). `binary_init`
    initialises the binary conv differently from the rest (default: `init`)."""

    def __init__(self, in_channels, out_channels, stride=1, kernel_size=3, scale="alpha", gate_reduction=8,
                 gate_hidden=0, pad_value="zero", mode=BINARY_ACTIVATIONS, conv_scale=None, init="bnn",
                 binary_init=None):
        super().__init__()
        if scale not in ("alpha", "gate"):
            raise ValueError(f"BinaryHalfBlock: scale must be 'alpha' or 'gate', got {scale!r}")
        self.options = dict(in_channels=in_channels, out_channels=out_channels, stride=stride,
                            kernel_size=kernel_size, scale=scale, gate_reduction=gate_reduction,
                            gate_hidden=gate_hidden, pad_value=pad_value)
        gated = scale == "gate"
        self.bn = BatchNorm2d(in_channels)
        self.conv = BinaryConv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, pad_value, mode,
                                 conv_scale or (SCALE_MEAN_ABS if gated else SCALE_LEARNED),
                                 init=binary_init or init)
        self.gate = ChannelGate(in_channels, out_channels, gate_hidden, gate_reduction, init=init) if gated else None
        self.prelu = PReLU(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Downsample(in_channels, out_channels, stride, init=init)
        else:
            self.shortcut = None

    def forward(self, x):
        h = self.bn(x)
        y, scale = self.conv.forward_unscaled(h)
        if self.gate is not None:
            if scale is not None:
                y = y * scale.view(1, -1, 1, 1)
            scale = self.gate(h)
            y = y * scale[:, :, None, None]
        elif scale is not None:
            y = y * scale.view(1, -1, 1, 1)
        y = self.prelu(y)
        return y + (self.shortcut(x) if self.shortcut is not None else x)


class BinaryBasicBlock(nn.Module):
    """Two half-blocks (half1 with the stride and channel change, half2 out -> out): one transfer
    point of attention matching."""

    def __init__(self, in_channels, out_channels, stride=1, **half_options):
        super().__init__()
        self.half1 = BinaryHalfBlock(in_channels, out_channels, stride, **half_options)
        self.half2 = BinaryHalfBlock(out_channels, out_channels, 1, **half_options)

    def forward(self, x):
        return self.half2(self.half1(x))


class Residual(nn.Module):
    """bnn::nn::Residual: body(x) + shortcut(x), or body(x) + x without a shortcut."""

    def __init__(self, body: nn.Module, shortcut=None):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + (self.shortcut(x) if self.shortcut is not None else x)
