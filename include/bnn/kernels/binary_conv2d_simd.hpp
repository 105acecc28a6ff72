#pragma once
/// @file binary_conv2d_simd.hpp
/// The AVX2 and AVX-512 micro-kernels (tiles) of the XNOR convolution; the plan, the scalar
/// reference tile and the driver are in binary_conv2d.hpp.
///
/// A tile computes P output pixels x one block of output channels. Output channels live in the
/// SIMD lanes (one uint64 lane per channel, or one uint32 lane on the AVX-512 tile of 32-bit
/// halves): for each receptive-field word k, one activation
/// word per pixel is broadcast, XORed with row k of the packed weights (that word of 8 or 32
/// consecutive output channels), popcounted per lane and added into per-lane accumulators.
/// No horizontal sums anywhere, so short receptive fields (3x3 over 64 channels is 9 words)
/// cost no reduction. The weight vectors of a row are reused by the P pixels and each broadcast
/// by every weight vector, which keeps loads well under the ALU work.
#include <cstdint>

#include "bnn/kernels/intrinsics.hpp"

namespace bnn::kernels::detail {

/// What every tile of one convolution shares.
struct BinaryConvPlan {
    const int64_t* word_offsets;  ///< [k_words] offset of receptive-field word k from the field's origin
    int64_t k_words;              ///< KH*KW*ceil(C/64)
    const uint64_t* weights;      ///< [k_words, coutp]
    int64_t coutp, cout;
    int64_t k_bits;              ///< true receptive-field length KH*KW*Cin
    const float* scale;          ///< [coutp], padded with ones
    const float* bias;           ///< [coutp], padded with zeros
    /// The same field in 32-bit halves, for the half-word tile (null for the other tiles): half
    /// 2k + h is the low (h = 0) or high 32 bits of word k, the order little-endian memory holds
    /// them in, so an origin read as uint32 finds half 2k + h at half_offsets[2k + h].
    const int64_t* half_offsets = nullptr;   ///< [2 * k_words], in uint32 units
    const uint32_t* half_weights = nullptr;  ///< [2 * k_words, coutp]
};

/// One tile: P output pixels starting at `out`, output channels from c0.
struct BinaryConvTile {
    const uint64_t* const* origins;  ///< [P] receptive-field origin of each pixel in the padded input
    const int64_t* const* corrections;  ///< [P] zero-padding border correction [coutp] or null
    float* out;                      ///< output row of the first pixel; pixel p at out + p*cout
    int64_t c0;
};

#if BNN_X86

/// What a tile's end reads from its plan and tile, copied out first: the end's vector stores may
/// alias anything, so fields read through pl and tl would be loaded again after every store.
template <int P>
struct TileEnd {
    int64_t cout, left;            ///< the row length of out; the channels from c0 on
    const float* scale;            ///< at c0
    const float* bias;             ///< at c0
    float* out;
    const int64_t* corrections[P];  ///< at c0, or null

    TileEnd(const BinaryConvPlan& pl, const BinaryConvTile& tl)
        : cout(pl.cout), left(pl.cout - tl.c0), scale(pl.scale + tl.c0), bias(pl.bias + tl.c0), out(tl.out) {
        for (int p = 0; p < P; ++p) corrections[p] = tl.corrections[p] ? tl.corrections[p] + tl.c0 : nullptr;
    }
};

#define BNN_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vpopcntdq,fma")))

/// AVX-512 VPOPCNTDQ tile: P pixels x 32 output channels (4 vectors of 8 uint64 lanes), so
/// 4*P accumulators, 4 weight vectors and a broadcast stay in the 32 zmm registers.
template <int P>
BNN_AVX512_TARGET inline void binary_conv_tile_avx512(const BinaryConvPlan& pl, const BinaryConvTile& tl) {
    constexpr int V = 4;
    __m512i acc[P][V];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[p][v] = _mm512_setzero_si512();

    const uint64_t* xp[P];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) xp[p] = tl.origins[p];
    const uint64_t* wrow = pl.weights + tl.c0;
    for (int64_t k = 0; k < pl.k_words; ++k, wrow += pl.coutp) {
        const int64_t off = pl.word_offsets[k];
        __m512i w[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) w[v] = _mm512_loadu_si512(wrow + 8 * v);
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) {
            const __m512i xb = _mm512_set1_epi64(static_cast<long long>(xp[p][off]));
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v)
                acc[p][v] = _mm512_add_epi64(acc[p][v], _mm512_popcnt_epi64(_mm512_xor_si512(xb, w[v])));
        }
    }

    // dot = K - 2*popcount (+ border correction), then out = fma(dot, scale, bias).
    const __m512i k = _mm512_set1_epi64(pl.k_bits);
    const TileEnd<P> end(pl, tl);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
        float* out = end.out + p * end.cout;
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) {
            __m512i d = _mm512_sub_epi64(k, _mm512_add_epi64(acc[p][v], acc[p][v]));
            if (end.corrections[p]) d = _mm512_add_epi64(d, _mm512_loadu_si512(end.corrections[p] + 8 * v));
            const __m256 y = _mm256_fmadd_ps(_mm512_cvtepi64_ps(d), _mm256_loadu_ps(end.scale + 8 * v),
                                             _mm256_loadu_ps(end.bias + 8 * v));
            const int64_t left = end.left - 8 * v;
            if (left >= 8)
                _mm256_storeu_ps(out + 8 * v, y);
            else if (left > 0)
                _mm256_mask_storeu_ps(out + 8 * v, static_cast<__mmask8>((1u << left) - 1u), y);
        }
    }
}

/// AVX-512 VPOPCNTDQ tile on 32-bit halves of the field words: P pixels x 16*V output channels
/// (V vectors of 16 uint32 lanes). Each half costs the same XOR, popcount and add as a whole word
/// on 8 lanes, but a vector holds twice the channels, so the end of the tile (the dot, its
/// conversion, scale, bias and store) runs once per 16 outputs instead of 8: on short fields
/// (3x3 over 64 or 128 channels is 9 or 18 words) that end costs as much as the field itself.
/// Sums fit 32 bits: fields this tile takes are short (counts_half_words).
template <int P, int V>
BNN_AVX512_TARGET inline void binary_conv_tile_avx512_halves(const BinaryConvPlan& pl, const BinaryConvTile& tl) {
    __m512i acc[P][V];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[p][v] = _mm512_setzero_si512();

    const uint32_t* xp[P];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) xp[p] = reinterpret_cast<const uint32_t*>(tl.origins[p]);
    const uint32_t* wrow = pl.half_weights + tl.c0;
    for (int64_t k = 0; k < 2 * pl.k_words; ++k, wrow += pl.coutp) {
        const int64_t off = pl.half_offsets[k];
        __m512i w[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) w[v] = _mm512_loadu_si512(wrow + 16 * v);
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) {
            const __m512i xb = _mm512_broadcastd_epi32(_mm_loadu_si32(xp[p] + off));
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) {
                acc[p][v] = _mm512_add_epi32(acc[p][v], _mm512_popcnt_epi32(_mm512_xor_si512(xb, w[v])));
                // Keeps GCC from hoisting the next pixels' XORs above these adds, which leaves too
                // few registers for the accumulators and spills them.
                asm("" : "+v"(acc[p][v]));
            }
        }
    }

    // dot = K - 2*popcount (+ border correction), then out = fma(dot, scale, bias).
    const __m512i k = _mm512_set1_epi32(static_cast<int>(pl.k_bits));
    const TileEnd<P> end(pl, tl);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
        float* out = end.out + p * end.cout;
        const int64_t* corr = end.corrections[p];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) {
            __m512i d = _mm512_sub_epi32(k, _mm512_add_epi32(acc[p][v], acc[p][v]));
            if (corr) {
                const __m256i lo = _mm512_cvtepi64_epi32(_mm512_loadu_si512(corr + 16 * v));
                const __m256i hi = _mm512_cvtepi64_epi32(_mm512_loadu_si512(corr + 16 * v + 8));
                d = _mm512_add_epi32(d, _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1));
            }
            // All lanes converted; the masked form because GCC 12 warns of the plain one's
            // undefined pass-through operand once it is inlined here.
            const __m512 dot = _mm512_mask_cvtepi32_ps(_mm512_setzero_ps(), static_cast<__mmask16>(0xffff), d);
            const __m512 y = _mm512_fmadd_ps(dot, _mm512_loadu_ps(end.scale + 16 * v), _mm512_loadu_ps(end.bias + 16 * v));
            const int64_t left = end.left - 16 * v;
            if (left >= 16)
                _mm512_storeu_ps(out + 16 * v, y);
            else if (left > 0)
                _mm512_mask_storeu_ps(out + 16 * v, static_cast<__mmask16>((1u << left) - 1u), y);
        }
    }
}

#define BNN_AVX2_TARGET __attribute__((target("avx2,fma")))

/// AVX2 tile: P pixels x 8 output channels (2 vectors of 4 uint64 lanes). AVX2 has no vector
/// popcount: each byte is counted with two 4-bit table lookups (pshufb), byte counts are
/// accumulated for up to 31 words (31*8 < 256) and then folded into the uint64 lanes with
/// psadbw against zero.
template <int P>
BNN_AVX2_TARGET inline void binary_conv_tile_avx2(const BinaryConvPlan& pl, const BinaryConvTile& tl) {
    constexpr int V = 2;
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1,
                                         2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    __m256i bytes[P][V], total[P][V];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) bytes[p][v] = total[p][v] = zero;

    int since_flush = 0;
    const uint64_t* wrow = pl.weights + tl.c0;
    for (int64_t k = 0; k < pl.k_words; ++k, wrow += pl.coutp) {
        const int64_t off = pl.word_offsets[k];
        __m256i w[V];
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) w[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wrow + 4 * v));
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) {
            const __m256i xb = _mm256_set1_epi64x(static_cast<long long>(tl.origins[p][off]));
#pragma GCC unroll 2
            for (int v = 0; v < V; ++v) {
                const __m256i d = _mm256_xor_si256(xb, w[v]);
                const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(d, low));
                const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(d, 4), low));
                bytes[p][v] = _mm256_add_epi8(bytes[p][v], _mm256_add_epi8(lo, hi));
            }
        }
        if (++since_flush == 31) {
            since_flush = 0;
#pragma GCC unroll 8
            for (int p = 0; p < P; ++p)
#pragma GCC unroll 2
                for (int v = 0; v < V; ++v) {
                    total[p][v] = _mm256_add_epi64(total[p][v], _mm256_sad_epu8(bytes[p][v], zero));
                    bytes[p][v] = zero;
                }
        }
    }

    const __m256i k = _mm256_set1_epi64x(pl.k_bits);
    // Gathers the low 32 bits of the four int64 lanes into the low 128 bits (values are small).
    const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
        float* out = tl.out + p * pl.cout;
        const int64_t* corr = tl.corrections[p];
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) {
            const int64_t c = tl.c0 + 4 * v;
            const __m256i pop = _mm256_add_epi64(total[p][v], _mm256_sad_epu8(bytes[p][v], zero));
            __m256i d = _mm256_sub_epi64(k, _mm256_add_epi64(pop, pop));
            if (corr) d = _mm256_add_epi64(d, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + c)));
            const __m128i d32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(d, low_halves));
            const __m128 y = _mm_fmadd_ps(_mm_cvtepi32_ps(d32), _mm_loadu_ps(pl.scale + c), _mm_loadu_ps(pl.bias + c));
            const int64_t left = pl.cout - c;
            if (left >= 4) {
                _mm_storeu_ps(out + 4 * v, y);
            } else if (left > 0) {
                alignas(16) float tmp[4];
                _mm_store_ps(tmp, y);
                for (int64_t i = 0; i < left; ++i) out[4 * v + i] = tmp[i];
            }
        }
    }
}

#undef BNN_AVX512_TARGET
#undef BNN_AVX2_TARGET

#endif  // x86

}  // namespace bnn::kernels::detail
