#pragma once
/// @file loader.hpp
/// BatchLoader: epochs of normalized (optionally augmented, optionally mixed-up) float batches
/// from a Dataset, prepared by a background thread while the caller computes.
///
/// Reproducibility: epoch e's sample order depends only on (seed, e), and batch b's
/// augmentation only on (seed, e, b), never on thread timing, so a run resumed at epoch e sees
/// exactly the batches an uninterrupted run would.
///
///     BatchLoader loader(train, {.batch_size = 128, .seed = 1, .random_crop = true,
///                                .horizontal_flip = true, .mean = m, .std = s});
///     for (int64_t e = 0; e < epochs; ++e) {
///         loader.start_epoch(e);
///         while (auto batch = loader.next()) { ... batch->images, batch->labels ... }
///     }
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/data/augment.hpp"
#include "bnn/data/dataset.hpp"
#include "bnn/data/mixup.hpp"
#include "bnn/data/transforms.hpp"

namespace bnn::data {

struct Batch;

struct LoaderOptions {
    int64_t batch_size = 128;
    bool shuffle = true;
    /// Drop the last batch of an epoch when it is smaller than batch_size.
    bool drop_last = false;
    uint64_t seed = 0;
    /// Random crop from the image zero-padded by crop_padding pixels.
    bool random_crop = false;
    int crop_padding = 4;
    /// Left-right flip with probability 1/2.
    bool horizontal_flip = false;
    /// Rotation by an angle uniform in [-rotation_degrees, rotation_degrees]; 0 disables it.
    float rotation_degrees = 0.f;
    /// Mix-up with lambda ~ Beta(alpha, alpha) when > 0; batches then carry soft targets.
    float mixup_alpha = 0.f;
    /// Per-channel normalization on the [0, 1] scale; empty means x / 255.
    std::vector<float> mean = {};
    std::vector<float> std = {};
    /// Prepare batches on a background thread (false: on the caller's thread, for debugging).
    bool background = true;
    /// Optional extra per-batch transform, run where the batch is prepared (the worker thread);
    /// an exception it throws reaches the caller of next() as bnn::Error.
    std::function<void(Batch&)> transform = {};
};

/// One batch: images [B, H, W, C] (normalized), labels, and with mix-up soft targets [B, K].
struct Batch {
    Tensor<float> images;
    std::vector<int32_t> labels;
    Tensor<float> targets;  ///< defined only with mix-up
    int64_t epoch = 0;
    int64_t index = 0;  ///< batch number within the epoch
};

namespace detail {
/// A well-mixed 64-bit seed from several values (splitmix64 finaliser per value).
inline uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0) {
    auto mix = [](uint64_t z) {
        z += 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    };
    return mix(mix(mix(seed) ^ a) ^ b);
}
}  // namespace detail

class BatchLoader {
public:
    BatchLoader(const Dataset& data, LoaderOptions options) : data_(data), opt_(std::move(options)) {
        data_.validate();
        BNN_CHECK(opt_.batch_size > 0, "BatchLoader: batch_size must be positive, got ", opt_.batch_size);
        BNN_CHECK(opt_.crop_padding >= 0, "BatchLoader: crop_padding must be >= 0, got ", opt_.crop_padding);
        BNN_CHECK(opt_.rotation_degrees >= 0, "BatchLoader: rotation_degrees must be >= 0, got ", opt_.rotation_degrees);
        BNN_CHECK(opt_.mixup_alpha >= 0, "BatchLoader: mixup_alpha must be >= 0, got ", opt_.mixup_alpha);
        // Validates mean/std against the channel count now rather than in the worker.
        std::vector<float> scale, shift;
        detail::resolve_normalization({opt_.mean, opt_.std}, static_cast<int>(data_.channels()), scale, shift);
        if (opt_.background) worker_ = std::thread([this] { work(); });
    }
    ~BatchLoader() {
        {
            std::lock_guard<std::mutex> lk(mutex_);
            stop_ = true;
        }
        work_cv_.notify_all();
        if (worker_.joinable()) worker_.join();
    }
    BatchLoader(const BatchLoader&) = delete;
    BatchLoader& operator=(const BatchLoader&) = delete;

    const Dataset& dataset() const { return data_; }
    const LoaderOptions& options() const { return opt_; }

    int64_t batches_per_epoch() const {
        const int64_t n = data_.size(), bs = opt_.batch_size;
        return opt_.drop_last ? n / bs : (n + bs - 1) / bs;
    }

    /// The sample indices of epoch `epoch` in visiting order (a function of seed and epoch).
    std::vector<int64_t> epoch_order(int64_t epoch) const {
        std::vector<int64_t> order(static_cast<size_t>(data_.size()));
        std::iota(order.begin(), order.end(), 0);
        if (opt_.shuffle) {
            Rng rng(detail::mix_seed(opt_.seed, static_cast<uint64_t>(epoch), ~0ull));
            rng.shuffle(order.begin(), order.end());
        }
        return order;
    }

    /// Builds batch `index` of `epoch` on the calling thread (what the worker runs).
    Batch make_batch(int64_t epoch, int64_t index) const { return build(epoch, epoch_order(epoch), index); }

    /// Starts (or restarts) epoch `epoch`; batches already prepared for another epoch are dropped.
    void start_epoch(int64_t epoch) {
        BNN_CHECK(epoch >= 0, "BatchLoader::start_epoch: epoch must be >= 0, got ", epoch);
        {
            std::lock_guard<std::mutex> lk(mutex_);
            ++generation_;
            epoch_ = epoch;
            order_ = std::make_shared<const std::vector<int64_t>>(epoch_order(epoch));
            produced_ = consumed_ = 0;
            queue_.clear();
            started_ = true;
        }
        work_cv_.notify_all();
    }

    /// The next batch of the current epoch, or nullopt when the epoch is over. A failure while
    /// preparing the batch (on the worker thread) is raised here as bnn::Error.
    std::optional<Batch> next() {
        std::unique_lock<std::mutex> lk(mutex_);
        BNN_CHECK(started_, "BatchLoader::next: call start_epoch(e) before asking for batches");
        if (consumed_ >= batches_per_epoch()) return std::nullopt;
        if (!opt_.background) {
            const int64_t index = consumed_++;
            auto order = order_;
            const int64_t epoch = epoch_;
            lk.unlock();
            return build(epoch, *order, index);
        }
        ready_cv_.wait(lk, [&] { return !queue_.empty(); });
        Item item = std::move(queue_.front());
        queue_.pop_front();
        ++consumed_;
        lk.unlock();
        work_cv_.notify_all();
        if (!item.error.empty()) ::bnn::fail(item.error);
        return std::move(item.batch);
    }

private:
    struct Item {
        Batch batch;
        std::string error;
    };
    static constexpr size_t kPrefetch = 2;

    void work() {
        std::unique_lock<std::mutex> lk(mutex_);
        for (;;) {
            work_cv_.wait(lk, [&] {
                return stop_ || (started_ && produced_ < batches_per_epoch() && queue_.size() < kPrefetch);
            });
            if (stop_) return;
            const uint64_t generation = generation_;
            const int64_t epoch = epoch_, index = produced_++;
            auto order = order_;
            lk.unlock();
            Item item;
            try {
                item.batch = build(epoch, *order, index);
            } catch (const std::exception& e) {
                item.error = "BatchLoader: preparing batch " + std::to_string(index) + " of epoch " +
                             std::to_string(epoch) + " of '" + data_.name + "' failed: " + e.what();
            } catch (...) {
                item.error = "BatchLoader: preparing batch " + std::to_string(index) + " failed with an unknown exception";
            }
            lk.lock();
            if (generation != generation_) continue;  // the epoch was restarted meanwhile
            queue_.push_back(std::move(item));
            ready_cv_.notify_all();
        }
    }

    Batch build(int64_t epoch, const std::vector<int64_t>& order, int64_t index) const {
        const int64_t n = data_.size();
        const int64_t begin = index * opt_.batch_size;
        const int64_t B = std::min(opt_.batch_size, n - begin);
        BNN_CHECK(index >= 0 && B > 0, "BatchLoader: batch ", index, " is out of range for epoch of ", n, " samples");
        const int H = static_cast<int>(data_.height()), W = static_cast<int>(data_.width()),
                  C = static_cast<int>(data_.channels());
        const int64_t image_size = static_cast<int64_t>(H) * W * C;
        Batch batch;
        batch.epoch = epoch;
        batch.index = index;
        batch.images = Tensor<float>::empty(Shape{B, H, W, C});
        batch.labels.resize(static_cast<size_t>(B));
        Rng rng(detail::mix_seed(opt_.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index)));
        std::vector<uint8_t> a(static_cast<size_t>(image_size)), b(static_cast<size_t>(image_size));
        const Normalization norm{opt_.mean, opt_.std};
        for (int64_t i = 0; i < B; ++i) {
            const int64_t s = order[static_cast<size_t>(begin + i)];
            batch.labels[static_cast<size_t>(i)] = data_.labels[static_cast<size_t>(s)];
            const uint8_t* cur = data_.images.data() + s * image_size;
            // Ping-pong between two scratch images, one augmentation at a time.
            auto step = [&](auto&& fn) {
                uint8_t* out = (cur == a.data()) ? b.data() : a.data();
                fn(cur, out);
                cur = out;
            };
            if (opt_.random_crop)
                step([&](const uint8_t* s_, uint8_t* d) { random_crop(s_, d, H, W, C, opt_.crop_padding, rng); });
            if (opt_.horizontal_flip && rng.uniform() < 0.5f)
                step([&](const uint8_t* s_, uint8_t* d) { hflip(s_, d, H, W, C); });
            if (opt_.rotation_degrees > 0)
                step([&](const uint8_t* s_, uint8_t* d) { random_rotate(s_, d, H, W, C, opt_.rotation_degrees, rng); });
            normalize_into(cur, batch.images.data() + i * image_size, static_cast<int64_t>(H) * W, C, norm);
        }
        if (opt_.mixup_alpha > 0)
            batch.targets = mixup(batch.images, batch.labels, data_.num_classes, opt_.mixup_alpha, rng);
        if (opt_.transform) opt_.transform(batch);
        return batch;
    }

    Dataset data_;
    LoaderOptions opt_;

    std::mutex mutex_;
    std::condition_variable work_cv_, ready_cv_;
    std::deque<Item> queue_;
    std::shared_ptr<const std::vector<int64_t>> order_;
    uint64_t generation_ = 0;
    int64_t epoch_ = 0, produced_ = 0, consumed_ = 0;
    bool started_ = false, stop_ = false;
    std::thread worker_;  // last: started after every other member is initialised
};

}  // namespace bnn::data
