#pragma once
/// @file sampler.hpp
/// How the ranks share the data: one epoch order for all (from one global seed), and each
/// global batch split into consecutive, equal shards, rank r taking the r-th. Concatenating
/// the ranks' shards of a batch gives the batch one process would train on, which is what makes
/// N ranks x B/N equal one process x B.
///
/// A short final batch (n rows, n not a multiple of the ranks) is split as evenly as possible
/// (shards differ by at most one row, a rank may get none). Counts reduced across ranks stay
/// exact (evaluation); training normally drops that batch (drop_last), because averaging
/// gradients of unequal shards would weigh their images unequally.
#include <cstdint>
#include <numeric>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/data/loader.hpp"

namespace bnn::dist {

/// Rows [begin, end) of a batch.
struct ShardRange {
    int64_t begin = 0, end = 0;
    int64_t size() const { return end - begin; }
};

/// Rank `rank`'s consecutive share of n rows over `ranks` ranks: [n*r/ranks, n*(r+1)/ranks).
inline ShardRange shard_of(int64_t n, int rank, int ranks) {
    BNN_CHECK(ranks > 0 && rank >= 0 && rank < ranks, "dist::shard_of: rank ", rank, " is not in [0, ", ranks, ")");
    BNN_CHECK(n >= 0, "dist::shard_of: expected a row count >= 0, got ", n);
    return {n * rank / ranks, n * (rank + 1) / ranks};
}

/// The rows each rank trains on per step; refuses a global batch the ranks cannot share equally.
inline int64_t per_rank_batch(int64_t global_batch, int ranks) {
    BNN_CHECK(ranks > 0, "dist::per_rank_batch: expected at least one rank, got ", ranks);
    BNN_CHECK(global_batch > 0 && global_batch % ranks == 0, "the global batch ", global_batch,
              " does not split over ", ranks, " ranks: expected a positive multiple of ", ranks);
    return global_batch / ranks;
}

/// Keeps only rank `rank`'s shard of a loader's batch (images, labels and mix-up targets), for
/// LoaderOptions::transform: every rank prepares the same global batch, so the shards fit
/// together exactly, mix-up pairs included.
inline void keep_shard(data::Batch& batch, int rank, int ranks) {
    const auto rows = static_cast<int64_t>(batch.labels.size());
    const ShardRange r = shard_of(rows, rank, ranks);
    batch.images = batch.images.slice(r.begin, r.end);
    batch.labels = std::vector<int32_t>(batch.labels.begin() + r.begin, batch.labels.begin() + r.end);
    if (batch.targets.defined()) batch.targets = batch.targets.slice(r.begin, r.end);
}

/// Sample indices per rank and step for a data set of `size` items, global batch `batch`.
class DistributedSampler {
public:
    DistributedSampler(int64_t size, int64_t batch, uint64_t seed, int rank, int ranks, bool shuffle = true,
                       bool drop_last = false)
        : size_(size), batch_(batch), seed_(seed), rank_(rank), ranks_(ranks), shuffle_(shuffle),
          drop_last_(drop_last) {
        BNN_CHECK(size >= 0, "DistributedSampler: expected a data set size >= 0, got ", size);
        per_rank_batch(batch, ranks);
        shard_of(0, rank, ranks);  // checks the rank
    }

    int64_t batches_per_epoch() const { return drop_last_ ? size_ / batch_ : (size_ + batch_ - 1) / batch_; }

    /// Every index once, in the epoch's order: the same on every rank (a function of seed, epoch).
    std::vector<int64_t> epoch_order(int64_t epoch) const {
        std::vector<int64_t> order(static_cast<size_t>(size_));
        std::iota(order.begin(), order.end(), 0);
        if (shuffle_) {
            Rng rng(seed_ ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(epoch + 1)));
            rng.shuffle(order.begin(), order.end());
        }
        return order;
    }

    /// This rank's indices of global batch `index` of an epoch with order `order`.
    std::vector<int64_t> local_batch(const std::vector<int64_t>& order, int64_t index) const {
        BNN_CHECK(index >= 0 && index < batches_per_epoch(), "DistributedSampler::local_batch: batch ", index,
                  " is outside [0, ", batches_per_epoch(), ")");
        const int64_t begin = index * batch_;
        const int64_t rows = std::min(batch_, size_ - begin);
        const ShardRange r = shard_of(rows, rank_, ranks_);
        return std::vector<int64_t>(order.begin() + begin + r.begin, order.begin() + begin + r.end);
    }

private:
    int64_t size_, batch_;
    uint64_t seed_;
    int rank_, ranks_;
    bool shuffle_, drop_last_;
};

}  // namespace bnn::dist
