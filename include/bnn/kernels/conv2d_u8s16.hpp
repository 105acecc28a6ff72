#pragma once
/// @file conv2d_u8s16.hpp
/// The stem of a deployed network on the raw image: a convolution of uint8 pixels with int16
/// weights, exact int32 dot products, the input normalisation folded into weights and bias.
///
///   x         [N, H, W, C] uint8                 the raw image (0..255), not normalised
///   q         [Cout, KH, KW, C] int16            quantised folded weights (U8S16ConvWeights)
///   scale     [Cout] float                       one weight step per output channel
///   bias rows [patterns, CoutP] float            folded bias + padding correction (U8S16ConvPlan)
///   out       [N, OH, OW, Cout] float
///
///   out[n, oh, ow, o] = fma(float(acc), scale[o], bias_row(oh, ow)[o]),
///   acc = sum over taps t, channels c of x_pad[t, c] * q[o, t, c]     (int32, exact)
///
/// where x_pad is the image padded with 0. The float convolution it replaces reads the normalised
/// image x_n = (x / 255 - mean[c]) / std[c] padded with 0; docs/performance.md ("Integer stem")
/// derives the folding: the weights become w / (255 std[c]), the bias absorbs the mean, and a
/// padded tap, which is 0 in normalised space but 0 - 255 mean[c] after the folding, is undone
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
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/conv2d_fields.hpp"
#include "bnn/kernels/conv2d_geometry.hpp"
#include "bnn/kernels/intrinsics.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/padding_patterns.hpp"

namespace bnn::kernels {

/// The largest weight magnitude of the quantiser (symmetric: -32768 is never used).
inline constexpr int32_t u8s16_weight_max = 32767;
/// The largest K = KH * KW * C whose int32 dot products cannot overflow: 255 * 32767 * K <= 2^31 - 1.
inline constexpr int64_t u8s16_max_taps = INT32_MAX / (int64_t{255} * u8s16_weight_max);

namespace detail {
inline constexpr int64_t u8s16_tile_pixels = 4;     // pixels per register tile
inline constexpr int64_t u8s16_lanes = 16;          // output channels per tile: two AVX2 int32 vectors
inline constexpr int64_t u8s16_chunk_pixels = 32;   // pixels gathered at once
}  // namespace detail

/// Quantised, normalisation-folded weights of one convolution (quantize_conv2d_u8s16).
struct U8S16ConvWeights {
    int64_t Cout = 0, KH = 0, KW = 0, C = 0;
    std::vector<int16_t> q;                 ///< [Cout, KH, KW, C]
    std::vector<float> scale;               ///< [CoutP], 0 past Cout: real weight = scale[o] * q
    std::vector<double> bias;               ///< [Cout] folded bias of an interior pixel
    std::vector<double> tap_correction;     ///< [KH*KW, Cout]: sum_c q[o,t,c] * 255 mean[c], in steps of scale[o]
    std::vector<int16_t> packed;            ///< [CoutP/16, Kp/2, 16, 2]: q in int16 pairs, zeros past K and Cout

    int64_t K() const { return KH * KW * C; }
    /// K rounded up to whole int16 pairs.
    int64_t Kp() const { return (K() + 1) / 2 * 2; }
    /// Cout rounded up to whole tiles.
    int64_t CoutP() const { return (Cout + detail::u8s16_lanes - 1) / detail::u8s16_lanes * detail::u8s16_lanes; }
};

/// Folds x_n = (x / 255 - mean[c]) / std[c] into a float convolution and quantises it.
///   w [Cout, KH, KW, C] float, bias [Cout] or null, mean [C], std [C] (of x / 255).
/// The folded weights w / (255 std[c]) of output channel o are rounded to multiples of
/// scale[o] = max |folded| / 32767; the bias is folded with the rounded weights, so the integer
/// convolution equals, up to float rounding, the float one with weights scale[o] * q * 255 std[c].
inline U8S16ConvWeights quantize_conv2d_u8s16(const float* w, const float* bias, int64_t Cout, int64_t KH,
                                              int64_t KW, int64_t C, const float* mean, const float* std) {
    BNN_CHECK(Cout >= 1 && KH >= 1 && KW >= 1 && C >= 1, "quantize_conv2d_u8s16: expected positive sizes, got Cout ",
              Cout, ", kernel ", KH, "x", KW, ", C ", C);
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
    const int64_t taps = KH * KW, coutp = r.CoutP(), kp = r.Kp();
    r.q.assign(Cout * K, 0);
    r.scale.assign(coutp, 0.f);
    r.bias.assign(Cout, 0.0);
    r.tap_correction.assign(taps * Cout, 0.0);
    std::vector<double> folded(K);
    for (int64_t o = 0; o < Cout; ++o) {
        double largest = 0;
        for (int64_t k = 0; k < K; ++k) {
            const int64_t c = k % C;
            folded[k] = static_cast<double>(w[o * K + k]) / (255.0 * static_cast<double>(std[c]));
            BNN_CHECK(std::isfinite(folded[k]), "quantize_conv2d_u8s16: weight [", o, ", ", k,
                      "] is not finite after folding: ", w[o * K + k]);
            largest = std::max(largest, std::abs(folded[k]));
        }
        // An all-zero channel keeps q = 0; any positive step serves it.
        const float step = largest > 0 ? static_cast<float>(largest / u8s16_weight_max) : 1.f;
        r.scale[o] = step;
        double bias_o = bias ? static_cast<double>(bias[o]) : 0.0;
        for (int64_t k = 0; k < K; ++k) {
            const double level = std::nearbyint(folded[k] / static_cast<double>(step));
            const auto qk = static_cast<int16_t>(std::clamp<double>(level, -u8s16_weight_max, u8s16_weight_max));
            r.q[o * K + k] = qk;
            const int64_t t = k / C, c = k % C;
            const double shift = qk * 255.0 * static_cast<double>(mean[c]);
            r.tap_correction[t * Cout + o] += shift;
            bias_o -= static_cast<double>(step) * shift;
        }
        r.bias[o] = bias_o;
    }
    r.packed.assign(coutp * kp, 0);
    for (int64_t o = 0; o < Cout; ++o)
        for (int64_t k = 0; k < K; ++k) {
            const int64_t block = o / detail::u8s16_lanes, lane = o % detail::u8s16_lanes;
            r.packed[((block * (kp / 2) + k / 2) * detail::u8s16_lanes + lane) * 2 + k % 2] = r.q[o * K + k];
        }
    return r;
}

/// The per-geometry part of the integer convolution: which taps of each output row and column
/// fall in the padding, and one bias row per (row pattern, column pattern), the interior first.
/// Built when the graph plans a shape; the forward reads it only.
struct U8S16ConvPlan {
    Conv2dGeometry g{};
    std::vector<int> row_pattern;    ///< [OH]
    std::vector<int> col_pattern;    ///< [OW]
    int64_t col_patterns = 1;
    int64_t coutp = 0;
    std::vector<float> bias_rows;    ///< [row patterns * col patterns, CoutP]

    const float* bias_row(int64_t oh, int64_t ow) const {
        return bias_rows.data() + (row_pattern[oh] * col_patterns + col_pattern[ow]) * coutp;
    }
};

/// Plans geometry g for weights w into `plan` (see U8S16ConvPlan).
inline void plan_conv2d_u8s16(const U8S16ConvWeights& w, const Conv2dGeometry& g, U8S16ConvPlan& plan) {
    BNN_CHECK(g.C == w.C && g.Cout == w.Cout && g.KH == w.KH && g.KW == w.KW, "plan_conv2d_u8s16: weights [", w.Cout,
              ", ", w.KH, ", ", w.KW, ", ", w.C, "] do not fit a geometry of C ", g.C, ", Cout ", g.Cout, ", kernel ",
              g.KH, "x", g.KW);
    BNN_CHECK(g.KH <= 64 && g.KW <= 64, "plan_conv2d_u8s16: kernels of up to 64x64 taps, got ", g.KH, "x", g.KW);
    plan.g = g;
    plan.coutp = w.CoutP();
    const std::vector<uint64_t> rows = padding_patterns(g.OH, g.stride, g.pad, g.KH, g.H, plan.row_pattern);
    const std::vector<uint64_t> cols = padding_patterns(g.OW, g.stride, g.pad, g.KW, g.W, plan.col_pattern);
    plan.col_patterns = static_cast<int64_t>(cols.size());
    std::vector<double> corrections;  // [patterns, Cout], in steps of scale[o]
    padded_tap_sums(rows, cols, g.KH, g.KW, w.tap_correction.data(), w.Cout, corrections);
    const int64_t patterns = static_cast<int64_t>(rows.size() * cols.size());
    plan.bias_rows.assign(patterns * plan.coutp, 0.f);
    for (int64_t i = 0; i < patterns; ++i) {
        const double* correction = corrections.data() + i * w.Cout;
        float* dst = plan.bias_rows.data() + i * plan.coutp;
        for (int64_t o = 0; o < w.Cout; ++o)
            dst[o] = static_cast<float>(w.bias[o] + static_cast<double>(w.scale[o]) * correction[o]);
    }
}

namespace detail {

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

/// acc[r, j] = sum_k fields[r, k] * w[k, j] for a tile of 4 pixels x 16 channels; `wb` is one
/// channel block of U8S16ConvWeights::packed.
inline void u8s16_tile_scalar(const int16_t* fields, int64_t kp, const int16_t* wb, int32_t* acc) {
    for (int64_t r = 0; r < u8s16_tile_pixels; ++r)
        for (int64_t j = 0; j < u8s16_lanes; ++j) {
            int32_t s = 0;
            for (int64_t p = 0; p < kp / 2; ++p) {
                const int16_t* x = fields + r * kp + 2 * p;
                const int16_t* w = wb + (p * u8s16_lanes + j) * 2;
                s += int32_t{x[0]} * w[0] + int32_t{x[1]} * w[1];
            }
            acc[r * u8s16_lanes + j] = s;
        }
}

/// out[j] = fma(float(acc[j]), scale[j], bias[j]) for j < cols.
inline void u8s16_finish_scalar(const int32_t* acc, const float* scale, const float* bias, float* out, int64_t cols) {
    for (int64_t j = 0; j < cols; ++j) out[j] = std::fma(static_cast<float>(acc[j]), scale[j], bias[j]);
}

#if defined(__x86_64__) || defined(__i386__)
// One pixel's int16 pair (x[2p], x[2p+1]) in every 32-bit lane.
__attribute__((target("avx2"))) inline __m256i u8s16_pair_avx2(const int16_t* x) {
    int32_t pair;
    std::memcpy(&pair, x, sizeof pair);
    return _mm256_set1_epi32(pair);
}

/// u8s16_tile_scalar with vpmaddwd: each 32-bit lane j multiplies the pixel's pair by channel
/// j's pair and adds the two products; vpaddd accumulates over the pairs.
__attribute__((target("avx2"))) inline void u8s16_tile_avx2(const int16_t* fields, int64_t kp, const int16_t* wb,
                                                            int32_t* acc) {
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    const int16_t *x0 = fields, *x1 = fields + kp, *x2 = fields + 2 * kp, *x3 = fields + 3 * kp;
    for (int64_t p = 0; p < kp / 2; ++p) {
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + p * 32));
        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + p * 32 + 16));
        __m256i x = u8s16_pair_avx2(x0 + 2 * p);
        a00 = _mm256_add_epi32(a00, _mm256_madd_epi16(x, w0));
        a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(x, w1));
        x = u8s16_pair_avx2(x1 + 2 * p);
        a10 = _mm256_add_epi32(a10, _mm256_madd_epi16(x, w0));
        a11 = _mm256_add_epi32(a11, _mm256_madd_epi16(x, w1));
        x = u8s16_pair_avx2(x2 + 2 * p);
        a20 = _mm256_add_epi32(a20, _mm256_madd_epi16(x, w0));
        a21 = _mm256_add_epi32(a21, _mm256_madd_epi16(x, w1));
        x = u8s16_pair_avx2(x3 + 2 * p);
        a30 = _mm256_add_epi32(a30, _mm256_madd_epi16(x, w0));
        a31 = _mm256_add_epi32(a31, _mm256_madd_epi16(x, w1));
    }
    __m256i* out = reinterpret_cast<__m256i*>(acc);
    _mm256_storeu_si256(out + 0, a00);
    _mm256_storeu_si256(out + 1, a01);
    _mm256_storeu_si256(out + 2, a10);
    _mm256_storeu_si256(out + 3, a11);
    _mm256_storeu_si256(out + 4, a20);
    _mm256_storeu_si256(out + 5, a21);
    _mm256_storeu_si256(out + 6, a30);
    _mm256_storeu_si256(out + 7, a31);
}

/// u8s16_finish_scalar with vcvtdq2ps and vfmadd (the same conversion and the same single rounding).
__attribute__((target("avx2,fma"))) inline void u8s16_finish_avx2(const int32_t* acc, const float* scale,
                                                                  const float* bias, float* out, int64_t cols) {
    if (cols < u8s16_lanes) {
        u8s16_finish_scalar(acc, scale, bias, out, cols);
        return;
    }
    for (int64_t j = 0; j < u8s16_lanes; j += 8) {
        const __m256 a = _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + j)));
        _mm256_storeu_ps(out + j, _mm256_fmadd_ps(a, _mm256_loadu_ps(scale + j), _mm256_loadu_ps(bias + j)));
    }
}
#endif

/// The shared driver: for every tile of (4 pixels, 16 channels), its int32 sums handed to
/// finish(first pixel, pixels in the tile, first channel, acc [4, 16]).
template <class Finish>
void u8s16_run(const uint8_t* x, const U8S16ConvWeights& w, const Conv2dGeometry& g, Isa isa, Finish&& finish) {
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
#if defined(__x86_64__) || defined(__i386__)
                    if (isa != Isa::scalar) u8s16_tile_avx2(fields + r * kp, kp, wb, acc);
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
#if defined(__x86_64__) || defined(__i386__)
            if (isa != Isa::scalar) {
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
