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
/// pairs, vpaddd; AVX-VNNI's vpdpwssd on avx2_vnni), tiles of 4 pixels x 16 channels; AVX-512,
/// tiles of 4 pixels x 64 channels, with vpdpwssd where the path has VNNI (has_avx512_vnni) and
/// vpmaddwd + vpaddd otherwise; NEON (SMLAL / SMLAL2 on the same int16 pairs), tiles of 4 pixels x
/// 16 channels. Weights quantised to int8's range (quantize_conv2d_u8s16 with u8s8_weight_max)
/// take a byte tile on the image bytes instead, four taps an instruction where the others take
/// two: vpdpbusd where VNNI is present (AVX-512's, 4 pixels x 64 channels, or AVX-VNNI's, 4 pixels
/// x 16 channels), SDOT on aarch64 with the dot product (has_neon_dotprod), 4 pixels x 16
/// channels. SDOT multiplies signed bytes, so its image holds x - 128 (padding -128) and its sums
/// start from 128 times each channel's weight sum (byte_offset_sum), which gives the same integers
/// exactly (conv2d_u8s16_neon_dotprod.hpp).
///
/// No gather: the batch is widened once to int16 with its padding written out, or for the
/// byte tiles copied with its padding as bytes (u8s16_padded_image), and the tiles read each
/// receptive field's kernel rows in place, the weights packed per kernel row to match. Output
/// pixels of the whole batch go in chunks of 32, output channels in blocks of 16. A work item is
/// (pixel chunk, group of channel blocks); the channel blocks are split into groups only when
/// there are too few chunks for the threads.
///
/// Files: this one holds the widening, the driver and the entry points; conv2d_u8s16_quantize.hpp
/// the folding, quantising and packing of the weights; conv2d_u8s16_plan.hpp the bias rows of one
/// input shape; conv2d_u8s16_scalar.hpp, conv2d_u8s16_avx2.hpp, conv2d_u8s16_avx512.hpp,
/// conv2d_u8s16_neon.hpp and conv2d_u8s16_neon_dotprod.hpp the paths' tiles.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "bnn/core/error.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/conv2d_geometry.hpp"
#include "bnn/kernels/conv2d_u8s16_avx2.hpp"
#include "bnn/kernels/conv2d_u8s16_avx512.hpp"
#include "bnn/kernels/conv2d_u8s16_neon.hpp"
#include "bnn/kernels/conv2d_u8s16_neon_dotprod.hpp"
#include "bnn/kernels/conv2d_u8s16_plan.hpp"
#include "bnn/kernels/conv2d_u8s16_quantize.hpp"
#include "bnn/kernels/conv2d_u8s16_scalar.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/pool.hpp"

namespace bnn::kernels {

namespace detail {

inline constexpr int64_t u8s16_chunk_pixels = 32;  // pixels of one work item

/// Tags of the calling thread's buffers of the padded image, widened or bytes (bnn::thread_scratch).
struct U8S16Image;
struct U8S8Image;

/// 128 where the byte tile is SDOT, which multiplies signed bytes: its bytes are written as
/// x - 128 (int8's range; x ^ 0x80) and its sums start from what that took off
/// (U8S16ConvWeights::byte_offset_sum). 0 elsewhere: vpdpbusd takes the bytes as uint8.
inline int32_t u8s8_byte_shift(Isa isa) { return has_neon_dotprod(isa) ? 128 : 0; }

/// The batch x [N, H, W, C] uint8 as T [N, H + 2 pad, W + 2 pad, C], each value x - shift
/// (shift: u8s8_byte_shift for the byte image, 0 for the widened one) and 0 - shift in the
/// padding, then `tail` zeros: a receptive field's kernel rows lie in it as runs of KW*C values,
/// which the tiles read in place, up to tail - 1 values past a row's end (int16: one pair's second
/// value; bytes: three of a run of four), against zero weights.
template <class Tag, class T>
const T* u8s16_padded_image(const uint8_t* x, const Conv2dGeometry& g, int64_t tail, int32_t shift) {
    const int64_t hp = g.H + 2 * g.pad, row = (g.W + 2 * g.pad) * g.C, edge = g.pad * g.C, inner = g.W * g.C;
    const int64_t size = g.N * hp * row + tail;
    const T pad = static_cast<T>(-shift);  // bytes: 0x80, the int8 -128
    T* image = thread_scratch<Tag, T>(size);
    for (int64_t n = 0; n < g.N; ++n)
        for (int64_t ih = 0; ih < hp; ++ih) {
            T* dst = image + (n * hp + ih) * row;
            const int64_t h = ih - g.pad;
            if (h < 0 || h >= g.H) {
                std::fill(dst, dst + row, pad);
                continue;
            }
            const uint8_t* src = x + (n * g.H + h) * inner;
            std::fill(dst, dst + edge, pad);
            if (shift == 0)  // a plain copy, or widening: what the compiler turns into memcpy or vector code
                for (int64_t j = 0; j < inner; ++j) dst[edge + j] = src[j];
            else
                for (int64_t j = 0; j < inner; ++j) dst[edge + j] = static_cast<T>(src[j] - shift);
            std::fill(dst + edge + inner, dst + row, pad);
        }
    std::fill(image + size - tail, image + size, T{0});
    return image;
}

/// An output pixel of the batch: its index, row and column, and where its receptive field starts
/// in the padded image (in values, the same in the widened and the byte image).
struct U8S16Pixel {
    int64_t index, oh, ow, field;
};

/// What every tile of one call reads: the widened image or, for the byte tiles, the byte image
/// (the other one null; for SDOT its values less u8s8_byte_shift), the kernel rows' layout in it,
/// and how many 16-channel blocks a tile takes on the path.
struct U8S16Call {
    const int16_t* image = nullptr;
    const uint8_t* bytes = nullptr;
    U8S16Taps taps{};
    int64_t tile_blocks = 1;
};

/// True when the call runs a byte tile: int8-range weights on a path with VNNI (vpdpbusd, AVX-512's
/// or AVX-VNNI) or the aarch64 dot product (SDOT).
inline bool u8s16_takes_bytes(const U8S16ConvWeights& w, [[maybe_unused]] Isa isa) {
#if BNN_X86
    return w.packed_bytes.defined() && (has_avx512_vnni(isa) || has_avx_vnni(isa));
#elif defined(__aarch64__)
    return w.packed_bytes.defined() && has_neon_dotprod(isa);
#else
    (void)w;
    return false;
#endif
}

inline U8S16Call u8s16_call(const uint8_t* x, const U8S16ConvWeights& w, const Conv2dGeometry& g, [[maybe_unused]] Isa isa) {
    U8S16Call call;
    const int64_t row_step = (g.W + 2 * g.pad) * g.C;
    if (u8s16_takes_bytes(w, isa)) {
        call.bytes = u8s16_padded_image<U8S8Image, uint8_t>(x, g, 4, u8s8_byte_shift(isa));
        call.taps = U8S16Taps{g.KH, w.RunQ() / 4, row_step};
    } else {
        call.image = u8s16_padded_image<U8S16Image, int16_t>(x, g, 2, 0);
        call.taps = U8S16Taps{g.KH, w.RunP() / 2, row_step};
    }
#if BNN_X86
    if (has_avx512(isa)) call.tile_blocks = u8s16_tile_blocks_max;
#endif
    return call;
}

/// px [rows] = the output pixels p0, p0 + 1, ... of the batch, without a division each.
inline void u8s16_locate(const Conv2dGeometry& g, int64_t p0, int64_t rows, U8S16Pixel* px) {
    const int64_t hp = g.H + 2 * g.pad, wp = g.W + 2 * g.pad;
    int64_t n = p0 / (g.OH * g.OW), oh = p0 / g.OW % g.OH, ow = p0 % g.OW;
    for (int64_t i = 0; i < rows; ++i) {
        px[i] = {p0 + i, oh, ow, ((n * hp + oh * g.stride) * wp + ow * g.stride) * g.C};
        if (++ow == g.OW) {
            ow = 0;
            if (++oh == g.OH) oh = 0, ++n;
        }
    }
}

/// Every tile of (4 of the `rows` pixels px, up to call.tile_blocks of the 16-channel blocks
/// [b0, b1)): its int32 sums handed to finish(pixels of the tile, how many, first channel, blocks,
/// acc [blocks, 4, 16]).
template <class Finish>
void u8s16_tiles(const U8S16Call& call, const U8S16ConvWeights& w, [[maybe_unused]] Isa isa, const U8S16Pixel* px,
                 int64_t rows, int64_t b0, int64_t b1, Finish& finish) {
    const int64_t block_step = w.Kp() * u8s16_lanes;
    [[maybe_unused]] const int64_t byte_step = w.KH * w.RunQ() * u8s16_lanes;  // the byte tiles'
    alignas(64) int32_t acc[u8s16_tile_blocks_max * u8s16_tile_pixels * u8s16_lanes];
    for (int64_t b = b0; b < b1; b += call.tile_blocks) {
        const int64_t nb = std::min(call.tile_blocks, b1 - b);
        const int16_t* wb = w.packed.data() + b * block_step;
        for (int64_t r = 0; r < rows; r += u8s16_tile_pixels) {
            const int64_t count = std::min(u8s16_tile_pixels, rows - r);
            int64_t at[u8s16_tile_pixels];  // past the last pixel: the last again
            for (int64_t i = 0; i < u8s16_tile_pixels; ++i) at[i] = px[r + std::min(i, count - 1)].field;
#if BNN_X86 || defined(__aarch64__)
            if (call.bytes) {
                const uint8_t* fields[u8s16_tile_pixels];
                for (int64_t i = 0; i < u8s16_tile_pixels; ++i) fields[i] = call.bytes + at[i];
                const int8_t* wq = w.packed_bytes.data() + b * byte_step;
#if BNN_X86
                if (has_avx512(isa)) u8s16_tile_avx512<U8S8Vnni>(fields, call.taps, wq, byte_step, nb, acc);
                else u8s16_tile_avx2<U8S8AvxVnni>(fields, call.taps, wq, acc);  // one block a tile
#else
                u8s16_tile_neon_dotprod(fields, call.taps, wq, w.byte_offset_sum.data() + b * u8s16_lanes, acc);
#endif
                finish(px + r, count, b * u8s16_lanes, nb, acc);
                continue;
            }
#endif
            const int16_t* fields[u8s16_tile_pixels];
            for (int64_t i = 0; i < u8s16_tile_pixels; ++i) fields[i] = call.image + at[i];
#if BNN_X86
            if (has_avx512_vnni(isa)) u8s16_tile_avx512<U8S16Vnni>(fields, call.taps, wb, block_step, nb, acc);
            else if (has_avx512(isa)) u8s16_tile_avx512<U8S16MaddAdd>(fields, call.taps, wb, block_step, nb, acc);
            else if (has_avx_vnni(isa)) u8s16_tile_avx2<U8S16AvxVnni>(fields, call.taps, wb, acc);
            else if (has_avx2(isa)) u8s16_tile_avx2<U8S16MaddAddAvx2>(fields, call.taps, wb, acc);
            else
#elif defined(__aarch64__)
            if (has_neon(isa)) u8s16_tile_neon(fields, call.taps, wb, acc);
            else
#endif
                u8s16_tile_scalar(fields, call.taps, wb, acc);
            finish(px + r, count, b * u8s16_lanes, nb, acc);
        }
    }
}

/// The shared driver: every tile of the batch's output (see u8s16_tiles), in work items of
/// (a chunk of 32 pixels, a group of channel blocks) shared out over the threads.
template <class Finish>
void u8s16_run(const uint8_t* x, const U8S16ConvWeights& w, const Conv2dGeometry& g, Isa isa, Finish&& finish) {
    const int64_t pixels = g.N * g.OH * g.OW, blocks = w.CoutP() / u8s16_lanes;
    const int64_t chunks = (pixels + u8s16_chunk_pixels - 1) / u8s16_chunk_pixels;
    const U8S16Call call = u8s16_call(x, w, g, isa);
    // Dot-product vector operations of the call against the work a parallel region pays for.
    const int threads = worth_threading(pixels * w.CoutP() * w.Kp() / 16) ? num_threads() : 1;
    const int64_t groups = threads > 1 ? std::clamp<int64_t>((4 * threads + chunks - 1) / chunks, 1, blocks) : 1;
    parallel_ranges(chunks * groups, threads, [&](int, int64_t begin, int64_t end) {
        U8S16Pixel px[u8s16_chunk_pixels];
        int64_t located = -1;
        for (int64_t item = begin; item < end; ++item) {
            const int64_t chunk = item / groups, group = item % groups;
            const int64_t p0 = chunk * u8s16_chunk_pixels, rows = std::min(u8s16_chunk_pixels, pixels - p0);
            if (chunk != located) {
                u8s16_locate(g, p0, rows, px);
                located = chunk;
            }
            u8s16_tiles(call, w, isa, px, rows, group * blocks / groups, (group + 1) * blocks / groups, finish);
        }
    });
}

/// A tile's floats, fma(float(acc), scale, the pixel's bias row), into out_rows[r] + c for its
/// `rows` pixels px and the channels c of `blocks` blocks from c0 (acc [blocks, 4, 16]), on path
/// isa. The pixels' bias rows are looked up once for all the blocks.
inline void u8s16_finish(Isa isa, const U8S16ConvWeights& w, const U8S16ConvPlan& plan, const U8S16Pixel* px,
                         int64_t rows, int64_t c0, int64_t blocks, const int32_t* acc, float* const* out_rows) {
    const float* bias_rows[u8s16_tile_pixels];
    for (int64_t r = 0; r < rows; ++r) bias_rows[r] = plan.bias_row(px[r].oh, px[r].ow);
#if BNN_X86
    if (has_avx512(isa)) {
        const float* bias[u8s16_tile_pixels];
        float* o[u8s16_tile_pixels];
        for (int64_t r = 0; r < rows; ++r) {
            bias[r] = bias_rows[r] + c0;
            o[r] = out_rows[r] + c0;
        }
        return u8s16_finish_avx512(acc, rows, blocks, plan.g.Cout - c0, w.scale.data() + c0, bias, o);
    }
#endif
    for (int64_t j = 0; j < blocks; ++j, acc += u8s16_tile_pixels * u8s16_lanes) {
        const int64_t c = c0 + j * u8s16_lanes, cols = std::min(u8s16_lanes, plan.g.Cout - c);
        const float* scale = w.scale.data() + c;
        const float* bias[u8s16_tile_pixels];
        float* o[u8s16_tile_pixels];
        for (int64_t r = 0; r < rows; ++r) {
            bias[r] = bias_rows[r] + c;
            o[r] = out_rows[r] + c;
        }
#if BNN_X86
        if (has_avx2(isa)) u8s16_finish_avx2(acc, rows, scale, bias, o, cols);
        else
#elif defined(__aarch64__)
        if (has_neon(isa)) u8s16_finish_neon(acc, rows, scale, bias, o, cols);
        else
#endif
            u8s16_finish_scalar(acc, rows, scale, bias, o, cols);
    }
}

/// Tag of the calling thread's rows of conv output for conv2d_u8s16_max_pool_forward.
struct U8S16PoolRows;

}  // namespace detail

/// out [N, OH, OW, Cout] float = the stem convolution of the raw image x [N, H, W, C] uint8 (see
/// the file comment); `plan` from plan_conv2d_u8s16(w, g). Allocates nothing once the calling
/// thread's buffer of the widened image has grown.
inline void conv2d_u8s16_forward(const uint8_t* x, const U8S16ConvWeights& w, const U8S16ConvPlan& plan, float* out) {
    const Conv2dGeometry& g = plan.g;
    const Isa isa = active_isa();
    detail::u8s16_run(x, w, g, isa,
                      [&](const detail::U8S16Pixel* px, int64_t rows, int64_t c0, int64_t blocks, const int32_t* acc) {
                          float* o[detail::u8s16_tile_pixels];
                          for (int64_t r = 0; r < rows; ++r) o[r] = out + px[r].index * g.Cout;
                          detail::u8s16_finish(isa, w, plan, px, rows, c0, blocks, acc, o);
                      });
}

/// out [N, PH, PW, Cout] = max_pool2d_forward(y, pool) where y = conv2d_u8s16_forward(x) with
/// each of its rows [OW, Cout] passed through after_row(row) (a batch norm and activation, say),
/// without storing y: each thread takes a share of the pooled rows and keeps the pool.k conv rows
/// of a window in a buffer of its own, computing each conv row once (once per thread at the
/// edges of the shares). `pool` describes the pooling of y [N, OH, OW, Cout]. The floats are
/// those of the three steps run apart.
template <class AfterRow>
void conv2d_u8s16_max_pool_forward(const uint8_t* x, const U8S16ConvWeights& w, const U8S16ConvPlan& plan,
                                   const PoolGeometry& pool, AfterRow&& after_row, float* out) {
    const Conv2dGeometry& g = plan.g;
    BNN_CHECK(pool.N == g.N && pool.H == g.OH && pool.W == g.OW && pool.C == g.Cout,
              "conv2d_u8s16_max_pool_forward: a pooling of [", pool.N, ", ", pool.H, ", ", pool.W, ", ", pool.C,
              "] for a convolution output [", g.N, ", ", g.OH, ", ", g.OW, ", ", g.Cout, "]");
    BNN_CHECK(pool.k <= 64 && 2 * pool.pad <= pool.k, "conv2d_u8s16_max_pool_forward: windows of up to 64x64 with ",
              "padding at most half the window, got ", pool.k, "x", pool.k, " padded by ", pool.pad);
    const Isa isa = active_isa();
    const detail::U8S16Call call = detail::u8s16_call(x, w, g, isa);
    const int64_t pooled_rows = pool.N * pool.OH, row_floats = g.OW * g.Cout, blocks = w.CoutP() / detail::u8s16_lanes;
    const int threads = worth_threading(g.N * g.OH * g.OW * w.CoutP() * w.Kp() / 16) ? num_threads() : 1;
    parallel_ranges(pooled_rows, threads, [&](int, int64_t begin, int64_t end) {
        if (begin == end) return;
        // Slot ih % k holds conv row ih of image held[slot] (-1: none yet).
        float* slots = thread_scratch<detail::U8S16PoolRows>(pool.k * row_floats);
        int64_t held[64];
        std::fill(held, held + pool.k, int64_t{-1});
        detail::U8S16Pixel px[detail::u8s16_chunk_pixels];
        for (int64_t r = begin; r < end; ++r) {
            const int64_t n = r / pool.OH, oh = r % pool.OH, h0 = oh * pool.stride - pool.pad;
            const float* rows[64];
            for (int64_t kh = std::max<int64_t>(0, -h0); kh < std::min<int64_t>(pool.k, g.OH - h0); ++kh) {
                const int64_t ih = h0 + kh, slot = ih % pool.k, key = n * g.OH + ih;
                float* row = slots + slot * row_floats;
                rows[kh] = row;
                if (held[slot] == key) continue;
                auto finish = [&](const detail::U8S16Pixel* p, int64_t count, int64_t c0, int64_t blocks,
                                  const int32_t* acc) {
                    float* o[detail::u8s16_tile_pixels];
                    for (int64_t i = 0; i < count; ++i) o[i] = row + p[i].ow * g.Cout;
                    detail::u8s16_finish(isa, w, plan, p, count, c0, blocks, acc, o);
                };
                for (int64_t p0 = key * g.OW; p0 < (key + 1) * g.OW; p0 += detail::u8s16_chunk_pixels) {
                    const int64_t count = std::min(detail::u8s16_chunk_pixels, (key + 1) * g.OW - p0);
                    detail::u8s16_locate(g, p0, count, px);
                    detail::u8s16_tiles(call, w, isa, px, count, 0, blocks, finish);
                }
                after_row(row);
                held[slot] = key;
            }
            max_pool2d_row(rows, oh, out + r * pool.OW * pool.C, pool);
        }
    });
}

/// dots [N, OH, OW, Cout] int32 = the integer part of conv2d_u8s16_forward (sum of x_pad * q over
/// the receptive field) on the active path: what the tests hold against int64 sums.
inline void conv2d_u8s16_dots(const uint8_t* x, const U8S16ConvWeights& w, const Conv2dGeometry& g, int32_t* dots) {
    BNN_CHECK(g.C == w.C && g.Cout == w.Cout && g.KH == w.KH && g.KW == w.KW,
              "conv2d_u8s16_dots: the weights do not fit the geometry");
    detail::u8s16_run(x, w, g, active_isa(),
                      [&](const detail::U8S16Pixel* px, int64_t rows, int64_t c0, int64_t blocks, const int32_t* acc) {
                          for (int64_t j = 0; j < blocks; ++j) {
                              const int64_t c = c0 + j * detail::u8s16_lanes;
                              const int64_t cols = std::min(detail::u8s16_lanes, g.Cout - c);
                              const int32_t* block = acc + j * detail::u8s16_tile_pixels * detail::u8s16_lanes;
                              for (int64_t r = 0; r < rows; ++r)
                                  std::memcpy(dots + px[r].index * g.Cout + c, block + r * detail::u8s16_lanes,
                                              sizeof(int32_t) * cols);
                          }
                      });
}

}  // namespace bnn::kernels
