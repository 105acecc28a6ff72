#pragma once
/// @file sgemm_avx2.hpp
/// AVX2/FMA micro-kernels for the packed single-precision GEMM (sgemm_driver.hpp) and the direct
/// convolution (conv2d_direct.hpp), for CPUs without AVX-512. Same contract as the AVX-512 tiles
/// (see sgemm_avx512.hpp):
///   C [6, 16] (=/+=) Ap [kc, 6]^T Bp [kc, 16]
/// with 12 ymm accumulators and 2 B vectors, which fits the 16 ymm registers.
#include <cstdint>

#include "bnn/kernels/intrinsics.hpp"

namespace bnn::kernels::detail {

__attribute__((target("avx2,fma"))) inline void sgemm_tile_avx2_6x16(int64_t kc, const float* __restrict Ap,
                                                                      const float* __restrict Bp,
                                                                      float* __restrict C, int64_t ldc,
                                                                      bool accumulate) {
    constexpr int MR = 6;
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
            const __m256 a = _mm256_broadcast_ss(Ap + i);
            acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
        Ap += MR;
        Bp += 16;
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
        float* c = C + i * ldc;
        if (accumulate) {
            acc[i][0] = _mm256_add_ps(acc[i][0], _mm256_loadu_ps(c));
            acc[i][1] = _mm256_add_ps(acc[i][1], _mm256_loadu_ps(c + 8));
        }
        _mm256_storeu_ps(c, acc[i][0]);
        _mm256_storeu_ps(c + 8, acc[i][1]);
    }
}

/// Direct-convolution variant, reading A in place (see sgemm_tile_direct_avx512):
///   out [6, 16] = sum over taps t, channels c < C of  a0[offset[t] + i * C + c] * Bp[t*C + c][:]
__attribute__((target("avx2,fma"))) inline void sgemm_tile_direct_avx2_6x16(int taps, const int64_t* __restrict offset,
                                                                             int64_t C, const float* __restrict a0,
                                                                             const float* __restrict Bp,
                                                                             float* __restrict out, int64_t ldo) {
    constexpr int MR = 6;
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int t = 0; t < taps; ++t) {
        const float* a = a0 + offset[t];
        for (int64_t c = 0; c < C; ++c, ++a) {
            const __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8);
#pragma GCC unroll 8
            for (int i = 0; i < MR; ++i) {
                const __m256 x = _mm256_broadcast_ss(a + i * C);
                acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(x, b1, acc[i][1]);
            }
            Bp += 16;
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
        _mm256_storeu_ps(out + i * ldo, acc[i][0]);
        _mm256_storeu_ps(out + i * ldo + 8, acc[i][1]);
    }
}

/// dst[k * stride + r] = src[r][k] for r < lanes, k < kc; a null src[r] reads as zeros.
inline void sgemm_pack_transposed_scalar(const float* const* src, int64_t kc, float* dst, int64_t stride, int lanes) {
    for (int r = 0; r < lanes; ++r) {
        if (src[r])
            for (int64_t k = 0; k < kc; ++k) dst[k * stride + r] = src[r][k];
        else
            for (int64_t k = 0; k < kc; ++k) dst[k * stride + r] = 0.f;
    }
}

/// dst[0 .. len) = src[0 .. len) (zeros when src is null), dst[len .. width) = 0.
inline void sgemm_copy_row_scalar(float* dst, const float* src, int64_t len, int64_t width) {
    int64_t j = 0;
    if (src)
        for (; j < len; ++j) dst[j] = src[j];
    for (; j < width; ++j) dst[j] = 0.f;
}

/// 6 x 16 AVX2 tile.
struct SgemmAvx2 {
    static constexpr int MR = 6, NR = 16;
    static void tile(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate) {
        sgemm_tile_avx2_6x16(kc, Ap, Bp, C, ldc, accumulate);
    }
    static void direct(int taps, const int64_t* offset, int64_t C, const float* a0, const float* Bp, float* out,
                       int64_t ldo) {
        sgemm_tile_direct_avx2_6x16(taps, offset, C, a0, Bp, out, ldo);
    }
    static void pack_transposed(const float* const* src, int64_t kc, float* dst, int64_t stride, int lanes) {
        sgemm_pack_transposed_scalar(src, kc, dst, stride, lanes);
    }
    static void copy_row(float* dst, const float* src, int64_t len, int64_t width) {
        sgemm_copy_row_scalar(dst, src, len, width);
    }
};

}  // namespace bnn::kernels::detail
