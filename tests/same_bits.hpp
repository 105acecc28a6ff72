#pragma once
// Bit-for-bit equality of two tensors (shape and bytes): for results that must survive a round
// trip through a file or a resumed run exactly.
#include <cstring>

#include "bnn/core/tensor.hpp"

namespace bnn::test {

template <class T>
bool bits_equal(const Tensor<T>& a, const Tensor<T>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(T) * a.numel()) == 0;
}

}  // namespace bnn::test
