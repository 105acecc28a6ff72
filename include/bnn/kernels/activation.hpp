#pragma once
/// @file activation.hpp
/// Element-wise activations over n floats. Backward kernels ACCUMULATE into dx (or overwrite it,
/// see accumulate.hpp) and use the saved input x (relu, hardtanh, prelu) or the saved output y
/// (tanh, sigmoid), whichever makes the derivative cheapest. Binarisation is kernels/sign.hpp.
///
/// Selects load both operands before choosing (`g = dy[i]; ... ? g : 0`): a load inside one
/// arm of `?:` stops GCC from vectorising, and the branchy scalar loop it falls back to costs
/// 25x on random signs.
#include <bit>
#include <cmath>
#include <cstdint>

#include "bnn/core/threads.hpp"
#include "bnn/kernels/accumulate.hpp"

namespace bnn::kernels {

/// y[n] = max(x, 0)
inline void relu_forward(const float* x, float* y, int64_t n) {
    parallel_pass(n, n, [&](int64_t begin, int64_t end) {
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
    });
}
namespace detail {
template <bool Accumulate>
void relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (worth_threading(n))
    for (int64_t i = 0; i < n; ++i) {
        const float g = dy[i];
        put<Accumulate>(dx[i], x[i] > 0.f ? g : 0.f);
    }
}
}  // namespace detail
/// dx[n] += dy * (x > 0)   (= with accumulate false)
inline void relu_backward(const float* x, const float* dy, float* dx, int64_t n, bool accumulate = true) {
    accumulate ? detail::relu_backward<true>(x, dy, dx, n) : detail::relu_backward<false>(x, dy, dx, n);
}

namespace detail {
/// tanh of one float in straight-line arithmetic, so `omp simd` loops vectorise it (a call to
/// libm's tanhf cannot be vectorised).
/// |x| < 0.625: x + x^3 P(x^2), Cephes' minimax polynomial; beyond: 1 - 2 / (e^{2|x|} + 1) with
/// e^t = 2^k e^r, r = t - k ln2 in [-ln2/2, ln2/2], e^r by its degree-6 Taylor polynomial.
/// Within 3 ulp of std::tanh (tested); saturates to exactly +-1 where tanhf does; NaN stays NaN.
/// The clamp of |x| is an integer min on the bits (the order of non-negative floats): a float
/// compare feeding arithmetic stays a branch under -ftrapping-math, which blocks vectorising.
inline float tanh_approx(float x) {
    const int32_t abs_bits = std::bit_cast<int32_t>(x) & 0x7fffffff;
    // Clamped at 10, where tanh is 1 in float (e^20 keeps 2^k finite).
    const int32_t ten_bits = std::bit_cast<int32_t>(10.f);
    const float a = std::bit_cast<float>(abs_bits < ten_bits ? abs_bits : ten_bits);
    const float z = x * x;
    const float poly = x + x * z * ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                                      1.33314422036e-1f) * z - 3.33332819422e-1f);
    const float small = std::copysign(poly, x);  // keeps tanh(-0) = -0
    const float t = 2.f * a;
    // Round to nearest by the 1.5 * 2^23 trick: nearbyint is a libcall without SSE4.1.
    const float k = (t * 1.44269504089f + 12582912.f) - 12582912.f;
    const float r = (t - k * 0.693145751953125f) - k * 1.42860682030941723212e-6f;  // ln2 in two parts
    const float er =
        1.f + r * (1.f + r * (0.5f + r * (1.66666672e-1f + r * (4.16666679e-2f + r * (8.33333377e-3f + r * 1.38888892e-3f)))));
    const float e = er * std::bit_cast<float>((static_cast<int32_t>(k) + 127) << 23);
    const float big = std::copysign(1.f - 2.f / (e + 1.f), x);
    // Choose by masks, not `?:`: GCC would sink each arm's arithmetic into a branch, and
    // trapping math forbids speculating it back. NaN takes the polynomial, which keeps it NaN.
    const bool use_small = abs_bits < std::bit_cast<int32_t>(0.625f) || abs_bits > 0x7f800000;
    const int32_t m = -static_cast<int32_t>(use_small);
    return std::bit_cast<float>((std::bit_cast<int32_t>(small) & m) | (std::bit_cast<int32_t>(big) & ~m));
}
}  // namespace detail

/// y[n] = tanh(x)
inline void tanh_forward(const float* x, float* y, int64_t n) {
    parallel_pass(n, n, [&](int64_t begin, int64_t end) {
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) y[i] = detail::tanh_approx(x[i]);
    });
}
namespace detail {
template <bool Accumulate>
void tanh_backward(const float* y, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (worth_threading(n))
    for (int64_t i = 0; i < n; ++i) put<Accumulate>(dx[i], dy[i] * (1.f - y[i] * y[i]));
}
}  // namespace detail
/// dx[n] += dy * (1 - y^2), y = tanh(x)   (= with accumulate false)
inline void tanh_backward(const float* y, const float* dy, float* dx, int64_t n, bool accumulate = true) {
    accumulate ? detail::tanh_backward<true>(y, dy, dx, n) : detail::tanh_backward<false>(y, dy, dx, n);
}

/// y[n] = 1 / (1 + exp(-x)), written so neither branch overflows.
inline void sigmoid_forward(const float* x, float* y, int64_t n) {
    parallel_pass(n, n, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            if (x[i] >= 0.f) {
                y[i] = 1.f / (1.f + std::exp(-x[i]));
            } else {
                const float e = std::exp(x[i]);
                y[i] = e / (1.f + e);
            }
        }
    });
}
/// dx[n] += dy * y * (1 - y), y = sigmoid(x)
inline void sigmoid_backward(const float* y, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (worth_threading(n))
    for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * y[i] * (1.f - y[i]);
}

/// y[n] = clamp(x, lo, hi)
inline void hardtanh_forward(const float* x, float* y, int64_t n, float lo, float hi) {
    parallel_pass(n, n, [&](int64_t begin, int64_t end) {
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) y[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
    });
}
/// dx[n] += dy where lo < x < hi (zero on the flat parts)
inline void hardtanh_backward(const float* x, const float* dy, float* dx, int64_t n, float lo, float hi) {
#pragma omp parallel for simd schedule(static) if (worth_threading(n))
    for (int64_t i = 0; i < n; ++i) {
        const float g = dy[i], v = x[i];
        dx[i] += (v > lo && v < hi) ? g : 0.f;
    }
}

/// y[M, C] = x > 0 ? x : slope[c] * x; x [M, C] (channels last), slope [C]
inline void prelu_forward(const float* x, const float* slope, float* y, int64_t M, int64_t C) {
    parallel_pass(M, M * C, [&](int64_t begin, int64_t end) {
        for (int64_t m = begin; m < end; ++m)
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                const float v = x[m * C + c], neg = slope[c] * v;
                y[m * C + c] = v > 0.f ? v : neg;
            }
    });
}
namespace detail {
template <bool Accumulate>
void prelu_backward_dx(const float* x, const float* slope, const float* dy, float* dx, int64_t M, int64_t C) {
#pragma omp parallel for schedule(static) if (worth_threading(M * C))
    for (int64_t m = 0; m < M; ++m)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
            // g * (1 or slope): the same floats as choosing between g and slope * g.
            const float v = x[m * C + c], g = dy[m * C + c], sl = slope[c];
            put<Accumulate>(dx[m * C + c], g * (v > 0.f ? 1.f : sl));
        }
}
}  // namespace detail
/// dx [M, C] += dy * (x > 0 ? 1 : slope[c]) (= with accumulate_dx false);
/// dslope [C] += sum over x <= 0 of dy * x. Either output may be null.
inline void prelu_backward(const float* x, const float* slope, const float* dy, float* dx, float* dslope, int64_t M,
                           int64_t C, bool accumulate_dx = true) {
    if (dx) accumulate_dx ? detail::prelu_backward_dx<true>(x, slope, dy, dx, M, C)
                          : detail::prelu_backward_dx<false>(x, slope, dy, dx, M, C);
    if (dslope) {
        for (int64_t m = 0; m < M; ++m)
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                const float v = x[m * C + c], t = dy[m * C + c] * v;
                dslope[c] += v <= 0.f ? t : 0.f;
            }
    }
}

/// PReLU of a scaled input, fused: t = x * scale[o, c]; y = t > 0 ? t : slope[c] * t.
///   x, y [outer, inner, C] (NHWC activations as [N, H*W, C]); scale [outer, C] (outer = 1: one
///   factor per channel; outer = N: per sample and channel); slope [C].
/// The scale of a binary conv (alpha or the Real-to-Bin gate) and the activation after it in
/// one pass, without storing the scaled tensor. Rounds exactly as mul_forward then prelu_forward.
inline void scaled_prelu_forward(const float* x, const float* scale, const float* slope, float* y, int64_t outer,
                                 int64_t inner, int64_t C) {
    parallel_pass(outer * inner, outer * inner * C, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {  // row r = o * inner + i
            const int64_t base = r * C;
            const float* s = scale + r / inner * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                const float t = x[base + c] * s[c], sl = slope[c];
                y[base + c] = t * (t > 0.f ? 1.f : sl);  // t * 1 == t: as prelu_forward
            }
        }
    });
}
namespace detail {
/// Rows of samples [o0, o1) of scaled_prelu_backward; which gradients it writes is fixed at
/// compile time, so the inner loop has no branch and vectorises at any ISA.
template <bool DX, bool DSCALE, bool DSLOPE, bool ACC>
void scaled_prelu_backward_rows(const float* x, const float* scale, const float* slope, const float* dy, float* dx,
                                float* dscale, float* dslope, int64_t o0, int64_t o1, int64_t inner, int64_t C) {
    for (int64_t o = o0; o < o1; ++o) {
        const float* s = scale + o * C;
        for (int64_t i = 0; i < inner; ++i) {
            const int64_t base = (o * inner + i) * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                const float v = x[base + c], g = dy[base + c], sl = slope[c];
                const float t = v * s[c];
                const float dt = g * (t > 0.f ? 1.f : sl);  // as prelu_backward_dx
                if constexpr (DX) put<ACC>(dx[base + c], dt * s[c]);
                if constexpr (DSCALE) dscale[o * C + c] += dt * v;
                if constexpr (DSLOPE) {
                    const float p = g * t;
                    dslope[c] += t <= 0.f ? p : 0.f;
                }
            }
        }
    }
}
}  // namespace detail

/// Backward of scaled_prelu_forward, with dt = dy * (t > 0 ? 1 : slope[c]):
///   dx [outer, inner, C] += dt * scale[o, c] (= with accumulate_dx false);
///   dscale [outer, C] += sum over inner of dt * x;  dslope [C] += sum over t <= 0 of dy * t.
/// Any output may be null.
/// Sums run in the order of the unfused mul_backward / prelu_backward, so results are equal.
inline void scaled_prelu_backward(const float* x, const float* scale, const float* slope, const float* dy, float* dx,
                                  float* dscale, float* dslope, int64_t outer, int64_t inner, int64_t C,
                                  bool accumulate_dx = true) {
    auto rows = [&](int64_t o0, int64_t o1) {
        const int which = (dx ? 4 : 0) | (dscale ? 2 : 0) | (dslope ? 1 : 0);
        switch (which) {
#define BNN_SCALED_PRELU_CASE(k, a, b, c) \
    case k:                                                                                                   \
        if (accumulate_dx)                                                                                    \
            detail::scaled_prelu_backward_rows<a, b, c, true>(x, scale, slope, dy, dx, dscale, dslope, o0, o1, inner, C); \
        else                                                                                                  \
            detail::scaled_prelu_backward_rows<a, b, c, false>(x, scale, slope, dy, dx, dscale, dslope, o0, o1, inner, C); \
        break;
            BNN_SCALED_PRELU_CASE(1, false, false, true)
            BNN_SCALED_PRELU_CASE(2, false, true, false)
            BNN_SCALED_PRELU_CASE(3, false, true, true)
            BNN_SCALED_PRELU_CASE(4, true, false, false)
            BNN_SCALED_PRELU_CASE(5, true, false, true)
            BNN_SCALED_PRELU_CASE(6, true, true, false)
            BNN_SCALED_PRELU_CASE(7, true, true, true)
#undef BNN_SCALED_PRELU_CASE
            default: break;
        }
    };
    // dscale's row o belongs to sample o: samples can go to threads. dslope sums over every
    // sample in a fixed order, so with it the whole loop stays on one thread.
    if (dslope || outer == 1 || !worth_threading(outer * inner * C)) {
        rows(0, outer);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer; ++o) rows(o, o + 1);
}

}  // namespace bnn::kernels
