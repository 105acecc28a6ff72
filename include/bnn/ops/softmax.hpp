#pragma once
/// @file softmax.hpp
/// Differentiable softmax and log-softmax over the last dimension of [N, K].
#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/softmax.hpp"

namespace bnn::ops {

/// Row-wise softmax of x [N, K].
inline Variable softmax(const Variable& x) {
    expect_rank(x.value(), 2, "ops::softmax", "input x [N, K]");
    const int64_t N = x.dim(0), K = x.dim(1);
    BNN_CHECK(K > 0, "ops::softmax: needs at least one class, got shape ", x.shape().str());
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::softmax_forward(x.value().data(), y.data(), N, K);
    return make_result(
        y, {x},
        [y, N, K](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0])) kernels::softmax_backward(y.data(), g.data(), dx, N, K);
        },
        "softmax");
}

/// Row-wise log-softmax of x [N, K], computed by log-sum-exp (stable for large logits).
inline Variable log_softmax(const Variable& x) {
    expect_rank(x.value(), 2, "ops::log_softmax", "input x [N, K]");
    const int64_t N = x.dim(0), K = x.dim(1);
    BNN_CHECK(K > 0, "ops::log_softmax: needs at least one class, got shape ", x.shape().str());
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::log_softmax_forward(x.value().data(), y.data(), N, K);
    return make_result(
        y, {x},
        [y, N, K](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0]))
                kernels::log_softmax_backward(y.data(), g.data(), dx, N, K);
        },
        "log_softmax");
}

}  // namespace bnn::ops
