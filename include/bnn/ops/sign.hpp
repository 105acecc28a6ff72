#pragma once
/// @file sign.hpp
/// ops::sign_ste: binarisation with the straight-through estimator (one tape node).
#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/sign.hpp"

namespace bnn::ops {

/// Forward: +1 where x >= 0 (so sign(0) = +1), -1 elsewhere; any shape.
/// Backward (straight-through estimator, the gradient of hardtanh): dx += grad where |x| <= 1,
/// nothing elsewhere, so saturated inputs stop learning as in the clipped identity of the paper.
/// The "soft binarisation" of the first training stage is ops::tanh (ops/activation.hpp).
inline Variable sign_ste(const Variable& x) {
    Tensor<float> xv = x.value();
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::sign_forward(xv.data(), y.data(), y.numel());
    return make_result(
        y, {x},
        [xv](const Tensor<float>& g, std::vector<Variable>& in) {
            if (const auto dx = grad_sink(in[0]); dx.data)
                kernels::sign_ste_backward(xv.data(), g.data(), dx.data, g.numel(), dx.accumulate);
        },
        "sign_ste");
}

}  // namespace bnn::ops
