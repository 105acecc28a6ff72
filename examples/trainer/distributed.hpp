#pragma once
// The trainer under mpirun: data-parallel training with bnn::dist. Every rank builds the same
// model and the same global batch (same seed, same augmentation), keeps its shard of it
// (--batch is the global batch, split evenly), and GradientSync averages the gradients during
// the backward, so N ranks train the model one process would. The frozen teacher's forward runs
// on each rank's shard too. Rank 0 alone writes (checkpoints, metrics, curves, deployment file,
// log and progress); the others read what it wrote (--resume, teachers, initialisations), so
// --out must be a directory every rank sees (one machine, or a shared file system). The global
// batch and the checkpoints do not depend on the number of ranks, so --resume may continue with
// another one. Without mpirun the group has one process and nothing here changes a thing.
#include <cstdio>
#include <functional>
#include <memory>
#include <sstream>
#include <string>

#include "bnn/data/loader.hpp"
#include "bnn/dist/dist.hpp"
#include "bnn/train/evaluate.hpp"
#include "bnn/train/train_step.hpp"

namespace trainer {

/// The processes of this run (one without mpirun).
inline bnn::dist::ProcessGroup& ranks() { return bnn::dist::ProcessGroup::world(); }

/// Refuses, alike on every rank and with one message, a start the ranks cannot train together:
/// options that differ between ranks, or a global batch that does not split over them.
inline void require_ranks_agree(const bnn::dist::Settings& settings, int64_t global_batch) {
    bnn::dist::ProcessGroup& group = ranks();
    if (group.size() == 1) return;
    bnn::dist::require_same_settings(group, settings);
    try {
        bnn::dist::per_rank_batch(global_batch, group.size());
    } catch (const bnn::Error& e) {
        throw bnn::dist::RefusedStart(group, std::string("--batch: ") + e.what());
    }
}

/// Raises an error that every rank raises alike, because it follows from values summed over the
/// ranks: printed once, by rank 0.
template <class... Parts>
[[noreturn]] void fail_alike(const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    throw bnn::dist::alike_on_every_rank(ranks(), os.str());
}

/// The loader transform that keeps this rank's shard of every batch (none in a group of one).
inline std::function<void(bnn::data::Batch&)> keep_my_shard() {
    bnn::dist::ProcessGroup& group = ranks();
    if (group.size() == 1) return {};
    const int rank = group.rank(), size = group.size();
    return [rank, size](bnn::data::Batch& b) { bnn::dist::keep_shard(b, rank, size); };
}

/// Gradient averaging over the ranks for `model`'s parameters, alive for a stage (null alone).
inline std::unique_ptr<bnn::dist::GradientSync> sync_gradients(bnn::nn::Module& model) {
    if (ranks().size() == 1) return nullptr;
    return std::make_unique<bnn::dist::GradientSync>(ranks(), model.parameters());
}

/// Every rank starts a stage from rank 0's model and optimiser state.
inline void start_from_rank0(bnn::nn::Module& model, bnn::optim::Optimizer& optimizer) {
    bnn::dist::broadcast_module(ranks(), model);
    bnn::dist::broadcast_optimizer(ranks(), optimizer);
}

/// One step's figures over every rank: images, the sum of their losses, top-1 hits, the
/// image-weighted attention and KD losses, and whether any rank was asked to stop (Ctrl-C), so
/// all stop after the same step.
struct StepTotals {
    int64_t images = 0, top1 = 0;
    double loss_sum = 0, attention = 0, kd = 0;
    bool stop = false;
};
inline StepTotals step_totals(int64_t images, const bnn::train::LossParts& parts, int64_t top1, bool stop) {
    if (ranks().size() == 1) return {images, top1, parts.total * images, parts.attention, parts.kd, stop};
    const double n = static_cast<double>(images);
    std::vector<double> v{n, parts.total * n, static_cast<double>(top1), parts.attention * n, parts.kd * n,
                          stop ? 1.0 : 0.0};
    bnn::dist::sum_over_ranks(ranks(), v, "the step's losses");
    return {static_cast<int64_t>(v[0]), static_cast<int64_t>(v[2]), v[1], v[3] / v[0], v[4] / v[0], v[5] > 0};
}

/// The test accuracy over every rank's shard of the test set, after the ranks' batch-norm running
/// statistics (each from its own shards) are averaged, so all evaluate and rank 0 saves one model.
inline bnn::train::Accuracy evaluate_on_ranks(bnn::nn::Module& model, bnn::data::BatchLoader& test_loader) {
    bnn::dist::average_buffers(ranks(), model);
    return bnn::dist::reduce_accuracy(ranks(), bnn::train::evaluate(model, test_loader));
}

/// Waits until rank 0 has written what the others are about to read.
inline void wait_for_rank0_files() { ranks().barrier("rank 0's checkpoint"); }

/// Reports an error and returns the exit code (bnn::dist::report_error): an error the ranks
/// agreed on is printed once, any other is this rank's own and ends the whole job.
inline int report_failure(const std::exception& e) {
    bnn::dist::ProcessGroup* group = nullptr;
    try {
        group = &ranks();
    } catch (const bnn::Error&) {  // no group at all (mpirun with a build without MPI): e says so
    }
    if (group == nullptr) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return bnn::dist::report_error(*group, e);
}

}  // namespace trainer
