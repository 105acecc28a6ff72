#pragma once
/// @file sgemm_neon.hpp
/// The NEON (aarch64) micro-kernel of the packed single-precision GEMM (sgemm_driver.hpp). Same
/// contract as the x86 tiles (see sgemm_avx512.hpp):
///   C [12, 8] (=/+=) Ap [kc, 12]^T Bp [kc, 8]
/// Each k step loads the 12 values of A as 3 vectors and the 8 of B as 2, and issues 24 `fmla`
/// by lane (row i of C takes lane i % 4 of A vector i / 4): 24 FMAs per 5 vector loads, with no
/// broadcasts, into 24 accumulators that stay in registers for the whole kc loop.
///
/// Why 12 x 8: accumulators (MR x NR / 4), A vectors (MR / 4) and B vectors (NR / 4) must fit the
/// 32 vector registers. 12 x 8 and 8 x 12 fill them best (29 registers, 4.8 FMAs a load; 16 x 8
/// would need 32 accumulators, 8 x 8 does 4 FMAs a load). Of the two, 8 columns divide the output
/// channels of every product inference runs (64 to 512 channels, 1000 classes), which 12 columns
/// would pad by up to 11 % (64 = 5 x 12 + 4); the rows (pixels) are many, so 12 rows pad little.
/// The 24 independent accumulator chains also outnumber the FMAs a core keeps in flight (its
/// FMA pipes times their latency).
#include <cstdint>
#include <utility>

#include "bnn/kernels/sgemm_driver.hpp"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace bnn::kernels::detail {

/// One k step of the 12 x 8 tile: acc[i][v] += b[v] * a[i / 4][i % 4] for rows I... (the lane
/// must be a constant, hence the index pack).
template <int... I>
inline void sgemm_neon_step(float32x4_t (&acc)[12][2], const float32x4_t (&a)[3], float32x4_t b0, float32x4_t b1,
                            std::integer_sequence<int, I...>) {
    ((acc[I][0] = vfmaq_laneq_f32(acc[I][0], b0, a[I / 4], I % 4),
      acc[I][1] = vfmaq_laneq_f32(acc[I][1], b1, a[I / 4], I % 4)),
     ...);
}

/// C [12, 8] (=/+=) Ap [kc, 12]^T Bp [kc, 8] (see the file comment).
inline void sgemm_tile_neon_12x8(int64_t kc, const float* __restrict Ap, const float* __restrict Bp,
                                 float* __restrict C, int64_t ldc, bool accumulate) {
    constexpr int MR = 12;
    float32x4_t acc[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = vdupq_n_f32(0.f);
    for (int64_t k = 0; k < kc; ++k) {
        const float32x4_t a[3] = {vld1q_f32(Ap), vld1q_f32(Ap + 4), vld1q_f32(Ap + 8)};
        sgemm_neon_step(acc, a, vld1q_f32(Bp), vld1q_f32(Bp + 4), std::make_integer_sequence<int, MR>{});
        Ap += MR;
        Bp += 8;
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
        float* c = C + i * ldc;
        if (accumulate) {
            acc[i][0] = vaddq_f32(vld1q_f32(c), acc[i][0]);
            acc[i][1] = vaddq_f32(vld1q_f32(c + 4), acc[i][1]);
        }
        vst1q_f32(c, acc[i][0]);
        vst1q_f32(c + 4, acc[i][1]);
    }
}

/// The low (high) 64-bit halves of x and y, joined: {x0, x1, y0, y1} ({x2, x3, y2, y3}).
inline float32x4_t join_low_halves(float32x4_t x, float32x4_t y) {
    return vreinterpretq_f32_f64(vzip1q_f64(vreinterpretq_f64_f32(x), vreinterpretq_f64_f32(y)));
}
inline float32x4_t join_high_halves(float32x4_t x, float32x4_t y) {
    return vreinterpretq_f32_f64(vzip2q_f64(vreinterpretq_f64_f32(x), vreinterpretq_f64_f32(y)));
}

/// dst[k * stride + r] = src[r][k] for r < lanes <= 16, k < kc (a null src[r] reads as zeros),
/// 4 x 4 at a time with an in-register transpose; lanes past a multiple of 4 go one by one.
inline void sgemm_pack_transposed_neon(const float* const* src, int64_t kc, float* dst, int64_t stride, int lanes) {
    alignas(16) static const float zeros[4] = {};
    int g = 0;
    for (; g + 4 <= lanes; g += 4) {
        const float* row[4];
        int64_t step[4];
        for (int i = 0; i < 4; ++i) {
            row[i] = src[g + i] ? src[g + i] : zeros;
            step[i] = src[g + i] ? 4 : 0;
        }
        int64_t k = 0;
        for (; k + 4 <= kc; k += 4) {
            float32x4_t r[4];
            for (int i = 0; i < 4; ++i) {
                r[i] = vld1q_f32(row[i]);
                row[i] += step[i];
            }
            // Rows interleaved in pairs (t0: rows 0, 1 at k0 and k2; t1: at k1 and k3), then the
            // halves of two pairs joined: the 4 rows at one k.
            const float32x4_t t0 = vtrn1q_f32(r[0], r[1]), t1 = vtrn2q_f32(r[0], r[1]);
            const float32x4_t t2 = vtrn1q_f32(r[2], r[3]), t3 = vtrn2q_f32(r[2], r[3]);
            vst1q_f32(dst + k * stride + g, join_low_halves(t0, t2));
            vst1q_f32(dst + (k + 1) * stride + g, join_low_halves(t1, t3));
            vst1q_f32(dst + (k + 2) * stride + g, join_high_halves(t0, t2));
            vst1q_f32(dst + (k + 3) * stride + g, join_high_halves(t1, t3));
        }
        for (; k < kc; ++k)
            for (int i = 0; i < 4; ++i) dst[k * stride + g + i] = src[g + i] ? src[g + i][k] : 0.f;
    }
    if (g < lanes) sgemm_pack_transposed_scalar(src + g, kc, dst + g, stride, lanes - g);
}

/// 12 x 8 NEON tile.
struct SgemmNeon {
    static constexpr int MR = 12, NR = 8;
    static void tile(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate) {
        sgemm_tile_neon_12x8(kc, Ap, Bp, C, ldc, accumulate);
    }
    static void pack_transposed(const float* const* src, int64_t kc, float* dst, int64_t stride, int lanes) {
        sgemm_pack_transposed_neon(src, kc, dst, stride, lanes);
    }
    static void copy_row(float* dst, const float* src, int64_t len, int64_t width) {
        sgemm_copy_row_scalar(dst, src, len, width);
    }
};

}  // namespace bnn::kernels::detail
#endif  // __aarch64__
