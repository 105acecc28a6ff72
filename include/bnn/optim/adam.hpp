#pragma once
/// @file adam.hpp
/// Adam and AdamW with PyTorch's semantics and bias correction. With t the parameter's own step
/// count (a parameter skipped for lack of a gradient does not advance it):
///   Adam (L2):        g = grad + wd * p
///   AdamW (decoupled): p *= 1 - lr * wd;  g = grad
///   m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g^2
///   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
#include <cmath>
#include <utility>
#include <vector>

#include "bnn/optim/optimizer.hpp"

namespace bnn::optim {

/// Options of Adam/AdamW. `lr` and `weight_decay` are used by the single-group constructor only.
struct AdamOptions {
    float lr = 1e-3f;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float weight_decay = 0.f;
    /// true: AdamW (decay applied to the weights directly, not through the moments).
    bool decoupled_weight_decay = false;
};

class Adam : public Optimizer {
public:
    Adam(std::vector<Variable> params, AdamOptions options = {})
        : Adam(std::vector<ParamGroup>{ParamGroup{std::move(params), options.lr, options.weight_decay}},
               options) {}
    Adam(std::vector<ParamGroup> groups, AdamOptions options) : Optimizer(std::move(groups)), options_(options) {
        BNN_CHECK(options_.beta1 >= 0.f && options_.beta1 < 1.f, type_name(), ": expected 0 <= beta1 < 1, got ",
                  options_.beta1);
        BNN_CHECK(options_.beta2 >= 0.f && options_.beta2 < 1.f, type_name(), ": expected 0 <= beta2 < 1, got ",
                  options_.beta2);
        BNN_CHECK(options_.eps >= 0.f, type_name(), ": expected eps >= 0, got ", options_.eps);
        state_.resize(groups_.size());
        for (size_t g = 0; g < groups_.size(); ++g)
            for (size_t i = 0; i < groups_[g].params.size(); ++i) {
                const Shape& s = groups_[g].params[i].shape();
                // The step is a float tensor so checkpoints store it with the rest; exact to 2^24.
                state_[g].push_back({add_state(g, i, "exp_avg", s), add_state(g, i, "exp_avg_sq", s),
                                     add_state(g, i, "step", Shape{})});
            }
    }

    std::string type_name() const override { return options_.decoupled_weight_decay ? "AdamW" : "Adam"; }
    const AdamOptions& options() const { return options_; }

protected:
    void update(size_t g, size_t i, Tensor<float>& param, const Tensor<float>& grad, float lr,
                float weight_decay) override {
        State& st = state_[g][i];
        const float t = (st.step[0] += 1.f);
        const float b1 = options_.beta1, b2 = options_.beta2, eps = options_.eps;
        const double bias1 = 1.0 - std::pow(static_cast<double>(b1), t);
        const double bias2 = 1.0 - std::pow(static_cast<double>(b2), t);
        const float step_size = static_cast<float>(lr / bias1);
        const float sqrt_bias2 = static_cast<float>(std::sqrt(bias2));
        const bool decoupled = options_.decoupled_weight_decay;
        const float l2 = decoupled ? 0.f : weight_decay;
        const float shrink = decoupled ? 1.f - lr * weight_decay : 1.f;
        float* p = param.data();
        const float* dp = grad.data();
        float* m = st.exp_avg.data();
        float* v = st.exp_avg_sq.data();
        const int64_t n = param.numel();
        for (int64_t k = 0; k < n; ++k) {
            p[k] *= shrink;
            const float d = dp[k] + l2 * p[k];
            m[k] = b1 * m[k] + (1.f - b1) * d;
            v[k] = b2 * v[k] + (1.f - b2) * d * d;
            p[k] -= step_size * m[k] / (std::sqrt(v[k]) / sqrt_bias2 + eps);
        }
    }

private:
    struct State {
        Tensor<float> exp_avg, exp_avg_sq, step;
    };
    AdamOptions options_;
    std::vector<std::vector<State>> state_;  // [group][param]
};

/// Adam with decoupled weight decay (Loshchilov & Hutter); PyTorch's default decay of 0.01.
class AdamW : public Adam {
public:
    AdamW(std::vector<Variable> params, AdamOptions options = {.weight_decay = 0.01f})
        : Adam(std::move(params), decoupled(options)) {}
    AdamW(std::vector<ParamGroup> groups, AdamOptions options) : Adam(std::move(groups), decoupled(options)) {}

private:
    static AdamOptions decoupled(AdamOptions o) {
        o.decoupled_weight_decay = true;
        return o;
    }
};

}  // namespace bnn::optim
