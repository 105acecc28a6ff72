#pragma once
/// @file conv2d_u8s16.hpp
/// The stem of a deployed network on the raw image: a convolution of uint8 pixels with int16
/// weights, exact int32 dot products, the input normalization folded into weights and bias.
///
///   x         [N, H, W, C] uint8                 the raw image (0..255), not normalized
///   q         [Cout, KH, KW, C] int16            quantised folded weights (U8S16ConvWeights)
///   scale     [Cout] float                       one weight step per output channel
///   bias rows [patterns, CoutP] float            folded bias + padding correction (U8S16ConvPlan)
///   out       [N, OH, OW, Cout] float
///
///   out[n, oh, ow, o] = fma(float(acc), scale[o], bias_row(oh, ow)[o]),
///   acc = sum over taps t, channels c of x_pad[t, c] * q[o, t, c]     (int32, exact)
///
/// where x_pad is the image padded with 0. The float convolution it replaces reads the normalized
/// image x_n = (x / 255 - mean[c]) / std[c] padded with 0; docs/performance.md ("Integer stem")
/// derives the folding: the weights become w / (255 std[c]), the bias absorbs the mean, and a
/// padded tap, which is 0 in normalized space but 0 - 255 mean[c] after the folding, is undone
/// by the bias row of the pixel's (row pattern, column pattern). Interior pixels read the
/// folded bias itself and pay nothing.
///
/// Exactness: |x * q| <= 255 * 32767 per term, so an int32 sum of K terms cannot overflow while
/// K <= u8s16_max_taps (257); the quantiser refuses a larger K. Every path computes the same
/// integers (their order does not matter), converts them the same way and rounds one fma, so the
/// scalar and AVX2 paths give the same floats.
///
/// Paths: scalar, and AVX2 (vpmaddwd on u8 pixels widened to int16 pairs, vpaddd), chosen by
/// kernels::active_isa(); an AVX-512 CPU runs the AVX2 path.
///
/// Work split: output pixels of the whole batch in chunks of 32, whose receptive fields are
/// gathered once (int16, zero for padded taps) into a per-thread buffer; output channels in
/// blocks of 16. A work item is (pixel chunk, group of channel blocks); the channel blocks are
/// split into groups only when there are too few chunks for the threads.
///
/// Files: this one holds the gather, the driver and the entry points; conv2d_u8s16_quantize.hpp
/// the folding and quantising of the weights; conv2d_u8s16_plan.hpp the bias rows of one input
/// shape; conv2d_u8s16_scalar.hpp and conv2d_u8s16_avx2.hpp the two paths' tiles.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "bnn/core/error.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/conv2d_fields.hpp"
#include "bnn/kernels/conv2d_geometry.hpp"
#include "bnn/kernels/conv2d_u8s16_avx2.hpp"
#include "bnn/kernels/conv2d_u8s16_plan.hpp"
#include "bnn/kernels/conv2d_u8s16_quantize.hpp"
#include "bnn/kernels/conv2d_u8s16_scalar.hpp"
#include "bnn/kernels/isa.hpp"

namespace bnn::kernels {

namespace detail {

inline constexpr int64_t u8s16_chunk_pixels = 32;  // pixels gathered at once

/// Tag of the per-thread buffer of gathered receptive fields (bnn::thread_scratch).
struct U8S16Fields;

/// Receptive fields of output pixels [p0, p0 + rows) (of the whole batch) as int16 rows of Kp,
/// 0 for padded taps and past K; rows up to a whole tile past the last pixel are zero too.
inline void u8s16_gather(const uint8_t* x, const Conv2dGeometry& g, int64_t kp, int64_t p0, int64_t rows,
                         int16_t* fields) {
    const int64_t plane = g.OH * g.OW;
    const int64_t padded_rows = (rows + u8s16_tile_pixels - 1) / u8s16_tile_pixels * u8s16_tile_pixels;
    for (int64_t i = 0; i < padded_rows; ++i) {
        int16_t* row = fields + i * kp;
        if (i >= rows) {
            std::fill(row, row + kp, int16_t{0});
            continue;
        }
        const int64_t p = p0 + i, n = p / plane, oh = p % plane / g.OW, ow = p % g.OW;
        gather_field(x + n * g.H * g.W * g.C, g, oh * g.stride - g.pad, ow * g.stride - g.pad, row);
        std::fill(row + g.K(), row + kp, int16_t{0});
    }
}

/// The shared driver: for every tile of (4 pixels, 16 channels), its int32 sums handed to
/// finish(first pixel, pixels in the tile, first channel, acc [4, 16]).
template <class Finish>
void u8s16_run(const uint8_t* x, const U8S16ConvWeights& w, const Conv2dGeometry& g, [[maybe_unused]] Isa isa, Finish&& finish) {
    const int64_t pixels = g.N * g.OH * g.OW, kp = w.Kp(), blocks = w.CoutP() / u8s16_lanes;
    const int64_t chunks = (pixels + u8s16_chunk_pixels - 1) / u8s16_chunk_pixels;
    // Dot-product vector operations of the call against the work a parallel region pays for.
    const int threads = worth_threading(pixels * w.CoutP() * kp / 16) ? num_threads() : 1;
    const int64_t groups = threads > 1 ? std::clamp<int64_t>((4 * threads + chunks - 1) / chunks, 1, blocks) : 1;
    parallel_ranges(chunks * groups, threads, [&](int, int64_t begin, int64_t end) {
        int16_t* fields = thread_scratch<U8S16Fields, int16_t>(u8s16_chunk_pixels * kp);
        int64_t gathered = -1;
        alignas(32) int32_t acc[u8s16_tile_pixels * u8s16_lanes];
        for (int64_t item = begin; item < end; ++item) {
            const int64_t chunk = item / groups, group = item % groups;
            const int64_t p0 = chunk * u8s16_chunk_pixels, rows = std::min(u8s16_chunk_pixels, pixels - p0);
            if (chunk != gathered) {
                u8s16_gather(x, g, kp, p0, rows, fields);
                gathered = chunk;
            }
            for (int64_t b = group * blocks / groups; b < (group + 1) * blocks / groups; ++b) {
                const int16_t* wb = w.packed.data() + b * (kp / 2) * u8s16_lanes * 2;
                for (int64_t r = 0; r < rows; r += u8s16_tile_pixels) {
#if BNN_X86
                    if (has_avx2(isa)) u8s16_tile_avx2(fields + r * kp, kp, wb, acc);
                    else
#endif
                        u8s16_tile_scalar(fields + r * kp, kp, wb, acc);
                    finish(p0 + r, std::min(u8s16_tile_pixels, rows - r), b * u8s16_lanes, acc);
                }
            }
        }
    });
}

}  // namespace detail

/// out [N, OH, OW, Cout] float = the stem convolution of the raw image x [N, H, W, C] uint8 (see
/// the file comment); `plan` from plan_conv2d_u8s16(w, g). Allocates nothing once each thread's
/// gather buffer has grown.
inline void conv2d_u8s16_forward(const uint8_t* x, const U8S16ConvWeights& w, const U8S16ConvPlan& plan, float* out) {
    const Conv2dGeometry& g = plan.g;
    const Isa isa = active_isa();
    const int64_t plane = g.OH * g.OW;
    detail::u8s16_run(x, w, g, isa, [&](int64_t p0, int64_t rows, int64_t c0, const int32_t* acc) {
        const int64_t cols = std::min(detail::u8s16_lanes, g.Cout - c0);
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t p = p0 + r, oh = p % plane / g.OW, ow = p % g.OW;
            const int32_t* a = acc + r * detail::u8s16_lanes;
            const float* bias = plan.bias_row(oh, ow) + c0;
            float* o = out + p * g.Cout + c0;
#if BNN_X86
            if (has_avx2(isa)) {
                detail::u8s16_finish_avx2(a, w.scale.data() + c0, bias, o, cols);
                continue;
            }
#endif
            detail::u8s16_finish_scalar(a, w.scale.data() + c0, bias, o, cols);
        }
    });
}

/// dots [N, OH, OW, Cout] int32 = the integer part of conv2d_u8s16_forward (sum of x_pad * q over
/// the receptive field) on the active path: what the tests hold against int64 sums.
inline void conv2d_u8s16_dots(const uint8_t* x, const U8S16ConvWeights& w, const Conv2dGeometry& g, int32_t* dots) {
    BNN_CHECK(g.C == w.C && g.Cout == w.Cout && g.KH == w.KH && g.KW == w.KW,
              "conv2d_u8s16_dots: the weights do not fit the geometry");
    detail::u8s16_run(x, w, g, active_isa(), [&](int64_t p0, int64_t rows, int64_t c0, const int32_t* acc) {
        const int64_t cols = std::min(detail::u8s16_lanes, g.Cout - c0);
        for (int64_t r = 0; r < rows; ++r)
            std::memcpy(dots + (p0 + r) * g.Cout + c0, acc + r * detail::u8s16_lanes, sizeof(int32_t) * cols);
    });
}

}  // namespace bnn::kernels
