#pragma once
/// @file binary_conv2d.hpp
/// ops::binary_conv2d: the fully binary convolution, sign(x) ⊛ sign(W) scaled per output channel,
/// forward on the XNOR-popcount kernel, backward through float convolutions of the ±1 values
/// with straight-through estimators (one tape node).
#include <cmath>
#include <vector>

#include "bnn/autograd/grad_mode.hpp"
#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/kernels/conv2d.hpp"
#include "bnn/kernels/sign.hpp"
#include "bnn/kernels/binary_conv2d.hpp"

namespace bnn::ops {

namespace detail {
/// ±1 floats of w (sign(0) = +1).
inline Tensor<float> signs_of(const Tensor<float>& w) {
    Tensor<float> s = Tensor<float>::empty(w.shape());
    kernels::sign_forward(w.data(), s.data(), w.numel());
    return s;
}
/// y [rows, C] = x [rows, C] * scale[c]; rows walked so no index needs a division.
inline void scale_channels(const float* x, const float* scale, float* y, int64_t rows, int64_t C) {
    for (int64_t r = 0; r < rows; ++r)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) y[r * C + c] = x[r * C + c] * scale[c];
}
}  // namespace detail

/// y [N, OH, OW, Cout] = (sign(x) ⊛ sign(weight)) * alpha[o], with
///   x [N, H, W, Cin] (real activations), weight [Cout, KH, KW, Cin] (latent real weights),
///   alpha [Cout] per-output-channel scale, or an undefined Variable for none;
/// padding (default 0, as ops::conv2d): zero padding contributes 0 (the float conv of the ±1
/// tensor); PadMode::one pads with +1 instead.
/// Forward: input signs and weight signs are packed and convolved by xnor_conv2d_forward; the
/// result equals the float convolution of the ±1 tensors times alpha exactly.
/// Backward (straight-through): with g' = grad * alpha,
///   dx += (conv^T(g', sign(W))) where |x| <= 1,    dW += conv_dW(g', sign(x)) (identity STE:
///   the latent weights are kept in [-1, 1] by BinaryConv2d's constraint),
///   dalpha[o] += sum of grad * (sign(x) ⊛ sign(W)) over N, OH, OW.
/// Throws bnn::Error on mismatched ranks, channels or alpha shape, or a kernel larger than the input.
inline Variable binary_conv2d(const Variable& x, const Variable& weight, const Variable& alpha, int stride = 1,
                              int padding = 0, kernels::PadMode pad_mode = kernels::PadMode::zero) {
    expect_rank(x.value(), 4, "ops::binary_conv2d", "input x [N, H, W, Cin]");
    expect_rank(weight.value(), 4, "ops::binary_conv2d", "weight [Cout, KH, KW, Cin]");
    BNN_CHECK(weight.dim(3) == x.dim(3), "ops::binary_conv2d: weight ", weight.shape().str(), " expects ",
              weight.dim(3), " input channels, got input x of shape ", x.shape().str());
    const int64_t cout = weight.dim(0);
    if (alpha.defined()) expect_shape(alpha.value(), Shape{cout}, "ops::binary_conv2d", "alpha");

    const Tensor<float> xv = x.value(), wv = weight.value();
    const Tensor<float> av = alpha.defined() ? alpha.value() : Tensor<float>();
    const BitTensor xbits = pack_signs(xv);
    const kernels::PackedConvWeights wp = kernels::pack_conv_weights(wv);

    bool taped = grad_enabled();
    bool any = false;
    for (const Variable* v : {&x, &weight, &alpha}) any = any || (v->defined() && v->requires_grad());
    taped = taped && any;
    const bool need_dot = taped && alpha.defined() && alpha.requires_grad();

    // Inference: scale fused into the kernel. Training with a learned alpha also keeps the
    // unscaled dot products, which its gradient needs.
    Tensor<float> out, dot;
    if (need_dot) {
        dot = kernels::xnor_conv2d(xbits, wp, {}, {}, stride, padding, pad_mode);
        out = Tensor<float>::empty(dot.shape());
        detail::scale_channels(dot.data(), av.data(), out.data(), dot.numel() / cout, cout);
    } else {
        out = kernels::xnor_conv2d(xbits, wp, av, {}, stride, padding, pad_mode);
    }
    if (!taped) return Variable(out, false);

    const Shape out_shape = out.shape();
    return make_result(
        out, {x, weight, alpha},
        [xv, wv, av, dot, stride, padding, pad_mode, out_shape](const Tensor<float>& g, std::vector<Variable>& in) {
            // dx is fetched last, after dW and dalpha are written (GradSink's rule): it may
            // then be overwritten rather than zero-filled and added to.
            const bool wants_dx = in[0].defined() && in[0].requires_grad();
            float* dw = grad_accumulator(in[1]);
            float* da = grad_accumulator(in[2]);
            const int64_t co = wv.dim(0), n = xv.dim(0), h = xv.dim(1), w = xv.dim(2), c = xv.dim(3);
            const int64_t rows = g.numel() / co;
            if (da)
                for (int64_t r = 0; r < rows; ++r)
#pragma omp simd
                    for (int64_t o = 0; o < co; ++o) da[o] += g[r * co + o] * dot[r * co + o];
            if (!wants_dx && !dw) return;
            Tensor<float> gs = g;
            if (av.defined()) {
                gs = Tensor<float>::empty(g.shape());
                detail::scale_channels(g.data(), av.data(), gs.data(), rows, co);
            }
            // One-padding is a float conv of the ±1 input padded with +1: build that input
            // explicitly and convolve unpadded, so dW sees the border and dx its interior.
            const bool ones = pad_mode == kernels::PadMode::one && padding > 0;
            const int64_t p = ones ? padding : 0, hp = h + 2 * p, wpd = w + 2 * p;
            // Pixel (b, i, j) of x starts at this offset of the (possibly one-padded) ±1 input.
            auto padded_at = [&](int64_t b, int64_t i, int64_t j) { return ((b * hp + i + p) * wpd + j + p) * c; };
            Tensor<float> xs;
            if (ones) {
                xs = Tensor<float>::full(Shape{n, hp, wpd, c}, 1.f);
                for (int64_t b = 0; b < n; ++b)
                    for (int64_t i = 0; i < h; ++i)
                        kernels::sign_forward(xv.data() + ((b * h + i) * w) * c, xs.data() + padded_at(b, i, 0), w * c);
            } else {
                xs = detail::signs_of(xv);
            }
            const Tensor<float> ws = detail::signs_of(wv);
            const auto geo = kernels::conv2d_geometry(n, hp, wpd, c, co, wv.dim(1), wv.dim(2), stride,
                                                      ones ? 0 : padding);
            BNN_CHECK(geo.OH == out_shape[1] && geo.OW == out_shape[2], "ops::binary_conv2d: backward geometry");
            // conv2d_backward accumulates, and the STE mask must apply to this op's share only:
            // the input gradient goes to a zeroed buffer first.
            Tensor<float> dxs = wants_dx ? Tensor<float>(xs.shape()) : Tensor<float>();
            kernels::conv2d_backward(xs.data(), ws.data(), gs.data(), wants_dx ? dxs.data() : nullptr, dw, nullptr, geo);
            if (!wants_dx) return;
            const auto dx = grad_sink(in[0]);
            if (ones) {
                for (int64_t b = 0; b < n; ++b)
                    for (int64_t i = 0; i < h; ++i) {
                        const int64_t at = ((b * h + i) * w) * c;
                        kernels::sign_ste_backward(xv.data() + at, dxs.data() + padded_at(b, i, 0), dx.data + at, w * c,
                                                   dx.accumulate);
                    }
            } else {
                kernels::sign_ste_backward(xv.data(), dxs.data(), dx.data, xv.numel(), dx.accumulate);
            }
        },
        "binary_conv2d");
}

}  // namespace bnn::ops
