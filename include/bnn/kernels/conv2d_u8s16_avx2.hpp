#pragma once
/// @file conv2d_u8s16_avx2.hpp
/// The integer stem's AVX2 paths (conv2d_u8s16.hpp): the scalar tile's int32 sums for 4 pixels x
/// 16 channels (two ymm a pixel), and the same conversion and single fma rounding, so they give
/// the scalar path's floats. One 32-bit lane takes a pixel's int16 pair times a channel's pair:
/// vpmaddwd + vpaddd on avx2, AVX-VNNI's vpdpwssd on avx2_vnni; the same integers either way.
///
/// Weights quantised to int8's range (u8s8_weight_max) have a third tile on avx2_vnni: vpdpbusd
/// on the raw image bytes, four uint8 x int8 products a lane, as the AVX-512 VNNI path does 512
/// bits wide (conv2d_u8s16_avx512.hpp).
#include <cstdint>
#include <cstring>

#include "bnn/kernels/conv2d_u8s16_scalar.hpp"
#include "bnn/kernels/intrinsics.hpp"

#if BNN_X86
namespace bnn::kernels::detail {

/// acc + vpmaddwd(x, w): the AVX2 dot product of int16 pairs (two taps of widened pixels).
struct U8S16MaddAddAvx2 {
    using Value = int16_t;
    using Weight = int16_t;
    static constexpr int64_t taps = 2;
    __attribute__((target("avx2"), always_inline)) static __m256i add(__m256i acc, __m256i x, __m256i w) {
        return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
    }
};

/// The same sum in one VEX-encoded vpdpwssd (AVX-VNNI). Inline assembly, as for the AVX-512 tiles:
/// the one tile body, compiled for AVX2 alone, serves every instruction; the {vex} prefix keeps
/// the assembler from the EVEX form, which a CPU without AVX-512 cannot run. Only paths with
/// has_avx_vnni() reach it.
struct U8S16AvxVnni : U8S16MaddAddAvx2 {
    __attribute__((target("avx2"), always_inline)) static __m256i add(__m256i acc, __m256i x, __m256i w) {
        asm("%{vex%} vpdpwssd %2, %1, %0" : "+x"(acc) : "x"(x), "x"(w));
        return acc;
    }
};

/// acc + vpdpbusd(x, w) on ymm (AVX-VNNI): four taps of image bytes times four int8 weights a
/// lane, for weights of int8's range (U8S16ConvWeights::packed_bytes).
struct U8S8AvxVnni {
    using Value = uint8_t;
    using Weight = int8_t;
    static constexpr int64_t taps = 4;
    __attribute__((target("avx2"), always_inline)) static __m256i add(__m256i acc, __m256i x, __m256i w) {
        asm("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(x), "x"(w));
        return acc;
    }
};

/// acc [4, 16] = the sums of u8s16_tile_scalar for one block of 16 channels (weights wb).
/// fields[r]: pixel r's receptive field in the padded image of Dot::Value; per kernel row,
/// t.steps runs of Dot::taps taps, each broadcast run against the 16 channels' Dot::taps weights
/// (64 bytes, two ymm). 8 accumulators, 2 weight vectors and a broadcast fit AVX2's 16 registers.
template <class Dot>
__attribute__((target("avx2"))) inline void u8s16_tile_avx2(const typename Dot::Value* const* fields,
                                                            const U8S16Taps& t, const typename Dot::Weight* wb,
                                                            int32_t* acc) {
    constexpr int64_t step = Dot::taps * u8s16_lanes;  // weights of one run
    __m256i a[u8s16_tile_pixels][2];
#pragma GCC unroll 4
    for (int r = 0; r < u8s16_tile_pixels; ++r) a[r][0] = a[r][1] = _mm256_setzero_si256();
    for (int64_t kh = 0; kh < t.rows; ++kh) {
        const int64_t row = kh * t.row_step;
        const typename Dot::Weight* wr = wb + kh * t.steps * step;
        for (int64_t p = 0; p < t.steps; ++p) {
            const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + p * step));
            const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + p * step + step / 2));
#pragma GCC unroll 4
            for (int r = 0; r < u8s16_tile_pixels; ++r) {
                int32_t run;
                std::memcpy(&run, fields[r] + row + Dot::taps * p, sizeof run);
                const __m256i x = _mm256_set1_epi32(run);
                a[r][0] = Dot::add(a[r][0], x, w0);
                a[r][1] = Dot::add(a[r][1], x, w1);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < u8s16_tile_pixels; ++r) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * u8s16_lanes), a[r][0]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * u8s16_lanes + 8), a[r][1]);
    }
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
