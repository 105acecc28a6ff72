#pragma once
/// @file binary_conv2d_neon.hpp
/// The NEON (aarch64) micro-kernel (tile) of the XNOR convolution; the plan, the scalar reference
/// tile and the driver are in binary_conv2d.hpp, the x86 tiles in binary_conv2d_simd.hpp.
///
/// A tile computes P output pixels x 8 output channels (4 vectors of 2 uint64 lanes, one lane per
/// channel, as the x86 tiles). It takes the receptive field two words at a time, k and k+1: for
/// pixel p and vector v, EOR each word's broadcast activation with its weight row, CNT the bytes,
/// ADDP the two byte-count vectors into one (a byte pair of one lane stays in that lane: word k's
/// counts go to bytes 0-7, word k+1's to bytes 8-15) and UADALP that into uint16 accumulators:
/// 3 vector instructions per 128 binary multiply-accumulates, as Larq Compute Engine's kernel.
/// The 4 x 2 weight vectors of a word pair serve every pixel and each pixel's 2 broadcasts every
/// weight vector, so loads stay under 1/2 an instruction per 128 MACs at P = 4; 4 x 4
/// accumulators, 8 weight vectors and the broadcasts fit the 32 vector registers.
///
/// Accumulator width: a uint16 lane gains at most 32 a word pair (two byte sums of at most 16),
/// so the uint16 sums are folded into uint64 lanes every kNeonPairsPerFlush pairs; uint64 holds any
/// receptive field (the plan allows 64 x 64 taps over any channel count).
#include <cstdint>

#include "bnn/kernels/binary_conv2d_simd.hpp"

namespace bnn::kernels::detail {

/// Word pairs a uint16 lane of the NEON tile can take: 2047 * 32 = 65504 <= 65535 < 2048 * 32.
inline constexpr int64_t kNeonPairsPerFlush = 2047;

}  // namespace bnn::kernels::detail

#if defined(__aarch64__)
#include <arm_neon.h>

namespace bnn::kernels::detail {

// GCC's first scheduling pass hoists every EOR of a word pair ahead of its CNTs and so spills
// accumulators inside the loop; without it the loop keeps all 16 in registers.
#if defined(__GNUC__) && !defined(__clang__)
#define BNN_NEON_TILE_ATTRIBUTES __attribute__((optimize("no-schedule-insns")))
#else
#define BNN_NEON_TILE_ATTRIBUTES
#endif

/// NEON tile: P pixels x 8 output channels (see the file comment).
template <int P>
BNN_NEON_TILE_ATTRIBUTES inline void binary_conv_tile_neon(const BinaryConvPlan& pl, const BinaryConvTile& tl) {
    constexpr int V = 4;
    uint16x8_t acc[P][V];
    uint64x2_t total[P][V];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) {
            acc[p][v] = vdupq_n_u16(0);
            total[p][v] = vdupq_n_u64(0);
        }
    // Lanes of acc: 16-bit sums of channels c, c, c+1, c+1, c, c, c+1, c+1; fold them into the
    // uint64 lanes (c, c+1) and clear them.
    auto flush = [&] {
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p)
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) {
                const uint32x4_t s = vpaddlq_u16(acc[p][v]);  // c, c+1, c, c+1
                total[p][v] = vaddw_high_u32(vaddw_u32(total[p][v], vget_low_u32(s)), s);
                acc[p][v] = vdupq_n_u16(0);
            }
    };

    const uint64_t* xp[P];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) xp[p] = tl.origins[p];
    const uint64_t* wrow = pl.weights + tl.c0;
    const int64_t* offs = pl.word_offsets;
    const int64_t pairs = pl.k_words / 2, coutp = pl.coutp;
    for (int64_t first = 0; first < pairs; first += kNeonPairsPerFlush) {
        const int64_t last = first + kNeonPairsPerFlush < pairs ? first + kNeonPairsPerFlush : pairs;
        for (int64_t i = first; i < last; ++i, wrow += 2 * coutp, offs += 2) {
            uint64x2_t w0[V], w1[V];
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) {
                w0[v] = vld1q_u64(wrow + 2 * v);
                w1[v] = vld1q_u64(wrow + coutp + 2 * v);
            }
            const int64_t off0 = offs[0], off1 = offs[1];
#pragma GCC unroll 8
            for (int p = 0; p < P; ++p) {
                const uint64_t *a0 = xp[p] + off0, *a1 = xp[p] + off1;
                asm("" : "+r"(a0), "+r"(a1));  // keeps GCC from folding the sum into LDR + DUP: LD1R
                                                // broadcasts in one instruction but takes no index
                const uint64x2_t x0 = vld1q_dup_u64(a0), x1 = vld1q_dup_u64(a1);
#pragma GCC unroll 4
                for (int v = 0; v < V; ++v) {
                    const uint8x16_t c0 = vcntq_u8(vreinterpretq_u8_u64(veorq_u64(x0, w0[v])));
                    const uint8x16_t c1 = vcntq_u8(vreinterpretq_u8_u64(veorq_u64(x1, w1[v])));
                    acc[p][v] = vpadalq_u8(acc[p][v], vpaddq_u8(c0, c1));
                }
            }
        }
        flush();
    }
    if (pl.k_words % 2) {  // the last word, paired with zero counts: the same lane layout
        const int64_t off = offs[0];
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) {
            const uint64x2_t x0 = vld1q_dup_u64(xp[p] + off);
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) {
                const uint8x16_t c0 = vcntq_u8(vreinterpretq_u8_u64(veorq_u64(x0, vld1q_u64(wrow + 2 * v))));
                acc[p][v] = vpadalq_u8(acc[p][v], vpaddq_u8(c0, vdupq_n_u8(0)));
            }
        }
        flush();
    }

    // dot = K - 2*popcount (+ border correction), exact in int64; then out = fma(dot, scale, bias)
    // on 4 channels: int64 -> double is exact (|dot| < 2^53), double -> float rounds once, as
    // int64 -> float does.
    const int64x2_t k = vdupq_n_s64(pl.k_bits);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
        float* out = tl.out + p * pl.cout;
        const int64_t* corr = tl.corrections[p];
#pragma GCC unroll 2
        for (int h = 0; h < V / 2; ++h) {
            const int64_t c = tl.c0 + 4 * h;
            int64x2_t d[2];
#pragma GCC unroll 2
            for (int j = 0; j < 2; ++j) {
                const int64x2_t pop = vreinterpretq_s64_u64(total[p][2 * h + j]);
                d[j] = vsubq_s64(k, vaddq_s64(pop, pop));
                if (corr) d[j] = vaddq_s64(d[j], vld1q_s64(corr + c + 2 * j));
            }
            const float32x4_t dots = vcvt_high_f32_f64(vcvt_f32_f64(vcvtq_f64_s64(d[0])), vcvtq_f64_s64(d[1]));
            const float32x4_t y = vfmaq_f32(vld1q_f32(pl.bias + c), dots, vld1q_f32(pl.scale + c));
            const int64_t left = pl.cout - c;
            if (left >= 4) {
                vst1q_f32(out + 4 * h, y);
            } else if (left > 0) {
                float tmp[4];
                vst1q_f32(tmp, y);
                for (int64_t i = 0; i < left; ++i) out[4 * h + i] = tmp[i];
            }
        }
    }
}

#undef BNN_NEON_TILE_ATTRIBUTES

}  // namespace bnn::kernels::detail

#endif  // aarch64
