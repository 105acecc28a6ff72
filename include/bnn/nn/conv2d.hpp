#pragma once
/// @file conv2d.hpp
/// Conv2d: a float 2-D convolution layer.
#include <cmath>
#include <memory>
#include <string>

#include "bnn/nn/init.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/ops/conv2d.hpp"

namespace bnn::nn {

/// Options of Conv2d: `Conv2d({.in_channels = 3, .out_channels = 64, .padding = 1})`.
struct Conv2dOptions {
    int64_t in_channels = 0;
    int64_t out_channels = 0;
    int kernel_size = 3;
    int stride = 1;
    int padding = 0;  ///< zero padding on every side
    bool bias = false;
};

/// Computes y = conv(x, weight) + bias with a square kernel, stride and zero padding.
/// Requires: x is [N, H, W, in_channels] with H + 2*padding >= kernel_size (likewise W).
/// Ensures: y is [N, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1, out_channels].
/// Parameters: `weight` [out, k, k, in] (OHWI), init::fan_in_uniform (fan_in = k*k*in, as PyTorch);
/// `bias` [out] (uniform +-1/sqrt(fan_in), as PyTorch) or undefined when options.bias is false.
class Conv2d : public Module {
public:
    explicit Conv2d(const Conv2dOptions& options) : options_(options) {
        BNN_CHECK(options.in_channels > 0 && options.out_channels > 0, "Conv2d: expected positive channel counts, got ",
                  options.in_channels, " -> ", options.out_channels);
        BNN_CHECK(options.kernel_size > 0 && options.stride > 0 && options.padding >= 0,
                  "Conv2d: expected kernel_size > 0, stride > 0, padding >= 0, got ", options.kernel_size, ", ",
                  options.stride, ", ", options.padding);
        const int64_t k = options.kernel_size;
        Tensor<float> w(Shape{options.out_channels, k, k, options.in_channels});
        init::fan_in_uniform(w);
        weight = register_parameter("weight", w);
        if (options.bias) {
            Tensor<float> b(Shape{options.out_channels});
            const float bound = 1.f / std::sqrt(static_cast<float>(init::fan_in(w.shape())));
            init::uniform(b, -bound, bound);
            bias = register_parameter("bias", b);
        }
    }

    Variable forward(const Variable& x) override {
        BNN_CHECK(x.shape().rank() == 4 && x.shape()[3] == options_.in_channels, type_name(), "(",
                  options_.in_channels, " -> ", options_.out_channels, "): expected input [N, H, W, ",
                  options_.in_channels, "], got ", x.shape().str());
        return ops::conv2d(x, weight, bias, options_.stride, options_.padding);
    }
    std::string type_name() const override { return "Conv2d"; }
    const Conv2dOptions& options() const { return options_; }

    Variable weight;  ///< [out, k, k, in]
    Variable bias;    ///< [out], or undefined

private:
    Conv2dOptions options_;
};

}  // namespace bnn::nn
