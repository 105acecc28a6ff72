#pragma once
/// @file lanes.hpp
/// Lanes: 16 floats as one GCC vector, which the compiler splits into the vectors of the build's
/// instruction set (one zmm, two ymm, four xmm or four NEON q registers). For loops that keep a
/// few such vectors in registers over an inner loop, where the auto-vectoriser would keep its
/// partial results in memory and reload them for every term. Lanes go by reference: wider than
/// the build's vectors, they would change the calling convention by value.
#include <cstdint>
#include <cstring>

namespace bnn::kernels {

using Lanes = float __attribute__((vector_size(64)));
inline constexpr int64_t lanes_floats = sizeof(Lanes) / sizeof(float);

inline void load_lanes(Lanes& v, const float* p) { std::memcpy(&v, p, sizeof v); }
inline void store_lanes(float* p, const Lanes& v) { std::memcpy(p, &v, sizeof v); }

}  // namespace bnn::kernels
