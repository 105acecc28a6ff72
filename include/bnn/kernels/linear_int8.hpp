#pragma once
/// @file linear_int8.hpp
/// A float matrix product y = x W^T + b run in int8, for the real-valued 1x1 convolutions and
/// Linear layers of a deployed graph: W quantised once per output channel, each row of x
/// quantised as it is read with a step of its own, exact int32 sums on the integer stem's tiles
/// (conv2d_u8s16.hpp), and one float expression back.
///
///   x  [rows, C] float
///   q  [Cout, C] int8 levels, |q| <= 127, real weight ws[o] * q[o, c], ws[o] = max_c |W[o, c]| / 127
///   u  [rows, C] the rows' levels plus 128 (1..255): u[r, c] = 128 + round(x[r, c] * 127 / m[r]),
///      m[r] = max_c |x[r, c]|, the product in float and rounded to nearest even; s[r] = m[r] / 127
///   y  [rows, Cout] float
///
///   y[r, o] = fma(float(acc[r, o] - zero_sum[o]) * s[r], ws[o], b[o])
///   acc     = sum_c u[r, c] * q[o, c]                 int32, exact while C <= u8s8_max_taps
///   zero_sum[o] = 128 * sum_c q[o, c]                (U8S16ConvWeights::byte_offset_sum)
///
/// that is y = b + s ws sum_c (u - 128) q, the product of the two quantised matrices. Because each
/// row has its own step, a row's result does not depend on the other rows, on how they are split
/// over threads, or on the batch. A row of zeros has s = 0 and gives y = b; a row holding an
/// infinity or a NaN gives NaN.
///
/// Paths (kernels::active_isa()): where VNNI is present (AVX-512's or AVX-VNNI) the rows are
/// quantised to bytes and multiplied by vpdpbusd (zmm or ymm), four products a lane; on aarch64
/// with the dot product (neon_dotprod) the rows are written as the signed levels u - 128 and
/// multiplied by SDOT, four products a lane, the tile's sums starting from zero_sum
/// (conv2d_u8s16_neon_dotprod.hpp); elsewhere the same levels are widened to int16 and run on the
/// stem's int16 tiles (vpmaddwd, NEON SMLAL or scalar). The quantisation of a row and the float
/// finish have AVX-512, AVX2 and scalar forms. Every path gives the same levels, the same integers
/// and the same floats.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/conv2d_u8s16.hpp"
#include "bnn/kernels/intrinsics.hpp"
#include "bnn/kernels/isa.hpp"

namespace bnn::kernels {

/// W [Cout, C] quantised for linear_int8_rows (quantize_linear_int8).
struct Int8LinearWeights {
    /// A 1x1 convolution's scale (ws, [CoutP]), packed levels and zero_sum (byte_offset_sum,
    /// [CoutP]); q is not kept.
    U8S16ConvWeights w;
    std::vector<float> bias;  ///< [CoutP] b, 0 past Cout (and where there is no bias)

    int64_t C() const { return w.C; }
    int64_t Cout() const { return w.Cout; }
    /// Values of one quantised row: C rounded up to whole runs of four bytes.
    int64_t row_stride() const { return w.RunQ(); }
};

/// Quantises w [Cout, C] float and bias [Cout] (or null) for linear_int8_rows.
inline Int8LinearWeights quantize_linear_int8(const float* w, const float* bias, int64_t Cout, int64_t C) {
    BNN_CHECK(Cout >= 1 && C >= 1, "quantize_linear_int8: expected positive sizes, got Cout ", Cout, ", C ", C);
    BNN_CHECK(C <= u8s8_max_taps, "quantize_linear_int8: int32 sums of uint8 x int8 products are exact for up to ",
              u8s8_max_taps, " input channels, got ", C);
    Int8LinearWeights r;
    U8S16ConvWeights& q = r.w;
    q.Cout = Cout;
    q.KH = q.KW = 1;
    q.C = C;
    q.weight_max = u8s8_weight_max;
    q.q.assign(Cout * C, 0);
    q.scale.assign(q.CoutP(), 0.f);
    r.bias.assign(q.CoutP(), 0.f);
    std::vector<double> row(C);
    for (int64_t o = 0; o < Cout; ++o) {
        for (int64_t c = 0; c < C; ++c) {
            row[c] = w[o * C + c];
            BNN_CHECK(std::isfinite(row[c]), "quantize_linear_int8: weight [", o, ", ", c, "] is not finite: ", row[c]);
        }
        q.scale[o] = detail::quantize_levels(row.data(), C, u8s8_weight_max, q.q.data() + o * C);
        r.bias[o] = bias ? bias[o] : 0.f;
    }
    q.packed = detail::u8s16_pack<int16_t>(q, 2);
    detail::u8s16_pack_bytes(q);
    q.q = {};  // the tiles read the packed copies: 3 bytes a weight in all
    return r;
}

namespace detail {

inline constexpr int64_t int8_linear_chunk = 32;  // rows quantised at a time

/// Tags of the calling thread's quantised rows, as bytes or widened (bnn::thread_scratch).
struct Int8LinearBytes;
struct Int8LinearWide;

/// A row's step s = m / 127 and what to multiply it by, 127 / m; or, for a row of zeros or one
/// holding an infinity or NaN, s = 0 or NaN and `levels` false: every u is 128.
struct Int8RowStep {
    float step, inverse;
    bool levels;
};

inline Int8RowStep int8_row_step(float largest, bool finite) {
    if (!finite) return {std::numeric_limits<float>::quiet_NaN(), 0.f, false};
    if (largest == 0.f) return {0.f, 0.f, false};
    return {largest / 127.f, 127.f / largest, true};
}

/// One value of a row's scan for its step: the largest magnitude so far, and whether all are finite.
inline void int8_row_scan(float v, float& largest, bool& finite) {
    const float a = std::abs(v);
    finite = finite && a <= std::numeric_limits<float>::max();
    largest = std::max(largest, a);
}

/// One value quantised with its row's step: the nearest level (ties to even) within +-127, + 128 -
/// shift.
template <class T>
T int8_quantized(float v, const Int8RowStep& s, int32_t shift) {
    const float level = s.levels ? std::clamp(std::nearbyint(v * s.inverse), -127.f, 127.f) : 0.f;
    return static_cast<T>(static_cast<int32_t>(level) + 128 - shift);
}

/// u [stride] = row x [C] quantised (the file comment) less `shift` (0, or 128 for the SDOT tile:
/// the signed levels, as bytes), zeros past C; returns its step s.
template <class T>
float quantize_row_int8_scalar(const float* x, int64_t C, int64_t stride, int32_t shift, T* u) {
    float largest = 0.f;
    bool finite = true;
    for (int64_t c = 0; c < C; ++c) int8_row_scan(x[c], largest, finite);
    const Int8RowStep s = int8_row_step(largest, finite);
    for (int64_t c = 0; c < C; ++c) u[c] = int8_quantized<T>(x[c], s, shift);
    std::fill(u + C, u + stride, T{0});
    return s.step;
}

/// out[r][j] = fma(float(acc[r, j] - zero_sum[j]) * step[r], scale[j], bias[j]) for the first
/// `rows` rows of a tile (acc [4, 16]) and j < cols; zero_sum, scale and bias hold 16 values.
inline void int8_linear_finish_scalar(const int32_t* acc, int64_t rows, const float* step, const int32_t* zero_sum,
                                      const float* scale, const float* bias, float* const* out, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j)
            // In int64: the difference fits in int32 (|u - 128| <= 127), acc + 128 |sum q| may not.
            out[r][j] = std::fma(static_cast<float>(int64_t{acc[r * u8s16_lanes + j]} - zero_sum[j]) * step[r], scale[j],
                                 bias[j]);
}

#if BNN_X86
/// quantize_row_int8_scalar in zmm: vcvtps2dq rounds to nearest even, as nearbyint does under
/// the default rounding mode, and the levels go to bytes (vpmovdb) or int16 (vpmovdw).
template <class T>
__attribute__((target("avx512f"))) float quantize_row_int8_avx512(const float* x, int64_t C, int64_t stride,
                                                                           int32_t shift, T* u) {
    __m512 largest = _mm512_setzero_ps(), probe = _mm512_setzero_ps();  // probe: x * 0, NaN past an infinity
    for (int64_t c = 0; c < C; c += 16) {
        const __mmask16 m = c + 16 <= C ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (C - c)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + c);
        largest = _mm512_max_ps(largest, _mm512_abs_ps(v));
        probe = _mm512_add_ps(probe, _mm512_mul_ps(v, _mm512_setzero_ps()));
    }
    const bool finite = _mm512_cmp_ps_mask(probe, probe, _CMP_ORD_Q) == 0xFFFF;
    const Int8RowStep s = int8_row_step(_mm512_reduce_max_ps(largest), finite);
    const __m512 inverse = _mm512_set1_ps(s.inverse);
    const __m512i low = _mm512_set1_epi32(-127), high = _mm512_set1_epi32(127);
    const __m512i zero = _mm512_set1_epi32(128 - shift);
    for (int64_t c = 0; c < C; c += 16) {
        const __mmask16 m = c + 16 <= C ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (C - c)) - 1);
        __m512i level = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + c), inverse));
        level = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(level, low), high), zero);
        if constexpr (sizeof(T) == 1) _mm512_mask_cvtepi32_storeu_epi8(u + c, m, level);
        else _mm512_mask_cvtepi32_storeu_epi16(u + c, m, level);
    }
    std::fill(u + C, u + stride, T{0});
    return s.step;
}

/// int8_linear_finish_scalar in zmm for the `blocks` channel blocks of a tile (acc [blocks, 4,
/// 16]) in one call: block j's channels are 16 j ... from where zero_sum, scale, bias and out[r]
/// point, the stores masked to the first `cols` of them. The int32 subtraction wraps to the same
/// value as the scalar path's int64 one.
__attribute__((target("avx512f"))) inline void int8_linear_finish_avx512(const int32_t* acc, int64_t rows,
                                                                         int64_t blocks, int64_t cols,
                                                                         const float* step, const int32_t* zero_sum,
                                                                         const float* scale, const float* bias,
                                                                         float* const* out) {
    for (int64_t j = 0; j < blocks; ++j, acc += u8s16_tile_pixels * u8s16_lanes) {
        const int64_t c = j * u8s16_lanes, left = cols - c;
        const __mmask16 keep = left >= u8s16_lanes ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
        const __m512i z = _mm512_loadu_si512(zero_sum + c);
        const __m512 ws = _mm512_loadu_ps(scale + c), b = _mm512_loadu_ps(bias + c);
        for (int64_t r = 0; r < rows; ++r) {
            const __m512i a = _mm512_sub_epi32(_mm512_loadu_si512(acc + r * u8s16_lanes), z);
            const __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_set1_ps(step[r])), ws, b);
            _mm512_mask_storeu_ps(out[r] + c, keep, y);
        }
    }
}

/// quantize_row_int8_scalar in ymm: vcvtps2dq rounds to nearest even, as nearbyint does under
/// the default rounding mode; the last C % 8 values go the scalar way, which gives the same levels.
template <class T>
__attribute__((target("avx2"))) float quantize_row_int8_avx2(const float* x, int64_t C, int64_t stride, int32_t shift,
                                                             T* u) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 largest = _mm256_setzero_ps(), probe = _mm256_setzero_ps();  // probe: x * 0, NaN past an infinity
    const int64_t whole = C / 8 * 8;
    for (int64_t c = 0; c < whole; c += 8) {
        const __m256 v = _mm256_loadu_ps(x + c);
        largest = _mm256_max_ps(largest, _mm256_and_ps(v, magnitude));
        probe = _mm256_add_ps(probe, _mm256_mul_ps(v, _mm256_setzero_ps()));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, largest);
    float top = 0.f;
    for (float l : lanes) top = std::max(top, l);
    bool finite = _mm256_movemask_ps(_mm256_cmp_ps(probe, probe, _CMP_UNORD_Q)) == 0;
    for (int64_t c = whole; c < C; ++c) int8_row_scan(x[c], top, finite);
    const Int8RowStep s = int8_row_step(top, finite);
    if (!s.levels) {
        std::fill(u, u + C, static_cast<T>(128 - shift));
        std::fill(u + C, u + stride, T{0});
        return s.step;
    }
    const __m256 inverse = _mm256_set1_ps(s.inverse);
    const __m256i low = _mm256_set1_epi32(-127), high = _mm256_set1_epi32(127), zero = _mm256_set1_epi32(128 - shift);
    const __m256i firsts = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4);  // each 128-bit half's first lane
    for (int64_t c = 0; c < whole; c += 8) {
        __m256i level = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c), inverse));
        level = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(level, low), high), zero);
        const __m256i words = _mm256_packs_epi32(level, level);  // per half: its 4 levels, twice
        if constexpr (sizeof(T) == 1) {
            const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(words, words), firsts);
            _mm_storel_epi64(reinterpret_cast<__m128i*>(u + c), _mm256_castsi256_si128(bytes));
        } else {
            const __m256i pairs = _mm256_permute4x64_epi64(words, 0x08);  // half 0's, half 1's
            _mm_storeu_si128(reinterpret_cast<__m128i*>(u + c), _mm256_castsi256_si128(pairs));
        }
    }
    for (int64_t c = whole; c < C; ++c) u[c] = int8_quantized<T>(x[c], s, shift);
    std::fill(u + C, u + stride, T{0});
    return s.step;
}

/// int8_linear_finish_scalar in ymm for one channel block of a tile, `cols` of its 16 channels
/// (the scalar rule when fewer than 16).
__attribute__((target("avx2,fma"))) inline void int8_linear_finish_avx2(const int32_t* acc, int64_t rows,
                                                                       const float* step, const int32_t* zero_sum,
                                                                       const float* scale, const float* bias,
                                                                       float* const* out, int64_t cols) {
    if (cols < u8s16_lanes) return int8_linear_finish_scalar(acc, rows, step, zero_sum, scale, bias, out, cols);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < u8s16_lanes; j += 8) {
            const __m256i a = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + r * u8s16_lanes + j)),
                                               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zero_sum + j)));
            const __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_set1_ps(step[r])),
                                             _mm256_loadu_ps(scale + j), _mm256_loadu_ps(bias + j));
            _mm256_storeu_ps(out[r] + j, y);
        }
}
#endif

/// A row quantised on path isa, less `shift`.
template <class T>
float quantize_row_int8(Isa isa, const float* x, int64_t C, int64_t stride, int32_t shift, T* u) {
#if BNN_X86
    if (has_avx512(isa)) return quantize_row_int8_avx512(x, C, stride, shift, u);
    if (has_avx2(isa)) return quantize_row_int8_avx2(x, C, stride, shift, u);
#endif
    (void)isa;
    return quantize_row_int8_scalar(x, C, stride, shift, u);
}

/// Up to int8_linear_chunk rows: quantised into the thread's buffer, then every tile.
template <class T>
void linear_int8_chunk(Isa isa, const float* x, int64_t rows, const Int8LinearWeights& w, float* y) {
    const int64_t C = w.C(), Co = w.Cout(), stride = w.row_stride();
    T* u = thread_scratch<std::conditional_t<sizeof(T) == 1, Int8LinearBytes, Int8LinearWide>, T>(
        int8_linear_chunk * stride + 4);
    float step[int8_linear_chunk];
    U8S16Pixel px[int8_linear_chunk];
    const int32_t shift = sizeof(T) == 1 ? u8s8_byte_shift(isa) : 0;
    for (int64_t r = 0; r < rows; ++r) {
        step[r] = quantize_row_int8(isa, x + r * C, C, stride, shift, u + r * stride);
        px[r] = {r, 0, 0, r * stride};
    }
    U8S16Call call;
    if constexpr (sizeof(T) == 1) {
        call.bytes = u;
        call.taps = U8S16Taps{1, stride / 4, 0};
    } else {
        call.image = u;
        call.taps = U8S16Taps{1, w.w.RunP() / 2, 0};
    }
#if BNN_X86
    if (has_avx512(isa)) call.tile_blocks = u8s16_tile_blocks_max;
#endif
    auto finish = [&](const U8S16Pixel* p, int64_t count, int64_t c0, int64_t blocks, const int32_t* acc) {
        float s[u8s16_tile_pixels];
        float* out[u8s16_tile_pixels];
        for (int64_t i = 0; i < count; ++i) {
            s[i] = step[p[i].index];
            out[i] = y + p[i].index * Co + c0;
        }
        const int32_t* z = w.w.byte_offset_sum.data() + c0;
        const float* ws = w.w.scale.data() + c0;
        const float* b = w.bias.data() + c0;
#if BNN_X86
        if (has_avx512(isa)) return int8_linear_finish_avx512(acc, count, blocks, Co - c0, s, z, ws, b, out);
#endif
        for (int64_t j = 0; j < blocks; ++j, acc += u8s16_tile_pixels * u8s16_lanes) {
            const int64_t c = j * u8s16_lanes;
            float* o[u8s16_tile_pixels];
            for (int64_t i = 0; i < count; ++i) o[i] = out[i] + c;
            const int64_t cols = std::min(u8s16_lanes, Co - c0 - c);
#if BNN_X86
            if (has_avx2(isa)) {
                int8_linear_finish_avx2(acc, count, s, z + c, ws + c, b + c, o, cols);
                continue;
            }
#endif
            int8_linear_finish_scalar(acc, count, s, z + c, ws + c, b + c, o, cols);
        }
    };
    u8s16_tiles(call, w.w, isa, px, rows, 0, w.w.CoutP() / u8s16_lanes, finish);
}

}  // namespace detail

/// y [rows, Cout] = x [rows, C] W^T + b in int8 (the file comment), on the calling thread and
/// path isa. Allocates nothing once the thread's buffer of quantised rows has grown.
inline void linear_int8_rows(const float* x, int64_t rows, const Int8LinearWeights& w, float* y,
                             Isa isa = active_isa()) {
    const bool bytes = detail::u8s16_takes_bytes(w.w, isa);
    for (int64_t r0 = 0; r0 < rows; r0 += detail::int8_linear_chunk) {
        const int64_t n = std::min(detail::int8_linear_chunk, rows - r0);
        if (bytes) detail::linear_int8_chunk<uint8_t>(isa, x + r0 * w.C(), n, w, y + r0 * w.Cout());
        else detail::linear_int8_chunk<int16_t>(isa, x + r0 * w.C(), n, w, y + r0 * w.Cout());
    }
}

}  // namespace bnn::kernels
