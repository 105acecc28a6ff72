#pragma once
/// @file conv2d.hpp
/// Float 2-D convolution, NHWC activations and OHWI weights, by im2col + GEMM.
///
///   x    [N, H, W, C]
///   w    [Cout, KH, KW, C]          (one row of K = KH*KW*C per output channel)
///   bias [Cout] or null
///   out  [N, OH, OW, Cout]          OH = (H + 2*pad - KH) / stride + 1, same for OW
///
/// Forward: for a block of output pixels, cols [P, K] gathers each pixel's receptive field
/// (channels innermost, so each (kh, kw) tap is one contiguous copy of C floats), then
/// out[P, Cout] = cols * w^T. The column buffer covers a few output rows of one image, or a
/// few whole small images, at a time (see conv_blocking), never the whole batch, and backward
/// rebuilds it rather than keeping it from the forward: memory stays at the activations.
/// A 1x1, stride 1, unpadded convolution skips im2col: x itself is the column matrix.
///
/// On CPUs with AVX2 or AVX-512 (kernels/isa.hpp) the column matrix is never built: the packed
/// GEMM (kernels/sgemm.hpp) packs its panels straight from the image ("implicit GEMM"), for
/// the forward product and the weight gradient, and for stride 1 the direct convolution does
/// not even pack (conv2d_direct.hpp; the weight gradient too on AVX2, and on AVX-512 for Cout a
/// multiple of 64 or below 64 with Cin a multiple of 16). The input gradient of a stride-1 convolution
/// is itself a convolution of dout with the flipped, transposed weights, so it runs the same
/// implicit forward (and accumulates into dx without a col2im pass); strided ones use a GEMM
/// into a column buffer and col2im. Without AVX2, every product goes through kernels/gemm.hpp
/// (bnn's packed GEMM with the NEON tile on ARM, Eigen on the scalar path).
///
/// Files: this one holds the entry points, the im2col + GEMM fallback, the blocking shared by
/// every path and the naive reference; conv2d_geometry.hpp the sizes; conv2d_fields.hpp the
/// gather of one receptive field (im2col's rows); conv2d_implicit.hpp the implicit-GEMM packers;
/// conv2d_direct.hpp the direct convolution; conv2d_weight_grad_direct.hpp the weight gradient
/// that packs neither operand.
///
/// Threads: with at least as many image groups as threads, each thread takes whole images with its
/// own buffers and runs single-threaded GEMMs (no synchronisation inside the product, and
/// col2im writes of different threads never overlap). With fewer images (inference on a
/// batch of 1) the images go one by one and the GEMM threads each product instead (gemm.hpp).
#include <algorithm>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/conv2d_direct.hpp"
#include "bnn/kernels/conv2d_fields.hpp"
#include "bnn/kernels/conv2d_geometry.hpp"
#include "bnn/kernels/conv2d_implicit.hpp"
#include "bnn/kernels/conv2d_weight_grad_direct.hpp"
#include "bnn/kernels/gemm.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/sgemm.hpp"

namespace bnn::kernels {

/// True when a 1x1 conv's product is long enough to share out over threads (4 M flops: many
/// times the cost of a parallel region).
inline bool pointwise_worth_threading(const Conv2dGeometry& g) {
    return 2.0 * double(g.N * g.OH * g.OW) * double(g.Cout) * double(g.K()) >= 4e6;
}

namespace detail {

/// How the output is cut into blocks: a block is either several whole images or a range of
/// output rows of one image. A "unit" (the images one thread owns at a time) is a group of at
/// most images_per_unit whole images, the batch shared out evenly over `units` of them; within a
/// single-image unit the rows go in blocks of rows_per_block.
struct ConvBlocking {
    int64_t images_per_unit, rows_per_block, units;
    int64_t max_block_floats;  // size of one column buffer

    /// Cuts a batch of n images into `count` units whose sizes differ by at most one.
    void share_out(int64_t n, int64_t count) {
        units = std::clamp<int64_t>(count, 1, std::max<int64_t>(n, 1));
        images_per_unit = (n + units - 1) / units;
    }
    int64_t first_image(int64_t u, int64_t n) const { return u * n / units; }
};

inline ConvBlocking conv_blocking(const Conv2dGeometry& g, int threads) {
    // ~2 MB of columns keeps a block in cache, but at least 256 output pixels per GEMM: Eigen
    // packs the whole weight matrix once per product, so for small images with many channels
    // (512@4x4: 16 pixels, K = 4608) a per-image product would spend its time packing weights.
    const int64_t K = std::max<int64_t>(1, g.K());
    const int64_t target = std::max<int64_t>(int64_t{1} << 19, 256 * K);
    const int64_t image = std::max<int64_t>(1, g.OH * g.OW * K);
    ConvBlocking b;
    const int64_t fair_share = std::max<int64_t>(1, (g.N + threads - 1) / threads);  // keep every thread busy
    const int64_t wanted = std::clamp<int64_t>(target / image, 1, fair_share);
    int64_t units = (g.N + wanted - 1) / wanted;
    // A multiple of the threads, so that the static split gives every thread the same number of
    // images: 128 images in units of 28 would give one thread 84 and the other 44.
    if (threads > 1 && units >= threads) units = (units + threads - 1) / threads * threads;
    b.share_out(g.N, units);
    b.rows_per_block = b.images_per_unit > 1 ? g.OH
                                             : std::clamp<int64_t>(target / std::max<int64_t>(1, g.OW * K), 1,
                                                                   std::max<int64_t>(g.OH, 1));
    b.max_block_floats = std::max(b.images_per_unit, int64_t{1}) * b.rows_per_block * g.OW * K;
    return b;
}

/// True when conv2d_forward gives each thread a contiguous share of the output pixels, all their
/// channels: a 1x1 stride-1 conv of fewer images than threads (a batch of one) worth threading,
/// on a path with a packed sgemm. The binary convs share theirs out so too, so the next step (a
/// batch norm, a residual add) reads on each thread the rows it wrote; a threaded GEMM of a
/// product with more columns than rows would share out columns instead. The packed sgemm sums
/// every output over K in one order whatever the row count, so a share's floats are one thread's.
/// Eigen's GEMM, the scalar path's, picks its blocking from the row count and the thread count,
/// so there a share's floats could differ from the whole product's; the scalar path keeps the
/// threaded GEMM (whose floats may still differ between thread counts).
inline bool pointwise_in_pixel_shares(const Conv2dGeometry& g, int threads) {
    return g.pointwise() && threads > 1 && has_packed_sgemm(active_isa()) &&
           conv_blocking(g, threads).units < threads && pointwise_worth_threading(g);
}

/// cols [(oh1-oh0)*OW, K] <- receptive fields of output rows [oh0, oh1) of one image x_img [H, W, C].
inline void im2col_rows(const float* x_img, const Conv2dGeometry& g, int64_t oh0, int64_t oh1, float* cols) {
    const int64_t K = g.K();
    for (int64_t oh = oh0; oh < oh1; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow)
            gather_field(x_img, g, oh * g.stride - g.pad, ow * g.stride - g.pad, cols + ((oh - oh0) * g.OW + ow) * K);
}

/// dx_img [H, W, C] += scatter of dcols [(oh1-oh0)*OW, K] (the adjoint of im2col_rows).
inline void col2im_rows(const float* dcols, const Conv2dGeometry& g, int64_t oh0, int64_t oh1, float* dx_img) {
    const int64_t C = g.C, K = g.K();
    for (int64_t oh = oh0; oh < oh1; ++oh) {
        for (int64_t ow = 0; ow < g.OW; ++ow) {
            const float* row = dcols + ((oh - oh0) * g.OW + ow) * K;
            for (int64_t kh = 0; kh < g.KH; ++kh) {
                const int64_t ih = oh * g.stride - g.pad + kh;
                if (ih < 0 || ih >= g.H) continue;
                for (int64_t kw = 0; kw < g.KW; ++kw) {
                    const int64_t iw = ow * g.stride - g.pad + kw;
                    if (iw < 0 || iw >= g.W) continue;
                    const float* __restrict src = row + (kh * g.KW + kw) * C;
                    float* __restrict dst = dx_img + (ih * g.W + iw) * C;
#pragma omp simd
                    for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
                }
            }
        }
    }
}

/// Calls body(n0, n1, oh0, oh1, thread_index) for every block (images [n0, n1), output rows
/// [oh0, oh1) of each). With at least as many units as threads, units are spread over threads,
/// so col2im writes of different threads never touch the same image; otherwise blocks run in
/// order and the GEMM threads each product. Returns the number of threads that took part.
template <class Body>
int for_each_block(const Conv2dGeometry& g, const ConvBlocking& b, int threads, Body&& body) {
    auto unit = [&](int64_t u, int t) {
        const int64_t n0 = b.first_image(u, g.N), n1 = b.first_image(u + 1, g.N);
        for (int64_t oh = 0; oh < g.OH; oh += b.rows_per_block) body(n0, n1, oh, std::min(oh + b.rows_per_block, g.OH), t);
    };
    if (threads > 1 && b.units >= threads) {
        parallel_ranges(b.units, threads, [&](int t, int64_t u0, int64_t u1) {
            for (int64_t u = u0; u < u1; ++u) unit(u, t);
        });
        return threads;
    }
    for (int64_t u = 0; u < b.units; ++u) unit(u, 0);
    return 1;
}

/// im2col of a block: cols [(n1-n0) * (oh1-oh0) * OW, K].
inline void im2col_block(const float* x, const Conv2dGeometry& g, int64_t n0, int64_t n1, int64_t oh0, int64_t oh1,
                         float* cols) {
    const int64_t per_image = (oh1 - oh0) * g.OW * g.K();
    for (int64_t n = n0; n < n1; ++n) im2col_rows(x + n * g.H * g.W * g.C, g, oh0, oh1, cols + (n - n0) * per_image);
}

/// col2im of a block, accumulating into dx [N, H, W, C].
inline void col2im_block(const float* dcols, const Conv2dGeometry& g, int64_t n0, int64_t n1, int64_t oh0, int64_t oh1,
                         float* dx) {
    const int64_t per_image = (oh1 - oh0) * g.OW * g.K();
    for (int64_t n = n0; n < n1; ++n) col2im_rows(dcols + (n - n0) * per_image, g, oh0, oh1, dx + n * g.H * g.W * g.C);
}

/// True when dx of a stride-1 convolution can run as the forward convolution of dout with the
/// flipped weights: square kernel, padding at most kernel - 1 (so the flipped padding is >= 0).
inline bool input_grad_is_convolution(const Conv2dGeometry& g) {
    return g.stride == 1 && g.KH == g.KW && g.pad <= g.KH - 1 && !g.pointwise();
}

#if BNN_X86
/// out [N, OH, OW, Cout] (= or +=) conv(x, w) (+ bias) by implicit GEMM on a vector path: whole
/// images per block (no column buffer to bound), one product per block. With flipped_of, w is
/// that convolution's weight, used flipped (see ConvForwardSource).
inline void conv2d_forward_implicit(Isa isa, const float* x, const float* w, const float* bias, float* out,
                                    const Conv2dGeometry& g, bool accumulate,
                                    const Conv2dGeometry* flipped_of = nullptr) {
    const int64_t K = g.K(), Co = g.Cout;
    const int threads = num_threads();
    if (direct_conv_applies(isa, g, threads)) {
        if (avx2_is_widest(isa)) conv2d_forward_direct<SgemmAvx2>(x, w, bias, out, g, accumulate, flipped_of, threads);
        else if (Co <= 16) conv2d_forward_direct<SgemmAvx512Narrow>(x, w, bias, out, g, accumulate, flipped_of, threads);
        else conv2d_forward_direct<SgemmAvx512Wide>(x, w, bias, out, g, accumulate, flipped_of, threads);
        return;
    }
    auto b = conv_blocking(g, threads);
    b.rows_per_block = g.OH;
    if (flipped_of) {
        // An input gradient packs its flipped weights once per product, a row of Cin floats per
        // depth step from rows KH*KW*Cin apart: one product per thread's share of the batch packs
        // them least often (docs/performance.md, "Float convolution").
        b.share_out(g.N, threads);
    }
    for_each_block(g, b, threads, [&](int64_t n0, int64_t n1, int64_t oh0, int64_t oh1, int) {
        const ConvBlockPixels pixels{&g, x, n0, oh0, oh1};
        const int64_t P = pixels.count(n1);
        float* o = out + (n0 * g.OH + oh0) * g.OW * Co;
        sgemm_run(isa, ConvForwardSource{pixels, w, flipped_of}, P, Co, K, o, Co, accumulate);
        if (bias)
            for (int64_t p = 0; p < P; ++p)
#pragma omp simd
                for (int64_t c = 0; c < Co; ++c) o[p * Co + c] += bias[c];
    });
}


/// dx [N, H, W, C] += conv(dout [N, OH, OW, Cout], w flipped in space with in/out swapped,
/// padding KH-1-pad): for stride 1, the adjoint of the forward convolution.
inline void conv2d_input_grad_implicit(Isa isa, const float* w, const float* dout, float* dx, const Conv2dGeometry& g) {
    const Conv2dGeometry gt = conv2d_geometry(g.N, g.OH, g.OW, g.Cout, g.C, g.KH, g.KW, 1, g.KH - 1 - g.pad);
    conv2d_forward_implicit(isa, dout, w, nullptr, dx, gt, true, &g);
}
#endif  // BNN_X86

/// Tag of the forward's per-thread column buffer (bnn::thread_scratch).
struct Conv2dColumns;
}  // namespace detail

/// out [P, Cout] = a [P, K] w^T + bias (bias [Cout] may be null): the convolution of P receptive
/// fields, or of P pixels for a 1x1 stride-1 conv. On the packed-sgemm paths each row's floats
/// are the same whatever P, so a fused step may compute its own share of pixels this way.
inline void conv2d_rows(const float* a, int64_t P, int64_t K, const float* w, const float* bias, int64_t Cout,
                        float* out) {
    gemm_nt(P, Cout, K, a, K, w, K, out, Cout, false);
    if (bias)
        for (int64_t p = 0; p < P; ++p)
#pragma omp simd
            for (int64_t c = 0; c < Cout; ++c) out[p * Cout + c] += bias[c];
}

/// out [N, OH, OW, Cout] = conv(x [N, H, W, C], w [Cout, KH, KW, C]) + bias [Cout] (bias may be null).
/// Steady-state calls allocate nothing (column buffers, GEMM panels and the direct path's padded
/// images are kept per thread).
inline void conv2d_forward(const float* x, const float* w, const float* bias, float* out, const Conv2dGeometry& g) {
#if BNN_X86
    const Isa isa = active_isa();
    if (has_avx2(isa) && !g.pointwise()) {
        detail::conv2d_forward_implicit(isa, x, w, bias, out, g, false);
        return;
    }
#endif
    const int64_t K = g.K(), Co = g.Cout;
    const int threads = num_threads();
    const auto b = detail::conv_blocking(g, threads);
    // out pixels [first, first + P) from their receptive fields a [P, K].
    auto product = [&](int64_t first, int64_t P, const float* a) { conv2d_rows(a, P, K, w, bias, Co, out + first * Co); };
    if (detail::pointwise_in_pixel_shares(g, threads)) {
        parallel_ranges(g.N * g.OH * g.OW, threads,
                        [&](int, int64_t p0, int64_t p1) { product(p0, p1 - p0, x + p0 * g.C); });
        return;
    }
    detail::for_each_block(g, b, threads, [&](int64_t n0, int64_t n1, int64_t oh0, int64_t oh1, int) {
        const int64_t first = (n0 * g.OH + oh0) * g.OW;  // first output pixel of the block
        const float* a = x + first * g.C;                // pointwise: input pixels = output pixels
        if (!g.pointwise()) {
            float* cols = thread_scratch<detail::Conv2dColumns>(b.max_block_floats);
            detail::im2col_block(x, g, n0, n1, oh0, oh1, cols);
            a = cols;
        }
        product(first, (n1 - n0) * (oh1 - oh0) * g.OW, a);
    });
}

/// Gradients of conv2d_forward, ACCUMULATED into the non-null outputs:
///   dx [N, H, W, C] += conv^T(dout [N, OH, OW, Cout], w)      (GEMM then col2im)
///   dw [Cout, KH, KW, C] += dout^T * cols(x)
///   db [Cout] += sum of dout over N, OH, OW
inline void conv2d_backward(const float* x, const float* w, const float* dout, float* dx, float* dw, float* db,
                            const Conv2dGeometry& g) {
    const int64_t K = g.K(), Co = g.Cout;
    const int threads = num_threads();
    // x86 vector paths: a stride-1 input gradient is a convolution of its own, and the direct
    // weight gradient reads both operands in place; both run before the per-block loop.
    // Otherwise the weight gradient's product packs from x.
#if BNN_X86
    const Isa isa = active_isa();
    const bool vector = has_avx2(isa);
    if (dx && vector && detail::input_grad_is_convolution(g)) {
        detail::conv2d_input_grad_implicit(isa, w, dout, dx, g);
        dx = nullptr;
    }
    if (dw && detail::weight_grad_direct_applies(isa, g, threads)) {
        if (avx2_is_widest(isa)) detail::conv2d_weight_grad_direct<detail::WeightGradTileAvx2>(x, dout, dw, g, threads);
        else if (g.Cout % 64 == 0) detail::conv2d_weight_grad_direct<detail::WeightGradTileAvx512>(x, dout, dw, g, threads);
        else detail::conv2d_weight_grad_direct<detail::WeightGradTileAvx512Narrow>(x, dout, dw, g, threads);
        dw = nullptr;
    }
    const bool implicit_dw = vector && !g.pointwise();
#else
    const bool implicit_dw = false;
#endif
    auto b = detail::conv_blocking(g, threads);
    const bool need_cols = dw && !g.pointwise() && !implicit_dw;
    const bool need_dcols = dx && !g.pointwise();
    // Without column buffers there is no reason to cut images into row blocks: whole images
    // give the weight-gradient product a deeper sum per call.
    if (!need_cols && !need_dcols) b.rows_per_block = g.OH;
    const int64_t block = b.max_block_floats;
    // From the tensor block cache: a training step asks for the same sizes every time, and a
    // fresh malloc of a large block would page-fault in again on every call.
    std::vector<Tensor<float>> cols(threads), dcols(threads), dw_part(threads), db_part(threads);
    for (int t = 0; t < threads; ++t) {
        if (need_cols) cols[t] = Tensor<float>::empty(Shape{block});    // im2col writes it all
        if (need_dcols) dcols[t] = Tensor<float>::empty(Shape{block});  // so does the product
        // Thread 0 accumulates straight into dw/db; the others into private partial sums.
        if (t > 0 && dw) dw_part[t] = Tensor<float>::zeros(Shape{Co * K});
        if (t > 0 && db) db_part[t] = Tensor<float>::zeros(Shape{Co});
    }
    const int used = detail::for_each_block(g, b, threads, [&](int64_t n0, int64_t n1, int64_t oh0, int64_t oh1, int t) {
        const int64_t P = (n1 - n0) * (oh1 - oh0) * g.OW;
        const int64_t first = (n0 * g.OH + oh0) * g.OW;
        const float* go = dout + first * Co;
#if BNN_X86
        if (dw && implicit_dw) {
            const detail::ConvBlockPixels pixels{&g, x, n0, oh0, oh1};
            detail::sgemm_run(isa, detail::ConvWeightGradSource{pixels, go}, Co, K, P,
                              t == 0 ? dw : dw_part[t].data(), K, true);
        }
#endif
        if (dw && !implicit_dw) {
            const float* a = x + first * g.C;
            if (need_cols) {
                detail::im2col_block(x, g, n0, n1, oh0, oh1, cols[t].data());
                a = cols[t].data();
            }
            gemm_tn(Co, K, P, go, Co, a, K, t == 0 ? dw : dw_part[t].data(), K, true);
        }
        if (dx) {
            if (need_dcols) {
                gemm_nn(P, K, Co, go, Co, w, K, dcols[t].data(), K, false);
                detail::col2im_block(dcols[t].data(), g, n0, n1, oh0, oh1, dx);
            } else {
                gemm_nn(P, K, Co, go, Co, w, K, dx + first * g.C, g.C, true);
            }
        }
        if (db) {
            float* acc = t == 0 ? db : db_part[t].data();
            for (int64_t p = 0; p < P; ++p)
#pragma omp simd
                for (int64_t c = 0; c < Co; ++c) acc[c] += go[p * Co + c];
        }
    });
    for (int t = 1; t < used; ++t) {
        if (dw)
            for (int64_t i = 0; i < Co * K; ++i) dw[i] += dw_part[t].data()[i];
        if (db)
            for (int64_t c = 0; c < Co; ++c) db[c] += db_part[t].data()[c];
    }
}

/// Naive reference: out [N, OH, OW, Cout] by seven nested loops, for tests.
inline void conv2d_forward_reference(const float* x, const float* w, const float* bias, float* out,
                                     const Conv2dGeometry& g) {
    for (int64_t n = 0; n < g.N; ++n)
        for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow)
                for (int64_t co = 0; co < g.Cout; ++co) {
                    double s = bias ? bias[co] : 0.0;
                    for (int64_t kh = 0; kh < g.KH; ++kh)
                        for (int64_t kw = 0; kw < g.KW; ++kw) {
                            const int64_t ih = oh * g.stride - g.pad + kh, iw = ow * g.stride - g.pad + kw;
                            if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                            for (int64_t c = 0; c < g.C; ++c)
                                s += double(x[((n * g.H + ih) * g.W + iw) * g.C + c]) *
                                     double(w[((co * g.KH + kh) * g.KW + kw) * g.C + c]);
                        }
                    out[((n * g.OH + oh) * g.OW + ow) * g.Cout + co] = static_cast<float>(s);
                }
}

}  // namespace bnn::kernels
