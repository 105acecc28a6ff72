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

/// acc + vpmaddwd(x, w): the AVX-512BW dot product of int16 pairs.
struct U8S16MaddAdd {
    __attribute__((target("avx512f,avx512bw"), always_inline)) static __m512i add(__m512i acc, __m512i x, __m512i w) {
        return _mm512_add_epi32(acc, _mm512_madd_epi16(x, w));
    }
};

/// The same sum in one vpdpwssd. Inline assembly, so that the one tile body, compiled for
/// AVX-512BW alone, serves both instructions (a function compiled with VNNI enabled may fuse the
/// other one's vpmaddwd + vpaddd into vpdpwssd); only paths with has_avx512_vnni() reach it.
struct U8S16Vnni {
    __attribute__((target("avx512f,avx512bw"), always_inline)) static __m512i add(__m512i acc, __m512i x, __m512i w) {
        asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
        return acc;
    }
};

/// acc [Blocks, 4, 16] = the sums of u8s16_tile_scalar for channel blocks wb, wb + block_step, ...
template <int Blocks, class Dot>
__attribute__((target("avx512f,avx512bw"), always_inline)) inline void u8s16_tile_avx512_blocks(
    const int16_t* const* fields, const U8S16Taps& t, const int16_t* wb, int64_t block_step, int32_t* acc) {
    __m512i a[u8s16_tile_pixels][Blocks];
#pragma GCC unroll 4
    for (int r = 0; r < u8s16_tile_pixels; ++r)
#pragma GCC unroll 4
        for (int b = 0; b < Blocks; ++b) a[r][b] = _mm512_setzero_si512();
    for (int64_t kh = 0; kh < t.rows; ++kh) {
        const int64_t row = kh * t.row_step;
        const int16_t* wr = wb + kh * t.pairs * 32;
        for (int64_t p = 0; p < t.pairs; ++p) {
            __m512i w[Blocks];
#pragma GCC unroll 4
            for (int b = 0; b < Blocks; ++b) w[b] = _mm512_loadu_si512(wr + b * block_step + p * 32);
#pragma GCC unroll 4
            for (int r = 0; r < u8s16_tile_pixels; ++r) {
                int32_t pair;
                std::memcpy(&pair, fields[r] + row + 2 * p, sizeof pair);
                const __m512i x = _mm512_set1_epi32(pair);
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
__attribute__((target("avx512f,avx512bw"))) inline void u8s16_tile_avx512(const int16_t* const* fields,
                                                                          const U8S16Taps& t, const int16_t* wb,
                                                                          int64_t block_step, int64_t blocks,
                                                                          int32_t* acc) {
    switch (blocks) {
        case 1: u8s16_tile_avx512_blocks<1, Dot>(fields, t, wb, block_step, acc); break;
        case 2: u8s16_tile_avx512_blocks<2, Dot>(fields, t, wb, block_step, acc); break;
        case 3: u8s16_tile_avx512_blocks<3, Dot>(fields, t, wb, block_step, acc); break;
        default: u8s16_tile_avx512_blocks<4, Dot>(fields, t, wb, block_step, acc); break;
    }
}

/// acc [Blocks, 4, 16] = the same sums as u8s16_tile_avx512_blocks from the padded byte image
/// (fields[r]: pixel r's receptive field in it) and U8S16ConvWeights::packed_bytes (wb: one channel
/// block): per kernel row, runs of four taps, each broadcast run against 16 channels' four bytes.
template <int Blocks>
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) inline void u8s8_tile_vnni_blocks(
    const uint8_t* const* fields, const U8S8Taps& t, const int8_t* wb, int64_t block_step, int32_t* acc) {
    __m512i a[u8s16_tile_pixels][Blocks];
#pragma GCC unroll 4
    for (int r = 0; r < u8s16_tile_pixels; ++r)
#pragma GCC unroll 4
        for (int b = 0; b < Blocks; ++b) a[r][b] = _mm512_setzero_si512();
    for (int64_t kh = 0; kh < t.rows; ++kh) {
        const int64_t row = kh * t.row_step;
        const int8_t* wr = wb + kh * t.quads * 64;
        for (int64_t j = 0; j < t.quads; ++j) {
            __m512i w[Blocks];
#pragma GCC unroll 4
            for (int b = 0; b < Blocks; ++b) w[b] = _mm512_loadu_si512(wr + b * block_step + j * 64);
#pragma GCC unroll 4
            for (int r = 0; r < u8s16_tile_pixels; ++r) {
                int32_t quad;
                std::memcpy(&quad, fields[r] + row + 4 * j, sizeof quad);
                const __m512i x = _mm512_set1_epi32(quad);
#pragma GCC unroll 4
                for (int b = 0; b < Blocks; ++b) a[r][b] = _mm512_dpbusd_epi32(a[r][b], x, w[b]);
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
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void u8s8_tile_vnni(const uint8_t* const* fields,
                                                                                  const U8S8Taps& t, const int8_t* wb,
                                                                                  int64_t block_step, int64_t blocks,
                                                                                  int32_t* acc) {
    switch (blocks) {
        case 1: u8s8_tile_vnni_blocks<1>(fields, t, wb, block_step, acc); break;
        case 2: u8s8_tile_vnni_blocks<2>(fields, t, wb, block_step, acc); break;
        case 3: u8s8_tile_vnni_blocks<3>(fields, t, wb, block_step, acc); break;
        default: u8s8_tile_vnni_blocks<4>(fields, t, wb, block_step, acc); break;
    }
}

/// u8s16_finish_scalar with vcvtdq2ps and vfmadd on one zmm a pixel, the store masked to `cols`
/// (scale and the bias rows hold 16 values).
__attribute__((target("avx512f"))) inline void u8s16_finish_avx512(const int32_t* acc, int64_t rows, const float* scale,
                                                                   const float* const* bias, float* const* out,
                                                                   int64_t cols) {
    const __mmask16 keep = static_cast<__mmask16>((1u << cols) - 1);
    const __m512 s = _mm512_loadu_ps(scale);
    for (int64_t r = 0; r < rows; ++r) {
        const __m512 a = _mm512_cvtepi32_ps(_mm512_loadu_si512(acc + r * u8s16_lanes));
        const __m512 y = _mm512_fmadd_ps(a, s, _mm512_loadu_ps(bias[r]));
        if (cols == u8s16_lanes) _mm512_storeu_ps(out[r], y);
        else _mm512_mask_storeu_ps(out[r], keep, y);
    }
}

}  // namespace bnn::kernels::detail
#endif
