#pragma once
/// @file pad.hpp
/// ops::pad: a border of a constant around the spatial dimensions, one tape node.
#include <cstdint>
#include <vector>

#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/pad.hpp"

namespace bnn::ops {

/// x [N, H, W, C] -> [N, H + 2p, W + 2p, C] with `value` on the border (p >= 0). The gradient
/// of x is the interior of the output's gradient (the border is a constant).
inline Variable pad(const Variable& x, int64_t p, float value) {
    expect_rank(x.value(), 4, "ops::pad", "input x [N, H, W, C]");
    BNN_CHECK(p >= 0, "ops::pad: padding must be >= 0, got ", p);
    const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
    Tensor<float> y = Tensor<float>::empty(Shape{N, H + 2 * p, W + 2 * p, C});
    kernels::pad_forward(x.value().data(), y.data(), N, H, W, C, p, value);
    return make_result(
        y, {x},
        [N, H, W, C, p](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0])) kernels::pad_backward(g.data(), dx, N, H, W, C, p);
        },
        "pad");
}

}  // namespace bnn::ops
