#pragma once
/// @file block_cache.hpp
/// Tensor storage: blocks aligned to a cache line, the large ones recycled through a bounded
/// cache of freed blocks (docs/architecture.md, "core").
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

namespace bnn {

namespace detail {
inline constexpr size_t kAlignment = 64;

/// A bounded cache of freed large blocks, keyed by their exact size.
///
/// Why: a training step allocates every activation and gradient afresh (MBs each) and frees them
/// by the end of the step. glibc hands such blocks back to the kernel (mmap, heap trimming), so
/// the next step page-faults them in again (~8k faults per step of a binary ResNet-18). The
/// sizes repeat exactly from step to step, so blocks kept by size are handed out again and the
/// faults disappear (measurements: docs/performance-journal.md, "Block cache").
///
/// Bounds: only blocks of at least kMinBytes are cached (malloc serves small ones from its own
/// bins; blocks of 16-64 KiB it too gave back to the kernel between calls), and at most limit()
/// bytes are held idle: 512 MiB, or BNN_TENSOR_CACHE_MB from the environment (0 disables the
/// cache), or set_limit(). When a block of a size not held is
/// needed and the cache is full, idle blocks of at least that size are freed first, so a change
/// of sizes (evaluation batches, another model) does not keep the old ones forever; release()
/// frees all idle blocks. Thread safe: one mutex, taken once per allocation, not per element.
/// The cache itself is never destroyed, so tensors freed during static destruction stay safe.
class BlockCache {
public:
    static constexpr size_t kMinBytes = size_t{16} << 10;

    static BlockCache& instance() {
        static BlockCache* cache = new BlockCache();  // never destroyed: see above
        return *cache;
    }
    /// A cached block of exactly `bytes`, or nullptr; before a miss returns with the cache full,
    /// idle blocks of at least `bytes` in total are freed (the caller allocates that much afresh).
    void* take(size_t bytes) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = free_.find(bytes);
        if (it != free_.end()) {
            void* p = it->second.back();  // the most recently freed block: likeliest still in cache
            it->second.pop_back();
            if (it->second.empty()) free_.erase(it);
            held_ -= bytes;
            return p;
        }
        // A miss: give back idle memory, the smallest larger block first, else the largest ones.
        size_t freed = 0;
        while (held_ + bytes > limit_ && freed < bytes && !free_.empty()) {
            auto victim = free_.upper_bound(bytes);
            if (victim == free_.end()) victim = std::prev(free_.end());
            std::free(victim->second.back());
            victim->second.pop_back();
            freed += victim->first;
            held_ -= victim->first;
            if (victim->second.empty()) free_.erase(victim);
        }
        return nullptr;
    }
    /// Keeps a freed block for reuse, or frees it when the cache is full.
    void give(void* p, size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (held_ + bytes <= limit_) {
                free_[bytes].push_back(p);
                held_ += bytes;
                return;
            }
        }
        std::free(p);
    }
    /// Frees every idle block (e.g. between training and a memory-hungry phase).
    void release() {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& [bytes, blocks] : free_)
            for (void* p : blocks) std::free(p);
        free_.clear();
        held_ = 0;
    }
    size_t held_bytes() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return held_;
    }
    size_t limit() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return limit_;
    }
    /// Sets the most bytes held idle (0 disables caching); frees idle blocks beyond it.
    void set_limit(size_t bytes) {
        std::lock_guard<std::mutex> lock(mutex_);
        limit_ = bytes;
        while (held_ > limit_ && !free_.empty()) {
            auto largest = std::prev(free_.end());
            std::free(largest->second.back());
            largest->second.pop_back();
            held_ -= largest->first;
            if (largest->second.empty()) free_.erase(largest);
        }
    }

private:
    BlockCache() {
        limit_ = size_t{512} << 20;
        if (const char* mb = std::getenv("BNN_TENSOR_CACHE_MB")) limit_ = static_cast<size_t>(std::strtoull(mb, nullptr, 10)) << 20;
    }
    mutable std::mutex mutex_;
    std::map<size_t, std::vector<void*>> free_;  // size -> idle blocks, never empty vectors
    size_t held_ = 0;
    size_t limit_ = 0;
};

/// Allocates n elements of T aligned to a cache line, zero-filled when asked. Large blocks come
/// from (and return to) the BlockCache.
template <class T>
std::shared_ptr<T> allocate(int64_t n, bool zero) {
    size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T);
    bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    const bool cached = bytes >= BlockCache::kMinBytes;
    void* p = cached ? BlockCache::instance().take(bytes) : nullptr;
    if (!p) p = std::aligned_alloc(kAlignment, bytes);
    if (!p) throw std::bad_alloc();
    if (zero) std::memset(p, 0, bytes);
    if (!cached) return std::shared_ptr<T>(static_cast<T*>(p), [](T* q) { std::free(q); });
    return std::shared_ptr<T>(static_cast<T*>(p), [bytes](T* q) { BlockCache::instance().give(q, bytes); });
}
}  // namespace detail

/// Frees every block the tensor cache holds idle and, with glibc, hands the heap's free memory
/// back to the system: for a program whose large allocations are over (a deployed network
/// loaded or compiled, its loading buffers dropped) and which should hold no more than it uses.
inline void release_idle_tensor_memory() {
    detail::BlockCache::instance().release();
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

}  // namespace bnn
