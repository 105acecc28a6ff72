#pragma once
/// @file gradient_sync.hpp
/// GradientSync: averages the gradients of a model's parameters over the ranks of a group, with
/// the communication overlapping the backward pass.
///
/// The trainable parameters are cut into buckets of about bucket_bytes, in reverse registration
/// order (the order the backward finishes them). While a GradientSync is alive it is the
/// thread's BackwardHook: when the last gradient of a bucket becomes final, the bucket is copied
/// into its buffer and a non-blocking all-reduce starts; pending transfers are polled after
/// every tape node; at the end of the backward the remaining buckets start, all are waited for
/// and the averages (sum / ranks) written back, so the optimiser's step sees averaged gradients.
/// Buckets always start in index order, so every rank issues the collectives in the same order
/// whatever its timing.
///
/// Average of per-rank gradients = gradient of the global batch's mean loss when every rank's
/// loss is the mean over an equal share of the global batch (DistributedSampler's split).
/// A trainable parameter that got no gradient on a rank counts as a zero gradient there; one
/// that got none on any rank keeps none, so the optimiser skips it as it would in one process
/// (each bucket carries one flag per parameter for that).
///
/// In a group of one it does nothing: single-process training is unchanged, bit for bit.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bnn/autograd/backward_hook.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/dist/process_group.hpp"

namespace bnn::dist {

struct GradientSyncOptions {
    /// Bytes of gradient per bucket (a bucket holds whole parameters, so it may be larger).
    int64_t bucket_bytes = int64_t{4} << 20;
};

/// Communication of the last step, for benchmarks and logs.
struct GradientSyncStats {
    int64_t bytes_per_step = 0;  ///< gradient bytes each rank all-reduces per step (and a float per parameter)
    int64_t buckets = 0;
    int64_t buckets_started_in_backward = 0;  ///< of the last step, before the backward ended
    double wait_seconds = 0;                  ///< of the last step: the backward's end to the last bucket done
};

class GradientSync : public BackwardHook {
public:
    GradientSync(ProcessGroup& group, const std::vector<Variable>& params, GradientSyncOptions options = {})
        : group_(group) {
        BNN_CHECK(options.bucket_bytes > 0, "GradientSync: bucket_bytes must be positive, got ", options.bucket_bytes);
        for (auto it = params.rbegin(); it != params.rend(); ++it) {
            if (!it->defined() || !it->requires_grad()) continue;
            BNN_CHECK(it->is_leaf(), "GradientSync: parameters must be leaves, got the result of an op");
            BNN_CHECK(index_.emplace(it->id(), params_.size()).second,
                      "GradientSync: a parameter appears more than once");
            params_.push_back(*it);
        }
        int64_t bytes = 0;
        for (size_t i = 0; i < params_.size(); ++i) {
            if (buckets_.empty() || bytes >= options.bucket_bytes) {
                buckets_.push_back(Bucket{i, i, 0, {}, {}});
                bytes = 0;
            }
            Bucket& b = buckets_.back();
            b.end = i + 1;
            b.numel += params_[i].numel();
            bytes += params_[i].numel() * static_cast<int64_t>(sizeof(float));
            bucket_of_.push_back(buckets_.size() - 1);
        }
        for (auto& b : buckets_) b.buffer.resize(static_cast<size_t>(b.numel + static_cast<int64_t>(b.end - b.begin)));
        stats_.buckets = static_cast<int64_t>(buckets_.size());
        for (const auto& p : params_) stats_.bytes_per_step += p.numel() * static_cast<int64_t>(sizeof(float));
        reset();
    }
    ~GradientSync() override {
        // Leaving with transfers in flight (an exception mid-backward): finish them so that no
        // MPI request outlives its buffer; the ranks stay in step.
        for (auto& b : buckets_)
            if (b.running) group_.wait(b.request, "a gradient all-reduce (abandoned step)");
    }

    void on_leaf_ready(const Variable& leaf) override {
        if (group_.size() == 1) return;
        auto it = index_.find(leaf.id());
        if (it == index_.end() || ready_[it->second]) return;
        ready_[it->second] = true;
        --waiting_[bucket_of_[it->second]];
        start_ready_buckets();
    }
    void on_node_done() override {
        if (group_.size() == 1) return;
        for (size_t b = 0; b < started_; ++b)
            if (buckets_[b].running) group_.test(buckets_[b].request);
    }
    void on_backward_end() override { finish(); }

    /// Starts what is left, waits for every bucket and writes the averaged gradients back.
    /// Called at the end of every backward; call it yourself after a backward run without this
    /// hook alive.
    void finish() {
        if (group_.size() == 1) return;
        stats_.buckets_started_in_backward = static_cast<int64_t>(started_);
        while (started_ < buckets_.size()) start(started_++);
        const auto t0 = std::chrono::steady_clock::now();
        const float inv = 1.f / static_cast<float>(group_.size());
        for (auto& b : buckets_) {
            group_.wait(b.request, "a gradient all-reduce");
            b.running = false;
            const float* src = b.buffer.data();
            const float* had_grad = src + b.numel;  // on how many ranks
            for (size_t i = b.begin; i < b.end; ++i) {
                const int64_t n = params_[i].numel();
                if (had_grad[i - b.begin] > 0.f) {
                    float* dst = params_[i].grad().data();
                    for (int64_t k = 0; k < n; ++k) dst[k] = src[k] * inv;
                }
                src += n;
            }
        }
        stats_.wait_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        reset();
    }

    const GradientSyncStats& stats() const { return stats_; }
    size_t num_buckets() const { return buckets_.size(); }
    /// Bytes of bucket b; bucket 0 holds the last layers, the last bucket the first ones.
    int64_t bucket_bytes(size_t b) const {
        BNN_CHECK(b < buckets_.size(), "GradientSync::bucket_bytes: bucket ", b, " of ", buckets_.size());
        return buckets_[b].numel * static_cast<int64_t>(sizeof(float));
    }

private:
    struct Bucket {
        size_t begin, end;  // parameter range
        int64_t numel;
        std::vector<float> buffer;
        Request request;
        bool running = false;
    };

    void reset() {
        ready_.assign(params_.size(), false);
        waiting_.assign(buckets_.size(), 0);
        for (size_t b = 0; b < buckets_.size(); ++b)
            waiting_[b] = static_cast<int64_t>(buckets_[b].end - buckets_[b].begin);
        started_ = 0;
    }
    void start_ready_buckets() {
        while (started_ < buckets_.size() && waiting_[started_] == 0) start(started_++);
    }
    void start(size_t index) {
        Bucket& b = buckets_[index];
        float* dst = b.buffer.data();
        float* has_grad = dst + b.numel;
        for (size_t i = b.begin; i < b.end; ++i) {
            Variable& p = params_[i];
            const size_t n = static_cast<size_t>(p.numel());
            has_grad[i - b.begin] = p.has_grad() ? 1.f : 0.f;
            if (p.has_grad()) std::memcpy(dst, p.grad().data(), n * sizeof(float));
            else std::memset(dst, 0, n * sizeof(float));
            dst += n;
        }
        b.request = group_.start_all_reduce_sum(b.buffer.data(), static_cast<int64_t>(b.buffer.size()));
        b.running = true;
    }

    ProcessGroup& group_;
    std::vector<Variable> params_;                           // reverse registration order
    std::unordered_map<const detail::GradState*, size_t> index_;  // parameter -> position
    std::vector<size_t> bucket_of_;
    std::vector<Bucket> buckets_;
    std::vector<bool> ready_;
    std::vector<int64_t> waiting_;  // parameters of each bucket not yet final
    size_t started_ = 0;  // buckets started this step, always a prefix
    GradientSyncStats stats_;
};

}  // namespace bnn::dist
