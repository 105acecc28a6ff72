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
/// integers (their order does not matter), converts them the same way and rounds one fma, so
/// every path gives the same floats.
///
/// Paths, chosen by kernels::active_isa(): scalar; AVX2 (vpmaddwd on u8 pixels widened to int16
/// pairs, vpaddd), tiles of 4 pixels x 16 channels; AVX-512, tiles of 4 pixels x 64 channels, with
/// vpdpwssd where the path has VNNI (has_avx512_vnni) and vpmaddwd + vpaddd otherwise; NEON
/// (SMLAL / SMLAL2 on the same int16 pairs), tiles of 4 pixels x 16 channels.
///
/// No gather: the batch is widened once to int16 with its padding written out (u8s16_widen), and
/// the tiles read each receptive field's kernel rows in place, the weights packed per kernel row
/// to match. Output pixels of the whole batch go in chunks of 32, output channels in blocks of 16.
/// A work item is (pixel chunk, group of channel blocks); the channel blocks are split into
/// groups only when there are too few chunks for the threads.
///
/// Files: this one holds the widening, the driver and the entry points; conv2d_u8s16_quantize.hpp
/// the folding, quantising and packing of the weights; conv2d_u8s16_plan.hpp the bias rows of one
/// input shape; conv2d_u8s16_scalar.hpp, conv2d_u8s16_avx2.hpp, conv2d_u8s16_avx512.hpp and
/// conv2d_u8s16_neon.hpp the paths' tiles.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "bnn/core/error.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/conv2d_geometry.hpp"
#include "bnn/kernels/conv2d_u8s16_avx2.hpp"
#include "bnn/kernels/conv2d_u8s16_avx512.hpp"
#include "bnn/kernels/conv2d_u8s16_neon.hpp"
#include "bnn/kernels/conv2d_u8s16_plan.hpp"
#include "bnn/kernels/conv2d_u8s16_quantize.hpp"
#include "bnn/kernels/conv2d_u8s16_scalar.hpp"
#include "bnn/kernels/isa.hpp"

namespace bnn::kernels {

namespace detail {

inline constexpr int64_t u8s16_chunk_pixels = 32;  // pixels of one work item

/// Tag of the calling thread's buffer of the padded, widened image (bnn::thread_scratch).
struct U8S16Image;

/// The batch x [N, H, W, C] uint8 as int16 [N, H + 2 pad, W + 2 pad, C], 0 in the padding, then
/// one pair of zeros: a receptive field's kernel rows lie in it as runs of KW*C values, which the
/// tiles read in place (the pair that ends an odd run reads one value past it).
inline const int16_t* u8s16_widen(const uint8_t* x, const Conv2dGeometry& g) {
    const int64_t hp = g.H + 2 * g.pad, row = (g.W + 2 * g.pad) * g.C, edge = g.pad * g.C, inner = g.W * g.C;
    const int64_t size = g.N * hp * row + 2;
    int16_t* image = thread_scratch<U8S16Image, int16_t>(size);
    for (int64_t n = 0; n < g.N; ++n)
        for (int64_t ih = 0; ih < hp; ++ih) {
            int16_t* dst = image + (n * hp + ih) * row;
            const int64_t h = ih - g.pad;
            if (h < 0 || h >= g.H) {
                std::fill(dst, dst + row, int16_t{0});
                continue;
            }
            const uint8_t* src = x + (n * g.H + h) * inner;
            std::fill(dst, dst + edge, int16_t{0});
            for (int64_t j = 0; j < inner; ++j) dst[edge + j] = src[j];
            std::fill(dst + edge + inner, dst + row, int16_t{0});
        }
    image[size - 2] = image[size - 1] = 0;
    return image;
}

/// An output pixel of the batch: its index, row and column, and where its receptive field starts
/// in the widened image.
struct U8S16Pixel {
    int64_t index, oh, ow;
    const int16_t* field;
};

/// The shared driver: for every tile of (4 pixels, 16 channels), its int32 sums handed to
/// finish(pixels of the tile, how many, first channel, acc [4, 16]).
template <class Finish>
void u8s16_run(const uint8_t* x, const U8S16ConvWeights& w, const Conv2dGeometry& g, [[maybe_unused]] Isa isa, Finish&& finish) {
    const int64_t pixels = g.N * g.OH * g.OW, kp = w.Kp(), blocks = w.CoutP() / u8s16_lanes;
    const int64_t chunks = (pixels + u8s16_chunk_pixels - 1) / u8s16_chunk_pixels;
    const int64_t hp = g.H + 2 * g.pad, wp = g.W + 2 * g.pad, block_step = kp * u8s16_lanes;
    const int16_t* image = u8s16_widen(x, g);
    const U8S16Taps taps{g.KH, w.RunP() / 2, wp * g.C};
    int64_t tile_blocks = 1;
#if BNN_X86
    if (has_avx512(isa)) tile_blocks = u8s16_tile_blocks_max;
#endif
    // Dot-product vector operations of the call against the work a parallel region pays for.
    const int threads = worth_threading(pixels * w.CoutP() * kp / 16) ? num_threads() : 1;
    const int64_t groups = threads > 1 ? std::clamp<int64_t>((4 * threads + chunks - 1) / chunks, 1, blocks) : 1;
    parallel_ranges(chunks * groups, threads, [&](int, int64_t begin, int64_t end) {
        U8S16Pixel px[u8s16_chunk_pixels];
        int64_t located = -1;
        alignas(64) int32_t acc[u8s16_tile_blocks_max * u8s16_tile_pixels * u8s16_lanes];
        for (int64_t item = begin; item < end; ++item) {
            const int64_t chunk = item / groups, group = item % groups;
            const int64_t p0 = chunk * u8s16_chunk_pixels, rows = std::min(u8s16_chunk_pixels, pixels - p0);
            if (chunk != located) {  // the chunk's pixels in order, without a division each
                int64_t n = p0 / (g.OH * g.OW), oh = p0 / g.OW % g.OH, ow = p0 % g.OW;
                for (int64_t i = 0; i < rows; ++i) {
                    px[i] = {p0 + i, oh, ow, image + ((n * hp + oh * g.stride) * wp + ow * g.stride) * g.C};
                    if (++ow == g.OW) {
                        ow = 0;
                        if (++oh == g.OH) oh = 0, ++n;
                    }
                }
                located = chunk;
            }
            const int64_t b1 = (group + 1) * blocks / groups;
            for (int64_t b = group * blocks / groups; b < b1; b += tile_blocks) {
                const int64_t nb = std::min(tile_blocks, b1 - b);
                const int16_t* wb = w.packed.data() + b * block_step;
                for (int64_t r = 0; r < rows; r += u8s16_tile_pixels) {
                    const int64_t count = std::min(u8s16_tile_pixels, rows - r);
                    const int16_t* fields[u8s16_tile_pixels];  // past the last pixel: the last again
                    for (int64_t i = 0; i < u8s16_tile_pixels; ++i) fields[i] = px[r + std::min(i, count - 1)].field;
#if BNN_X86
                    if (has_avx512_vnni(isa)) u8s16_tile_avx512<U8S16Vnni>(fields, taps, wb, block_step, nb, acc);
                    else if (has_avx512(isa)) u8s16_tile_avx512<U8S16MaddAdd>(fields, taps, wb, block_step, nb, acc);
                    else if (has_avx2(isa)) u8s16_tile_avx2(fields, taps, wb, acc);
                    else
#elif defined(__aarch64__)
                    if (isa == Isa::neon) u8s16_tile_neon(fields, taps, wb, acc);
                    else
#endif
                        u8s16_tile_scalar(fields, taps, wb, acc);
                    for (int64_t j = 0; j < nb; ++j)
                        finish(px + r, count, (b + j) * u8s16_lanes, acc + j * u8s16_tile_pixels * u8s16_lanes);
                }
            }
        }
    });
}

}  // namespace detail

/// out [N, OH, OW, Cout] float = the stem convolution of the raw image x [N, H, W, C] uint8 (see
/// the file comment); `plan` from plan_conv2d_u8s16(w, g). Allocates nothing once the calling
/// thread's buffer of the widened image has grown.
inline void conv2d_u8s16_forward(const uint8_t* x, const U8S16ConvWeights& w, const U8S16ConvPlan& plan, float* out) {
    const Conv2dGeometry& g = plan.g;
    const Isa isa = active_isa();
    detail::u8s16_run(x, w, g, isa, [&](const detail::U8S16Pixel* px, int64_t rows, int64_t c0, const int32_t* acc) {
        const int64_t cols = std::min(detail::u8s16_lanes, g.Cout - c0);
        const float* scale = w.scale.data() + c0;
        const float* bias[detail::u8s16_tile_pixels];
        float* o[detail::u8s16_tile_pixels];
        for (int64_t r = 0; r < rows; ++r) {
            bias[r] = plan.bias_row(px[r].oh, px[r].ow) + c0;
            o[r] = out + px[r].index * g.Cout + c0;
        }
#if BNN_X86
        if (has_avx512(isa)) detail::u8s16_finish_avx512(acc, rows, scale, bias, o, cols);
        else if (has_avx2(isa)) detail::u8s16_finish_avx2(acc, rows, scale, bias, o, cols);
        else
#elif defined(__aarch64__)
        if (isa == Isa::neon) detail::u8s16_finish_neon(acc, rows, scale, bias, o, cols);
        else
#endif
            detail::u8s16_finish_scalar(acc, rows, scale, bias, o, cols);
    });
}

/// dots [N, OH, OW, Cout] int32 = the integer part of conv2d_u8s16_forward (sum of x_pad * q over
/// the receptive field) on the active path: what the tests hold against int64 sums.
inline void conv2d_u8s16_dots(const uint8_t* x, const U8S16ConvWeights& w, const Conv2dGeometry& g, int32_t* dots) {
    BNN_CHECK(g.C == w.C && g.Cout == w.Cout && g.KH == w.KH && g.KW == w.KW,
              "conv2d_u8s16_dots: the weights do not fit the geometry");
    detail::u8s16_run(x, w, g, active_isa(), [&](const detail::U8S16Pixel* px, int64_t rows, int64_t c0, const int32_t* acc) {
        const int64_t cols = std::min(detail::u8s16_lanes, g.Cout - c0);
        for (int64_t r = 0; r < rows; ++r)
            std::memcpy(dots + px[r].index * g.Cout + c0, acc + r * detail::u8s16_lanes, sizeof(int32_t) * cols);
    });
}

}  // namespace bnn::kernels
