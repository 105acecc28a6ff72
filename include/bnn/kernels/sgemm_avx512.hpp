#pragma once
/// @file sgemm_avx512.hpp
/// AVX-512 register-blocked micro-kernels for the packed single-precision GEMM (sgemm_driver.hpp).
///
/// A micro-kernel computes one MR x NR tile of C from packed panels:
///   Ap [kc, MR]   (MR values of op(A)'s column k, one after the other for each k)
///   Bp [kc, NR]   (NR values of op(B)'s row k for each k, 64-byte aligned)
///   C  [MR, NR]   row stride ldc;  C = Ap^T Bp, or C += Ap^T Bp when accumulate.
/// Each k step loads NR/16 vectors of B, broadcasts MR values of A and issues MR * NR/16 FMAs
/// into accumulators that stay in registers for the whole kc loop (zmm0-31: 28 accumulators
/// plus the B vectors). Edge tiles are handled by the driver, so the kernels only see full tiles.
///
/// Compiled with a target attribute: a build without -march flags still contains this code,
/// and it only runs when CPUID reports AVX-512 (see isa.hpp).
#include <algorithm>
#include <cstdint>

#include "bnn/kernels/intrinsics.hpp"

#if BNN_X86
namespace bnn::kernels::detail {

#define BNN_SGEMM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

/// C [MR, 16*NV] (=/+=) Ap [kc, MR]^T Bp [kc, 16*NV].
template <int MR, int NV>
BNN_SGEMM_AVX512 void sgemm_tile_avx512(int64_t kc, const float* __restrict Ap, const float* __restrict Bp,
                                        float* __restrict C, int64_t ldc, bool accumulate) {
    static_assert(MR * NV + NV <= 32, "accumulators and B vectors must fit the 32 zmm registers");
    constexpr int NR = 16 * NV;
    __m512 acc[MR][NV];
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; ++k) {
        __m512 b[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) b[v] = _mm512_load_ps(Bp + 16 * v);
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i) {
            const __m512 a = _mm512_set1_ps(Ap[i]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
        }
        Ap += MR;
        Bp += NR;
    }
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
            float* c = C + i * ldc + 16 * v;
            _mm512_storeu_ps(c, accumulate ? _mm512_add_ps(_mm512_loadu_ps(c), acc[i][v]) : acc[i][v]);
        }
}

/// Direct-convolution variant of the tile, reading A in place instead of from a packed panel:
///   C [MR, 16*NV] = sum over taps t, channels c < C of  a0[offset[t] + i * C + c] * Bp[t*C + c][:]
/// Row i of A is output pixel i of a run whose inputs lie C floats apart (stride 1 over a padded
/// image), offset[t] the start of tap t; Bp [taps * C, 16*NV] packed as usual. C is written.
/// A FixedC other than 0 is the channel count known at compile time: the rows' offsets i * C
/// become constant displacements from one pointer (at run time, 28 rows' offsets outnumber the
/// general registers and half of them are reloaded from the stack for every broadcast).
template <int MR, int NV, int64_t FixedC = 0>
BNN_SGEMM_AVX512 void sgemm_tile_direct_avx512(int taps, const int64_t* __restrict offset, int64_t channels,
                                               const float* __restrict a0, const float* __restrict Bp,
                                               float* __restrict out, int64_t ldo) {
    static_assert(MR * NV + NV <= 32, "accumulators and B vectors must fit the 32 zmm registers");
    const int64_t C = FixedC ? FixedC : channels;
    __m512 acc[MR][NV];
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    for (int t = 0; t < taps; ++t) {
        const float* a = a0 + offset[t];
        for (int64_t c = 0; c < C; ++c, ++a) {
            __m512 b[NV];
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) b[v] = _mm512_load_ps(Bp + 16 * v);
#pragma GCC unroll 32
            for (int i = 0; i < MR; ++i) {
                const __m512 x = _mm512_set1_ps(a[i * C]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(x, b[v], acc[i][v]);
            }
            Bp += 16 * NV;
        }
    }
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) _mm512_storeu_ps(out + i * ldo + 16 * v, acc[i][v]);
}

// The shuffles of the transpose below, written as merge-masked forms with an all-ones mask.
// GCC 12 implements the plain intrinsics as these same masked builtins with an undefined
// pass-through operand (_mm512_undefined_ps) and then reports that operand from its own headers
// under -Wmaybe-uninitialized. Passing the first input as the (fully overwritten) pass-through
// gives the same builtin and the same instruction with nothing undefined.
BNN_SGEMM_AVX512 inline __m512 unpacklo_ps(__m512 a, __m512 b) { return _mm512_mask_unpacklo_ps(a, 0xFFFF, a, b); }
BNN_SGEMM_AVX512 inline __m512 unpackhi_ps(__m512 a, __m512 b) { return _mm512_mask_unpackhi_ps(a, 0xFFFF, a, b); }
BNN_SGEMM_AVX512 inline __m512d unpacklo_pd(__m512d a, __m512d b) { return _mm512_mask_unpacklo_pd(a, 0xFF, a, b); }
BNN_SGEMM_AVX512 inline __m512d unpackhi_pd(__m512d a, __m512d b) { return _mm512_mask_unpackhi_pd(a, 0xFF, a, b); }
template <int Imm>
BNN_SGEMM_AVX512 inline __m512 shuffle_f32x4(__m512 a, __m512 b) {
    return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, b, Imm);
}

/// dst[k * stride + r] = src[r][k] for r < lanes <= 16, k < kc, where a null src[r] reads as
/// zeros. Packs a transposed operand 16 x 16 at a time with an in-register transpose (unpack,
/// then 128-bit lane shuffles) instead of one float at a time; the row pointers let the
/// convolution pack receptive fields straight from the image.
BNN_SGEMM_AVX512 inline void sgemm_pack_transposed_avx512(const float* const* src, int64_t kc, float* dst,
                                                          int64_t stride, int lanes) {
    const __mmask16 lane_mask = static_cast<__mmask16>((1u << lanes) - 1u);
    // Absent rows read a zero chunk: no branch per row in the loop.
    alignas(64) static const float zeros[16] = {};
    const float* row[16];
    int64_t step[16];
    for (int i = 0; i < 16; ++i) {
        const bool present = i < lanes && src[i];
        row[i] = present ? src[i] : zeros;
        step[i] = present ? 16 : 0;
    }
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        const int kk = static_cast<int>(std::min<int64_t>(16, kc - k0));
        __m512 r[16];
        if (kk == 16) {
#pragma GCC unroll 16
            for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(row[i]);
        } else {
            const __mmask16 k_mask = static_cast<__mmask16>((1u << kk) - 1u);
#pragma GCC unroll 16
            for (int i = 0; i < 16; ++i) r[i] = _mm512_maskz_loadu_ps(k_mask, row[i]);
        }
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) row[i] += step[i];
        __m512 t[16], u[16];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {  // pairs of rows interleaved
            t[2 * i] = unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {  // each 128-bit lane now holds 4 rows of one column
            const __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 1]);
            const __m512d c = _mm512_castps_pd(t[4 * q + 2]), d = _mm512_castps_pd(t[4 * q + 3]);
            u[4 * q] = _mm512_castpd_ps(unpacklo_pd(a, c));
            u[4 * q + 1] = _mm512_castpd_ps(unpackhi_pd(a, c));
            u[4 * q + 2] = _mm512_castpd_ps(unpacklo_pd(b, d));
            u[4 * q + 3] = _mm512_castpd_ps(unpackhi_pd(b, d));
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {  // gather the four row groups' lanes for columns j, 4+j, 8+j, 12+j
            const __m512 v0 = shuffle_f32x4<0x88>(u[j], u[4 + j]), v1 = shuffle_f32x4<0xdd>(u[j], u[4 + j]);
            const __m512 w0 = shuffle_f32x4<0x88>(u[8 + j], u[12 + j]);
            const __m512 w1 = shuffle_f32x4<0xdd>(u[8 + j], u[12 + j]);
            const __m512 col[4] = {shuffle_f32x4<0x88>(v0, w0), shuffle_f32x4<0x88>(v1, w1),
                                   shuffle_f32x4<0xdd>(v0, w0), shuffle_f32x4<0xdd>(v1, w1)};
#pragma GCC unroll 4
            for (int l = 0; l < 4; ++l) {
                const int k = 4 * l + j;
                if (k >= kk) continue;
                if (lanes == 16) _mm512_storeu_ps(dst + (k0 + k) * stride, col[l]);
                else _mm512_mask_storeu_ps(dst + (k0 + k) * stride, lane_mask, col[l]);
            }
        }
    }
}

/// dst[0 .. len) = src[0 .. len) (zeros when src is null), dst[len .. width) = 0: the short row
/// copies of packing, without a memcpy call per row.
BNN_SGEMM_AVX512 inline void sgemm_copy_row_avx512(float* dst, const float* src, int64_t len, int64_t width) {
    int64_t j = 0;
    if (src)
        for (; j < len; j += 16) {
            const __mmask16 m = static_cast<__mmask16>(len - j >= 16 ? 0xFFFFu : (1u << (len - j)) - 1u);
            _mm512_mask_storeu_ps(dst + j, m, _mm512_maskz_loadu_ps(m, src + j));
        }
    for (j = src ? len : 0; j < width; j += 16) {
        const __mmask16 m = static_cast<__mmask16>(width - j >= 16 ? 0xFFFFu : (1u << (width - j)) - 1u);
        _mm512_mask_storeu_ps(dst + j, m, _mm512_setzero_ps());
    }
}

/// 14 x 32: the general tile (28 accumulators, 2 B loads and 14 broadcasts per 28 FMAs).
struct SgemmAvx512Wide {
    static constexpr int MR = 14, NR = 32;
    static void tile(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate) {
        sgemm_tile_avx512<14, 2>(kc, Ap, Bp, C, ldc, accumulate);
    }
    static void direct(int taps, const int64_t* offset, int64_t C, const float* a0, const float* Bp, float* out,
                       int64_t ldo) {
        sgemm_tile_direct_avx512<14, 2>(taps, offset, C, a0, Bp, out, ldo);
    }
    static void pack_transposed(const float* const* src, int64_t kc, float* dst, int64_t stride, int lanes) {
        sgemm_pack_transposed_avx512(src, kc, dst, stride, lanes);
    }
    static void copy_row(float* dst, const float* src, int64_t len, int64_t width) {
        sgemm_copy_row_avx512(dst, src, len, width);
    }
};

/// 28 x 16: for products with at most 16 columns (width-16 convolutions), where a 32-wide tile
/// would compute half zeros.
struct SgemmAvx512Narrow {
    static constexpr int MR = 28, NR = 16;
    static void tile(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate) {
        sgemm_tile_avx512<28, 1>(kc, Ap, Bp, C, ldc, accumulate);
    }
    static void direct(int taps, const int64_t* offset, int64_t C, const float* a0, const float* Bp, float* out,
                       int64_t ldo) {
        if (C == 16) sgemm_tile_direct_avx512<28, 1, 16>(taps, offset, C, a0, Bp, out, ldo);  // width-16 layers
        else sgemm_tile_direct_avx512<28, 1>(taps, offset, C, a0, Bp, out, ldo);
    }
    static void pack_transposed(const float* const* src, int64_t kc, float* dst, int64_t stride, int lanes) {
        sgemm_pack_transposed_avx512(src, kc, dst, stride, lanes);
    }
    static void copy_row(float* dst, const float* src, int64_t len, int64_t width) {
        sgemm_copy_row_avx512(dst, src, len, width);
    }
};

/// 8 x 48: for products with few rows (weight gradients of narrow layers: M = Cout = 16),
/// where 14-row tiles would leave most rows of the last tile empty.
struct SgemmAvx512Short {
    static constexpr int MR = 8, NR = 48;
    static void tile(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate) {
        sgemm_tile_avx512<8, 3>(kc, Ap, Bp, C, ldc, accumulate);
    }
    static void pack_transposed(const float* const* src, int64_t kc, float* dst, int64_t stride, int lanes) {
        sgemm_pack_transposed_avx512(src, kc, dst, stride, lanes);
    }
    static void copy_row(float* dst, const float* src, int64_t len, int64_t width) {
        sgemm_copy_row_avx512(dst, src, len, width);
    }
};

#undef BNN_SGEMM_AVX512

}  // namespace bnn::kernels::detail
#endif  // BNN_X86
