#pragma once
/// @file accumulate.hpp
/// How a backward kernel writes an input's gradient. Backward kernels take `accumulate`
/// (default true): true adds into dx; false means dx is a fresh, uninitialised gradient to
/// overwrite (a GradSink, autograd/grad_sink.hpp). Each has a template body on raw pointer
/// parameters with Accumulate fixed at compile time, so the inner loop stays branch-free; a
/// lambda capturing the pointers by reference would make every load go through the closure
/// and stop vectorisation (measured 4x slower).
namespace bnn::kernels::detail {

/// d += v (Accumulate) or d = v.
template <bool Accumulate>
inline void put(float& d, float v) {
    if constexpr (Accumulate)
        d += v;
    else
        d = v;
}

}  // namespace bnn::kernels::detail
