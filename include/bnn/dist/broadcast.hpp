#pragma once
/// @file broadcast.hpp
/// Copies rank 0's model (parameters and buffers) and optimiser state to every rank, so that
/// all start from one state: at the beginning, and after rank 0 alone read a checkpoint (the
/// other machines need not see the file).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "bnn/core/tensor.hpp"
#include "bnn/dist/process_group.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/optim/optimizer.hpp"

namespace bnn::dist {

/// Overwrites every rank's tensors with root's, in one message. The tensors must have the same
/// shapes on every rank (checked by their total size first).
inline void broadcast_tensors(ProcessGroup& group, const std::vector<Tensor<float>>& tensors, int root = 0) {
    if (group.size() == 1) return;
    int64_t total = 0;
    for (const auto& t : tensors) total += t.numel();
    int64_t root_total = total;
    group.broadcast(&root_total, sizeof root_total, root, "the size of a broadcast");
    BNN_CHECK(root_total == total, "dist::broadcast_tensors: rank ", group.rank(), " holds ", total,
              " values but rank ", root, " sends ", root_total, "; the ranks built different models");
    std::vector<float> packed(static_cast<size_t>(total));
    float* p = packed.data();
    for (const auto& t : tensors) std::memcpy(p, t.data(), t.numel() * sizeof(float)), p += t.numel();
    group.broadcast(packed.data(), total * static_cast<int64_t>(sizeof(float)), root, "a broadcast of tensors");
    p = packed.data();
    for (auto t : tensors) std::memcpy(t.data(), p, t.numel() * sizeof(float)), p += t.numel();
}

/// Every parameter and buffer of `model` takes root's values.
inline void broadcast_module(ProcessGroup& group, nn::Module& model, int root = 0) {
    std::vector<Tensor<float>> tensors;
    for (auto& [name, p] : model.named_parameters()) tensors.push_back(p.value());
    for (auto& [name, b] : model.named_buffers()) tensors.push_back(b);
    broadcast_tensors(group, tensors, root);
}

/// The optimiser's state tensors and step count take root's values.
inline void broadcast_optimizer(ProcessGroup& group, optim::Optimizer& optimizer, int root = 0) {
    std::vector<Tensor<float>> tensors;
    for (auto& [name, t] : optimizer.state_tensors()) tensors.push_back(t);
    broadcast_tensors(group, tensors, root);
    int64_t steps = optimizer.step_count();
    group.broadcast(&steps, sizeof steps, root, "the optimiser's step count");
    optimizer.set_step_count(steps);
}

/// Root's string on every rank.
inline std::string broadcast_string(ProcessGroup& group, std::string s, int root = 0) {
    if (group.size() == 1) return s;
    int64_t n = static_cast<int64_t>(s.size());
    group.broadcast(&n, sizeof n, root, "the length of a string");
    s.resize(static_cast<size_t>(n));
    group.broadcast(s.data(), n, root, "a string");
    return s;
}

}  // namespace bnn::dist
