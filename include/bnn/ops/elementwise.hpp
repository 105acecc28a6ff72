#pragma once
/// @file elementwise.hpp
/// Differentiable element-wise arithmetic: add, sub, mul (with broadcast forms), scale.
#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/elementwise.hpp"

namespace bnn::ops {

namespace detail {
inline Variable add_or_sub(const Variable& a, const Variable& b, float sign, const char* op) {
    BNN_CHECK(a.shape() == b.shape(), op, ": operands must have the same shape, got ", a.shape().str(), " and ",
              b.shape().str());
    Tensor<float> y = Tensor<float>::empty(a.shape());
    kernels::add_forward(a.value().data(), b.value().data(), y.data(), y.numel(), sign);
    return make_result(
        y, {a, b},
        [sign](const Tensor<float>& g, std::vector<Variable>& in) {
            // An input without a gradient yet takes g itself (g is not needed after this node);
            // only one can, so the other gets a copy. No pass at all for a fresh residual input.
            bool a_took_g = false;
            if (in[0].defined() && in[0].requires_grad()) {
                a_took_g = in[0].adopt_grad(g);
                if (!a_took_g) kernels::axpy(1.f, g.data(), in[0].grad().data(), g.numel());
            }
            if (in[1].defined() && in[1].requires_grad()) {
                if (!a_took_g && sign == 1.f && in[1].adopt_grad(g)) return;
                const auto db = grad_sink(in[1]);
                if (db.accumulate)
                    kernels::axpy(sign, g.data(), db.data, g.numel());
                else
                    kernels::scale_forward(g.data(), sign, db.data, g.numel());
            }
        },
        op);
}
}  // namespace detail

/// a + b, same shape.
inline Variable add(const Variable& a, const Variable& b) { return detail::add_or_sub(a, b, 1.f, "ops::add"); }
/// a - b, same shape.
inline Variable sub(const Variable& a, const Variable& b) { return detail::add_or_sub(a, b, -1.f, "ops::sub"); }

/// a * b where b has
///   - the shape of a (element-wise),
///   - shape [C] with C = a's last dim (one factor per channel), or
///   - shape [N, C] with a of shape [N, ..., C] (one factor per sample and channel: gates,
///     attention scales).
inline Variable mul(const Variable& a, const Variable& b) {
    const Shape& sa = a.shape();
    const Shape& sb = b.shape();
    const bool same = sa == sb;
    const bool per_channel = sb.rank() == 1 && sa.rank() >= 1 && sb[0] == sa[-1];
    const bool per_sample = sb.rank() == 2 && sa.rank() >= 2 && sb[0] == sa[0] && sb[1] == sa[-1];
    BNN_CHECK(same || per_channel || per_sample, "ops::mul: b must have a's shape ", sa.str(), ", [",
              sa.rank() ? sa[-1] : 0, "] (per channel) or [N, C] = [", sa.rank() >= 2 ? sa[0] : 0, ", ",
              sa.rank() ? sa[-1] : 0, "] (per sample and channel), got ", sb.str());
    int64_t outer, inner, C;
    if (same) {
        outer = sa.numel(), inner = 1, C = 1;
    } else if (per_channel) {
        C = sb[0], outer = 1, inner = C ? sa.numel() / C : 0;
    } else {
        outer = sb[0], C = sb[1], inner = (outer > 0 && C > 0) ? sa.numel() / (outer * C) : 0;
    }
    Tensor<float> av = a.value(), bv = b.value();
    Tensor<float> y = Tensor<float>::empty(sa);
    kernels::mul_forward(av.data(), bv.data(), y.data(), outer, inner, C);
    return make_result(
        y, {a, b},
        [av, bv, outer, inner, C](const Tensor<float>& g, std::vector<Variable>& in) {
            kernels::mul_backward(av.data(), bv.data(), g.data(), grad_accumulator(in[0]),
                                  grad_accumulator(in[1]), outer, inner, C);
        },
        "ops::mul");
}

/// s * x, any shape.
inline Variable scale(const Variable& x, float s) {
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::scale_forward(x.value().data(), s, y.data(), y.numel());
    return make_result(
        y, {x},
        [s](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0])) kernels::axpy(s, g.data(), dx, g.numel());
        },
        "ops::scale");
}

}  // namespace bnn::ops
