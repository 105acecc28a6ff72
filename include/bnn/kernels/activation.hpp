#pragma once
/// @file activation.hpp
/// Element-wise activations over n floats. Backward kernels ACCUMULATE into dx and use the
/// saved input x (relu, hardtanh, prelu) or the saved output y (tanh, sigmoid), whichever makes
/// the derivative cheapest.
///
/// Selects load both operands before choosing (`g = dy[i]; ... ? g : 0`): a load inside one
/// arm of `?:` stops GCC from vectorising, and the branchy scalar loop it falls back to costs
/// 25x on random signs.
#include <cmath>
#include <cstdint>

namespace bnn::kernels {

namespace detail {
/// Below this many elements a parallel region costs more than it saves.
inline constexpr int64_t kParallelThreshold = int64_t{1} << 16;
}  // namespace detail

/// y[n] = max(x, 0)
inline void relu_forward(const float* x, float* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > detail::kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
/// dx[n] += dy * (x > 0)
inline void relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > detail::kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) {
        const float g = dy[i];
        dx[i] += x[i] > 0.f ? g : 0.f;
    }
}

/// y[n] = tanh(x)
inline void tanh_forward(const float* x, float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > detail::kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}
/// dx[n] += dy * (1 - y^2), y = tanh(x)
inline void tanh_backward(const float* y, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > detail::kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * (1.f - y[i] * y[i]);
}

/// y[n] = 1 / (1 + exp(-x)), written so neither branch overflows.
inline void sigmoid_forward(const float* x, float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > detail::kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) {
        if (x[i] >= 0.f) {
            y[i] = 1.f / (1.f + std::exp(-x[i]));
        } else {
            const float e = std::exp(x[i]);
            y[i] = e / (1.f + e);
        }
    }
}
/// dx[n] += dy * y * (1 - y), y = sigmoid(x)
inline void sigmoid_backward(const float* y, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > detail::kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * y[i] * (1.f - y[i]);
}

/// y[n] = clamp(x, lo, hi)
inline void hardtanh_forward(const float* x, float* y, int64_t n, float lo, float hi) {
#pragma omp parallel for simd schedule(static) if (n > detail::kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
}
/// dx[n] += dy where lo < x < hi (zero on the flat parts)
inline void hardtanh_backward(const float* x, const float* dy, float* dx, int64_t n, float lo, float hi) {
#pragma omp parallel for simd schedule(static) if (n > detail::kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) {
        const float g = dy[i], v = x[i];
        dx[i] += (v > lo && v < hi) ? g : 0.f;
    }
}

/// y[M, C] = x > 0 ? x : slope[c] * x; x [M, C] (channels last), slope [C]
inline void prelu_forward(const float* x, const float* slope, float* y, int64_t M, int64_t C) {
#pragma omp parallel for schedule(static) if (M * C > detail::kParallelThreshold)
    for (int64_t m = 0; m < M; ++m)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
            const float v = x[m * C + c], neg = slope[c] * v;
            y[m * C + c] = v > 0.f ? v : neg;
        }
}
/// dx [M, C] += dy * (x > 0 ? 1 : slope[c]);  dslope [C] += sum over x <= 0 of dy * x.
/// Either output may be null.
inline void prelu_backward(const float* x, const float* slope, const float* dy, float* dx, float* dslope, int64_t M,
                           int64_t C) {
    if (dx) {
#pragma omp parallel for schedule(static) if (M * C > detail::kParallelThreshold)
        for (int64_t m = 0; m < M; ++m)
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                const float v = x[m * C + c], g = dy[m * C + c], neg = slope[c] * g;
                dx[m * C + c] += v > 0.f ? g : neg;
            }
    }
    if (dslope) {
        for (int64_t m = 0; m < M; ++m)
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                const float v = x[m * C + c], t = dy[m * C + c] * v;
                dslope[c] += v <= 0.f ? t : 0.f;
            }
    }
}

}  // namespace bnn::kernels
