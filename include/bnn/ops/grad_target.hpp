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

/// Where a backward kernel writes an input's gradient. `data` is null for inputs that want none.
/// `accumulate` is false when the input had no gradient yet: `data` is then a fresh,
/// UNINITIALISED buffer (already installed as the gradient) that the kernel must overwrite
/// entirely. That saves zero-filling a buffer and reading the zeros back, a pass and a half
/// over every activation-sized gradient.
struct GradSink {
    float* data = nullptr;
    bool accumulate = true;
};

/// The GradSink of an op input; see GradSink. Kernels given one must write every element.
inline GradSink grad_sink(Variable& input) {
    if (!input.defined() || !input.requires_grad()) return {};
    if (input.has_grad()) return {input.grad().data(), true};
    Tensor<float> g = Tensor<float>::empty(input.shape());
    input.adopt_grad(g);
    return {g.data(), false};
}

/// The data of an optional input (an undefined Variable gives nullptr).
inline const float* optional_data(const Variable& input) {
    return input.defined() ? input.value().data() : nullptr;
}

}  // namespace bnn::detail
