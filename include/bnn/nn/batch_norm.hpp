#pragma once
/// @file batch_norm.hpp
/// BatchNorm2d: batch normalization over the channel (last) dimension.
#include <string>

#include "bnn/nn/module.hpp"
#include "bnn/ops/batch_norm.hpp"

namespace bnn::nn {

/// Normalizes each channel: y = (x - mean) / sqrt(var + eps) * weight + bias.
/// Training mode uses the batch's statistics over every dimension but the channels and updates
/// the running averages (running = (1 - momentum) * running + momentum * batch, unbiased variance);
/// eval mode uses the running statistics.
/// Requires: x is [N, H, W, C] or [N, C] with C = channels. Ensures: y has x's shape.
/// Parameters: `weight` [C] = 1, `bias` [C] = 0. Buffers: `running_mean` [C] = 0, `running_var` [C] = 1.
class BatchNorm2d : public Module {
public:
    explicit BatchNorm2d(int64_t channels, float momentum = 0.1f, float eps = 1e-5f)
        : channels_(channels), momentum_(momentum), eps_(eps) {
        BNN_CHECK(channels > 0, "BatchNorm2d: expected channels > 0, got ", channels);
        BNN_CHECK(momentum >= 0.f && momentum <= 1.f, "BatchNorm2d: expected 0 <= momentum <= 1, got ", momentum);
        BNN_CHECK(eps > 0.f, "BatchNorm2d: expected eps > 0, got ", eps);
        weight = register_parameter("weight", Tensor<float>::full(Shape{channels}, 1.f));
        bias = register_parameter("bias", Tensor<float>(Shape{channels}));
        running_mean = register_buffer("running_mean", Tensor<float>(Shape{channels}));
        running_var = register_buffer("running_var", Tensor<float>::full(Shape{channels}, 1.f));
    }

    Variable forward(const Variable& x) override {
        const int r = x.shape().rank();
        BNN_CHECK((r == 4 || r == 2) && x.shape()[-1] == channels_, type_name(), "(", channels_,
                  "): expected input [N, H, W, ", channels_, "] or [N, ", channels_, "], got ", x.shape().str());
        return ops::batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum_, eps_);
    }
    std::string type_name() const override { return "BatchNorm2d"; }
    int64_t channels() const { return channels_; }
    float momentum() const { return momentum_; }
    float eps() const { return eps_; }

    Variable weight;             ///< gamma [C]
    Variable bias;               ///< beta [C]
    Tensor<float> running_mean;  ///< [C]
    Tensor<float> running_var;   ///< [C]

private:
    int64_t channels_;
    float momentum_, eps_;
};

}  // namespace bnn::nn
