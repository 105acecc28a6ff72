#pragma once
/// @file param_groups.hpp
/// The optimiser's parameter groups of a binary network: weight decay everywhere except on the
/// latent weights of binary convolutions.
///
/// Why the latent weights get none: what a binary conv uses of them is their sign (and, for the
/// scale, their mean magnitude), and they are already kept in [-1, 1] by apply_constraints().
/// Decay would only pull them towards 0, where a small gradient flips their sign, adding noise
/// to the binary weights without regularising them. The same holds in the stages where they are
/// still real-valued (soft or binary activations): they are the weights that will be binarised.
///
/// Everything else keeps the stage's decay: batch-norm gamma and beta, biases, PReLU slopes,
/// learned scales alpha, gate and classifier weights and the real convolutions. These are used
/// as real numbers at inference too, so decay regularises them as in a real network. The
/// Real-to-Binary recipe's decay is small (1e-5 while weights are real, 0 once they are binary,
/// see stages.hpp) and docs/results.md was trained with it on all of them, so the
/// one-dimensional ones get no group of their own.
#include <unordered_set>
#include <vector>

#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/optim/optimizer.hpp"

namespace bnn::train {

/// Two groups for an optimiser, both with learning rate `lr`:
///   group 0: every parameter that is not a latent binary weight, with `weight_decay`;
///   group 1: the latent binary weights, without decay (absent when the model has none).
/// Each group lists its parameters in the model's parameter order, so the optimiser's state
/// names ("group1.param3.exp_avg") are the same from run to run and checkpoints restore.
inline std::vector<optim::ParamGroup> param_groups(const nn::Module& model, float lr, float weight_decay) {
    BNN_CHECK(lr >= 0.f && weight_decay >= 0.f, "param_groups: expected lr >= 0 and weight_decay >= 0, got ", lr,
              " and ", weight_decay);
    std::unordered_set<const void*> latent_ids;  // every BinaryConv2d's weight
    for (const auto& [path, m] : model.named_modules())
        if (const auto* conv = dynamic_cast<const nn::BinaryConv2d*>(m)) latent_ids.insert(conv->weight.id());
    std::vector<Variable> rest, latent;
    for (const auto& [name, p] : model.named_parameters()) (latent_ids.count(p.id()) ? latent : rest).push_back(p);
    std::vector<optim::ParamGroup> groups{{rest, lr, weight_decay}};
    if (!latent.empty()) groups.push_back({latent, lr, 0.f});
    return groups;
}

}  // namespace bnn::train
