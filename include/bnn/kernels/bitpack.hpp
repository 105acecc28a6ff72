#pragma once
/// @file bitpack.hpp
/// Sign packing: float NHWC -> bits along channels (optionally after a per-channel affine, e.g.
/// a folded batch norm), bits -> ±1 floats, and OHWI weights -> the layout of the XNOR conv.
///
///   x       [pixels, C] float                   (any NHWC tensor seen as pixels x channels)
///   a, b    [C] or null                          y = fma(a[c], x, b[c]) (a defaults to 1, b to 0)
///   bits    [pixels, ceil(C/64)] uint64           bit c%64 of word c/64 = (y >= 0); bits past C zero
///
/// The rule is y >= 0 -> +1 (so sign(0) = sign(-0) = +1, NaN -> -1) on every path. The affine is a
/// single-rounding fma on every path, so the SIMD and scalar packs agree bit for bit.
/// pack_signs_batch_norm instead rounds y = x * scale + shift as the eval batch norm op does (one
/// fma where the build contracts that expression, two roundings where it does not), so that an
/// inference graph binarises the training op's very floats, and it can sum y per channel (the
/// Real-to-Bin gate's pooling) without storing it.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>

#include "bnn/core/bit_tensor.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/bitpack_neon.hpp"
#include "bnn/kernels/bitpack_simd.hpp"
#include "bnn/kernels/isa.hpp"

namespace bnn::kernels {

/// 64-bit words needed for `channels` bits.
inline int64_t words_for_channels(int64_t channels) { return (channels + 63) / 64; }
/// Word `word` of a pixel of `channels` signs with every channel bit set (+1 everywhere), the
/// bits past the last channel clear: a one-padding border pixel.
inline uint64_t all_plus_word(int64_t channels, int64_t word) {
    const int64_t bits = std::min<int64_t>(64, channels - 64 * word);
    return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
}

/// Output channels are padded to a multiple of this in packed weights, so every SIMD tile of
/// output-channel lanes (32 for AVX-512, 8 for AVX2 and NEON) reads whole vectors.
inline constexpr int64_t kOutChannelBlock = 32;

/// Cout rounded up to kOutChannelBlock.
inline int64_t padded_out_channels(int64_t cout) { return (cout + kOutChannelBlock - 1) / kOutChannelBlock * kOutChannelBlock; }

/// Scalar reference: bits [pixels, ceil(C/64)] <- sign(fma(a, x, b)) of x [pixels, C].
inline void pack_signs_scalar(const float* x, int64_t pixels, int64_t channels, const float* a, const float* b,
                              uint64_t* bits) {
    const int64_t words = words_for_channels(channels);
    const bool affine = a || b;
    for (int64_t p = 0; p < pixels; ++p) {
        const float* xp = x + p * channels;
        uint64_t* out = bits + p * words;
        for (int64_t w = 0; w < words; ++w) {
            const int64_t c0 = w * 64, n = std::min<int64_t>(64, channels - c0);
            uint64_t word = 0;
            for (int64_t i = 0; i < n; ++i) {
                const int64_t c = c0 + i;
                const float v = affine ? std::fma(a ? a[c] : 1.f, xp[c], b ? b[c] : 0.f) : xp[c];
                word |= static_cast<uint64_t>(v >= 0.f) << i;
            }
            out[w] = word;
        }
    }
}

/// Scalar reference: x [pixels, C] <- ±1 from bits [pixels, ceil(C/64)].
inline void unpack_signs_scalar(const uint64_t* bits, int64_t pixels, int64_t channels, float* x) {
    const int64_t words = words_for_channels(channels);
    for (int64_t p = 0; p < pixels; ++p)
        for (int64_t c = 0; c < channels; ++c)
            x[p * channels + c] = (bits[p * words + c / 64] >> (c % 64)) & 1 ? 1.f : -1.f;
}

/// bits <- sign(fma(a, x, b)) on the given path (a and b may be null: plain sign).
inline void pack_signs(const float* x, int64_t pixels, int64_t channels, const float* a, const float* b,
                       uint64_t* bits, Isa isa = active_isa()) {
#if BNN_X86
    if (has_avx512(isa)) return detail::pack_signs_avx512(x, pixels, channels, a, b, bits);
    if (has_avx2(isa)) return detail::pack_signs_avx2(x, pixels, channels, a, b, bits);
#elif defined(__aarch64__)
    if (has_neon(isa)) return detail::pack_signs_neon(x, pixels, channels, a, b, bits);
#endif
    (void)isa;
    pack_signs_scalar(x, pixels, channels, a, b, bits);
}

namespace detail {
/// Tag of pack_signs_batch_norm's buffer of BN values on paths without their own kernel.
struct BatchNormSignValues;

/// True when this build compiles the float expression a * b + c as one fma (contraction, and
/// an FMA unit in the target), as it compiles batch_norm_normalize's loop: SIMD code that
/// computes a batch norm by hand must round the way that loop does.
inline bool multiply_add_contracts() {
    static const bool fused = [] {
        volatile float a = 1.f + 0x1p-12f, c = -(1.f + 0x1p-11f);  // a * a is 1 + 2^-11 + 2^-24
        const float x = a, z = c;
        return x * x + z != 0.f;  // 2^-24 when fused, 0 when the product is rounded first
    }();
    return fused;
}
}  // namespace detail

/// bits [pixels, ceil(C/64)] <- sign(x * scale[c] + shift[c]), the eval batch norm's expression
/// (batch_norm_normalize), of x [pixels, C] whose pixels lie ldx floats apart; when sums is not
/// null, sums[c] += each pixel's value in pixel order. The values themselves are not stored.
inline void pack_signs_batch_norm(const float* x, int64_t ldx, int64_t pixels, int64_t C, const float* scale,
                                  const float* shift, float* sums, uint64_t* bits, Isa isa = active_isa()) {
#if BNN_X86
    if (has_avx512(isa)) {
        auto run = [&]<bool Fused>() {
            if (sums) detail::pack_signs_batch_norm_avx512<Fused, true>(x, ldx, pixels, C, scale, shift, sums, bits);
            else detail::pack_signs_batch_norm_avx512<Fused, false>(x, ldx, pixels, C, scale, shift, sums, bits);
        };
        if (detail::multiply_add_contracts()) run.template operator()<true>();
        else run.template operator()<false>();
        return;
    }
#endif
    // Elsewhere: the values into a buffer, then the path's pack_signs.
    float* __restrict y = thread_scratch<detail::BatchNormSignValues>(pixels * C);
    for (int64_t p = 0; p < pixels; ++p) {
        const float* __restrict in = x + p * ldx;
        float* __restrict yp = y + p * C;
        if (sums) {
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                yp[c] = in[c] * scale[c] + shift[c];
                sums[c] += yp[c];
            }
        } else {
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) yp[c] = in[c] * scale[c] + shift[c];
        }
    }
    pack_signs(y, pixels, C, nullptr, nullptr, bits, isa);
}

/// x <- ±1 from bits on the given path.
inline void unpack_signs(const uint64_t* bits, int64_t pixels, int64_t channels, float* x, Isa isa = active_isa()) {
#if BNN_X86
    if (has_avx512(isa)) return detail::unpack_signs_avx512(bits, pixels, channels, x);
#endif
    (void)isa;
    unpack_signs_scalar(bits, pixels, channels, x);
}

/// Packs OHWI weights for binary_conv2d_forward (kernels/binary_conv2d.hpp):
///   w         [Cout, KH, KW, Cin] float
///   words     [KH*KW*ceil(Cin/64), CoutP] uint64  (CoutP = padded_out_channels(Cout)); row k holds
///             word k of every output channel's receptive field side by side, so one activation
///             word broadcast against one row feeds many output-channel lanes at once
///   tap_sums  [KH*KW, CoutP] int64, sum over Cin of sign(w[o, kh, kw, :]) (for the zero-padding
///             border correction); may be null
/// Padded output channels get zero words and zero sums.
inline void pack_conv_weights(const float* w, int64_t cout, int64_t kh, int64_t kw, int64_t cin, uint64_t* words,
                              int64_t* tap_sums) {
    const int64_t cw = words_for_channels(cin), coutp = padded_out_channels(cout), taps = kh * kw;
    std::fill(words, words + taps * cw * coutp, uint64_t{0});
    if (tap_sums) std::fill(tap_sums, tap_sums + taps * coutp, int64_t{0});
    for (int64_t o = 0; o < cout; ++o) {
        for (int64_t t = 0; t < taps; ++t) {
            const float* src = w + (o * taps + t) * cin;
            int64_t positives = 0;
            for (int64_t c = 0; c < cin; ++c) {
                const bool plus = src[c] >= 0.f;
                positives += plus;
                words[(t * cw + c / 64) * coutp + o] |= static_cast<uint64_t>(plus) << (c % 64);
            }
            if (tap_sums) tap_sums[t * coutp + o] = 2 * positives - cin;
        }
    }
}

/// The packed form of a weight tensor, owning its storage (see pack_conv_weights).
struct PackedConvWeights {
    int64_t cout = 0, kh = 0, kw = 0, cin = 0;
    Tensor<uint64_t> words;    ///< [KH*KW*ceil(Cin/64), CoutP]
    Tensor<int64_t> tap_sums;  ///< [KH*KW, CoutP]
};

/// Packs w [Cout, KH, KW, Cin] into a PackedConvWeights.
inline PackedConvWeights pack_conv_weights(const float* w, int64_t cout, int64_t kh, int64_t kw, int64_t cin) {
    PackedConvWeights p{cout, kh, kw, cin, {}, {}};
    const int64_t coutp = padded_out_channels(p.cout);
    p.words = Tensor<uint64_t>::empty(Shape{p.kh * p.kw * words_for_channels(p.cin), coutp});
    p.tap_sums = Tensor<int64_t>::empty(Shape{p.kh * p.kw, coutp});
    pack_conv_weights(w, p.cout, p.kh, p.kw, p.cin, p.words.data(), p.tap_sums.data());
    return p;
}

/// Packs w [Cout, KH, KW, Cin] (rank 4) into a PackedConvWeights.
inline PackedConvWeights pack_conv_weights(const Tensor<float>& w) {
    expect_rank(w, 4, "pack_conv_weights", "the weight [Cout, KH, KW, Cin]");
    return pack_conv_weights(w.data(), w.dim(0), w.dim(1), w.dim(2), w.dim(3));
}

/// The same packed form from the signs alone, sign(w) [Cout, KH, KW, Cin] as bits: each row of
/// words moves to its column and the tap sums come from popcounts, so a deployed network packs
/// its weights without ever holding them as floats. Equal to packing floats of those signs.
inline PackedConvWeights pack_conv_weights(const BitTensor& signs) {
    BNN_CHECK(signs.defined() && signs.shape().rank() == 4, "pack_conv_weights: expected the signs [Cout, KH, KW, Cin], got ",
              signs.defined() ? signs.shape().str() : std::string("an undefined BitTensor"));
    const Shape& s = signs.shape();
    PackedConvWeights p{s[0], s[1], s[2], s[3], {}, {}};
    const int64_t cw = words_for_channels(p.cin), coutp = padded_out_channels(p.cout), taps = p.kh * p.kw;
    p.words = Tensor<uint64_t>(Shape{taps * cw, coutp});  // zeros: padded output channels stay so
    p.tap_sums = Tensor<int64_t>(Shape{taps, coutp});
    for (int64_t o = 0; o < p.cout; ++o)
        for (int64_t t = 0; t < taps; ++t) {
            const uint64_t* row = signs.data() + (o * taps + t) * cw;  // bits past Cin are clear
            int64_t positives = 0;
            for (int64_t j = 0; j < cw; ++j) {
                p.words[(t * cw + j) * coutp + o] = row[j];
                positives += std::popcount(row[j]);
            }
            p.tap_sums[t * coutp + o] = 2 * positives - p.cin;
        }
    return p;
}

/// The signs [Cout, KH, KW, Cin] of packed weights: pack_conv_weights(BitTensor) undone.
inline BitTensor conv_weight_signs(const PackedConvWeights& p) {
    BitTensor signs(Shape{p.cout, p.kh, p.kw, p.cin});
    const int64_t cw = words_for_channels(p.cin), coutp = p.words.dim(1), taps = p.kh * p.kw;
    for (int64_t o = 0; o < p.cout; ++o)
        for (int64_t t = 0; t < taps; ++t)
            for (int64_t j = 0; j < cw; ++j) signs.data()[(o * taps + t) * cw + j] = p.words[(t * cw + j) * coutp + o];
    return signs;
}

}  // namespace bnn::kernels

namespace bnn {

/// Signs of x (channels last) packed into a BitTensor; a and b ([C] or undefined) apply
/// y = fma(a, x, b) first, e.g. a batch norm folded into a per-channel scale and shift.
inline BitTensor pack_signs(const Tensor<float>& x, const Tensor<float>& a = {}, const Tensor<float>& b = {},
                            kernels::Isa isa = kernels::active_isa()) {
    BNN_CHECK(x.rank() >= 1, "pack_signs: needs rank >= 1 (channels last), got a scalar");
    const int64_t c = x.dim(-1);
    if (a.defined()) expect_shape(a, Shape{c}, "pack_signs", "the scale a");
    if (b.defined()) expect_shape(b, Shape{c}, "pack_signs", "the shift b");
    BitTensor bits(x.shape());
    kernels::pack_signs(x.data(), bits.pixels(), c, a.defined() ? a.data() : nullptr,
                        b.defined() ? b.data() : nullptr, bits.data(), isa);
    return bits;
}

/// The ±1 float tensor a BitTensor stands for.
inline Tensor<float> unpack_signs(const BitTensor& bits, kernels::Isa isa = kernels::active_isa()) {
    BNN_CHECK(bits.defined(), "unpack_signs: undefined BitTensor");
    Tensor<float> x = Tensor<float>::empty(bits.shape());
    kernels::unpack_signs(bits.data(), bits.pixels(), bits.channels(), x.data(), isa);
    return x;
}

}  // namespace bnn
