#pragma once
/// @file train_step.hpp
/// One optimisation step: train mode, zeroed gradients, forward and loss, backward, the
/// optimiser's step, and then always the model's constraints (Module::apply_constraints: latent
/// binary weights clipped to [-1, 1]). The constraints belong to the step because a caller who
/// forgets them trains a different model: the weight gradient passes straight through sign(W),
/// so latent weights grow without bound, a weight far from 0 takes as many updates to flip sign
/// as it drifted, and the binary weights stop changing.
#include <concepts>
#include <cstdint>
#include <utility>
#include <vector>

#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/losses/cross_entropy.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/optim/optimizer.hpp"

namespace bnn::train {

/// One batch: images [N,H,W,C], integer labels, and optionally soft targets [N,K] (mix-up),
/// which replace the labels in the cross-entropy when defined.
struct StepBatch {
    Tensor<float> images;
    std::vector<int32_t> labels;
    Tensor<float> soft_targets;
};

/// The loss parts of a step, unweighted, and the weighted total that was back-propagated.
struct LossParts {
    float total = 0.f;
    float ce = 0.f;
    float attention = 0.f;  ///< 0 when not used
    float kd = 0.f;         ///< 0 when not used
};

/// What a step computed: its losses and the model's logits [N,K] for the batch (as they were
/// before the update, e.g. for the training accuracy).
struct StepResult {
    LossParts parts;
    Tensor<float> logits;
};

/// The general step. `loss()` runs the model's forward pass and returns the scalar loss to
/// minimise; the loss is returned after the update.
template <class LossFn>
    requires std::invocable<LossFn&> && std::convertible_to<std::invoke_result_t<LossFn&>, Variable>
Variable train_step(nn::Module& model, optim::Optimizer& optimizer, LossFn&& loss) {
    model.train();
    optimizer.zero_grad();
    Variable total = loss();
    BNN_CHECK(total.defined() && total.numel() == 1, "train_step: the loss must be a scalar, got ",
              total.defined() ? total.shape().str() : std::string("an undefined Variable"));
    total.backward();
    optimizer.step();
    model.apply_constraints();
    return total;
}

/// A classification step: cross-entropy of the model's logits against the batch's labels (with
/// `label_smoothing`), or against its soft targets when they are defined.
inline StepResult train_step(nn::Module& model, optim::Optimizer& optimizer, const StepBatch& batch,
                             float label_smoothing = 0.f) {
    BNN_CHECK(batch.images.defined() && batch.images.rank() == 4, "train_step: expected images [N,H,W,C], got ",
              batch.images.defined() ? batch.images.shape().str() : std::string("an undefined tensor"));
    StepResult out;
    Variable ce = train_step(model, optimizer, [&] {
        Variable logits = model.forward(Variable(batch.images));
        out.logits = logits.value();
        return batch.soft_targets.defined() ? losses::cross_entropy(logits, batch.soft_targets)
                                            : losses::cross_entropy(logits, batch.labels, label_smoothing);
    });
    out.parts.ce = out.parts.total = ce.item();
    return out;
}

}  // namespace bnn::train
