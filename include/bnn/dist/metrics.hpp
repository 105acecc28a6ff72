#pragma once
/// @file metrics.hpp
/// Metrics of the whole job from every rank's part: sums of counts reduced across ranks, so a
/// mean over all images weighs each image once whatever shard it was on.
#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/dist/process_group.hpp"
#include "bnn/train/evaluate.hpp"

namespace bnn::dist {

/// Sums of values over ranks, in place (one message).
inline void sum_over_ranks(ProcessGroup& group, std::vector<double>& values, const char* what = "metric sums") {
    group.all_reduce_sum(values.data(), static_cast<int64_t>(values.size()), what);
}

/// The accuracy over the union of the ranks' evaluation shards (each evaluated with
/// train::evaluate on its shard; a rank with no samples passes samples = 0).
inline train::Accuracy reduce_accuracy(ProcessGroup& group, const train::Accuracy& mine) {
    if (group.size() == 1) return mine;  // untouched, to the last bit
    const double n = static_cast<double>(mine.samples);
    std::vector<double> v{mine.top1 * n, mine.top5 * n, mine.loss * n, n};
    sum_over_ranks(group, v, "the evaluation's counts");
    BNN_CHECK(v[3] > 0, "dist::reduce_accuracy: no rank evaluated any sample");
    // The hit counts were integers on every rank: round away the division's error.
    return {std::round(v[0]) / v[3], std::round(v[1]) / v[3], v[2] / v[3], static_cast<int64_t>(v[3])};
}

}  // namespace bnn::dist
