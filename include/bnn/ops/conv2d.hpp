#pragma once
/// @file conv2d.hpp
/// ops::conv2d: differentiable float convolution (NHWC input, OHWI weight), one tape node.
#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/conv2d.hpp"

namespace bnn::ops {

/// Convolution of x [N, H, W, Cin] with weight [Cout, KH, KW, Cin], plus bias [Cout] when the
/// bias Variable is defined; zero padding on every side. Returns [N, OH, OW, Cout] with
/// OH = (H + 2*padding - KH) / stride + 1 (same for OW).
/// Throws bnn::Error on mismatched ranks, channels, bias shape or a kernel larger than the input.
inline Variable conv2d(const Variable& x, const Variable& weight, const Variable& bias, int stride = 1,
                       int padding = 0) {
    expect_rank(x.value(), 4, "ops::conv2d", "input x [N, H, W, Cin]");
    expect_rank(weight.value(), 4, "ops::conv2d", "weight [Cout, KH, KW, Cin]");
    BNN_CHECK(weight.dim(3) == x.dim(3), "ops::conv2d: weight ", weight.shape().str(), " expects ", weight.dim(3),
              " input channels, got input x of shape ", x.shape().str());
    if (bias.defined()) expect_shape(bias.value(), Shape{weight.dim(0)}, "ops::conv2d", "bias");
    const auto g = kernels::conv2d_geometry(x.dim(0), x.dim(1), x.dim(2), x.dim(3), weight.dim(0), weight.dim(1),
                                            weight.dim(2), stride, padding);
    Tensor<float> out = Tensor<float>::empty(Shape{g.N, g.OH, g.OW, g.Cout});
    kernels::conv2d_forward(x.value().data(), weight.value().data(), optional_data(bias), out.data(), g);
    Tensor<float> xv = x.value(), wv = weight.value();
    return make_result(
        out, {x, weight, bias},
        [xv, wv, g](const Tensor<float>& grad, std::vector<Variable>& in) {
            kernels::conv2d_backward(xv.data(), wv.data(), grad.data(), grad_accumulator(in[0]),
                                     grad_accumulator(in[1]), grad_accumulator(in[2]), g);
        },
        "conv2d");
}

}  // namespace bnn::ops
