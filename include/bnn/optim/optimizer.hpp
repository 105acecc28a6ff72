#pragma once
/// @file optimizer.hpp
/// The optimiser base: parameter groups with their own learning rate and weight decay, a global
/// learning-rate factor driven by a schedule, a step counter, and named state tensors.
///
/// Optimisers hold Variable handles (shared state), never raw pointers into gradients, and read
/// each parameter's gradient afresh at every step: the tape may free or reallocate gradients
/// between steps. A parameter without a gradient at step time (frozen, or unused in the last
/// backward) is skipped and its state left untouched.
///
/// State (momentum buffers, Adam moments) is allocated when the optimiser is built, so
/// state_tensors() names the same live tensors before and after the first step and a checkpoint
/// can be restored into a fresh optimiser exactly.
#include <cstdint>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"

namespace bnn::optim {

/// Parameters sharing a learning rate and weight decay (binary latent weights typically get no
/// decay). `lr` is the base rate; the optimiser multiplies it by its lr factor.
struct ParamGroup {
    std::vector<Variable> params;
    float lr = 0.f;
    float weight_decay = 0.f;
};

/// Base of SGD and Adam. Derived classes implement update() for one parameter.
class Optimizer {
public:
    virtual ~Optimizer() = default;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    /// Applies one update to every parameter that has a gradient, then counts the step.
    void step() {
        for (size_t g = 0; g < groups_.size(); ++g) {
            const ParamGroup& group = groups_[g];
            const float lr = group.lr * lr_factor_;
            for (size_t i = 0; i < group.params.size(); ++i) {
                Variable p = group.params[i];
                if (!p.has_grad()) continue;
                BNN_CHECK(p.grad().shape() == p.shape(), type_name(), "::step: group ", g, " parameter ", i,
                          " has shape ", p.shape().str(), " but its gradient ", p.grad().shape().str());
                update(g, i, p.value(), p.grad(), lr, group.weight_decay);
            }
        }
        ++step_count_;
    }

    /// Zeroes the gradient of every parameter (kept allocated, as PyTorch 1.13's default).
    void zero_grad() {
        for (auto& group : groups_)
            for (auto& p : group.params) p.zero_grad();
    }

    /// Sets the factor every group's base learning rate is multiplied by (from a schedule).
    void set_lr_factor(float factor) {
        BNN_CHECK(factor >= 0.f, type_name(), "::set_lr_factor: expected a factor >= 0, got ", factor);
        lr_factor_ = factor;
    }
    float lr_factor() const { return lr_factor_; }
    /// The learning rate group g uses at the next step (base rate times the factor).
    float lr(size_t g = 0) const { return group(g).lr * lr_factor_; }

    size_t num_groups() const { return groups_.size(); }
    const ParamGroup& group(size_t g) const {
        BNN_CHECK(g < groups_.size(), type_name(), ": group ", g, " out of range (", groups_.size(), " groups)");
        return groups_[g];
    }
    /// Changes a group's base learning rate (e.g. a per-stage restart).
    void set_base_lr(size_t g, float lr) {
        BNN_CHECK(g < groups_.size(), type_name(), "::set_base_lr: group ", g, " out of range (",
                  groups_.size(), " groups)");
        BNN_CHECK(lr >= 0.f, type_name(), "::set_base_lr: expected lr >= 0, got ", lr);
        groups_[g].lr = lr;
    }

    /// Number of step() calls so far (restored from checkpoints with set_step_count).
    int64_t step_count() const { return step_count_; }
    void set_step_count(int64_t n) {
        BNN_CHECK(n >= 0, type_name(), "::set_step_count: expected n >= 0, got ", n);
        step_count_ = n;
    }

    /// The live state tensors with stable names ("group0.param3.momentum_buffer"); writing into
    /// them (e.g. from a checkpoint) changes the optimiser's state.
    std::vector<std::pair<std::string, Tensor<float>>> state_tensors() const { return state_; }

    virtual std::string type_name() const = 0;

protected:
    explicit Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
        std::unordered_set<const void*> seen;
        for (size_t g = 0; g < groups_.size(); ++g) {
            const auto& group = groups_[g];
            BNN_CHECK(group.lr >= 0.f, "Optimizer: group ", g, " has a negative learning rate ", group.lr);
            BNN_CHECK(group.weight_decay >= 0.f, "Optimizer: group ", g, " has a negative weight decay ",
                      group.weight_decay);
            for (size_t i = 0; i < group.params.size(); ++i) {
                const Variable& p = group.params[i];
                BNN_CHECK(p.defined(), "Optimizer: group ", g, " parameter ", i, " is an undefined Variable");
                BNN_CHECK(p.is_leaf(), "Optimizer: group ", g, " parameter ", i,
                          " is the result of an op, not a leaf parameter");
                BNN_CHECK(seen.insert(p.id()).second, "Optimizer: group ", g, " parameter ", i,
                          " appears more than once among the groups");
            }
        }
    }

    /// Updates parameter i of group g in place given its gradient, effective lr and decay.
    virtual void update(size_t g, size_t i, Tensor<float>& param, const Tensor<float>& grad, float lr,
                        float weight_decay) = 0;

    /// Allocates a zero state tensor shaped like parameter i of group g and names it.
    Tensor<float> add_state(size_t g, size_t i, const char* what, const Shape& shape) {
        Tensor<float> t(shape);
        state_.emplace_back("group" + std::to_string(g) + ".param" + std::to_string(i) + "." + what, t);
        return t;
    }

    std::vector<ParamGroup> groups_;

private:
    std::vector<std::pair<std::string, Tensor<float>>> state_;
    float lr_factor_ = 1.f;
    int64_t step_count_ = 0;
};

}  // namespace bnn::optim
