#pragma once
/// @file sgemm_avx2.hpp
/// AVX2/FMA micro-kernels for the packed single-precision GEMM (sgemm_driver.hpp) and the direct
/// convolution (conv2d_direct.hpp), for CPUs without AVX-512. Same contract as the AVX-512 tiles
/// (see sgemm_avx512.hpp):
///   C [6, 16] (=/+=) Ap [kc, 6]^T Bp [kc, 16]
/// with 12 ymm accumulators and 2 B vectors, which fits the 16 ymm registers.
#include <algorithm>
#include <cstdint>

#include "bnn/kernels/intrinsics.hpp"
#include "bnn/kernels/sgemm_driver.hpp"

#if BNN_X86
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

/// v[0..8) <- its transpose: v[k][r] = old v[r][k].
__attribute__((target("avx2,fma"))) inline void transpose_8x8(__m256 v[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);      // r0k0 r1k0 r0k1 r1k1 | r0k4 r1k4 r0k5 r1k5
        t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);  // r0k2 r1k2 r0k3 r1k3 | r0k6 ...
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; ++j) {
            u[i + j] = _mm256_shuffle_ps(t[i + j], t[i + j + 2], 0x44);      // k(2j)   of 4 rows, both halves
            u[i + j + 2] = _mm256_shuffle_ps(t[i + j], t[i + j + 2], 0xEE);  // k(2j+1)
        }
    // u[0]: k0|k4 of rows 0-3, u[2]: k1|k5, u[1]: k2|k6, u[3]: k3|k7; u[4..8) the same for rows 4-7.
    const int order[4] = {0, 2, 1, 3};
    for (int k = 0; k < 4; ++k) {
        v[k] = _mm256_permute2f128_ps(u[order[k]], u[4 + order[k]], 0x20);
        v[k + 4] = _mm256_permute2f128_ps(u[order[k]], u[4 + order[k]], 0x31);
    }
}

/// dst[k * stride + r] = src[r][k] for r < lanes <= 16, k < kc (a null src[r] reads as zeros),
/// 8 x 8 at a time with an in-register transpose. Fewer than 8 lanes with stride == lanes (the
/// 6-row A panels) are stored with full 8-float stores: each store's spare floats land on the
/// next k's slots, written after it, and the last ones up to 7 floats past dst[kc * stride],
/// into the slack that sgemm_panel_stride() leaves after every panel.
__attribute__((target("avx2,fma"))) inline void sgemm_pack_transposed_avx2(const float* const* src, int64_t kc,
                                                                            float* dst, int64_t stride, int lanes) {
    alignas(32) static const float zeros[8] = {};
    for (int g = 0; g < lanes; g += 8) {
        const int n = std::min(8, lanes - g);
        if (n < 8 && (g > 0 || stride != lanes)) {
            sgemm_pack_transposed_scalar(src + g, kc, dst + g, stride, n);
            continue;
        }
        const float* row[8];
        int64_t step[8];
        for (int i = 0; i < 8; ++i) {
            const bool present = i < n && src[g + i];
            row[i] = present ? src[g + i] : zeros;
            step[i] = present ? 8 : 0;
        }
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 v[8];
            for (int i = 0; i < 8; ++i) {
                v[i] = _mm256_loadu_ps(row[i]);
                row[i] += step[i];
            }
            transpose_8x8(v);
            for (int j = 0; j < 8; ++j) _mm256_storeu_ps(dst + (k + j) * stride + g, v[j]);
        }
        for (; k < kc; ++k)
            for (int i = 0; i < n; ++i) dst[k * stride + g + i] = src[g + i] ? src[g + i][k] : 0.f;
    }
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
        sgemm_pack_transposed_avx2(src, kc, dst, stride, lanes);
    }
    static void copy_row(float* dst, const float* src, int64_t len, int64_t width) {
        sgemm_copy_row_scalar(dst, src, len, width);
    }
};

}  // namespace bnn::kernels::detail
#endif  // BNN_X86
