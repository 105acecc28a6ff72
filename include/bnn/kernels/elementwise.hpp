#pragma once
/// @file elementwise.hpp
/// Element-wise arithmetic over raw float arrays, with the broadcast forms of ops::mul.
/// Backward kernels ACCUMULATE into their outputs.
#include <cstdint>

#include "bnn/core/threads.hpp"

namespace bnn::kernels {

/// y[n] = a + sign * b   (sign = +1 for add, -1 for sub)
inline void add_forward(const float* a, const float* b, float* y, int64_t n, float sign) {
    parallel_pass(n, n, [&](int64_t begin, int64_t end) {
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) y[i] = a[i] + sign * b[i];
    });
}

/// dx[n] += s * dy
inline void axpy(float s, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (worth_threading(n))
    for (int64_t i = 0; i < n; ++i) dx[i] += s * dy[i];
}

/// y[n] = s * x
inline void scale_forward(const float* x, float s, float* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (worth_threading(n))
    for (int64_t i = 0; i < n; ++i) y[i] = s * x[i];
}

/// Broadcast multiply, covering the three forms of ops::mul by viewing a as [outer, inner, C]
/// and b as [outer, C] (b's row repeats over `inner`):
///   same shape:           outer = n,  inner = 1, C = 1
///   b [C] per channel:    outer = 1,  inner = n / C
///   b [N, C] per sample:  outer = N,  inner = n / (N*C)
/// y [outer, inner, C] = a * b[o, c]
inline void mul_forward(const float* a, const float* b, float* y, int64_t outer, int64_t inner, int64_t C) {
    parallel_pass(outer * inner, outer * inner * C, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {  // row r = o * inner + i
            const int64_t base = r * C;
            const float* s = b + r / inner * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) y[base + c] = a[base + c] * s[c];
        }
    });
}

/// da [outer, inner, C] += dy * b[o, c];  db [outer, C] += sum over inner of dy * a.
/// Either output may be null.
inline void mul_backward(const float* a, const float* b, const float* dy, float* da, float* db, int64_t outer,
                         int64_t inner, int64_t C) {
#pragma omp parallel for schedule(static) if (worth_threading(outer * inner * C) && outer > 1)
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < inner; ++i) {
            const int64_t base = (o * inner + i) * C;
            if (da)
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) da[base + c] += dy[base + c] * b[o * C + c];
            if (db)  // row o of db belongs to this thread
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) db[o * C + c] += dy[base + c] * a[base + c];
        }
}

}  // namespace bnn::kernels
