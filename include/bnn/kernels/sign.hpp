#pragma once
/// @file sign.hpp
/// Binarisation over n floats and its straight-through gradient (ops/sign.hpp records them as a
/// tape node; the bit-packed form of the same rule is kernels/bitpack.hpp).
///
/// Selects load both operands before choosing (`g = dy[i]; ... ? g : 0`): a load inside one
/// arm of `?:` stops GCC from vectorising.
#include <cmath>
#include <cstdint>

#include "bnn/core/threads.hpp"
#include "bnn/kernels/accumulate.hpp"

namespace bnn::kernels {

/// y[n] = x >= 0 ? +1 : -1 (sign(0) = +1, the bit convention of the packed kernels)
inline void sign_forward(const float* x, float* y, int64_t n) {
    parallel_pass(n, n, [&](int64_t begin, int64_t end) {
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) y[i] = x[i] >= 0.f ? 1.f : -1.f;
    });
}

namespace detail {
template <bool Accumulate>
void sign_ste_backward(const float* x, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (worth_threading(n))
    for (int64_t i = 0; i < n; ++i) {
        const float g = dy[i];
        put<Accumulate>(dx[i], std::fabs(x[i]) <= 1.f ? g : 0.f);
    }
}
}  // namespace detail

/// Straight-through estimator of sign: dx[n] += dy where |x| <= 1 (the gradient of hardtanh,
/// closed at +-1), nothing elsewhere   (= with accumulate false)
inline void sign_ste_backward(const float* x, const float* dy, float* dx, int64_t n, bool accumulate = true) {
    accumulate ? detail::sign_ste_backward<true>(x, dy, dx, n) : detail::sign_ste_backward<false>(x, dy, dx, n);
}

}  // namespace bnn::kernels
