#pragma once
/// @file operators.hpp
/// Arithmetic operators on Variables, so model code reads as the formula it implements:
/// `a + b`, `a - b`, `a * b` (ops::add, ops::sub, ops::mul, with mul's per-channel and
/// per-sample broadcasting), `s * x` and `x * s` (ops::scale), `-x`.
#include "bnn/autograd/variable.hpp"
#include "bnn/ops/elementwise.hpp"

namespace bnn {

inline Variable operator+(const Variable& a, const Variable& b) { return ops::add(a, b); }
inline Variable operator-(const Variable& a, const Variable& b) { return ops::sub(a, b); }
inline Variable operator*(const Variable& a, const Variable& b) { return ops::mul(a, b); }
inline Variable operator*(float s, const Variable& x) { return ops::scale(x, s); }
inline Variable operator*(const Variable& x, float s) { return ops::scale(x, s); }
inline Variable operator-(const Variable& x) { return ops::scale(x, -1.f); }

}  // namespace bnn
