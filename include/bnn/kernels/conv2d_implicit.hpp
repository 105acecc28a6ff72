#pragma once
/// @file conv2d_implicit.hpp
/// The implicit-GEMM operand packers of the float convolution (conv2d.hpp): on CPUs with AVX2 or
/// AVX-512 the column matrix of im2col is never built; the packed GEMM (sgemm_driver.hpp) asks
/// these sources for its panels and they read them straight from the image.
///
///   ConvForwardSource     op(A) = columns [P, K] of x, op(B) = w^T [K, Cout] (or, for an input
///                         gradient run as a convolution, the flipped, transposed weights)
///   ConvWeightGradSource  op(A) = dout^T [Cout, P], op(B) = columns [P, K] of x
///
/// A block is a run of output pixels (images n0.., output rows [oh0, oh1) of each), described by
/// ConvBlockPixels; the drivers that cut the output into blocks are in conv2d.hpp.
#include <algorithm>
#include <cstdint>

#include "bnn/kernels/conv2d_geometry.hpp"
#include "bnn/kernels/sgemm.hpp"

namespace bnn::kernels::detail {

/// Where output pixel p of a block (images n0.., output rows [oh0, oh1) of each) reads its
/// receptive field: the image and the top-left input position (which may lie in the padding).
struct PatchOrigin {
    const float* image;
    int64_t ih0, iw0;
};

/// The pixels of a block of output rows, and where their receptive fields lie in x.
struct ConvBlockPixels {
    const Conv2dGeometry* g;
    const float* x;  // [N, H, W, C]
    int64_t n0, oh0, oh1;

    int64_t count(int64_t n1) const { return (n1 - n0) * (oh1 - oh0) * g->OW; }

    PatchOrigin origin(int64_t p) const {
        const int64_t per_image = (oh1 - oh0) * g->OW;
        const int64_t n = n0 + p / per_image, rem = p % per_image;
        const int64_t oh = oh0 + rem / g->OW, ow = rem % g->OW;
        return {x + n * g->H * g->W * g->C, oh * g->stride - g->pad, ow * g->stride - g->pad};
    }

    /// The C-contiguous input values of tap (kh, kw) from channel c0 on, or null in the padding.
    const float* tap(const PatchOrigin& o, int64_t kh, int64_t kw, int64_t c0) const {
        const int64_t ih = o.ih0 + kh, iw = o.iw0 + kw;
        if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) return nullptr;
        return o.image + (ih * g->W + iw) * g->C + c0;
    }
};

/// Operands of the forward product of a block, for sgemm_run():
///   op(A) = columns [P, K] (never stored: packed from x), op(B) = w^T [K, Cout] (w [Cout, K]).
/// With `flipped_of` set, the product is the input gradient of that convolution (see
/// conv2d_input_grad_implicit) and w is ITS weight [C, KH, KW, Cin]: op(B)[(kh, kw, c), ci] =
/// w[c, KH-1-kh, KW-1-kw, ci], read in place (rows of Cin contiguous floats).
struct ConvForwardSource {
    ConvBlockPixels pixels;
    const float* w;
    const Conv2dGeometry* flipped_of = nullptr;

    template <class Tile>
    void pack_a(int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* __restrict Ap) const {
        constexpr int MR = Tile::MR;
        const Conv2dGeometry& g = *pixels.g;
        const float* src[MR];
        PatchOrigin origin[MR];
        for (int64_t r = 0; r < mc; r += MR) {
            const int rows = static_cast<int>(std::min<int64_t>(MR, mc - r));
            for (int i = 0; i < rows; ++i) origin[i] = pixels.origin(i0 + r + i);
            float* dst = Ap + r / MR * sgemm_panel_stride(kc, MR);
            // The depth range crosses taps; within a tap the C channels are contiguous in x.
            for (int64_t k = p0; k < p0 + kc;) {
                const int64_t tap = k / g.C, c0 = k - tap * g.C, len = std::min(g.C - c0, p0 + kc - k);
                const int64_t kh = tap / g.KW, kw = tap % g.KW;
                for (int i = 0; i < MR; ++i) src[i] = i < rows ? pixels.tap(origin[i], kh, kw, c0) : nullptr;
                for (int grp = 0; grp < MR; grp += 16)
                    Tile::pack_transposed(src + grp, len, dst + (k - p0) * MR + grp, MR, std::min(16, MR - grp));
                k += len;
            }
        }
    }

    template <class Tile>
    void pack_b(int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* __restrict Bp) const {
        if (!flipped_of) {
            SgemmMatrices{false, true, nullptr, 0, w, pixels.g->K()}.pack_b<Tile>(p0, kc, j0, nc, Bp);
            return;
        }
        constexpr int NR = Tile::NR;
        const Conv2dGeometry& f = *flipped_of;  // f.Cout = this product's depth channels
        for (int64_t c = 0; c < nc; c += NR) {
            const int64_t cols = std::min<int64_t>(NR, nc - c);
            float* dst = Bp + c / NR * sgemm_panel_stride(kc, NR);
            for (int64_t kk = 0; kk < kc; ++kk) {
                const int64_t k = p0 + kk, tap = k / f.Cout, co = k - tap * f.Cout;
                const int64_t kh = f.KH - 1 - tap / f.KW, kw = f.KW - 1 - tap % f.KW;
                const float* src = w + ((co * f.KH + kh) * f.KW + kw) * f.C + j0 + c;
                Tile::copy_row(dst + kk * NR, src, cols, NR);
            }
        }
    }
};

/// Operands of the weight gradient of a block, for sgemm_run():
///   op(A) = dout^T [Cout, P] (dout [P, Cout]), op(B) = columns [P, K] packed from x.
struct ConvWeightGradSource {
    ConvBlockPixels pixels;
    const float* dout;  // the block's first output pixel

    template <class Tile>
    void pack_a(int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* Ap) const {
        SgemmMatrices{true, false, dout, pixels.g->Cout, nullptr, 0}.pack_a<Tile>(i0, mc, p0, kc, Ap);
    }

    template <class Tile>
    void pack_b(int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* __restrict Bp) const {
        constexpr int NR = Tile::NR;
        const Conv2dGeometry& g = *pixels.g;
        const int64_t panels = (nc + NR - 1) / NR, padded = panels * NR;
        // Pixel by pixel (one origin per pixel), each tap's channel run cut at panel edges.
        for (int64_t kk = 0; kk < kc; ++kk) {
            const PatchOrigin o = pixels.origin(p0 + kk);
            for (int64_t j = j0; j < j0 + padded;) {
                const int64_t panel = (j - j0) / NR, in_panel = (j - j0) - panel * NR;
                float* __restrict d = Bp + panel * sgemm_panel_stride(kc, NR) + kk * NR + in_panel;
                if (j >= j0 + nc) {  // zero columns past nc
                    std::fill(d, d + (NR - in_panel), 0.f);
                    j += NR - in_panel;
                    continue;
                }
                const int64_t tap = j / g.C, c0 = j - tap * g.C;
                const int64_t len = std::min({g.C - c0, j0 + nc - j, NR - in_panel});
                Tile::copy_row(d, pixels.tap(o, tap / g.KW, tap % g.KW, c0), len, len);
                j += len;
            }
        }
    }
};

}  // namespace bnn::kernels::detail
