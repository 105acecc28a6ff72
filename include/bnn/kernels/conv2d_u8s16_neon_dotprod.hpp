#pragma once
/// @file conv2d_u8s16_neon_dotprod.hpp
/// The byte tile of the neon_dotprod path (conv2d_u8s16.hpp): for weights of int8's range
/// (U8S16ConvWeights::packed_bytes; the int8 stem and the int8 dense layers of linear_int8.hpp),
/// the scalar tile's int32 sums by ARMv8.2's SDOT on the byte image, four taps a lane, as x86's
/// vpdpbusd tile takes them (conv2d_u8s16_avx512.hpp). The NEON int16 tile (conv2d_u8s16_neon.hpp)
/// does 64 multiply-accumulates in 16 SMLAL; this one does 256 in 16 SDOT.
///
/// SDOT multiplies signed bytes by signed bytes; the image is uint8 (0..255). The byte image is
/// therefore written shifted, each x as the int8 x - 128 (x ^ 0x80; a padded 0 becomes -128), by
/// u8s16_padded_image (or, for a dense layer, its row quantiser), and the tile starts channel o's
/// sum at byte_offset_sum[o] = 128 * sum over all taps of q[o, t]:
///
///   byte_offset_sum[o] + sum_t (x_t - 128) q[o, t] = sum_t x_t q[o, t]
///
/// exactly, the uint8 x int8 sum every other path computes: padded taps too (their -128 meets the
/// same term), and the bytes a kernel row reads past its end meet zero weights whatever they hold.
/// Each lane adds four products of |x - 128| <= 128 and |q| <= 127 to an int32 that wraps rather
/// than saturates, so the result is exact wherever the sum itself fits in int32, the quantisers'
/// bound on K for every path.
///
/// Tile shape: 4 pixels x 16 channels (one channel block; the driver's tile). Weights per run of
/// four taps: [16 channels, 4 taps] = 4 vectors, vector v holding channels 4v .. 4v + 3, each a
/// 32-bit lane of 4 taps; a pixel's run of 4 bytes is broadcast to every lane. So a run costs 2 LDP
/// (the weights), 4 LD1R (the pixels) and 16 SDOT (4 pixels x 4 vectors) into 16 accumulators
/// [pixel][v], which with the 4 weight vectors and 4 broadcasts take 24 of the 32 vector registers.
///
/// Compiled only for aarch64, in a function of its own built for ARMv8.2-A with the dot product
/// (GCC's arm_neon.h declares vdotq_s32 for that target, not for "+dotprod" on ARMv8.0), so the
/// rest of the build still runs on ARMv8.0 cores; only the neon_dotprod path, which needs the
/// kernel's HWCAP_ASIMDDP (kernels/isa.hpp), calls it. Its instructions, counted:
/// docs/arm.md, "8. The SDOT byte tile".
#include <cstdint>
#include <cstring>

#include "bnn/kernels/conv2d_u8s16_scalar.hpp"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace bnn::kernels::detail {

/// acc [4, 16] = the sums of u8s16_tile_scalar (the file comment): fields[r] is where pixel r's
/// receptive field starts in the shifted byte image (x - 128), t its layout in runs of 4 bytes,
/// wb one channel block of packed_bytes [KH, RunQ/4, 16, 4] and offset its 16 byte_offset_sum.
__attribute__((target("arch=armv8.2-a+dotprod"))) inline void u8s16_tile_neon_dotprod(const uint8_t* const* fields,
                                                                                     const U8S16Taps& t,
                                                                                     const int8_t* wb,
                                                                                     const int32_t* offset,
                                                                                     int32_t* acc) {
    constexpr int64_t step = 4 * u8s16_lanes;  // weights of one run: 64 bytes
    int32x4_t a[u8s16_tile_pixels][4];         // [pixel][channels 4v .. 4v + 3]
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
        const int32x4_t start = vld1q_s32(offset + 4 * v);
#pragma GCC unroll 4
        for (int r = 0; r < u8s16_tile_pixels; ++r) a[r][v] = start;
    }
    for (int64_t kh = 0; kh < t.rows; ++kh) {
        const uint8_t* x[u8s16_tile_pixels];
#pragma GCC unroll 4
        for (int r = 0; r < u8s16_tile_pixels; ++r) x[r] = fields[r] + kh * t.row_step;
        const int8_t* wr = wb + kh * t.steps * step;
        for (int64_t p = 0; p < t.steps; ++p) {
            // Keeps GCC from folding an index into LDR + DUP: LD1R broadcasts in one instruction
            // (post-indexed) but takes no index.
            asm("" : "+r"(x[0]), "+r"(x[1]), "+r"(x[2]), "+r"(x[3]));
            int8x16_t w[4];
#pragma GCC unroll 4
            for (int v = 0; v < 4; ++v) w[v] = vld1q_s8(wr + p * step + 16 * v);
#pragma GCC unroll 4
            for (int r = 0; r < u8s16_tile_pixels; ++r) {
                int32_t run;
                std::memcpy(&run, x[r], sizeof run);
                x[r] += 4;
                const int8x16_t xr = vreinterpretq_s8_s32(vdupq_n_s32(run));
#pragma GCC unroll 4
                for (int v = 0; v < 4; ++v) a[r][v] = vdotq_s32(a[r][v], w[v], xr);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < u8s16_tile_pixels; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) vst1q_s32(acc + r * u8s16_lanes + 4 * v, a[r][v]);
}

}  // namespace bnn::kernels::detail
#endif  // aarch64
