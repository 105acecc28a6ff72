#pragma once
/// @file activation.hpp
/// Differentiable activations: relu, tanh, sigmoid, hardtanh, prelu (one tape node each).
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/activation.hpp"
#include "bnn/ops/grad_target.hpp"

namespace bnn::ops {

/// max(x, 0), any shape. The gradient at exactly 0 is taken as 0.
inline Variable relu(const Variable& x) {
    Tensor<float> xv = x.value();
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::relu_forward(xv.data(), y.data(), y.numel());
    return make_result(
        y, {x},
        [xv](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dx = ::bnn::detail::grad_target(in[0])) kernels::relu_backward(xv.data(), g.data(), dx, g.numel());
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
            if (float* dx = ::bnn::detail::grad_target(in[0])) kernels::tanh_backward(y.data(), g.data(), dx, g.numel());
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
            if (float* dx = ::bnn::detail::grad_target(in[0])) kernels::sigmoid_backward(y.data(), g.data(), dx, g.numel());
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
            if (float* dx = ::bnn::detail::grad_target(in[0]))
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
            kernels::prelu_backward(xv.data(), sv.data(), g.data(), ::bnn::detail::grad_target(in[0]),
                                    ::bnn::detail::grad_target(in[1]), M, C);
        },
        "prelu");
}

}  // namespace bnn::ops
