#pragma once
/// @file bitpack_neon.hpp
/// NEON (aarch64) sign packing (the scalar reference and the dispatch live in bitpack.hpp, the x86
/// variants in bitpack_simd.hpp). Layouts as in bitpack.hpp:
///   x    [pixels, C] float          a, b [C] or null (y = fma(a, x, b) before the sign)
///   bits [pixels, ceil(C/64)] uint64, bit 1 = (y >= 0), bits past C zero.
///
/// NEON has no movemask: sixteen compares are narrowed to sixteen 0/0xff bytes, ANDed with the
/// bit weights 1, 2, ..., 128, and three rounds of pairwise byte adds (ADDP) gather the 64 mask
/// bytes of a word into its 8 bytes (each byte sums 8 distinct bit weights, so adds are ORs).
/// Written with arm_neon.h: xsimd 8.1 has no mask extraction to build this from.
#include <cmath>
#include <cstdint>

#if defined(__aarch64__)
#include <arm_neon.h>

namespace bnn::kernels::detail {

/// The 0/0xff bytes of (y >= 0) for the 16 floats at x (y = fma(a, x, b) when affine), ANDed with
/// their bit weights.
inline uint8x16_t sign_bytes_neon(const float* x, const float* a, const float* b, bool affine) {
    uint32x4_t ge[4];
    for (int i = 0; i < 4; ++i) {
        float32x4_t v = vld1q_f32(x + 4 * i);
        if (affine)
            v = vfmaq_f32(b ? vld1q_f32(b + 4 * i) : vdupq_n_f32(0.f), a ? vld1q_f32(a + 4 * i) : vdupq_n_f32(1.f), v);
        ge[i] = vcgezq_f32(v);  // false for NaN, true for -0
    }
    const uint16x8_t lo = vuzp1q_u16(vreinterpretq_u16_u32(ge[0]), vreinterpretq_u16_u32(ge[1]));
    const uint16x8_t hi = vuzp1q_u16(vreinterpretq_u16_u32(ge[2]), vreinterpretq_u16_u32(ge[3]));
    const uint8x16_t bytes = vuzp1q_u8(vreinterpretq_u8_u16(lo), vreinterpretq_u8_u16(hi));
    static const uint8_t weights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    return vandq_u8(bytes, vld1q_u8(weights));
}

/// NEON pack_signs: whole groups of 16 channels through sign_bytes_neon, the rest of a word's
/// channels through the scalar rule (same fma, same comparison).
inline void pack_signs_neon(const float* x, int64_t pixels, int64_t channels, const float* a, const float* b,
                            uint64_t* bits) {
    const int64_t words = (channels + 63) / 64;
    const bool affine = a || b;
    for (int64_t p = 0; p < pixels; ++p) {
        const float* xp = x + p * channels;
        uint64_t* out = bits + p * words;
        for (int64_t w = 0; w < words; ++w) {
            const int64_t c0 = w * 64;
            const int64_t n = channels - c0 < 64 ? channels - c0 : 64;
            uint8x16_t m[4] = {vdupq_n_u8(0), vdupq_n_u8(0), vdupq_n_u8(0), vdupq_n_u8(0)};
            int64_t i = 0;
            for (; i + 16 <= n; i += 16)
                m[i / 16] = sign_bytes_neon(xp + c0 + i, a ? a + c0 + i : nullptr, b ? b + c0 + i : nullptr, affine);
            // Byte j of the low half: the 8 weighted mask bytes of channels 8j .. 8j+7 added up.
            const uint8x16_t quads = vpaddq_u8(vpaddq_u8(m[0], m[1]), vpaddq_u8(m[2], m[3]));
            uint64_t word = vgetq_lane_u64(vreinterpretq_u64_u8(vpaddq_u8(quads, quads)), 0);
            for (; i < n; ++i) {
                const int64_t c = c0 + i;
                const float v = affine ? std::fma(a ? a[c] : 1.f, xp[c], b ? b[c] : 0.f) : xp[c];
                word |= static_cast<uint64_t>(v >= 0.f) << i;
            }
            out[w] = word;
        }
    }
}

}  // namespace bnn::kernels::detail

#endif  // aarch64
