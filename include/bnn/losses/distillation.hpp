#pragma once
/// @file distillation.hpp
/// Logit matching (Hinton et al.'s knowledge distillation), used at the end of the network in the
/// Real-to-Binary recipe (Sec. 4.2):
///
///     L = T^2 * mean_n KL( softmax(z_T / T) || softmax(z_S / T) )
///
/// The T^2 factor keeps the gradient's magnitude independent of the temperature. The teacher's
/// logits are constants: they come from a frozen network and receive no gradient.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::losses {

namespace detail {

// z: [N, K] -> p: [N, K], p = softmax(z / t) row by row; logp: [N, K] its logarithm.
inline void tempered_softmax_forward(const float* z, float* p, float* logp, int64_t n, int64_t k, float t) {
    for (int64_t r = 0; r < n; ++r) {
        const float* zr = z + r * k;
        float m = zr[0];
        for (int64_t i = 1; i < k; ++i) m = std::max(m, zr[i]);
        double s = 0;
        for (int64_t i = 0; i < k; ++i) s += std::exp(static_cast<double>(zr[i] - m) / t);
        const double lse = std::log(s);
        for (int64_t i = 0; i < k; ++i) {
            const double lp = static_cast<double>(zr[i] - m) / t - lse;
            logp[r * k + i] = static_cast<float>(lp);
            p[r * k + i] = static_cast<float>(std::exp(lp));
        }
    }
}

}  // namespace detail

/// Distillation loss of student logits [N,K] against the teacher's logits [N,K] (constants) at
/// temperature T > 0; result Shape{}. Gradient: d L / d z_S = T / N * (softmax(z_S/T) - softmax(z_T/T)).
inline Variable distillation(const Variable& student_logits, const Tensor<float>& teacher_logits,
                             float temperature = 1.f) {
    BNN_CHECK(student_logits.defined() && teacher_logits.defined(),
              "distillation: student and teacher logits must be defined");
    expect_rank(student_logits.value(), 2, "distillation", "student logits [N,K]");
    expect_shape(teacher_logits, student_logits.shape(), "distillation", "teacher logits");
    BNN_CHECK(temperature > 0.f && std::isfinite(temperature),
              "distillation: temperature must be a positive number, got ", temperature);
    const int64_t n = student_logits.dim(0), k = student_logits.dim(1);
    BNN_CHECK(n > 0 && k > 0, "distillation: expected a non-empty [N,K] batch, got ",
              student_logits.shape().str());
    Tensor<float> ps = Tensor<float>::empty({n, k}), logps = Tensor<float>::empty({n, k});
    Tensor<float> pt = Tensor<float>::empty({n, k}), logpt = Tensor<float>::empty({n, k});
    detail::tempered_softmax_forward(student_logits.value().data(), ps.data(), logps.data(), n, k, temperature);
    detail::tempered_softmax_forward(teacher_logits.data(), pt.data(), logpt.data(), n, k, temperature);
    double kl = 0;
    for (int64_t i = 0; i < n * k; ++i)
        if (pt[i] > 0.f) kl += static_cast<double>(pt[i]) * (static_cast<double>(logpt[i]) - logps[i]);
    const double t = temperature;
    Tensor<float> out = Tensor<float>::full(Shape{}, static_cast<float>(t * t * kl / static_cast<double>(n)));
    return make_result(
        out, {student_logits},
        [ps, pt, n, t](const Tensor<float>& g, std::vector<Variable>& in) {
            if (!in[0].defined() || !in[0].requires_grad()) return;
            const float c = static_cast<float>(g[0] * t / static_cast<double>(n));
            float* dz = in[0].grad().data();
            for (int64_t i = 0; i < ps.numel(); ++i) dz[i] += c * (ps[i] - pt[i]);
        },
        "distillation");
}

/// Same, taking the teacher's logits as a Variable; they are used as constants (detached).
inline Variable distillation(const Variable& student_logits, const Variable& teacher_logits,
                             float temperature = 1.f) {
    BNN_CHECK(teacher_logits.defined(), "distillation: teacher logits must be defined");
    return distillation(student_logits, teacher_logits.value(), temperature);
}

}  // namespace bnn::losses
