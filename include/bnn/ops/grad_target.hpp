#pragma once
/// @file grad_target.hpp
/// Helper for backward closures: where to accumulate an input's gradient, if anywhere.
#include "bnn/autograd/variable.hpp"

namespace bnn::detail {

/// The gradient buffer of an op input that wants one, or nullptr for absent inputs (an
/// undefined bias) and inputs that do not require a gradient (frozen weights, data).
inline float* grad_target(Variable& input) {
    return input.defined() && input.requires_grad() ? input.grad().data() : nullptr;
}

/// The data of an optional input (an undefined Variable gives nullptr).
inline const float* optional_data(const Variable& input) {
    return input.defined() ? input.value().data() : nullptr;
}

}  // namespace bnn::detail
