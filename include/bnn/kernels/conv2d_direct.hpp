#pragma once
/// @file conv2d_direct.hpp
/// The direct convolution of conv2d.hpp's vector paths, for stride 1 and rows wide enough:
/// inputs are broadcast in place from a zero-padded image copy, so the A operand is never packed
/// (see conv2d_forward_direct). Its tiles are sgemm_avx512.hpp's and sgemm_avx2.hpp's.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "bnn/core/threads.hpp"
#include "bnn/kernels/conv2d_geometry.hpp"
#include "bnn/kernels/conv2d_implicit.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/sgemm.hpp"

namespace bnn::kernels::detail {

/// True when conv2d_forward_direct() applies: a vector path, stride 1, a real kernel, a whole
/// image per thread, and rows wide enough that the 2 * pad padding columns computed and dropped
/// per output row cost at most 1/8.
inline bool direct_conv_applies(Isa isa, const Conv2dGeometry& g, int threads) {
    return has_avx2(isa) && g.stride == 1 && g.KH * g.KW > 1 && g.OW >= 16 * g.pad && g.N >= threads;
}

/// Tags of conv2d_forward_direct's per-thread buffers (bnn::thread_scratch).
struct DirectConvWeights {};
struct DirectConvOffsets {};
struct DirectConvImage {};

/// out [N, OH, OW, Cout] (= or +=) conv(x, w) (+ bias) by direct convolution, for stride 1.
/// Each image is copied into a zero-padded [H+2p, W+2p, C] buffer; there, output pixel (oh, ow)
/// reads tap (kh, kw) at ((oh + kh) * Wp + ow + kw) * C, so numbering the outputs over the padded
/// width, q = oh * Wp + ow, puts consecutive q exactly C floats apart for every tap. The Tile's
/// direct kernel (MR outputs x NR channels) then broadcasts its inputs in place (no packing of A
/// at all); the outputs with ow >= OW are computed and dropped. The weights are packed once per
/// call. With flipped_of, w is that convolution's weight, used flipped (see ConvForwardSource).

template <class Tile>
void conv2d_forward_direct(const float* x, const float* w, const float* bias, float* out, const Conv2dGeometry& g,
                           bool accumulate, const Conv2dGeometry* flipped_of, int threads) {
    constexpr int MR = Tile::MR, NR = Tile::NR;
    const int64_t K = g.K(), Co = g.Cout, C = g.C, panels = (Co + NR - 1) / NR;
    const int64_t panel_stride = sgemm_panel_stride(K, NR);
    // Per-thread buffers that only grow: a steady-state call (an inference graph) allocates nothing.
    float* packed = thread_scratch<DirectConvWeights>(panels * panel_stride);
    const ConvForwardSource weights{ConvBlockPixels{&g, x, 0, 0, g.OH}, w, flipped_of};
    weights.pack_b<Tile>(0, K, 0, Co, packed);

    const int64_t Hp = g.H + 2 * g.pad, Wp = g.W + 2 * g.pad, runs = g.OH * Wp;
    // The last tile's dropped rows read up to MR pixels and one padded row past the image.
    const int64_t padded_floats = (Hp * Wp + MR + Wp) * C;
    int64_t* offset = thread_scratch<DirectConvOffsets, int64_t>(g.KH * g.KW);
    for (int64_t kh = 0; kh < g.KH; ++kh)
        for (int64_t kw = 0; kw < g.KW; ++kw) offset[kh * g.KW + kw] = (kh * Wp + kw) * C;

    parallel_ranges(g.N, threads, [&](int, int64_t n0, int64_t n1) {
        // Zeroed once per call: the image copies only ever write the interior, so the border stays zero.
        float* xp = thread_scratch<DirectConvImage>(padded_floats);
        std::fill(xp, xp + padded_floats, 0.f);
        alignas(64) float tile[MR * NR];
        for (int64_t n = n0; n < n1; ++n) {
            const float* img = x + n * g.H * g.W * C;
            for (int64_t ih = 0; ih < g.H; ++ih)
                std::memcpy(xp + ((ih + g.pad) * Wp + g.pad) * C, img + ih * g.W * C, sizeof(float) * g.W * C);
            float* out_img = out + n * g.OH * g.OW * Co;
            for (int64_t q0 = 0; q0 < runs; q0 += MR) {
                const int64_t oh0 = q0 / Wp, ow0 = q0 % Wp;  // of the tile's first row
                for (int64_t p = 0; p < panels; ++p) {
                    Tile::direct(static_cast<int>(g.KH * g.KW), offset, C, xp + q0 * C, packed + p * panel_stride,
                                 tile, NR);
                    const int64_t c0 = p * NR, cols = std::min<int64_t>(NR, Co - c0);
                    int64_t oh = oh0, ow = ow0;
                    for (int64_t i = 0; i < MR && q0 + i < runs; ++i, ++ow) {
                        if (ow == Wp) ow = 0, ++oh;
                        if (ow >= g.OW) continue;
                        float* o = out_img + (oh * g.OW + ow) * Co + c0;
                        const float* t = tile + i * NR;
                        if (accumulate)
#pragma omp simd
                            for (int64_t j = 0; j < cols; ++j) o[j] += t[j];
                        else
#pragma omp simd
                            for (int64_t j = 0; j < cols; ++j) o[j] = t[j];
                        if (bias)
#pragma omp simd
                            for (int64_t j = 0; j < cols; ++j) o[j] += bias[c0 + j];
                    }
                }
            }
        }
    });
}

}  // namespace bnn::kernels::detail
