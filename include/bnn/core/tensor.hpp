#pragma once
/// @file tensor.hpp
/// Tensor<T>: a contiguous, row-major block of T with a Shape, on shared 64-byte-aligned storage.
/// Copies of a Tensor share storage (like a shared_ptr); clone() makes a deep copy. Views
/// (reshape, slice of the first dimension) share storage too, so writes through a view are seen
/// by every tensor on the same storage. Storage comes from detail::allocate (core/block_cache.hpp).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <type_traits>
#include <vector>

#include "bnn/core/block_cache.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/shape.hpp"

namespace bnn {

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
