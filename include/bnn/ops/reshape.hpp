#pragma once
/// @file reshape.hpp
/// Differentiable reshapes. The output value is a view sharing the input's storage (no copy).
#include <cstdint>
#include <vector>

#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/elementwise.hpp"

namespace bnn::ops {

/// x with another shape of the same element count; one extent may be -1 (inferred).
inline Variable reshape(const Variable& x, std::vector<int64_t> dims) {
    Tensor<float> y = x.value().reshape(std::move(dims));
    return make_result(
        y, {x},
        [](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0])) kernels::axpy(1.f, g.data(), dx, g.numel());
        },
        "reshape");
}

/// [N, d1, d2, ...] -> [N, d1*d2*...].
inline Variable flatten(const Variable& x) {
    BNN_CHECK(x.shape().rank() >= 1, "ops::flatten: needs a batch dimension, got a scalar");
    int64_t rest = 1;
    for (int i = 1; i < x.shape().rank(); ++i) rest *= x.dim(i);
    return reshape(x, {x.dim(0), rest});
}

}  // namespace bnn::ops
