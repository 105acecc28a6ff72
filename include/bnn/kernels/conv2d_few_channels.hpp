#pragma once
/// @file conv2d_few_channels.hpp
/// The float convolution of an input with few channels (the stem: 3 colour channels), equal to
/// conv2d_forward bit for bit and about twice as fast.
///
///   x [N, H, W, C], w [Cout, KH, KW, C], bias [Cout] or null -> out [N, OH, OW, Cout]
///
/// The implicit GEMM of kernels/conv2d.hpp packs each receptive field tap by tap, C floats at a
/// time; with C = 3 it transposes 16x16 blocks to move 3 columns, and packing costs as much as
/// the product itself. Here the output pixels of a packed block are first gathered into a
/// per-thread buffer [rows, K] (one KW*C run per kernel row, contiguous in NHWC), which is then
/// packed as a plain matrix with full-width transposes. The packed panels hold the same numbers in the same places, the
/// blocking and the micro-kernels are the same, so every output is the same float.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "bnn/core/threads.hpp"
#include "bnn/kernels/conv2d.hpp"
#include "bnn/kernels/conv2d_fields.hpp"
#include "bnn/kernels/sgemm.hpp"

namespace bnn::kernels {

namespace detail {

/// Tag of the per-thread gather buffer (bnn::thread_scratch).
struct GatheredFields;

/// sgemm operand source: op(A) = receptive fields [P, K] gathered row by row, op(B) = w^T.
struct GatheredFieldsSource {
    detail::ConvBlockPixels pixels;
    const float* w;

    // Gathers the block's mc receptive fields as rows of a small [mc, K] matrix (it stays in
    // L2), then packs it as a plain matrix: the panel layout remains the driver's business.
    template <class Tile>
    void pack_a(int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* __restrict Ap) const {
        const Conv2dGeometry& g = *pixels.g;
        const int64_t K = g.K();
        float* local = thread_scratch<GatheredFields>(mc * K);
        for (int64_t i = 0; i < mc; ++i) {
            const detail::PatchOrigin o = pixels.origin(i0 + i);
            gather_field(o.image, g, o.ih0, o.iw0, local + i * K);
        }
        detail::SgemmMatrices{false, true, local, K, nullptr, 0}.pack_a<Tile>(0, mc, p0, kc, Ap);
    }

    template <class Tile>
    void pack_b(int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* __restrict Bp) const {
        detail::SgemmMatrices{false, true, nullptr, 0, w, pixels.g->K()}.pack_b<Tile>(p0, kc, j0, nc, Bp);
    }
};

}  // namespace detail

/// out = conv(x, w) + bias for inputs with few channels; see the file comment. Off the vector
/// paths, for 1x1 stride-1 convolutions, and where conv2d_forward takes the direct convolution
/// (conv2d_direct.hpp) over more than one depth block, it is conv2d_forward itself: the direct
/// tile sums all of K in one chain, the GEMM each depth block from zero, so past one block their
/// floats differ (up to one block they are the same chain).
inline void conv2d_forward_few_channels(const float* x, const float* w, const float* bias, float* out,
                             const Conv2dGeometry& g) {
#if BNN_X86
    const Isa isa = active_isa();
    const int threads = num_threads();
    if (!has_avx2(isa) || g.pointwise() || (detail::direct_conv_applies(isa, g, threads) && g.K() > kSgemmKC)) {
        conv2d_forward(x, w, bias, out, g);
        return;
    }
    // The blocking of detail::conv2d_forward_implicit: whole images per block.
    const int64_t K = g.K(), Co = g.Cout;
    auto b = detail::conv_blocking(g, threads);
    b.rows_per_block = g.OH;
    detail::for_each_block(g, b, threads, [&](int64_t n0, int64_t n1, int64_t oh0, int64_t oh1, int) {
        const detail::ConvBlockPixels pixels{&g, x, n0, oh0, oh1};
        const int64_t P = pixels.count(n1);
        float* o = out + (n0 * g.OH + oh0) * g.OW * Co;
        detail::sgemm_run(isa, detail::GatheredFieldsSource{pixels, w}, P, Co, K, o, Co, false);
        if (bias)
            for (int64_t p = 0; p < P; ++p)
#pragma omp simd
                for (int64_t c = 0; c < Co; ++c) o[p * Co + c] += bias[c];
    });
#else
    conv2d_forward(x, w, bias, out, g);
#endif
}

}  // namespace bnn::kernels
