#pragma once
/// @file grad_sink.hpp
/// Where the backward closure of an op (ops/, losses/, or a user's own) writes the gradient of
/// each of its inputs. Two helpers, one meaning each:
///
///   grad_accumulator(input) -> float*    a buffer to ADD into: the input's gradient, allocated
///                                        and zero-filled if it had none. For kernels that only
///                                        accumulate.
///   grad_sink(input)        -> GradSink  a buffer to add into OR to overwrite: when the input had
///                                        no gradient yet, a fresh UNINITIALISED buffer that the
///                                        kernel must write entirely (accumulate = false). For
///                                        kernels that can overwrite, which saves zero-filling a
///                                        buffer and reading the zeros back.
///
/// Both give nullptr for inputs that want no gradient (an undefined optional input, frozen
/// weights, data). They are public names in bnn:: (not a detail namespace), so code inside any
/// `detail` namespace of ops or losses calls them unqualified. optional_data() is the forward
/// counterpart for optional inputs.
///
/// Order: if one Variable is passed as two inputs, their gradients are one buffer, and a fresh
/// sink is garbage until its kernel has written it. So nothing may add into that buffer before the
/// sink's write: a closure either writes the sink first (the prelu kernels write dx before
/// dslope) or fetches the sink after the other gradients are in (it then says accumulate = true).
#include "bnn/autograd/variable.hpp"

namespace bnn {

/// The gradient buffer of an op input that wants one, to accumulate into (zero-filled when new),
/// or nullptr for absent inputs and inputs that do not require a gradient.
inline float* grad_accumulator(Variable& input) {
    return input.defined() && input.requires_grad() ? input.grad().data() : nullptr;
}

/// Where a backward kernel writes an input's gradient. `data` is null for inputs that want none.
/// `accumulate` is false when the input had no gradient yet: `data` is then a fresh,
/// UNINITIALISED buffer (already installed as the gradient) that the kernel must overwrite
/// entirely.
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

}  // namespace bnn
