#pragma once
/// @file linear.hpp
/// Linear: a fully connected layer.
#include <cmath>
#include <string>

#include "bnn/nn/init.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/ops/linear.hpp"

namespace bnn::nn {

/// Computes y = x weight^T + bias.
/// Requires: x is [N, in_features]. Ensures: y is [N, out_features].
/// Parameters: `weight` [out, in], init::fan_in_uniform (fan_in = in, as PyTorch); `bias` [out], uniform
/// +-1/sqrt(in) as in PyTorch, or undefined when with_bias is false.
class Linear : public Module {
public:
    Linear(int64_t in_features, int64_t out_features, bool with_bias = true)
        : in_(in_features), out_(out_features) {
        BNN_CHECK(in_features > 0 && out_features > 0, "Linear: expected positive feature counts, got ", in_features,
                  " -> ", out_features);
        Tensor<float> w(Shape{out_features, in_features});
        init::fan_in_uniform(w);
        weight = register_parameter("weight", w);
        if (with_bias) {
            Tensor<float> b(Shape{out_features});
            const float bound = 1.f / std::sqrt(static_cast<float>(in_features));
            init::uniform(b, -bound, bound);
            bias = register_parameter("bias", b);
        }
    }

    Variable forward(const Variable& x) override {
        BNN_CHECK(x.shape().rank() == 2 && x.shape()[1] == in_, type_name(), "(", in_, " -> ", out_,
                  "): expected input [N, ", in_, "], got ", x.shape().str());
        return ops::linear(x, weight, bias);
    }
    std::string type_name() const override { return "Linear"; }
    int64_t in_features() const { return in_; }
    int64_t out_features() const { return out_; }

    Variable weight;  ///< [out, in]
    Variable bias;    ///< [out], or undefined

private:
    int64_t in_, out_;
};

}  // namespace bnn::nn
