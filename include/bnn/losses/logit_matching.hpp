#pragma once
/// @file logit_matching.hpp
/// Logit matching, Hinton et al.'s knowledge-distillation loss ("kd" in the stage weights), used
/// at the end of the network in the Real-to-Binary recipe (Sec. 4.2):
///
///     L = T^2 * mean_n KL( softmax(z_T / T) || softmax(z_S / T) )
///
/// The T^2 factor keeps the gradient's magnitude independent of the temperature. The teacher's
/// logits are constants: they come from a frozen network and receive no gradient. (The whole
/// teacher-student step, of which this is one term, is train/distillation.hpp.)
#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/kernels/logit_matching.hpp"

namespace bnn::losses {

/// Logit-matching loss of student logits [N,K] against the teacher's logits [N,K] (constants) at
/// temperature T > 0; result Shape{}. Gradient: d L / d z_S = T / N * (softmax(z_S/T) - softmax(z_T/T)).
inline Variable logit_matching(const Variable& student_logits, const Tensor<float>& teacher_logits,
                               float temperature = 1.f) {
    const char* op = "losses::logit_matching";
    BNN_CHECK(student_logits.defined() && teacher_logits.defined(), op,
              ": student and teacher logits must be defined");
    expect_rank(student_logits.value(), 2, op, "student logits [N,K]");
    expect_shape(teacher_logits, student_logits.shape(), op, "teacher logits");
    BNN_CHECK(temperature > 0.f && std::isfinite(temperature), op, ": temperature must be a positive number, got ",
              temperature);
    const int64_t n = student_logits.dim(0), k = student_logits.dim(1);
    BNN_CHECK(n > 0 && k > 0, op, ": expected a non-empty [N,K] batch, got ", student_logits.shape().str());
    Tensor<float> ps = Tensor<float>::empty({n, k}), pt = Tensor<float>::empty({n, k});
    const double loss = kernels::logit_matching_forward(student_logits.value().data(), teacher_logits.data(),
                                                        ps.data(), pt.data(), n, k, temperature);
    return make_result(
        Tensor<float>::full(Shape{}, static_cast<float>(loss)), {student_logits},
        [ps, pt, n, k, temperature](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dz = grad_accumulator(in[0]))
                kernels::logit_matching_backward(ps.data(), pt.data(), g[0], dz, n, k, temperature);
        },
        op);
}

/// Same, taking the teacher's logits as a Variable; they are used as constants (detached).
inline Variable logit_matching(const Variable& student_logits, const Variable& teacher_logits,
                               float temperature = 1.f) {
    BNN_CHECK(teacher_logits.defined(), "losses::logit_matching: teacher logits must be defined");
    return logit_matching(student_logits, teacher_logits.value(), temperature);
}

}  // namespace bnn::losses
