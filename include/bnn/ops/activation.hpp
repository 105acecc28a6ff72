#pragma once
/// @file activation.hpp
/// Differentiable activations: relu, tanh, sigmoid, hardtanh, prelu (one tape node each).
#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/activation.hpp"

namespace bnn::ops {

/// max(x, 0), any shape. The gradient at exactly 0 is taken as 0.
inline Variable relu(const Variable& x) {
    Tensor<float> xv = x.value();
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::relu_forward(xv.data(), y.data(), y.numel());
    return make_result(
        y, {x},
        [xv](const Tensor<float>& g, std::vector<Variable>& in) {
            if (const auto dx = grad_sink(in[0]); dx.data)
                kernels::relu_backward(xv.data(), g.data(), dx.data, g.numel(), dx.accumulate);
        },
        "relu");
}

/// tanh(x), any shape.
inline Variable tanh(const Variable& x) {
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::tanh_forward(x.value().data(), y.data(), y.numel());
    return make_result(
        y, {x},
        [y](const Tensor<float>& g, std::vector<Variable>& in) {
            if (const auto dx = grad_sink(in[0]); dx.data)
                kernels::tanh_backward(y.data(), g.data(), dx.data, g.numel(), dx.accumulate);
        },
        "tanh");
}

/// 1 / (1 + exp(-x)), any shape.
inline Variable sigmoid(const Variable& x) {
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::sigmoid_forward(x.value().data(), y.data(), y.numel());
    return make_result(
        y, {x},
        [y](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0])) kernels::sigmoid_backward(y.data(), g.data(), dx, g.numel());
        },
        "sigmoid");
}

/// clamp(x, lo, hi), any shape; gradient 1 strictly inside (lo, hi), 0 outside.
inline Variable hardtanh(const Variable& x, float lo = -1.f, float hi = 1.f) {
    BNN_CHECK(lo < hi, "ops::hardtanh: needs lo < hi, got lo = ", lo, ", hi = ", hi);
    Tensor<float> xv = x.value();
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::hardtanh_forward(xv.data(), y.data(), y.numel(), lo, hi);
    return make_result(
        y, {x},
        [xv, lo, hi](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0]))
                kernels::hardtanh_backward(xv.data(), g.data(), dx, g.numel(), lo, hi);
        },
        "hardtanh");
}

/// Parametric ReLU: x > 0 ? x : slope[c] * x with one learnt slope per channel (last dim).
/// x [..., C], slope [C].
inline Variable prelu(const Variable& x, const Variable& slope) {
    BNN_CHECK(x.shape().rank() >= 1, "ops::prelu: input needs a channel dimension, got a scalar");
    const int64_t C = x.dim(-1);
    expect_shape(slope.value(), Shape{C}, "ops::prelu", "slope");
    const int64_t M = C ? x.numel() / C : 0;
    Tensor<float> xv = x.value(), sv = slope.value();
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::prelu_forward(xv.data(), sv.data(), y.data(), M, C);
    return make_result(
        y, {x, slope},
        [xv, sv, M, C](const Tensor<float>& g, std::vector<Variable>& in) {
            // In the kernel's write order: dx, then dslope (see GradSink).
            const auto dx = grad_sink(in[0]);
            float* dslope = grad_accumulator(in[1]);
            kernels::prelu_backward(xv.data(), sv.data(), g.data(), dx.data, dslope, M, C, dx.accumulate);
        },
        "prelu");
}

/// prelu(x * scale, slope) as one node: the per-channel scale (alpha) or per-sample gate of a
/// binary convolution fused with the activation that follows it. x [N, ..., C]; scale [C] or
/// [N, C]; slope [C]. Equal to ops::prelu(ops::mul(x, scale), slope), values and gradients,
/// with one pass instead of two each way and no scaled tensor kept for backward.
inline Variable scaled_prelu(const Variable& x, const Variable& scale, const Variable& slope) {
    const Shape& sx = x.shape();
    const Shape& ss = scale.shape();
    BNN_CHECK(sx.rank() >= 2, "ops::scaled_prelu: x must be [N, ..., C], got ", sx.str());
    const int64_t C = sx[-1];
    expect_shape(slope.value(), Shape{C}, "ops::scaled_prelu", "slope");
    const bool per_channel = ss.rank() == 1 && ss[0] == C;
    const bool per_sample = ss.rank() == 2 && ss[0] == sx[0] && ss[1] == C;
    BNN_CHECK(per_channel || per_sample, "ops::scaled_prelu: scale must be [", C, "] (per channel) or [", sx[0],
              ", ", C, "] (per sample and channel) for x ", sx.str(), ", got ", ss.str());
    const int64_t outer = per_channel ? 1 : sx[0];
    const int64_t inner = (outer > 0 && C > 0) ? sx.numel() / (outer * C) : 0;
    Tensor<float> xv = x.value(), sv = scale.value(), pv = slope.value();
    Tensor<float> y = Tensor<float>::empty(sx);
    kernels::scaled_prelu_forward(xv.data(), sv.data(), pv.data(), y.data(), outer, inner, C);
    return make_result(
        y, {x, scale, slope},
        [xv, sv, pv, outer, inner, C](const Tensor<float>& g, std::vector<Variable>& in) {
            // In the kernel's write order: dx, dscale, dslope (see GradSink).
            const auto dx = grad_sink(in[0]);
            float* ds = grad_accumulator(in[1]);
            float* dp = grad_accumulator(in[2]);
            kernels::scaled_prelu_backward(xv.data(), sv.data(), pv.data(), g.data(), dx.data, ds, dp, outer, inner, C,
                                           dx.accumulate);
        },
        "scaled_prelu");
}

}  // namespace bnn::ops
