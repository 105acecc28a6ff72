#pragma once
/// @file conv2d_u8s16_neon.hpp
/// The integer stem's NEON (aarch64) path (conv2d_u8s16.hpp): the scalar tile's int32 sums by
/// SMLAL / SMLAL2, and the same conversion and single fma rounding, so it gives the scalar path's
/// floats.
///
/// NEON has no int16 pair dot product (x86's vpmaddwd); SMLAL multiplies 4 int16 lanes and adds
/// each product to its own int32 lane. The packed weights hold channel j's pair of taps in
/// adjacent int16 lanes, and a pixel's pair broadcast to every 32-bit lane (LD1R) lines up with
/// them, so an accumulator's lanes are (channel j, even taps), (j, odd taps), (j + 1, even),
/// (j + 1, odd); one ADDP at the end adds each channel's two lanes. A lane sums some of the K
/// products, so it is exact wherever the whole int32 sum is (K <= u8s16_max_taps).
///
/// Tile shape: 2 pixels x 16 channels at a time, twice for the driver's 4 pixels. Its 16
/// accumulators (2 pixels x 16 channels x 2 parities, 4 lanes a vector), the 4 weight vectors of
/// a tap pair and the 2 broadcasts fit the 32 vector registers; each tap pair then costs 2 LDP
/// and 2 LD1R for 16 SMLAL (64 multiply-accumulates). 4 pixels at once would need 32
/// accumulators, every register there is.
#include <cstdint>
#include <cstring>

#include "bnn/kernels/conv2d_u8s16_scalar.hpp"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace bnn::kernels::detail {

// One pixel's int16 pair (x[2p], x[2p+1]) in every 32-bit lane.
inline int16x8_t u8s16_pair_neon(const int16_t* x) {
    int32_t pair;
    std::memcpy(&pair, x, sizeof pair);
    return vreinterpretq_s16_s32(vdupq_n_s32(pair));
}

/// acc [2, 16] = the sums of u8s16_tile_scalar for the two pixels whose fields start at f0, f1.
inline void u8s16_tile_neon_pair(const int16_t* f0, const int16_t* f1, const U8S16Taps& t, const int16_t* wb,
                                 int32_t* acc) {
    int32x4_t a[2][8];
#pragma GCC unroll 2
    for (int r = 0; r < 2; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < 8; ++v) a[r][v] = vdupq_n_s32(0);
    for (int64_t kh = 0; kh < t.rows; ++kh) {
        const int16_t *x0 = f0 + kh * t.row_step, *x1 = f1 + kh * t.row_step;
        const int16_t* wr = wb + kh * t.steps * 32;
        for (int64_t p = 0; p < t.steps; ++p, x0 += 2, x1 += 2) {
            asm("" : "+r"(x0), "+r"(x1));  // keeps GCC from folding an index into LDR + DUP:
                                           // LD1R broadcasts in one instruction but takes no index
            int16x8_t w[4];
#pragma GCC unroll 4
            for (int v = 0; v < 4; ++v) w[v] = vld1q_s16(wr + p * 32 + 8 * v);
            const int16x8_t x[2] = {u8s16_pair_neon(x0), u8s16_pair_neon(x1)};
#pragma GCC unroll 2
            for (int r = 0; r < 2; ++r)
#pragma GCC unroll 4
                for (int v = 0; v < 4; ++v) {  // channels 4v, 4v + 1 from the low halves, 4v + 2, 4v + 3 the high
                    a[r][2 * v] = vmlal_s16(a[r][2 * v], vget_low_s16(x[r]), vget_low_s16(w[v]));
                    a[r][2 * v + 1] = vmlal_high_s16(a[r][2 * v + 1], x[r], w[v]);
                }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < 2; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) vst1q_s32(acc + r * u8s16_lanes + 4 * v, vpaddq_s32(a[r][2 * v], a[r][2 * v + 1]));
}

/// u8s16_tile_scalar with SMLAL (see the file comment): acc [4, 16].
inline void u8s16_tile_neon(const int16_t* const* fields, const U8S16Taps& t, const int16_t* wb, int32_t* acc) {
    u8s16_tile_neon_pair(fields[0], fields[1], t, wb, acc);
    u8s16_tile_neon_pair(fields[2], fields[3], t, wb, acc + 2 * u8s16_lanes);
}

/// u8s16_finish_scalar with SCVTF and FMLA (the same conversion and the same single rounding).
inline void u8s16_finish_neon(const int32_t* acc, int64_t rows, const float* scale, const float* const* bias,
                              float* const* out, int64_t cols) {
    if (cols < u8s16_lanes) {
        u8s16_finish_scalar(acc, rows, scale, bias, out, cols);
        return;
    }
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < u8s16_lanes; j += 4) {
            const float32x4_t a = vcvtq_f32_s32(vld1q_s32(acc + r * u8s16_lanes + j));
            vst1q_f32(out[r] + j, vfmaq_f32(vld1q_f32(bias[r] + j), a, vld1q_f32(scale + j)));
        }
}

}  // namespace bnn::kernels::detail
#endif  // aarch64
