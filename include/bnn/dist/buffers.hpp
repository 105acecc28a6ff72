#pragma once
/// @file buffers.hpp
/// average_buffers: makes a model's buffers (batch norm's running statistics) the same on every
/// rank. With local batch statistics each rank's running averages follow its own shards, so the
/// ranks would evaluate, and rank 0 save, different models; their mean uses every rank's data.
#include <cstdint>
#include <vector>

#include "bnn/dist/process_group.hpp"
#include "bnn/nn/module.hpp"

namespace bnn::dist {

/// Every buffer of `model` becomes its mean over the ranks (one message; nothing alone).
inline void average_buffers(ProcessGroup& group, nn::Module& model) {
    if (group.size() == 1) return;
    const auto buffers = model.named_buffers();
    int64_t total = 0;
    for (const auto& [name, b] : buffers) total += b.numel();
    std::vector<double> sums;
    sums.reserve(static_cast<size_t>(total));
    for (const auto& [name, b] : buffers)
        for (int64_t i = 0; i < b.numel(); ++i) sums.push_back(b[i]);
    group.all_reduce_sum(sums.data(), total, "the average of the buffers");
    const double inv = 1.0 / group.size();
    size_t k = 0;
    for (auto [name, b] : buffers)
        for (int64_t i = 0; i < b.numel(); ++i) b[i] = static_cast<float>(sums[k++] * inv);
}

}  // namespace bnn::dist
