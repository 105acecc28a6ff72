#pragma once
/// @file pool.hpp
/// Differentiable pooling over NHWC activations: average, max, global average.
#include <cstdint>
#include <memory>
#include <vector>

#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/pool.hpp"

namespace bnn::ops {

namespace detail {
inline kernels::PoolGeometry pool_geometry(const Variable& x, int kernel, int stride, int padding, const char* op) {
    expect_rank(x.value(), 4, op, "input x [N, H, W, C]");
    BNN_CHECK(kernel >= 1 && stride >= 1, op, ": kernel and stride must be >= 1, got kernel ", kernel, ", stride ",
              stride);
    // As in PyTorch: more padding than half a window would make windows of padding only.
    BNN_CHECK(padding >= 0 && 2 * padding <= kernel, op, ": padding must be in [0, kernel/2] = [0, ", kernel / 2,
              "], got ", padding);
    BNN_CHECK(x.dim(1) + 2 * padding >= kernel && x.dim(2) + 2 * padding >= kernel, op, ": window ", kernel, "x",
              kernel, " larger than the padded input of shape ", x.shape().str(), " with padding ", padding);
    return kernels::PoolGeometry::make(x.dim(0), x.dim(1), x.dim(2), x.dim(3), kernel, stride, padding);
}
}  // namespace detail

/// Average pooling with square windows; padded positions count as zeros in the mean.
/// x [N, H, W, C] -> [N, OH, OW, C].
inline Variable avg_pool2d(const Variable& x, int kernel, int stride, int padding = 0) {
    const auto g = detail::pool_geometry(x, kernel, stride, padding, "ops::avg_pool2d");
    Tensor<float> y = Tensor<float>::empty(Shape{g.N, g.OH, g.OW, g.C});
    kernels::avg_pool2d_forward(x.value().data(), y.data(), g);
    return make_result(
        y, {x},
        [g](const Tensor<float>& grad, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0])) kernels::avg_pool2d_backward(grad.data(), dx, g);
        },
        "avg_pool2d");
}

/// Max pooling with square windows; padding never wins. x [N, H, W, C] -> [N, OH, OW, C].
inline Variable max_pool2d(const Variable& x, int kernel, int stride, int padding = 0) {
    const auto g = detail::pool_geometry(x, kernel, stride, padding, "ops::max_pool2d");
    Tensor<float> y = Tensor<float>::empty(Shape{g.N, g.OH, g.OW, g.C});
    // Winners are only needed for backward; the shared_ptr keeps them alive in the closure.
    auto taps = std::make_shared<std::vector<int32_t>>(static_cast<size_t>(y.numel()));
    kernels::max_pool2d_forward(x.value().data(), y.data(), taps->data(), g);
    return make_result(
        y, {x},
        [g, taps](const Tensor<float>& grad, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0]))
                kernels::max_pool2d_backward(grad.data(), taps->data(), dx, g);
        },
        "max_pool2d");
}

/// Mean over the spatial positions: x [N, H, W, C] -> [N, C].
inline Variable global_avg_pool(const Variable& x) {
    expect_rank(x.value(), 4, "ops::global_avg_pool", "input x [N, H, W, C]");
    const int64_t N = x.dim(0), S = x.dim(1) * x.dim(2), C = x.dim(3);
    BNN_CHECK(S > 0, "ops::global_avg_pool: empty spatial extent in input of shape ", x.shape().str());
    Tensor<float> y = Tensor<float>::empty(Shape{N, C});
    kernels::global_avg_pool_forward(x.value().data(), y.data(), N, S, C);
    return make_result(
        y, {x},
        [N, S, C](const Tensor<float>& grad, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0]))
                kernels::global_avg_pool_backward(grad.data(), dx, N, S, C);
        },
        "global_avg_pool");
}

}  // namespace bnn::ops
