#pragma once
/// @file bitpack_simd.hpp
/// AVX2 and AVX-512 variants of the sign packing kernels in bitpack.hpp (the scalar reference
/// and the dispatch live there). Each function is compiled for its ISA through a target
/// attribute, so this header needs no -march flag; call them only when isa_supported() says so.
///
/// Layouts as in bitpack.hpp:
///   x    [pixels, C] float          a, b [C] or null (y = fma(a, x, b) before the sign)
///   bits [pixels, ceil(C/64)] uint64, bit 1 = (y >= 0), bits past C zero.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "bnn/kernels/intrinsics.hpp"

namespace bnn::kernels::detail {

#if BNN_X86

/// AVX2: eight floats per compare, movemask gives their sign bits; the last partial group of
/// eight channels of each pixel goes through the scalar rule (same fma, same comparison).
__attribute__((target("avx2,fma"))) inline void pack_signs_avx2(const float* x, int64_t pixels, int64_t channels,
                                                                 const float* a, const float* b, uint64_t* bits) {
    const int64_t words = (channels + 63) / 64;
    const bool affine = a || b;
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t p = 0; p < pixels; ++p) {
        const float* xp = x + p * channels;
        uint64_t* out = bits + p * words;
        for (int64_t w = 0; w < words; ++w) {
            const int64_t c0 = w * 64;
            const int64_t n = channels - c0 < 64 ? channels - c0 : 64;
            uint64_t word = 0;
            int64_t i = 0;
            for (; i + 8 <= n; i += 8) {
                __m256 v = _mm256_loadu_ps(xp + c0 + i);
                if (affine) {
                    const __m256 av = a ? _mm256_loadu_ps(a + c0 + i) : _mm256_set1_ps(1.f);
                    const __m256 bv = b ? _mm256_loadu_ps(b + c0 + i) : zero;
                    v = _mm256_fmadd_ps(av, v, bv);
                }
                const uint64_t m = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_GE_OQ)));
                word |= m << i;
            }
            for (; i < n; ++i) {
                const int64_t c = c0 + i;
                const float v = affine ? std::fma(a ? a[c] : 1.f, xp[c], b ? b[c] : 0.f) : xp[c];
                word |= static_cast<uint64_t>(v >= 0.f) << i;
            }
            out[w] = word;
        }
    }
}

/// AVX-512: sixteen floats per compare straight into a mask register; masked loads cover the
/// last partial group, and the compare is masked too so bits past C stay zero.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma"))) inline void pack_signs_avx512(
    const float* x, int64_t pixels, int64_t channels, const float* a, const float* b, uint64_t* bits) {
    const int64_t words = (channels + 63) / 64;
    const bool affine = a || b;
    const __m512 zero = _mm512_setzero_ps();
    const __m512 one = _mm512_set1_ps(1.f);
    for (int64_t p = 0; p < pixels; ++p) {
        const float* xp = x + p * channels;
        uint64_t* out = bits + p * words;
        for (int64_t w = 0; w < words; ++w) {
            uint64_t word = 0;
            for (int g = 0; g < 4; ++g) {
                const int64_t c = w * 64 + g * 16;
                const int64_t left = channels - c;
                if (left <= 0) break;
                const __mmask16 lanes = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
                __m512 v = _mm512_maskz_loadu_ps(lanes, xp + c);
                if (affine) {
                    const __m512 av = a ? _mm512_maskz_loadu_ps(lanes, a + c) : one;
                    const __m512 bv = b ? _mm512_maskz_loadu_ps(lanes, b + c) : zero;
                    v = _mm512_fmadd_ps(av, v, bv);
                }
                const __mmask16 m = _mm512_mask_cmp_ps_mask(lanes, v, zero, _CMP_GE_OQ);
                word |= static_cast<uint64_t>(m) << (16 * g);
            }
            out[w] = word;
        }
    }
}

/// AVX-512 pack_signs_batch_norm (bitpack.hpp): one 64-channel word at a time, pixels inside,
/// so the word's scale, shift and running sums stay in registers and the BN values never leave
/// them; the four 16-channel sums are four independent chains, each in pixel order. Fused picks
/// fma(x, scale, shift) or the rounded product plus shift: the one the plain expression compiles
/// to (multiply_add_contracts), so the values are the eval batch norm's.
template <bool Fused, bool Sums>
__attribute__((target("avx512f,avx512bw,fma"))) inline void pack_signs_batch_norm_avx512_word(
    const float* x, int64_t ldx, int64_t pixels, int64_t words, int64_t left, const float* scale, const float* shift,
    float* sums, uint64_t* bits) {
    __mmask16 lanes[4];
    __m512 a[4], b[4], sum[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
        const int64_t n = std::clamp<int64_t>(left - 16 * g, 0, 16);
        lanes[g] = static_cast<__mmask16>((1u << n) - 1u);
        a[g] = _mm512_maskz_loadu_ps(lanes[g], scale + 16 * g);
        b[g] = _mm512_maskz_loadu_ps(lanes[g], shift + 16 * g);
        sum[g] = Sums ? _mm512_maskz_loadu_ps(lanes[g], sums + 16 * g) : _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < pixels; ++p) {
        __mmask16 m[4];
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) {
            const __m512 v = _mm512_maskz_loadu_ps(lanes[g], x + p * ldx + 16 * g);
            __m512 y;
            if constexpr (Fused) {
                y = _mm512_fmadd_ps(v, a[g], b[g]);
            } else {
                __m512 product = _mm512_mul_ps(v, a[g]);
                asm("" : "+v"(product));  // the compiler would contract the product and the add
                y = _mm512_add_ps(product, b[g]);
            }
            if (Sums) sum[g] = _mm512_add_ps(sum[g], y);
            m[g] = _mm512_mask_cmp_ps_mask(lanes[g], y, _mm512_setzero_ps(), _CMP_GE_OQ);
        }
        bits[p * words] = _cvtmask64_u64(_mm512_kunpackd(_mm512_kunpackw(m[3], m[2]), _mm512_kunpackw(m[1], m[0])));
    }
    if (Sums)
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) _mm512_mask_storeu_ps(sums + 16 * g, lanes[g], sum[g]);
}

template <bool Fused, bool Sums>
__attribute__((target("avx512f,avx512bw,fma"))) inline void pack_signs_batch_norm_avx512(
    const float* x, int64_t ldx, int64_t pixels, int64_t C, const float* scale, const float* shift, float* sums,
    uint64_t* bits) {
    const int64_t words = (C + 63) / 64;
    for (int64_t w = 0; w < words; ++w)
        pack_signs_batch_norm_avx512_word<Fused, Sums>(x + 64 * w, ldx, pixels, words, C - 64 * w, scale + 64 * w,
                                                       shift + 64 * w, sums + (Sums ? 64 * w : 0), bits + w);
}

/// AVX-512 unpack: each 16-bit slice of a word selects +1 or -1 per lane with one blend.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma"))) inline void unpack_signs_avx512(
    const uint64_t* bits, int64_t pixels, int64_t channels, float* x) {
    const int64_t words = (channels + 63) / 64;
    const __m512 plus = _mm512_set1_ps(1.f), minus = _mm512_set1_ps(-1.f);
    for (int64_t p = 0; p < pixels; ++p) {
        const uint64_t* in = bits + p * words;
        float* xp = x + p * channels;
        for (int64_t c = 0; c < channels; c += 16) {
            const int64_t left = channels - c;
            const __mmask16 lanes = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
            const __mmask16 m = static_cast<__mmask16>(in[c / 64] >> (c % 64));
            _mm512_mask_storeu_ps(xp + c, lanes, _mm512_mask_blend_ps(m, minus, plus));
        }
    }
}

#endif  // x86

}  // namespace bnn::kernels::detail
