#pragma once
/// @file binary_conv2d_ste.hpp
/// The kernel pair of the trainable binary convolution (ops/binary_conv2d.hpp): forward on the
/// XNOR-popcount kernel (binary_conv2d.hpp), backward by straight-through estimators through
/// float convolutions of the ±1 values (conv2d.hpp).
///
///   x     [N, H, W, C]        real activations
///   w     [Cout, KH, KW, C]   latent real weights
///   alpha [Cout] or null (1)  per-output-channel scale
///   dot   [N, OH, OW, Cout]   sign(x) ⊛ sign(w), unscaled (kept for alpha's gradient)
///   out   [N, OH, OW, Cout]   dot * alpha[o]
///
/// sizes and padding in an XnorConvGeometry: zero padding contributes 0 (the float convolution
/// of the ±1 tensor), PadMode::one pads with +1.
#include <cstdint>
#include <cstring>

#include "bnn/core/bit_tensor.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/kernels/binary_conv2d.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/kernels/conv2d.hpp"
#include "bnn/kernels/pad.hpp"
#include "bnn/kernels/sign.hpp"

namespace bnn::kernels {

namespace detail {
/// y [rows, C] = x [rows, C] * scale[c]; rows walked so no index needs a division.
inline void scale_channels(const float* x, const float* scale, float* y, int64_t rows, int64_t C) {
    for (int64_t r = 0; r < rows; ++r)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) y[r * C + c] = x[r * C + c] * scale[c];
}
}  // namespace detail

/// out = sign(x) ⊛ sign(w) * alpha[o], equal to the float convolution of the ±1 tensors times
/// alpha exactly; with `dot` not null, dot = the unscaled sign(x) ⊛ sign(w) as well.
inline void binary_conv2d_forward(const float* x, const float* w, const float* alpha, float* out, float* dot,
                                  const XnorConvGeometry& g) {
    BitTensor bits(Shape{g.N, g.H, g.W, g.C});
    pack_signs(x, bits.pixels(), g.C, nullptr, nullptr, bits.data());
    const PackedConvWeights wp = pack_conv_weights(w, g.Cout, g.KH, g.KW, g.C);
    if (!dot) {  // the scale fused into the kernel
        xnor_conv2d_forward(bits.data(), wp.words.data(), wp.tap_sums.data(), alpha, nullptr, out, g);
        return;
    }
    xnor_conv2d_forward(bits.data(), wp.words.data(), wp.tap_sums.data(), nullptr, nullptr, dot, g);
    const int64_t rows = g.N * g.OH * g.OW;
    if (alpha) detail::scale_channels(dot, alpha, out, rows, g.Cout);
    else std::memcpy(out, dot, sizeof(float) * rows * g.Cout);
}

/// Gradients of binary_conv2d_forward (straight-through), with g' = dout * alpha[o]:
///   dalpha [Cout] += sum over N, OH, OW of dout * dot
///   dw [Cout, KH, KW, C] += conv_dW(g', sign(x))     (identity STE: the latent weights are kept
///                                                     in [-1, 1] by BinaryConv2d's constraint)
///   dx [N, H, W, C] += conv^T(g', sign(w)) where |x| <= 1   (= when dx_accumulate is false:
///                                                     every element written)
/// dout [N, OH, OW, Cout]; dot is read for dalpha only; null outputs are skipped.
inline void binary_conv2d_backward(const float* x, const float* w, const float* alpha, const float* dot,
                                   const float* dout, float* dx, bool dx_accumulate, float* dw, float* dalpha,
                                   const XnorConvGeometry& g) {
    const int64_t co = g.Cout, rows = g.N * g.OH * g.OW;
    if (dalpha)
        for (int64_t r = 0; r < rows; ++r)
#pragma omp simd
            for (int64_t o = 0; o < co; ++o) dalpha[o] += dout[r * co + o] * dot[r * co + o];
    if (!dx && !dw) return;
    Tensor<float> scaled;
    const float* gs = dout;
    if (alpha) {
        scaled = Tensor<float>::empty(Shape{rows, co});
        detail::scale_channels(dout, alpha, scaled.data(), rows, co);
        gs = scaled.data();
    }
    // One-padding is a float conv of the ±1 input padded with +1: build that input explicitly
    // and convolve unpadded, so dW sees the border and dx its interior.
    const bool ones = g.pad_mode == PadMode::one && g.pad > 0;
    const int64_t p = ones ? g.pad : 0;
    const Shape signs_shape{g.N, g.H + 2 * p, g.W + 2 * p, g.C};
    Tensor<float> xs;
    if (ones) {
        xs = Tensor<float>::full(signs_shape, 1.f);
        for_each_padded_row(g.N, g.H, g.W, g.C, p,
                            [&](int64_t at, int64_t from) { sign_forward(x + from, xs.data() + at, g.W * g.C); });
    } else {
        xs = Tensor<float>::empty(signs_shape);
        sign_forward(x, xs.data(), xs.numel());
    }
    Tensor<float> ws = Tensor<float>::empty(Shape{co, g.KH, g.KW, g.C});
    sign_forward(w, ws.data(), ws.numel());
    const auto cg = conv2d_geometry(g.N, signs_shape[1], signs_shape[2], g.C, co, g.KH, g.KW, g.stride,
                                    ones ? 0 : g.pad);
    BNN_CHECK(cg.OH == g.OH && cg.OW == g.OW, "binary_conv2d_backward: the float convolution's output ", cg.OH, "x",
              cg.OW, " differs from the binary one's ", g.OH, "x", g.OW);
    // conv2d_backward accumulates, and the STE mask must apply to this op's share only: the
    // input gradient goes to a zeroed buffer first.
    Tensor<float> dxs = dx ? Tensor<float>(signs_shape) : Tensor<float>();
    conv2d_backward(xs.data(), ws.data(), gs, dx ? dxs.data() : nullptr, dw, nullptr, cg);
    if (!dx) return;
    if (ones) {
        for_each_padded_row(g.N, g.H, g.W, g.C, p, [&](int64_t at, int64_t from) {
            sign_ste_backward(x + from, dxs.data() + at, dx + from, g.W * g.C, dx_accumulate);
        });
    } else {
        sign_ste_backward(x, dxs.data(), dx, dxs.numel(), dx_accumulate);
    }
}

}  // namespace bnn::kernels
