#pragma once
/// @file conv2d_u8s16_avx2.hpp
/// The integer stem's AVX2 path (conv2d_u8s16.hpp): the scalar tile's int32 sums by vpmaddwd on
/// u8 pixels widened to int16 pairs, and the same conversion and single fma rounding, so it gives
/// the scalar path's floats.
#include <cstdint>
#include <cstring>

#include "bnn/kernels/conv2d_u8s16_scalar.hpp"
#include "bnn/kernels/intrinsics.hpp"

#if BNN_X86
namespace bnn::kernels::detail {

// One pixel's int16 pair (x[2p], x[2p+1]) in every 32-bit lane.
__attribute__((target("avx2"))) inline __m256i u8s16_pair_avx2(const int16_t* x) {
    int32_t pair;
    std::memcpy(&pair, x, sizeof pair);
    return _mm256_set1_epi32(pair);
}

/// u8s16_tile_scalar with vpmaddwd: each 32-bit lane j multiplies the pixel's pair by channel
/// j's pair and adds the two products; vpaddd accumulates over the pairs.
__attribute__((target("avx2"))) inline void u8s16_tile_avx2(const int16_t* const* fields, const U8S16Taps& t,
                                                            const int16_t* wb, int32_t* acc) {
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    for (int64_t kh = 0; kh < t.rows; ++kh) {
        const int64_t row = kh * t.row_step;
        const int16_t *x0 = fields[0] + row, *x1 = fields[1] + row, *x2 = fields[2] + row, *x3 = fields[3] + row;
        const int16_t* wr = wb + kh * t.steps * 32;
        for (int64_t p = 0; p < t.steps; ++p) {
            const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + p * 32));
            const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + p * 32 + 16));
            __m256i x = u8s16_pair_avx2(x0 + 2 * p);
            a00 = _mm256_add_epi32(a00, _mm256_madd_epi16(x, w0));
            a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(x, w1));
            x = u8s16_pair_avx2(x1 + 2 * p);
            a10 = _mm256_add_epi32(a10, _mm256_madd_epi16(x, w0));
            a11 = _mm256_add_epi32(a11, _mm256_madd_epi16(x, w1));
            x = u8s16_pair_avx2(x2 + 2 * p);
            a20 = _mm256_add_epi32(a20, _mm256_madd_epi16(x, w0));
            a21 = _mm256_add_epi32(a21, _mm256_madd_epi16(x, w1));
            x = u8s16_pair_avx2(x3 + 2 * p);
            a30 = _mm256_add_epi32(a30, _mm256_madd_epi16(x, w0));
            a31 = _mm256_add_epi32(a31, _mm256_madd_epi16(x, w1));
        }
    }
    __m256i* out = reinterpret_cast<__m256i*>(acc);
    _mm256_storeu_si256(out + 0, a00);
    _mm256_storeu_si256(out + 1, a01);
    _mm256_storeu_si256(out + 2, a10);
    _mm256_storeu_si256(out + 3, a11);
    _mm256_storeu_si256(out + 4, a20);
    _mm256_storeu_si256(out + 5, a21);
    _mm256_storeu_si256(out + 6, a30);
    _mm256_storeu_si256(out + 7, a31);
}

/// u8s16_finish_scalar with vcvtdq2ps and vfmadd (the same conversion and the same single rounding).
__attribute__((target("avx2,fma"))) inline void u8s16_finish_avx2(const int32_t* acc, int64_t rows, const float* scale,
                                                                  const float* const* bias, float* const* out,
                                                                  int64_t cols) {
    if (cols < u8s16_lanes) {
        u8s16_finish_scalar(acc, rows, scale, bias, out, cols);
        return;
    }
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < u8s16_lanes; j += 8) {
            const __m256 a = _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + r * u8s16_lanes + j)));
            _mm256_storeu_ps(out[r] + j, _mm256_fmadd_ps(a, _mm256_loadu_ps(scale + j), _mm256_loadu_ps(bias[r] + j)));
        }
}

}  // namespace bnn::kernels::detail
#endif
