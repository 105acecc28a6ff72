#pragma once
/// @file binary_conv2d.hpp
/// ops::binary_conv2d: the fully binary convolution, sign(x) ⊛ sign(W) scaled per output channel,
/// forward on the XNOR-popcount kernel, backward through float convolutions of the ±1 values
/// with straight-through estimators (one tape node).
#include <vector>

#include "bnn/autograd/grad_mode.hpp"
#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/binary_conv2d_ste.hpp"

namespace bnn::ops {

/// y [N, OH, OW, Cout] = (sign(x) ⊛ sign(weight)) * alpha[o], with
///   x [N, H, W, Cin] (real activations), weight [Cout, KH, KW, Cin] (latent real weights),
///   alpha [Cout] per-output-channel scale, or an undefined Variable for none;
/// padding (default 0, as ops::conv2d): zero padding contributes 0 (the float conv of the ±1
/// tensor); PadMode::one pads with +1 instead.
/// Forward and backward (straight-through) are kernels::binary_conv2d_forward / _backward
/// (kernels/binary_conv2d_ste.hpp); the result equals the float convolution of the ±1 tensors
/// times alpha exactly.
/// Throws bnn::Error on mismatched ranks, channels or alpha shape, or a kernel larger than the input.
inline Variable binary_conv2d(const Variable& x, const Variable& weight, const Variable& alpha, int stride = 1,
                              int padding = 0, kernels::PadMode pad_mode = kernels::PadMode::zero) {
    expect_rank(x.value(), 4, "ops::binary_conv2d", "input x [N, H, W, Cin]");
    expect_rank(weight.value(), 4, "ops::binary_conv2d", "weight [Cout, KH, KW, Cin]");
    BNN_CHECK(weight.dim(3) == x.dim(3), "ops::binary_conv2d: weight ", weight.shape().str(), " expects ",
              weight.dim(3), " input channels, got input x of shape ", x.shape().str());
    const int64_t cout = weight.dim(0);
    if (alpha.defined()) expect_shape(alpha.value(), Shape{cout}, "ops::binary_conv2d", "alpha");
    const auto g = kernels::xnor_conv_geometry(x.dim(0), x.dim(1), x.dim(2), x.dim(3), cout, weight.dim(1),
                                               weight.dim(2), stride, padding, pad_mode);

    bool taped = grad_enabled();
    bool any = false;
    for (const Variable* v : {&x, &weight, &alpha}) any = any || (v->defined() && v->requires_grad());
    taped = taped && any;
    // Training with a learned alpha keeps the unscaled dot products, which its gradient needs.
    const bool need_dot = taped && alpha.defined() && alpha.requires_grad();

    const Tensor<float> xv = x.value(), wv = weight.value();
    const Tensor<float> av = alpha.defined() ? alpha.value() : Tensor<float>();
    const Shape out_shape{g.N, g.OH, g.OW, g.Cout};
    Tensor<float> out = Tensor<float>::empty(out_shape);
    Tensor<float> dot = need_dot ? Tensor<float>::empty(out_shape) : Tensor<float>();
    kernels::binary_conv2d_forward(xv.data(), wv.data(), optional_data(alpha), out.data(),
                                   need_dot ? dot.data() : nullptr, g);
    if (!taped) return Variable(out, false);

    return make_result(
        out, {x, weight, alpha},
        [xv, wv, av, dot, g](const Tensor<float>& grad, std::vector<Variable>& in) {
            // dx's sink is fetched after the other gradients' buffers exist (GradSink's rule): if x
            // were also passed as the weight, the sink is then that accumulating buffer.
            float* dw = grad_accumulator(in[1]);
            float* da = grad_accumulator(in[2]);
            const GradSink dx = grad_sink(in[0]);
            kernels::binary_conv2d_backward(xv.data(), wv.data(), av.defined() ? av.data() : nullptr,
                                            dot.defined() ? dot.data() : nullptr, grad.data(), dx.data,
                                            dx.accumulate, dw, da, g);
        },
        "binary_conv2d");
}

}  // namespace bnn::ops
