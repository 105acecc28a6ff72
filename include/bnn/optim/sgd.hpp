#pragma once
/// @file sgd.hpp
/// Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay, with
/// PyTorch's semantics (dampening 0):
///   d = grad + wd * p;  buf = momentum * buf + d;  d = nesterov ? d + momentum * buf : buf;
///   p -= lr * d.
/// The momentum buffer starts at zero, which equals PyTorch's "first step copies d" when
/// dampening is 0.
#include <utility>
#include <vector>

#include "bnn/optim/optimizer.hpp"

namespace bnn::optim {

/// Options of SGD. `lr` and `weight_decay` are used by the single-group constructor only; groups
/// carry their own.
struct SGDOptions {
    float lr = 0.1f;
    float momentum = 0.f;
    float weight_decay = 0.f;
    bool nesterov = false;
};

class SGD : public Optimizer {
public:
    /// One group of parameters with the options' lr and weight decay.
    SGD(std::vector<Variable> params, SGDOptions options = {})
        : SGD(std::vector<ParamGroup>{ParamGroup{std::move(params), options.lr, options.weight_decay}},
              options) {}
    /// Several groups, each with its own lr and weight decay; momentum and Nesterov from options.
    SGD(std::vector<ParamGroup> groups, SGDOptions options) : Optimizer(std::move(groups)), options_(options) {
        BNN_CHECK(options_.momentum >= 0.f, "SGD: expected momentum >= 0, got ", options_.momentum);
        BNN_CHECK(!options_.nesterov || options_.momentum > 0.f, "SGD: Nesterov momentum needs momentum > 0, got ",
                  options_.momentum);
        if (options_.momentum > 0.f) {
            momentum_buffer_.resize(groups_.size());
            for (size_t g = 0; g < groups_.size(); ++g)
                for (size_t i = 0; i < groups_[g].params.size(); ++i)
                    momentum_buffer_[g].push_back(add_state(g, i, "momentum_buffer", groups_[g].params[i].shape()));
        }
    }

    std::string type_name() const override { return "SGD"; }
    const SGDOptions& options() const { return options_; }

protected:
    void update(size_t g, size_t i, Tensor<float>& param, const Tensor<float>& grad, float lr,
                float weight_decay) override {
        float* p = param.data();
        const float* dp = grad.data();
        const int64_t n = param.numel();
        const float mu = options_.momentum;
        if (mu == 0.f) {
            for (int64_t k = 0; k < n; ++k) p[k] -= lr * (dp[k] + weight_decay * p[k]);
            return;
        }
        float* buf = momentum_buffer_[g][i].data();
        const bool nesterov = options_.nesterov;
        for (int64_t k = 0; k < n; ++k) {
            const float d = dp[k] + weight_decay * p[k];
            buf[k] = mu * buf[k] + d;
            p[k] -= lr * (nesterov ? d + mu * buf[k] : buf[k]);
        }
    }

private:
    SGDOptions options_;
    std::vector<std::vector<Tensor<float>>> momentum_buffer_;  // [group][param], empty without momentum
};

}  // namespace bnn::optim
