#pragma once
/// @file shape.hpp
/// Shape: the extents of a tensor, outermost first (NHWC for activations, OHWI for weights).
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "bnn/core/error.hpp"

namespace bnn {

class Shape {
public:
    Shape() = default;
    Shape(std::initializer_list<int64_t> dims) : dims_(dims) { validate(); }
    explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) { validate(); }

    /// Number of dimensions; a scalar has rank 0.
    int rank() const { return static_cast<int>(dims_.size()); }
    /// Extent of dimension i; negative i counts from the end (-1 is the last).
    int64_t operator[](int i) const { return dims_[index(i)]; }
    int64_t& operator[](int i) { return dims_[index(i)]; }
    /// Product of the extents (1 for a scalar).
    int64_t numel() const {
        int64_t n = 1;
        for (int64_t d : dims_) n *= d;
        return n;
    }
    const std::vector<int64_t>& dims() const { return dims_; }
    auto begin() const { return dims_.begin(); }
    auto end() const { return dims_.end(); }
    bool operator==(const Shape& o) const { return dims_ == o.dims_; }
    bool operator!=(const Shape& o) const { return dims_ != o.dims_; }

    /// "[2, 32, 32, 3]"
    std::string str() const {
        std::string s = "[";
        for (size_t i = 0; i < dims_.size(); ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
        return s + "]";
    }

private:
    size_t index(int i) const {
        int r = rank();
        BNN_CHECK(i >= -r && i < r, "Shape ", str(), ": dimension ", i, " out of range for rank ", r);
        return static_cast<size_t>(i < 0 ? i + r : i);
    }
    void validate() const {
        for (int64_t d : dims_)
            BNN_CHECK(d >= 0, "Shape: extents must be non-negative, got ", str());
    }
    std::vector<int64_t> dims_;
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

}  // namespace bnn
