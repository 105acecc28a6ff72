#pragma once
/// @file conv2d_u8s16_quantize.hpp
/// The integer stem's weights (conv2d_u8s16.hpp): the input normalization folded into a float
/// convolution's weights and bias, the folded weights quantised to int16 (or to int8's range) per
/// output channel and packed for the tiles, and the per-tap sums that correct padded taps.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::kernels {

/// The largest weight magnitude of the int16 quantiser (symmetric: -32768 is never used).
inline constexpr int32_t u8s16_weight_max = 32767;
/// The same for weights quantised to int8's range, which the byte tiles (vpdpbusd, SDOT) multiply.
inline constexpr int32_t u8s8_weight_max = 127;
/// The largest K = KH * KW * C whose int32 dot products cannot overflow: 255 * 32767 * K <= 2^31 - 1.
inline constexpr int64_t u8s16_max_taps = INT32_MAX / (int64_t{255} * u8s16_weight_max);
/// The same for weights of int8's range: 255 * 127 * K <= 2^31 - 1.
inline constexpr int64_t u8s8_max_taps = INT32_MAX / (int64_t{255} * u8s8_weight_max);

namespace detail {
inline constexpr int64_t u8s16_lanes = 16;  // output channels per block: two AVX2 or one AVX-512 int32 vector
}  // namespace detail

/// Quantised, normalization-folded weights of one convolution (quantize_conv2d_u8s16).
struct U8S16ConvWeights {
    int64_t Cout = 0, KH = 0, KW = 0, C = 0;
    int32_t weight_max = u8s16_weight_max;  ///< |q| <= weight_max
    std::vector<int16_t> q;                 ///< [Cout, KH, KW, C]
    std::vector<float> scale;               ///< [CoutP], 0 past Cout: real weight = scale[o] * q
    std::vector<double> bias;               ///< [Cout] folded bias of an interior pixel
    std::vector<double> tap_correction;     ///< [KH*KW, Cout]: sum_c q[o,t,c] * 255 mean[c], in steps of scale[o]
    /// [CoutP/16, KH, RunP/2, 16, 2]: q in int16 pairs along each kernel row, zeros past a row's
    /// KW*C taps and past Cout (the tiles read a kernel row in place, one pair past its end). A
    /// Tensor for its 64-byte alignment: no 64-byte weight vector of a tile straddles two cache lines.
    Tensor<int16_t> packed;
    /// With weight_max <= u8s8_weight_max: [CoutP/16, KH, RunQ/4, 16, 4], q as bytes in runs of
    /// four along each kernel row, zeros past a row's KW*C taps (the byte tiles, vpdpbusd and SDOT,
    /// read a kernel row of the byte image in place, up to three bytes past its end). Undefined
    /// otherwise.
    Tensor<int8_t> packed_bytes;
    /// With packed_bytes: [CoutP] 128 * the sum of q[o, ...] over all taps, 0 past Cout: what
    /// channel o's dot product gains when every byte it reads is 128 larger. The SDOT tile, which
    /// reads each byte x as the int8 x - 128, adds it back (conv2d_u8s16_neon_dotprod.hpp); the
    /// int8 dense layers take their rows' offset of 128 out with it (linear_int8.hpp).
    std::vector<int32_t> byte_offset_sum;

    int64_t K() const { return KH * KW * C; }
    /// The taps of one kernel row, KW*C, rounded up to whole runs of four bytes.
    int64_t RunQ() const { return (KW * C + 3) / 4 * 4; }
    /// The taps of one kernel row, KW*C, rounded up to whole int16 pairs.
    int64_t RunP() const { return (KW * C + 1) / 2 * 2; }
    /// The packed taps of one output channel: KH rows of RunP.
    int64_t Kp() const { return KH * RunP(); }
    /// Cout rounded up to whole tiles.
    int64_t CoutP() const { return (Cout + detail::u8s16_lanes - 1) / detail::u8s16_lanes * detail::u8s16_lanes; }
};

namespace detail {
/// w.q packed for the tiles in runs of `len` taps (2: int16 pairs, 4: bytes) along each kernel
/// row: [CoutP/16, KH, RunL/len, 16, len], RunL = KW*C rounded up to `len`, zeros past a row's
/// taps and past Cout.
template <class T>
Tensor<T> u8s16_pack(const U8S16ConvWeights& w, int64_t len) {
    const int64_t K = w.K(), run = w.KW * w.C, runl = (run + len - 1) / len * len, kl = w.KH * runl;
    Tensor<T> packed = Tensor<T>::zeros(Shape{w.CoutP() * kl});
    for (int64_t o = 0; o < w.Cout; ++o)
        for (int64_t k = 0; k < K; ++k) {
            const int64_t block = o / u8s16_lanes, lane = o % u8s16_lanes;
            const int64_t kk = k / run * runl + k % run;  // k's place in its kernel row of RunL taps
            packed[((block * (kl / len) + kk / len) * u8s16_lanes + lane) * len + kk % len] =
                static_cast<T>(w.q[o * K + k]);
        }
    return packed;
}

/// Packs w.q as bytes for the byte tiles (U8S16ConvWeights::packed_bytes) with its
/// byte_offset_sum; w.weight_max <= u8s8_weight_max.
inline void u8s16_pack_bytes(U8S16ConvWeights& w) {
    w.packed_bytes = u8s16_pack<int8_t>(w, 4);
    w.byte_offset_sum.assign(w.CoutP(), 0);
    const int64_t K = w.K();
    for (int64_t o = 0; o < w.Cout; ++o) {
        int32_t sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += w.q[o * K + k];
        w.byte_offset_sum[o] = 128 * sum;
    }
}

/// q [K] = `values` rounded to multiples of step = max |values| / weight_max, nearest first, ties
/// to even; returns the step (1 for values all 0, which keep q = 0). The caller checks that the
/// values are finite.
inline float quantize_levels(const double* values, int64_t K, int32_t weight_max, int16_t* q) {
    double largest = 0;
    for (int64_t k = 0; k < K; ++k) largest = std::max(largest, std::abs(values[k]));
    const float step = largest > 0 ? static_cast<float>(largest / weight_max) : 1.f;
    for (int64_t k = 0; k < K; ++k) {
        const double level = std::nearbyint(values[k] / static_cast<double>(step));
        q[k] = static_cast<int16_t>(std::clamp<double>(level, -weight_max, weight_max));
    }
    return step;
}
}  // namespace detail

/// Folds x_n = (x / 255 - mean[c]) / std[c] into a float convolution and quantises it.
///   w [Cout, KH, KW, C] float, bias [Cout] or null, mean [C], std [C] (of x / 255).
/// The folded weights w / (255 std[c]) of output channel o are rounded to multiples of
/// scale[o] = max |folded| / weight_max (u8s16_weight_max, or u8s8_weight_max for weights the
/// byte tiles can take); the bias is folded with the rounded weights, so the integer
/// convolution equals, up to float rounding, the float one with weights scale[o] * q * 255 std[c].
inline U8S16ConvWeights quantize_conv2d_u8s16(const float* w, const float* bias, int64_t Cout, int64_t KH,
                                              int64_t KW, int64_t C, const float* mean, const float* std,
                                              int32_t weight_max = u8s16_weight_max) {
    BNN_CHECK(Cout >= 1 && KH >= 1 && KW >= 1 && C >= 1, "quantize_conv2d_u8s16: expected positive sizes, got Cout ",
              Cout, ", kernel ", KH, "x", KW, ", C ", C);
    BNN_CHECK(weight_max >= 1 && weight_max <= u8s16_weight_max, "quantize_conv2d_u8s16: weight levels of 1 to ",
              u8s16_weight_max, " either side of 0, got ", weight_max);
    const int64_t K = KH * KW * C;
    BNN_CHECK(K <= u8s16_max_taps, "quantize_conv2d_u8s16: K = KH*KW*C = ", KH, "*", KW, "*", C, " = ", K,
              " taps, but int32 sums of uint8 x int16 products are exact only up to K = ", u8s16_max_taps,
              " (255 * 32767 * K must fit in int32)");
    for (int64_t c = 0; c < C; ++c)
        BNN_CHECK(std::isfinite(mean[c]) && std::isfinite(std[c]) && std[c] > 0.f, "quantize_conv2d_u8s16: channel ",
                  c, " expects a finite mean and a positive std, got mean ", mean[c], ", std ", std[c]);
    U8S16ConvWeights r;
    r.Cout = Cout;
    r.KH = KH;
    r.KW = KW;
    r.C = C;
    r.weight_max = weight_max;
    const int64_t taps = KH * KW, coutp = r.CoutP();
    r.q.assign(Cout * K, 0);
    r.scale.assign(coutp, 0.f);
    r.bias.assign(Cout, 0.0);
    r.tap_correction.assign(taps * Cout, 0.0);
    std::vector<double> folded(K);
    for (int64_t o = 0; o < Cout; ++o) {
        for (int64_t k = 0; k < K; ++k) {
            const int64_t c = k % C;
            folded[k] = static_cast<double>(w[o * K + k]) / (255.0 * static_cast<double>(std[c]));
            BNN_CHECK(std::isfinite(folded[k]), "quantize_conv2d_u8s16: weight [", o, ", ", k,
                      "] is not finite after folding: ", w[o * K + k]);
        }
        const float step = detail::quantize_levels(folded.data(), K, weight_max, r.q.data() + o * K);
        r.scale[o] = step;
        double bias_o = bias ? static_cast<double>(bias[o]) : 0.0;
        for (int64_t k = 0; k < K; ++k) {
            const int16_t qk = r.q[o * K + k];
            const int64_t t = k / C, c = k % C;
            const double shift = qk * 255.0 * static_cast<double>(mean[c]);
            r.tap_correction[t * Cout + o] += shift;
            bias_o -= static_cast<double>(step) * shift;
        }
        r.bias[o] = bias_o;
    }
    r.packed = detail::u8s16_pack<int16_t>(r, 2);
    if (weight_max <= u8s8_weight_max) detail::u8s16_pack_bytes(r);
    return r;
}

}  // namespace bnn::kernels
