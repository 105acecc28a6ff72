#pragma once
/// @file tensor.hpp
/// Tensor<T>: a contiguous, row-major block of T with a Shape, on shared 64-byte-aligned storage.
/// Copies of a Tensor share storage (like a shared_ptr); clone() makes a deep copy. Views
/// (reshape, slice of the first dimension) share storage too, so writes through a view are seen
/// by every tensor on the same storage.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/shape.hpp"

namespace bnn {

namespace detail {
inline constexpr size_t kAlignment = 64;

/// A bounded cache of freed large blocks, keyed by their exact size.
///
/// Why: a training step allocates every activation and gradient afresh (MBs each) and frees them
/// by the end of the step. glibc hands such blocks back to the kernel (mmap, heap trimming), so
/// the next step page-faults them in again (~8k faults per step of a binary ResNet-18). The
/// sizes repeat exactly from step to step, so blocks kept by size are handed out again and the
/// faults disappear (measured: peak RSS unchanged, a step 0-2% faster on one thread).
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

template <class T>
class Tensor {
    static_assert(std::is_trivially_copyable_v<T>, "Tensor<T> holds plain numbers");

public:
    using value_type = T;

    /// An undefined tensor: no storage, rank 0. defined() is false.
    Tensor() = default;
    /// A zero-filled tensor of the given shape.
    explicit Tensor(const Shape& shape) : shape_(shape), data_(detail::allocate<T>(shape.numel(), true)) {}

    static Tensor zeros(const Shape& shape) { return Tensor(shape); }
    /// Storage left uninitialised, for outputs a kernel overwrites completely.
    static Tensor empty(const Shape& shape) {
        Tensor t;
        t.shape_ = shape;
        t.data_ = detail::allocate<T>(shape.numel(), false);
        return t;
    }
    static Tensor full(const Shape& shape, T value) {
        Tensor t = empty(shape);
        t.fill(value);
        return t;
    }
    /// Copies values (row-major) into a new tensor; their count must match the shape.
    static Tensor from_vector(const Shape& shape, const std::vector<T>& values) {
        BNN_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "Tensor::from_vector: shape ",
                  shape.str(), " needs ", shape.numel(), " values, got ", values.size());
        Tensor t = empty(shape);
        std::copy(values.begin(), values.end(), t.data());
        return t;
    }
    /// Normal(mean, stddev) samples drawn from rng in row-major order.
    static Tensor randn(const Shape& shape, Rng& rng, float mean = 0.f, float stddev = 1.f) {
        Tensor t = empty(shape);
        for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(rng.normal(mean, stddev));
        return t;
    }
    /// Uniform [lo, hi) samples drawn from rng in row-major order.
    static Tensor uniform(const Shape& shape, Rng& rng, float lo = 0.f, float hi = 1.f) {
        Tensor t = empty(shape);
        for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(rng.uniform(lo, hi));
        return t;
    }

    bool defined() const { return data_ != nullptr; }
    const Shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    /// Extent of dimension i (negative counts from the end).
    int64_t dim(int i) const { return shape_[i]; }
    int64_t numel() const { return shape_.numel(); }
    T* data() { return data_.get(); }
    const T* data() const { return data_.get(); }
    T* begin() { return data(); }
    T* end() { return data() + numel(); }
    const T* begin() const { return data(); }
    const T* end() const { return data() + numel(); }

    /// Flat, unchecked element access (row-major index).
    T& operator[](int64_t i) { return data_.get()[i]; }
    const T& operator[](int64_t i) const { return data_.get()[i]; }

    /// Checked multi-index access, for tests and small tools: t.at({n, h, w, c}).
    T& at(std::initializer_list<int64_t> idx) { return data_.get()[offset_of(idx)]; }
    const T& at(std::initializer_list<int64_t> idx) const { return data_.get()[offset_of(idx)]; }

    /// A view with another shape of the same element count; one extent may be -1 (inferred).
    Tensor reshape(std::vector<int64_t> dims) const {
        int infer = -1;
        int64_t known = 1;
        for (size_t i = 0; i < dims.size(); ++i) {
            if (dims[i] == -1) {
                BNN_CHECK(infer < 0, "Tensor::reshape: more than one -1 in the new shape");
                infer = static_cast<int>(i);
            } else {
                BNN_CHECK(dims[i] >= 0, "Tensor::reshape: negative extent ", dims[i]);
                known *= dims[i];
            }
        }
        if (infer >= 0) {
            BNN_CHECK(known > 0 && numel() % known == 0, "Tensor::reshape: cannot infer -1 from ",
                      shape_.str(), " with the other extents multiplying to ", known);
            dims[infer] = numel() / known;
            known *= dims[infer];
        }
        Shape s(std::move(dims));
        BNN_CHECK(known == numel(), "Tensor::reshape: ", shape_.str(), " (", numel(), " elements) to ",
                  s.str(), " (", known, " elements)");
        Tensor t = *this;
        t.shape_ = s;
        return t;
    }

    /// A view of rows [begin, end) of the first dimension (e.g. a sub-batch).
    Tensor slice(int64_t begin, int64_t end) const {
        BNN_CHECK(rank() >= 1, "Tensor::slice: needs rank >= 1, got a scalar");
        BNN_CHECK(0 <= begin && begin <= end && end <= dim(0), "Tensor::slice: rows [", begin, ", ",
                  end, ") out of range for shape ", shape_.str());
        int64_t row = dim(0) == 0 ? 0 : numel() / dim(0);
        Tensor t;
        std::vector<int64_t> d = shape_.dims();
        d[0] = end - begin;
        t.shape_ = Shape(std::move(d));
        t.data_ = std::shared_ptr<T>(data_, data_.get() + begin * row);  // aliases the storage
        return t;
    }

    /// A deep copy on new storage.
    Tensor clone() const {
        Tensor t = empty(shape_);
        if (numel()) std::memcpy(t.data(), data(), sizeof(T) * numel());
        return t;
    }
    /// Copies values from a tensor of the same shape into this one's storage.
    void copy_from(const Tensor& src) {
        BNN_CHECK(src.shape() == shape_, "Tensor::copy_from: expected shape ", shape_.str(), ", got ",
                  src.shape().str());
        if (numel() && src.data() != data()) std::memmove(data(), src.data(), sizeof(T) * numel());
    }
    void fill(T value) { std::fill(begin(), end(), value); }
    std::vector<T> to_vector() const { return std::vector<T>(begin(), end()); }
    /// True when both tensors are views of the same storage region.
    bool same_storage(const Tensor& o) const { return data_ == o.data_; }

private:
    int64_t offset_of(std::initializer_list<int64_t> idx) const {
        BNN_CHECK(static_cast<int>(idx.size()) == rank(), "Tensor::at: ", idx.size(),
                  " indices for shape ", shape_.str());
        int64_t off = 0;
        int i = 0;
        for (int64_t v : idx) {
            BNN_CHECK(v >= 0 && v < shape_[i], "Tensor::at: index ", v, " out of range for dimension ",
                      i, " of shape ", shape_.str());
            off = off * shape_[i] + v;
            ++i;
        }
        return off;
    }

    Shape shape_;
    std::shared_ptr<T> data_;
};

/// Throws bnn::Error naming `op` unless t has exactly the expected shape.
template <class T>
void expect_shape(const Tensor<T>& t, const Shape& expected, const char* op, const char* what) {
    BNN_CHECK(t.shape() == expected, op, ": ", what, " must have shape ", expected.str(), ", got ",
              t.shape().str());
}

/// Throws bnn::Error naming `op` unless t has the expected rank.
template <class T>
void expect_rank(const Tensor<T>& t, int rank, const char* op, const char* what) {
    BNN_CHECK(t.rank() == rank, op, ": ", what, " must have rank ", rank, ", got shape ",
              t.shape().str());
}

}  // namespace bnn
