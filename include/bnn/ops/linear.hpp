#pragma once
/// @file linear.hpp
/// ops::linear: y = x W^T + b, one tape node.
#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/gemm.hpp"

namespace bnn::ops {

/// Fully connected layer: x [N, in], weight [out, in], bias [out] or undefined -> [N, out].
inline Variable linear(const Variable& x, const Variable& weight, const Variable& bias) {
    expect_rank(x.value(), 2, "ops::linear", "input x [N, in]");
    expect_rank(weight.value(), 2, "ops::linear", "weight [out, in]");
    BNN_CHECK(weight.dim(1) == x.dim(1), "ops::linear: weight ", weight.shape().str(), " expects ", weight.dim(1),
              " input features, got input x of shape ", x.shape().str());
    const int64_t N = x.dim(0), in_f = x.dim(1), out_f = weight.dim(0);
    if (bias.defined()) expect_shape(bias.value(), Shape{out_f}, "ops::linear", "bias");
    Tensor<float> y = Tensor<float>::empty(Shape{N, out_f});
    kernels::gemm_nt(N, out_f, in_f, x.value().data(), in_f, weight.value().data(), in_f, y.data(), out_f, false);
    if (bias.defined()) {
        const float* b = bias.value().data();
        for (int64_t n = 0; n < N; ++n)
            for (int64_t o = 0; o < out_f; ++o) y[n * out_f + o] += b[o];
    }
    Tensor<float> xv = x.value(), wv = weight.value();
    return make_result(
        y, {x, weight, bias},
        [xv, wv, N, in_f, out_f](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0]))
                kernels::gemm_nn(N, in_f, out_f, g.data(), out_f, wv.data(), in_f, dx, in_f, true);
            if (float* dw = grad_accumulator(in[1]))
                kernels::gemm_tn(out_f, in_f, N, g.data(), out_f, xv.data(), in_f, dw, in_f, true);
            if (float* db = grad_accumulator(in[2]))
                for (int64_t n = 0; n < N; ++n)
                    for (int64_t o = 0; o < out_f; ++o) db[o] += g[n * out_f + o];
        },
        "linear");
}

}  // namespace bnn::ops
