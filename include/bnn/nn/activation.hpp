#pragma once
/// @file activation.hpp
/// Element-wise activation layers. All keep the input's shape.
#include <string>

#include "bnn/nn/module.hpp"
#include "bnn/ops/activation.hpp"
#include "bnn/ops/sign.hpp"

namespace bnn::nn {

/// max(x, 0).
class ReLU : public Module {
public:
    Variable forward(const Variable& x) override { return ops::relu(x); }
    std::string type_name() const override { return "ReLU"; }
};

/// tanh(x).
class Tanh : public Module {
public:
    Variable forward(const Variable& x) override { return ops::tanh(x); }
    std::string type_name() const override { return "Tanh"; }
};

/// 1 / (1 + exp(-x)).
class Sigmoid : public Module {
public:
    Variable forward(const Variable& x) override { return ops::sigmoid(x); }
    std::string type_name() const override { return "Sigmoid"; }
};

/// +1 where x >= 0, else -1 (sign(0) = +1, as the packed kernels); its gradient passes where
/// |x| <= 1. The binarised input of a float convolution: a converted network whose convolution
/// after a sign has weights that are not two-valued keeps it real (docs/onnx.md).
class Sign : public Module {
public:
    Variable forward(const Variable& x) override { return ops::sign_ste(x); }
    std::string type_name() const override { return "Sign"; }
};

/// clamp(x, lo, hi); its gradient is 1 inside (lo, hi) and 0 outside.
class Hardtanh : public Module {
public:
    explicit Hardtanh(float lo = -1.f, float hi = 1.f) : lo_(lo), hi_(hi) {
        BNN_CHECK(lo < hi, "Hardtanh: expected lo < hi, got [", lo, ", ", hi, "]");
    }
    Variable forward(const Variable& x) override { return ops::hardtanh(x, lo_, hi_); }
    std::string type_name() const override { return "Hardtanh"; }
    float lo() const { return lo_; }
    float hi() const { return hi_; }

private:
    float lo_, hi_;
};

/// x for x >= 0, weight[c] * x otherwise, with one learnt slope per channel (the last dim).
/// Requires: x's last dimension equals channels. Parameter: `weight` [C] = init.
class PReLU : public Module {
public:
    explicit PReLU(int64_t channels, float init = 0.25f) : channels_(channels) {
        BNN_CHECK(channels > 0, "PReLU: expected channels > 0, got ", channels);
        weight = register_parameter("weight", Tensor<float>::full(Shape{channels}, init));
    }
    Variable forward(const Variable& x) override {
        BNN_CHECK(x.shape().rank() >= 1 && x.shape()[-1] == channels_, type_name(), "(", channels_,
                  "): expected the last dimension to be ", channels_, ", got ", x.shape().str());
        return ops::prelu(x, weight);
    }
    std::string type_name() const override { return "PReLU"; }

    Variable weight;  ///< slopes [C]

private:
    int64_t channels_;
};

}  // namespace bnn::nn
