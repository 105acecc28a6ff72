#pragma once
/// @file reduce.hpp
/// Differentiable full reductions to a scalar (Shape{}, one element).
#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"

namespace bnn::ops {

namespace detail {
inline Variable reduce_all(const Variable& x, bool average, const char* op) {
    const Tensor<float>& xv = x.value();
    double s = 0.0;  // double: a float running sum loses digits over millions of terms
    for (int64_t i = 0; i < xv.numel(); ++i) s += xv[i];
    const int64_t n = xv.numel();
    const float factor = average ? (n ? 1.f / static_cast<float>(n) : 0.f) : 1.f;
    if (average) s = n ? s / double(n) : 0.0;
    Tensor<float> y = Tensor<float>::full(Shape{}, static_cast<float>(s));
    return make_result(
        y, {x},
        [factor](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0])) {
                const float d = g[0] * factor;
                const int64_t n = in[0].numel();
                for (int64_t i = 0; i < n; ++i) dx[i] += d;
            }
        },
        op);
}
}  // namespace detail

/// Sum of every element.
inline Variable sum(const Variable& x) { return detail::reduce_all(x, false, "sum"); }
/// Mean of every element (0 for an empty tensor).
inline Variable mean(const Variable& x) { return detail::reduce_all(x, true, "mean"); }

}  // namespace bnn::ops
