#pragma once
/// @file sign.hpp
/// ops::sign_ste: binarisation with the straight-through estimator (one tape node).
#include "bnn/autograd/variable.hpp"
#include "bnn/ops/grad_target.hpp"

namespace bnn::ops {

/// Forward: +1 where x >= 0 (so sign(0) = +1), -1 elsewhere; any shape.
/// Backward (straight-through estimator, the gradient of hardtanh): dx += grad where |x| <= 1,
/// nothing elsewhere, so saturated inputs stop learning as in the clipped identity of the paper.
/// The "soft binarisation" of the first training stage is ops::tanh (ops/activation.hpp).
inline Variable sign_ste(const Variable& x) {
    Tensor<float> xv = x.value();
    Tensor<float> y = Tensor<float>::empty(x.shape());
    const float* xs = xv.data();
    float* ys = y.data();
    for (int64_t i = 0; i < y.numel(); ++i) ys[i] = xs[i] >= 0.f ? 1.f : -1.f;
    return make_result(
        y, {x},
        [xv](const Tensor<float>& g, std::vector<Variable>& in) {
            float* dx = ::bnn::detail::grad_target(in[0]);
            if (!dx) return;
            const float* xs = xv.data();
            const float* gs = g.data();
            for (int64_t i = 0; i < g.numel(); ++i)
                if (xs[i] >= -1.f && xs[i] <= 1.f) dx[i] += gs[i];
        },
        "sign_ste");
}

}  // namespace bnn::ops
