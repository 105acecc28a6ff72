"""bnn's layers in PyTorch (include/bnn/nn/), NCHW activations and OIHW weights inside, parameter
and buffer names as bnn's named_parameters() / named_buffers().

Initialisation follows bnn's (`init="bnn"`, which is PyTorch's default for Conv2d and Linear), or
Kaiming normal (`init="kaiming"`, bnn's default until it was measured to train worse; kept to
compare, docs/pytorch.md "Initialisation"):

| layer         | bnn (init="bnn"), as PyTorch                      | init="kaiming"                        |
|---------------|--------------------------------------------------|---------------------------------------|
| Conv2d        | U(+-1/sqrt(fan_in))                              | Kaiming normal, std sqrt(2 / fan_in)  |
| BinaryConv2d  | as Conv2d                                        | as Conv2d, clipped to [-1, 1]         |
| Linear        | U(+-1/sqrt(in)) weight and bias                  | Kaiming normal weight                 |
| ChannelGate   | as Linear without bias                           | Kaiming normal per layer              |
| BatchNorm2d   | weight 1, bias 0, momentum 0.1, eps 1e-5         | the same                              |
| PReLU         | 0.25                                             | the same                              |
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .binarize import sign_ste, sign_weights

SOFT_ACTIVATIONS = "soft_activations"      # tanh(x) conv W (stage 1)
BINARY_ACTIVATIONS = "binary_activations"  # sign(x) conv W, STE (stage 2)
FULLY_BINARY = "fully_binary"              # sign(x) conv sign(W) * scale (stage 3)
MODES = (SOFT_ACTIVATIONS, BINARY_ACTIVATIONS, FULLY_BINARY)

SCALE_NONE, SCALE_MEAN_ABS, SCALE_LEARNED, SCALE_ALPHA = "none", "mean_abs", "learned", "alpha"
WEIGHT_SCALES = (SCALE_NONE, SCALE_MEAN_ABS, SCALE_LEARNED, SCALE_ALPHA)


def _kaiming_normal(w: torch.Tensor) -> None:
    """N(0, 2 / fan_in), fan_in = every dimension but the first."""
    fan_in = w[0].numel()
    with torch.no_grad():
        w.normal_(0.0, math.sqrt(2.0) / math.sqrt(fan_in))


def _fan_in_uniform(w: torch.Tensor) -> None:
    """bnn's init::fan_in_uniform, U(+-1/sqrt(fan_in)): PyTorch's kaiming_uniform_ with a = sqrt(5)."""
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))


def _init_weight(w: torch.Tensor, init: str) -> None:
    if init == "bnn":
        _fan_in_uniform(w)
    elif init == "kaiming":
        _kaiming_normal(w)
    else:
        raise ValueError(f"init must be 'bnn' or 'kaiming', got {init!r}")


class Conv2d(nn.Module):
    """bnn::nn::Conv2d: square kernel, zero padding, no bias by default. weight [out, in, k, k]."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0, bias=False, init="bnn"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        _init_weight(self.weight, init)
        if bias:
            bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
            self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class Linear(nn.Module):
    """bnn::nn::Linear: weight [out, in] and bias initialised as `init` says (default U(+-1/sqrt(in)))."""

    def __init__(self, in_features, out_features, bias=True, init="bnn"):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        _init_weight(self.weight, init)
        if bias:
            bound = 1.0 / math.sqrt(in_features)
            self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class BatchNorm2d(nn.Module):
    """bnn::nn::BatchNorm2d: batch statistics in training (running averages updated with
    r = (1 - momentum) r + momentum * batch, unbiased variance), running ones in eval.
    Parameters weight, bias; buffers running_mean, running_var (no num_batches_tracked: bnn has
    none). Works on [N, C, H, W] and [N, C]."""

    def __init__(self, channels, momentum=0.1, eps=1e-5):
        super().__init__()
        self.channels, self.momentum, self.eps = channels, momentum, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.momentum, self.eps)


class PReLU(nn.Module):
    """bnn::nn::PReLU: one slope per channel, initialised to 0.25. weight [C]."""

    def __init__(self, channels, init=0.25):
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x):
        return F.prelu(x, self.weight)


class Flatten(nn.Module):
    """bnn::nn::Flatten: [N, C, H, W] -> [N, H*W*C] in bnn's NHWC order, so the weights of a
    Linear after it mean what they mean in bnn."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x.flatten(1)


class ChannelGate(nn.Module):
    """bnn::nn::ChannelGate (Real-to-Bin's data-driven scale, Sec. 4.3):
    G(x) = sigmoid(W2 relu(W1 mean_hw(x))), x [N, Cin, H, W] -> [N, Cout].
    weight1 [hidden, in], weight2 [out, hidden]; hidden = hidden_channels or max(1, in // reduction)."""

    def __init__(self, in_channels, out_channels, hidden_channels=0, reduction=8, init="bnn"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden_channels = hidden_channels if hidden_channels > 0 else max(1, in_channels // reduction)
        self.weight1 = nn.Parameter(torch.empty(self.hidden_channels, in_channels))
        self.weight2 = nn.Parameter(torch.empty(out_channels, self.hidden_channels))
        _init_weight(self.weight1, init)
        _init_weight(self.weight2, init)

    def forward(self, x):
        pooled = x.mean(dim=(2, 3))
        return torch.sigmoid(F.linear(F.relu(F.linear(pooled, self.weight1)), self.weight2))


class BinaryConv2d(nn.Module):
    """bnn::nn::BinaryConv2d: the binary network's convolution in the three training modes.

    - soft_activations:   tanh(x) conv W
    - binary_activations: sign(x) conv W (STE: gradient where |x| <= 1)
    - fully_binary:       sign(x) conv sign(W), times the weight scale (identity STE for W)
    Padding: `pad_value` "zero" (the border contributes 0) or "one" (a border of +1 around the
    binarised input). Weight scale (`scale`):
    - "mean_abs": alpha = mean |W| per output channel, not differentiated, applied once weights are binary;
    - "learned": parameter alpha [out] = 1 applied in every mode; times mean |W| once binary;
    - "alpha": parameter alpha [out] applied alone in every mode (how deployment files rebuild convs);
    - "none".
    weight [out, in, k, k] (latent, initialised as `init` says, clipped to [-1, 1]); alpha [out] when learned/alpha."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, pad_value="zero",
                 mode=BINARY_ACTIVATIONS, scale=SCALE_MEAN_ABS, init="bnn"):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"BinaryConv2d: mode must be one of {MODES}, got {mode!r}")
        if scale not in WEIGHT_SCALES:
            raise ValueError(f"BinaryConv2d: scale must be one of {WEIGHT_SCALES}, got {scale!r}")
        if pad_value not in ("zero", "one"):
            raise ValueError(f"BinaryConv2d: pad_value must be 'zero' or 'one', got {pad_value!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.pad_value, self.mode, self.scale = pad_value, mode, scale
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        _init_weight(self.weight, init)
        with torch.no_grad():
            self.weight.clamp_(-1.0, 1.0)
        if scale in (SCALE_LEARNED, SCALE_ALPHA):
            self.alpha = nn.Parameter(torch.ones(out_channels))
        else:
            self.register_parameter("alpha", None)

    def mean_abs_weight(self) -> torch.Tensor:
        """mean |W| per output channel, a constant (bnn sums it in double)."""
        w = self.weight.detach()
        return w.double().abs().mean(dim=(1, 2, 3)).float()

    def binary_weight_scale(self) -> torch.Tensor:
        """The factor of sign(W) once fully binary: what a deployment file stores as the scale."""
        if self.scale == SCALE_NONE:
            return torch.ones(self.out_channels)
        if self.scale == SCALE_ALPHA:
            return self.alpha.detach().clone()
        a = self.mean_abs_weight()
        return a * self.alpha.detach() if self.scale == SCALE_LEARNED else a

    def _conv(self, a, w):
        if self.pad_value == "one" and self.padding > 0:
            p = self.padding
            return F.conv2d(F.pad(a, (p, p, p, p), value=1.0), w, None, self.stride, 0)
        return F.conv2d(a, w, None, self.stride, self.padding)

    def forward_unscaled(self, x):
        """(y, scale): the convolution and the per-channel factor [out] still to apply, or None."""
        if self.mode == SOFT_ACTIVATIONS:
            return self._conv(torch.tanh(x), self.weight), self.alpha
        if self.mode == BINARY_ACTIVATIONS:
            return self._conv(sign_ste(x), self.weight), self.alpha
        y = self._conv(sign_ste(x), sign_weights(self.weight))
        if self.scale == SCALE_LEARNED:
            return y, self.alpha * self.mean_abs_weight()
        if self.scale == SCALE_MEAN_ABS:
            return y * self.mean_abs_weight().view(1, -1, 1, 1), None
        return y, self.alpha

    def forward(self, x):
        y, scale = self.forward_unscaled(x)
        return y if scale is None else y * scale.view(1, -1, 1, 1)

    @torch.no_grad()
    def constrain(self):
        """bnn's apply_constraints(): latent weights back into [-1, 1] after each step."""
        self.weight.clamp_(-1.0, 1.0)


def set_binary_mode(model: nn.Module, mode: str) -> int:
    """Switches every BinaryConv2d of `model` to a stage's mode; returns how many."""
    if mode not in MODES:
        raise ValueError(f"set_binary_mode: mode must be one of {MODES}, got {mode!r}")
    n = 0
    for m in model.modules():
        if isinstance(m, BinaryConv2d):
            m.mode = mode
            n += 1
    return n


@torch.no_grad()
def apply_constraints(model: nn.Module) -> None:
    """Clips the latent weights of every BinaryConv2d to [-1, 1] (bnn's Module::apply_constraints)."""
    for m in model.modules():
        if isinstance(m, BinaryConv2d):
            m.constrain()
