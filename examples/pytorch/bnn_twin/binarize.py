"""Binarisation with bnn's straight-through estimators (include/bnn/kernels/sign.hpp,
include/bnn/ops/binary_conv2d.hpp).

- activations: sign(x) = +1 where x >= 0 (so sign(0) = +1), -1 elsewhere; the gradient passes
  where |x| <= 1 (closed at +-1, the gradient of hardtanh) and is 0 elsewhere;
- latent weights: the same sign, with the identity as gradient (bnn keeps the latent weights in
  [-1, 1] by clipping after each step instead of masking their gradient).

torch.sign would give sign(0) = 0, which bnn's packed kernels cannot represent.
"""
import torch


def sign_of(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0, -1 elsewhere (no gradient). Computed from the comparison's 0/1 rather than
    by torch.where, which is several times slower on the CPU."""
    return (x >= 0).to(x.dtype).mul_(2).sub_(1)


class SignSTE(torch.autograd.Function):
    """sign(x) forward; grad * (|x| <= 1) backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign_of(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class SignIdentity(torch.autograd.Function):
    """sign(w) forward; the gradient unchanged backward (latent weights, clipped elsewhere)."""

    @staticmethod
    def forward(ctx, w):
        return sign_of(w)

    @staticmethod
    def backward(ctx, grad):
        return grad


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    return SignSTE.apply(x)


def sign_weights(w: torch.Tensor) -> torch.Tensor:
    return SignIdentity.apply(w)
