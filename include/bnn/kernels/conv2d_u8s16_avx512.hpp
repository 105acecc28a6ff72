#pragma once
/// @file conv2d_u8s16_avx512.hpp
/// The integer stem's AVX-512 paths (conv2d_u8s16.hpp): the scalar tile's int32 sums for 4 pixels
/// x up to 4 channel blocks (64 channels, 16 accumulators), so that each broadcast pixel pair
/// serves 4 vectors of weights and each weight vector 4 pixels. One 32-bit lane takes a pixel's
/// int16 pair times a channel's pair: vpdpwssd where the path has AVX512_VNNI, vpmaddwd + vpaddd
/// otherwise; the same integers either way.
///
/// Weights quantised to int8's range (u8s8_weight_max) have a third path where VNNI is present:
/// vpdpbusd on the raw bytes, four uint8 x int8 products a lane, so a kernel row of 21 taps takes
/// 6 instructions a channel block instead of 11. It computes the same integers. (Int16 weights
/// split into two int8 halves would need two vpdpbusd per four taps, 32 products an instruction
/// as vpdpwssd gives, plus a recombination.)
#include <cstdint>
#include <cstring>

#include "bnn/kernels/conv2d_u8s16_scalar.hpp"
#include "bnn/kernels/intrinsics.hpp"

#if BNN_X86
namespace bnn::kernels::detail {

/// acc + vpmaddwd(x, w): the AVX-512BW dot product of int16 pairs (two taps of widened pixels).
struct U8S16MaddAdd {
    using Value = int16_t;
    using Weight = int16_t;
    static constexpr int64_t taps = 2;
    __attribute__((target("avx512f,avx512bw"), always_inline)) static __m512i add(__m512i acc, __m512i x, __m512i w) {
        return _mm512_add_epi32(acc, _mm512_madd_epi16(x, w));
    }
};

/// The same sum in one vpdpwssd. Inline assembly, so that the one tile body, compiled for
/// AVX-512BW alone, serves every instruction (a function compiled with VNNI enabled may fuse the
/// other one's vpmaddwd + vpaddd into vpdpwssd); only paths with has_avx512_vnni() reach it.
struct U8S16Vnni : U8S16MaddAdd {
    __attribute__((target("avx512f,avx512bw"), always_inline)) static __m512i add(__m512i acc, __m512i x, __m512i w) {
        asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
        return acc;
    }
};

/// acc + vpdpbusd(x, w): four taps of image bytes times four int8 weights a lane, for weights of
/// int8's range (U8S16ConvWeights::packed_bytes); inline assembly as U8S16Vnni.
struct U8S8Vnni {
    using Value = uint8_t;
    using Weight = int8_t;
    static constexpr int64_t taps = 4;
    __attribute__((target("avx512f,avx512bw"), always_inline)) static __m512i add(__m512i acc, __m512i x, __m512i w) {
        asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
        return acc;
    }
};

/// acc [Blocks, 4, 16] = the sums of u8s16_tile_scalar for channel blocks wb, wb + block_step, ...
/// fields[r]: pixel r's receptive field in the padded image of Dot::Value; per kernel row,
/// t.steps runs of Dot::taps taps, each broadcast run against 16 channels' Dot::taps weights.
template <int Blocks, class Dot>
__attribute__((target("avx512f,avx512bw"), always_inline)) inline void u8s16_tile_avx512_blocks(
    const typename Dot::Value* const* fields, const U8S16Taps& t, const typename Dot::Weight* wb, int64_t block_step,
    int32_t* acc) {
    constexpr int64_t step = Dot::taps * u8s16_lanes;  // weights of one run: 64 bytes
    __m512i a[u8s16_tile_pixels][Blocks];
#pragma GCC unroll 4
    for (int r = 0; r < u8s16_tile_pixels; ++r)
#pragma GCC unroll 4
        for (int b = 0; b < Blocks; ++b) a[r][b] = _mm512_setzero_si512();
    for (int64_t kh = 0; kh < t.rows; ++kh) {
        const int64_t row = kh * t.row_step;
        const typename Dot::Weight* wr = wb + kh * t.steps * step;
        for (int64_t p = 0; p < t.steps; ++p) {
            __m512i w[Blocks];
#pragma GCC unroll 4
            for (int b = 0; b < Blocks; ++b) w[b] = _mm512_loadu_si512(wr + b * block_step + p * step);
#pragma GCC unroll 4
            for (int r = 0; r < u8s16_tile_pixels; ++r) {
                int32_t run;
                std::memcpy(&run, fields[r] + row + Dot::taps * p, sizeof run);
                const __m512i x = _mm512_set1_epi32(run);
#pragma GCC unroll 4
                for (int b = 0; b < Blocks; ++b) a[r][b] = Dot::add(a[r][b], x, w[b]);
            }
        }
    }
#pragma GCC unroll 4
    for (int b = 0; b < Blocks; ++b)
#pragma GCC unroll 4
        for (int r = 0; r < u8s16_tile_pixels; ++r)
            _mm512_storeu_si512(acc + (b * u8s16_tile_pixels + r) * u8s16_lanes, a[r][b]);
}

/// Up to u8s16_tile_blocks_max channel blocks (`blocks`) at once.
template <class Dot>
__attribute__((target("avx512f,avx512bw"))) inline void u8s16_tile_avx512(const typename Dot::Value* const* fields,
                                                                          const U8S16Taps& t,
                                                                          const typename Dot::Weight* wb,
                                                                          int64_t block_step, int64_t blocks,
                                                                          int32_t* acc) {
    switch (blocks) {
        case 1: u8s16_tile_avx512_blocks<1, Dot>(fields, t, wb, block_step, acc); break;
        case 2: u8s16_tile_avx512_blocks<2, Dot>(fields, t, wb, block_step, acc); break;
        case 3: u8s16_tile_avx512_blocks<3, Dot>(fields, t, wb, block_step, acc); break;
        default: u8s16_tile_avx512_blocks<4, Dot>(fields, t, wb, block_step, acc); break;
    }
}

/// u8s16_finish_scalar with vcvtdq2ps and vfmadd on one zmm a pixel, for the `blocks` channel
/// blocks of a tile (acc [blocks, 4, 16]) in one call: block j's channels are 16 j ... from where
/// scale, bias[r] and out[r] point, the stores masked to the first `cols` of them (the channels
/// left to the output's last).
__attribute__((target("avx512f"))) inline void u8s16_finish_avx512(const int32_t* acc, int64_t rows, int64_t blocks,
                                                                   int64_t cols, const float* scale,
                                                                   const float* const* bias, float* const* out) {
    for (int64_t j = 0; j < blocks; ++j, acc += u8s16_tile_pixels * u8s16_lanes) {
        const int64_t c = j * u8s16_lanes, left = cols - c;
        const __mmask16 keep = left >= u8s16_lanes ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
        const __m512 s = _mm512_loadu_ps(scale + c);
        for (int64_t r = 0; r < rows; ++r) {
            const __m512 a = _mm512_cvtepi32_ps(_mm512_loadu_si512(acc + r * u8s16_lanes));
            _mm512_mask_storeu_ps(out[r] + c, keep, _mm512_fmadd_ps(a, s, _mm512_loadu_ps(bias[r] + c)));
        }
    }
}

}  // namespace bnn::kernels::detail
#endif
