#pragma once
/// @file binary_conv2d.hpp
/// Binary (XNOR / popcount) 2-D convolution of bit-packed NHWC activations with packed weights.
///
///   x_bits    [N, H, W, ceil(C/64)] uint64         (pack_signs of the float input)
///   weights   [KH*KW*ceil(C/64), CoutP] uint64     (pack_conv_weights, CoutP = padded_out_channels)
///   tap_sums  [KH*KW, CoutP] int64                 (pack_conv_weights; only read with zero padding)
///   scale     [Cout] or null (1)     bias [Cout] or null (0)
///   out       [N, OH, OW, Cout] float,  OH = (H + 2*pad - KH) / stride + 1, same for OW
///
/// out[n, oh, ow, o] = fma(dot, scale[o], bias[o]) where dot is the float convolution of the ±1
/// tensors, computed as dot = K - 2 * popcount(x XOR w) over the receptive field (K = KH*KW*C
/// true bits; bits past C are zero in both operands and cancel in the XOR).
///
/// Padding. The input is copied once into a padded bit buffer. One-padding fills the border with
/// +1 (all C bits set), which is then exact as is. Zero-padding must make a padded position
/// contribute 0, which no bit can hold: the border is filled with -1 (bits 0), and each output
/// pixel whose receptive field overlaps the border gets a per-output-channel correction
///   dot += sum over its padded taps t of tap_sums[t, o]
/// which removes exactly the -sum(sign(w)) the -1 border added. Interior pixels pay nothing;
/// the corrections of the few border patterns are tabulated once per call.
///
/// Work split: output pixels (over the whole batch) in blocks of P, output channels in blocks of
/// the tile width; tiles are ordered channel block first, pixel block second, and each thread
/// takes an equal contiguous share, so one channel block's weights stay in L1 while pixels
/// stream past, and even a layer with a handful of pixels splits evenly over threads.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/core/bit_tensor.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/padding_patterns.hpp"
#include "bnn/kernels/binary_conv2d_neon.hpp"
#include "bnn/kernels/binary_conv2d_simd.hpp"

namespace bnn::kernels {

/// What the padded border of a binary convolution's input holds (nn::PadValue is this type).
enum class PadValue {
    Zero,  ///< 0: the border contributes nothing, as a float conv of the ±1 tensor with zero
           ///< padding (an exact correction per border pattern)
    One,   ///< +1: the border is a binary value like any other (no correction, so cheaper; Larq's
           ///< pad_values = 1)
};

/// The sizes of one binary convolution; build it with binary_conv_geometry().
struct BinaryConvGeometry {
    int64_t N, H, W, C, Cout, KH, KW, stride, pad, OH, OW;
    PadValue pad_value;
    bool operator==(const BinaryConvGeometry&) const = default;
    int64_t words_per_pixel() const { return (C + 63) / 64; }
    /// 64-bit words in one receptive field.
    int64_t field_words() const { return KH * KW * words_per_pixel(); }
    int64_t K() const { return KH * KW * C; }
    /// Binary multiply-accumulates of the whole convolution.
    int64_t macs() const { return N * OH * OW * Cout * K(); }
};

/// Validates the sizes and derives the output extent.
inline BinaryConvGeometry binary_conv_geometry(int64_t N, int64_t H, int64_t W, int64_t C, int64_t Cout, int64_t KH,
                                           int64_t KW, int64_t stride, int64_t pad, PadValue mode = PadValue::Zero) {
    BNN_CHECK(N >= 0 && H >= 1 && W >= 1 && C >= 1 && Cout >= 1, "binary_conv2d: expected positive sizes, got N=", N,
              " H=", H, " W=", W, " C=", C, " Cout=", Cout);
    BNN_CHECK(stride >= 1, "binary_conv2d: stride must be >= 1, got ", stride);
    BNN_CHECK(pad >= 0, "binary_conv2d: padding must be >= 0, got ", pad);
    BNN_CHECK(KH >= 1 && KW >= 1 && KH <= 64 && KW <= 64, "binary_conv2d: kernel must be 1x1 to 64x64, got ", KH, "x",
              KW);
    BNN_CHECK(H + 2 * pad >= KH && W + 2 * pad >= KW, "binary_conv2d: kernel ", KH, "x", KW,
              " larger than the padded input ", H + 2 * pad, "x", W + 2 * pad);
    BinaryConvGeometry g{N, H, W, C, Cout, KH, KW, stride, pad, 0, 0, mode};
    g.OH = (H + 2 * pad - KH) / stride + 1;
    g.OW = (W + 2 * pad - KW) / stride + 1;
    return g;
}

namespace detail {

/// Scalar reference tile: one pixel x up to 32 output channels with std::popcount. The inner
/// loop runs over a contiguous weight row, the same data flow as the SIMD tiles. Kept scalar
/// even under -march=native (GCC would otherwise vectorise it into the AVX-512 path), so the
/// "scalar" path measures what a CPU without the SIMD paths gets.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-vectorize")))
#endif
inline void binary_conv_tile_scalar(const BinaryConvPlan& pl, const BinaryConvTile& tl) {
    constexpr int64_t B = 32;
    const int64_t n = std::min<int64_t>(B, pl.cout - tl.c0);
    int64_t acc[B] = {};
    const uint64_t* wrow = pl.weights + tl.c0;
    for (int64_t k = 0; k < pl.k_words; ++k, wrow += pl.coutp) {
        const uint64_t xw = tl.origins[0][pl.word_offsets[k]];
        for (int64_t c = 0; c < n; ++c) acc[c] += std::popcount(xw ^ wrow[c]);
    }
    const int64_t* corr = tl.corrections[0];
    for (int64_t c = 0; c < n; ++c) {
        const int64_t o = tl.c0 + c;
        const int64_t dot = pl.k_bits - 2 * acc[c] + (corr ? corr[o] : 0);
        tl.out[c] = std::fma(static_cast<float>(dot), pl.scale[o], pl.bias[o]);
    }
}

/// Longest receptive field (in 64-bit words) that the AVX-512 VPOPCNTDQ path counts in 32-bit
/// halves: 3x3 over up to 128 channels. On such short fields the end of a tile costs about as
/// much as the field, and the half-word tile ends once per 16 outputs, not 8; on longer ones the
/// whole-word tile is as fast and needs no second layout of the weights (docs/binary_conv.md,
/// section 3).
inline constexpr int64_t kHalfWordMaxFieldWords = 18;

/// Whether path `isa` counts a field of k_words words in 32-bit halves.
inline bool counts_half_words(Isa isa, int64_t k_words) {
    return isa == Isa::avx512_vpopcntdq && k_words <= kHalfWordMaxFieldWords;
}

/// Tile shape of each path: pixels per tile and output channels per tile. AVX-512 without
/// VPOPCNTDQ counts bits with the AVX2 tile. The tile widths are 8, 32 or 64 channels, and a
/// tile reads 32 channels past a block's first 32 only when they exist, so its vectors never
/// read past the padded channels (a multiple of kOutChannelBlock).
struct TileShape {
    int pixels;
    int64_t channels;
};
inline TileShape tile_shape(Isa isa, const BinaryConvGeometry& g) {
    switch (isa) {
        case Isa::avx512_vpopcntdq: return {6, counts_half_words(isa, g.field_words()) ? 64 : 32};
        case Isa::avx512:
        case Isa::avx2:
        case Isa::avx2_vnni: return {3, 8};
        case Isa::neon:
        case Isa::neon_dotprod: return {4, 8};
        default: return {1, 32};
    }
}

/// The field in 32-bit halves (BinaryConvPlan::half_offsets and half_weights) from its words.
inline void split_into_half_words(const int64_t* word_offsets, const uint64_t* weights, int64_t k_words, int64_t coutp,
                                  int64_t* half_offsets, uint32_t* half_weights) {
    for (int64_t k = 0; k < k_words; ++k)
        for (int64_t h = 0; h < 2; ++h) {
            half_offsets[2 * k + h] = 2 * word_offsets[k] + h;
            const uint64_t* row = weights + k * coutp;
            uint32_t* half_row = half_weights + (2 * k + h) * coutp;
            for (int64_t c = 0; c < coutp; ++c) half_row[c] = static_cast<uint32_t>(row[c] >> (32 * h));
        }
}

/// Runs the tile of `isa` for `p` (1..tile pixels) pixels.
inline void run_tile(Isa isa, int p, const BinaryConvPlan& pl, const BinaryConvTile& tl) {
#if BNN_X86
    if (isa == Isa::avx512_vpopcntdq && pl.half_weights) {
        // 64 channels, or the last 32 of a layer whose padded width ends there.
        if (pl.cout - tl.c0 > 32) {
            switch (p) {
                case 6: return binary_conv_tile_avx512_halves<6, 4>(pl, tl);
                case 5: return binary_conv_tile_avx512_halves<5, 4>(pl, tl);
                case 4: return binary_conv_tile_avx512_halves<4, 4>(pl, tl);
                case 3: return binary_conv_tile_avx512_halves<3, 4>(pl, tl);
                case 2: return binary_conv_tile_avx512_halves<2, 4>(pl, tl);
                default: return binary_conv_tile_avx512_halves<1, 4>(pl, tl);
            }
        }
        switch (p) {
            case 6: return binary_conv_tile_avx512_halves<6, 2>(pl, tl);
            case 5: return binary_conv_tile_avx512_halves<5, 2>(pl, tl);
            case 4: return binary_conv_tile_avx512_halves<4, 2>(pl, tl);
            case 3: return binary_conv_tile_avx512_halves<3, 2>(pl, tl);
            case 2: return binary_conv_tile_avx512_halves<2, 2>(pl, tl);
            default: return binary_conv_tile_avx512_halves<1, 2>(pl, tl);
        }
    }
    if (isa == Isa::avx512_vpopcntdq) {
        switch (p) {
            case 6: return binary_conv_tile_avx512<6>(pl, tl);
            case 5: return binary_conv_tile_avx512<5>(pl, tl);
            case 4: return binary_conv_tile_avx512<4>(pl, tl);
            case 3: return binary_conv_tile_avx512<3>(pl, tl);
            case 2: return binary_conv_tile_avx512<2>(pl, tl);
            default: return binary_conv_tile_avx512<1>(pl, tl);
        }
    }
    if (has_avx2(isa)) {  // AVX-512 without VPOPCNTDQ counts bits here too
        switch (p) {
            case 3: return binary_conv_tile_avx2<3>(pl, tl);
            case 2: return binary_conv_tile_avx2<2>(pl, tl);
            default: return binary_conv_tile_avx2<1>(pl, tl);
        }
    }
#elif defined(__aarch64__)
    if (has_neon(isa)) {
        switch (p) {
            case 4: return binary_conv_tile_neon<4>(pl, tl);
            case 3: return binary_conv_tile_neon<3>(pl, tl);
            case 2: return binary_conv_tile_neon<2>(pl, tl);
            default: return binary_conv_tile_neon<1>(pl, tl);
        }
    }
#endif
    (void)isa;
    (void)p;
    binary_conv_tile_scalar(pl, tl);
}

/// The threads for_each_binary_conv_tile uses: up to max_threads, one per tile at most, and
/// one below ~1 µs of work (2^21 binary multiply-accumulates), where a parallel region costs
/// more than it saves.
inline int binary_conv_threads(Isa isa, const BinaryConvGeometry& g, int max_threads) {
    if (g.macs() < (int64_t{1} << 21)) return 1;
    const TileShape ts = tile_shape(isa, g);
    const int64_t items = (g.N * g.OH * g.OW + ts.pixels - 1) / ts.pixels * ((g.Cout + ts.channels - 1) / ts.channels);
    return static_cast<int>(std::clamp<int64_t>(items, 1, max_threads));
}

/// The work split of a binary convolution on path `isa` (see the file comment): each thread takes
/// a contiguous, even share of the output pixels of the whole batch, every channel of them, and
/// walks it in tiles of tile_shape(isa): channel block outermost (a block's weights stay in L1
/// while the share's pixels stream past) unless PixelMajor. Calls tile(thread, q, p, c0, nc) for
/// the tile of pixels [q, q + p) and channels [c0, c0 + nc), on binary_conv_threads(isa, g,
/// max_threads) threads. Pixel shares rather than channel shares: the rows a thread writes are the
/// rows it reads in the next step (the next conv's sign pass, a residual, a shortcut's pool), so
/// activations do not pass between the cores' caches.
template <bool PixelMajor, class TileFn>
void for_each_binary_conv_tile(Isa isa, const BinaryConvGeometry& g, int max_threads, TileFn&& tile) {
    const TileShape ts = tile_shape(isa, g);
    const int64_t pixels = g.N * g.OH * g.OW;
    const int64_t channel_blocks = (g.Cout + ts.channels - 1) / ts.channels;
    parallel_ranges(pixels, binary_conv_threads(isa, g, max_threads), [&](int thread, int64_t p0, int64_t p1) {
        auto run = [&](int64_t q, int64_t cb) {
            const int64_t c0 = cb * ts.channels;
            tile(thread, q, static_cast<int>(std::min<int64_t>(ts.pixels, p1 - q)), c0,
                 std::min<int64_t>(ts.channels, g.Cout - c0));
        };
        if constexpr (PixelMajor) {
            for (int64_t q = p0; q < p1; q += ts.pixels)
                for (int64_t cb = 0; cb < channel_blocks; ++cb) run(q, cb);
        } else {
            for (int64_t cb = 0; cb < channel_blocks; ++cb)
                for (int64_t q = p0; q < p1; q += ts.pixels) run(q, cb);
        }
    });
}

}  // namespace detail

/// The per-pixel plan of a binary convolution over a padded bit buffer [N, H+2p, W+2p, words]:
/// where each output pixel's receptive field starts, and, for zero padding, the correction of
/// its border taps (the tap sums of the weights over the taps that fall in the padding, which
/// count as -1 bits in the buffer but must count as 0). Border pixels share one correction row
/// per distinct (row pattern, column pattern). Built once per geometry by the inference graph
/// and by binary_conv2d_forward in each thread's plan, which a later call of the same geometry
/// over the same buffer reuses, refilling only the corrections (they come from the weights):
/// the one place these invariants are written.
/// Movable, not copyable: `corrections` point into `table`.
struct BinaryConvPixelPlan {
    std::vector<int64_t> word_offsets;         ///< [KH*KW*words]: a field's words from its origin
    std::vector<const uint64_t*> origins;      ///< [N*OH*OW]
    std::vector<const int64_t*> corrections;   ///< [N*OH*OW], null where no tap is padding
    std::vector<int64_t> table;                ///< [patterns, CoutP]
    // What the rest was planned for: a plan of the same geometry over the same buffer only
    // refills the table (the tap sums change with the weights, the rest does not).
    std::vector<uint64_t> row_masks, col_masks;  ///< the padding patterns of the rows and columns
    BinaryConvGeometry geometry{};
    const uint64_t* padded = nullptr;

    BinaryConvPixelPlan() = default;
    BinaryConvPixelPlan(BinaryConvPixelPlan&&) = default;
    BinaryConvPixelPlan& operator=(BinaryConvPixelPlan&&) = default;
    BinaryConvPixelPlan(const BinaryConvPixelPlan&) = delete;
    BinaryConvPixelPlan& operator=(const BinaryConvPixelPlan&) = delete;
};

/// Plans geometry g over `padded` (the padded bits, or the input itself when g.pad is 0) with the
/// weights' tap sums [KH*KW, CoutP] (needed for zero padding only), into `p`, whose vectors keep
/// their capacity: a plan refilled call after call allocates nothing once it has grown, and one
/// refilled for the geometry and buffer it already holds only recomputes its table.
inline void plan_binary_conv_pixels(const BinaryConvGeometry& g, const uint64_t* padded, const int64_t* tap_sums,
                             BinaryConvPixelPlan& p) {
    const int64_t wc = g.words_per_pixel(), coutp = padded_out_channels(g.Cout);
    const int64_t Hp = g.H + 2 * g.pad, Wp = g.W + 2 * g.pad, pixels = g.N * g.OH * g.OW;
    const bool correct = g.pad > 0 && g.pad_value == PadValue::Zero;
    BNN_CHECK(!correct || tap_sums != nullptr, "plan_binary_conv_pixels: zero padding needs the weights' tap sums");
    const bool same = p.padded == padded && p.geometry == g;
    std::vector<int> row_id, col_id;  // each row's and column's pattern (padding_patterns)
    if (correct && !same) {
        p.row_masks = padding_patterns(g.OH, g.stride, g.pad, g.KH, g.H, row_id);
        p.col_masks = padding_patterns(g.OW, g.stride, g.pad, g.KW, g.W, col_id);
    }
    // Refilled in place (same size, same storage): the corrections of a same plan still point into it.
    if (correct) padded_tap_sums(p.row_masks, p.col_masks, g.KH, g.KW, tap_sums, coutp, p.table);
    if (same) return;
    p.word_offsets.resize(g.KH * g.KW * wc);
    for (int64_t kh = 0; kh < g.KH; ++kh)
        for (int64_t kw = 0; kw < g.KW; ++kw)
            for (int64_t j = 0; j < wc; ++j) p.word_offsets[(kh * g.KW + kw) * wc + j] = (kh * Wp + kw) * wc + j;
    p.origins.resize(pixels);
    p.corrections.assign(pixels, nullptr);
    const int64_t ncols = static_cast<int64_t>(p.col_masks.size());
    for (int64_t n = 0, q = 0; n < g.N; ++n)
        for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow, ++q) {
                p.origins[q] = padded + ((n * Hp + oh * g.stride) * Wp + ow * g.stride) * wc;
                if (correct && (p.row_masks[row_id[oh]] | p.col_masks[col_id[ow]]))
                    p.corrections[q] = p.table.data() + (row_id[oh] * ncols + col_id[ow]) * coutp;
            }
    p.geometry = g;
    p.padded = padded;
}

/// The plan of geometry g as a new object (see above).
inline BinaryConvPixelPlan plan_binary_conv_pixels(const BinaryConvGeometry& g, const uint64_t* padded, const int64_t* tap_sums) {
    BinaryConvPixelPlan p;
    plan_binary_conv_pixels(g, padded, tap_sums, p);
    return p;
}

/// Tags of binary_conv2d_forward's per-thread buffers (bnn::thread_scratch).
struct BinaryConvPaddedBits;
struct BinaryConvScaleBias;
struct BinaryConvHalfOffsets;
struct BinaryConvHalfWeights;

/// out [N, OH, OW, Cout] = fma(binary conv(x_bits, weights), scale, bias); see the file comment.
inline void binary_conv2d_forward(const uint64_t* x_bits, const uint64_t* weights, const int64_t* tap_sums,
                                const float* scale, const float* bias, float* out, const BinaryConvGeometry& g,
                                Isa isa = active_isa()) {
    detail::require_supported(isa, "binary_conv2d_forward");
    const int64_t wc = g.words_per_pixel(), coutp = padded_out_channels(g.Cout), taps = g.KH * g.KW;
    const int64_t Hp = g.H + 2 * g.pad, Wp = g.W + 2 * g.pad;
    if (g.N == 0) return;

    // Buffers that scale with the call live on between calls (this thread's scratch and plan), so
    // a layer called in a loop neither allocates them nor page-faults them in again.
    // Padded copy of the input bits (the copy is 32x smaller than the float input), then the
    // border pixel's words.
    const uint64_t* xin = x_bits;
    if (g.pad > 0) {
        const int64_t padded_words = g.N * Hp * Wp * wc;
        uint64_t* padded = thread_scratch<BinaryConvPaddedBits, uint64_t>(padded_words + wc);
        uint64_t* border = padded + padded_words;
        for (int64_t j = 0; j < wc; ++j) border[j] = g.pad_value == PadValue::One ? all_plus_word(g.C, j) : 0;
        auto fill_border = [&](uint64_t* dst, int64_t pixels) {
            for (int64_t k = 0; k < pixels; ++k)
                for (int64_t j = 0; j < wc; ++j) dst[k * wc + j] = border[j];
        };
        // Row by row, each input row in one copy (a copy per pixel called memmove per word at C = 64).
        for (int64_t n = 0; n < g.N; ++n)
            for (int64_t i = 0; i < Hp; ++i) {
                uint64_t* dst = padded + (n * Hp + i) * Wp * wc;
                const int64_t ih = i - g.pad;
                if (ih < 0 || ih >= g.H) {
                    fill_border(dst, Wp);
                    continue;
                }
                fill_border(dst, g.pad);
                std::copy_n(x_bits + (n * g.H + ih) * g.W * wc, g.W * wc, dst + g.pad * wc);
                fill_border(dst + (g.pad + g.W) * wc, g.pad);
            }
        xin = padded;
    }

    // Scale and bias padded to CoutP so tiles load whole vectors.
    float* sc = thread_scratch<BinaryConvScaleBias, float>(2 * coutp);
    float* bi = sc + coutp;
    for (int64_t o = 0; o < coutp; ++o) {
        sc[o] = scale && o < g.Cout ? scale[o] : 1.f;
        bi[o] = bias && o < g.Cout ? bias[o] : 0.f;
    }
    thread_local BinaryConvPixelPlan this_threads_plan;
    BinaryConvPixelPlan& px = this_threads_plan;  // the worker threads below read the caller's plan
    plan_binary_conv_pixels(g, xin, tap_sums, px);

    detail::BinaryConvPlan plan{px.word_offsets.data(), taps * wc, weights, coutp, g.Cout, g.K(), sc, bi};
    if (detail::counts_half_words(isa, plan.k_words)) {  // a short field: its halves are cheap to lay out per call
        int64_t* half_offsets = thread_scratch<BinaryConvHalfOffsets, int64_t>(2 * plan.k_words);
        uint32_t* half_weights = thread_scratch<BinaryConvHalfWeights, uint32_t>(2 * plan.k_words * coutp);
        detail::split_into_half_words(plan.word_offsets, weights, plan.k_words, coutp, half_offsets, half_weights);
        plan.half_offsets = half_offsets;
        plan.half_weights = half_weights;
    }
    // Channel block outermost: a contiguous share of items sweeps pixels under one channel
    // block's weights, and small layers (a batch of one 4x4 image) still split evenly because
    // shares may cut across channel blocks.
    detail::for_each_binary_conv_tile<false>(isa, g, num_threads(), [&](int, int64_t q, int p, int64_t c0, int64_t) {
        detail::run_tile(isa, p, plan, {px.origins.data() + q, px.corrections.data() + q, out + q * g.Cout + c0, c0});
    });
}

/// Binary convolution of packed activations x (shape [N, H, W, C]) with packed weights; scale
/// and bias ([Cout] or undefined) form the fused output transform. Returns [N, OH, OW, Cout].
inline Tensor<float> binary_conv2d(const BitTensor& x, const PackedConvWeights& w, const Tensor<float>& scale,
                                 const Tensor<float>& bias, int64_t stride, int64_t padding,
                                 PadValue mode = PadValue::Zero, Isa isa = active_isa()) {
    BNN_CHECK(x.defined() && x.shape().rank() == 4, "binary_conv2d: input must be packed [N, H, W, C], got ",
              x.defined() ? x.shape().str() : std::string("undefined"));
    BNN_CHECK(x.channels() == w.cin, "binary_conv2d: input has ", x.channels(), " channels, the weights expect ",
              w.cin);
    if (scale.defined()) expect_shape(scale, Shape{w.cout}, "binary_conv2d", "the scale");
    if (bias.defined()) expect_shape(bias, Shape{w.cout}, "binary_conv2d", "the bias");
    const Shape& s = x.shape();
    BinaryConvGeometry g = binary_conv_geometry(s[0], s[1], s[2], s[3], w.cout, w.kh, w.kw, stride, padding, mode);
    Tensor<float> out = Tensor<float>::empty(Shape{g.N, g.OH, g.OW, g.Cout});
    binary_conv2d_forward(x.data(), w.words.data(), w.tap_sums.data(), scale.defined() ? scale.data() : nullptr,
                        bias.defined() ? bias.data() : nullptr, out.data(), g, isa);
    return out;
}

}  // namespace bnn::kernels
