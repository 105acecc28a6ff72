#pragma once
/// @file cross_entropy.hpp
/// Cross-entropy of logits against integer labels (with label smoothing) or soft targets,
/// averaged over the batch. One tape node: the gradient (softmax - target) / N is exact and
/// cheaper than going through log_softmax.
#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/cross_entropy.hpp"

namespace bnn::losses {

namespace detail {
/// mean_n( -sum_k target[n,k] * log_softmax(logits)[n,k] ); target [N, K] already validated.
inline Variable soft_cross_entropy(const Variable& logits, const Tensor<float>& target, const char* op) {
    const int64_t N = logits.dim(0), K = logits.dim(1);
    Tensor<float> logp = Tensor<float>::empty(logits.shape());
    const double loss = kernels::cross_entropy_forward(logits.value().data(), target.data(), logp.data(), N, K);
    return make_result(
        Tensor<float>::full(Shape{}, static_cast<float>(loss)), {logits},
        [logp, target, N, K](const Tensor<float>& g, std::vector<Variable>& in) {
            if (float* dx = grad_accumulator(in[0]))
                kernels::cross_entropy_backward(logp.data(), target.data(), g[0], dx, N, K);
        },
        op);
}

inline void check_logits(const Variable& logits, const char* op) {
    expect_rank(logits.value(), 2, op, "logits [N, K]");
    BNN_CHECK(logits.dim(0) > 0 && logits.dim(1) > 0, op, ": logits need N > 0 and K > 0, got shape ",
              logits.shape().str());
}
}  // namespace detail

/// Mean cross-entropy of logits [N, K] against class indices labels[N] in [0, K).
/// label_smoothing e in [0, 1) replaces the one-hot target by (1 - e) * one_hot + e / K.
inline Variable cross_entropy(const Variable& logits, const std::vector<int32_t>& labels, float label_smoothing = 0.f) {
    const char* op = "losses::cross_entropy";
    detail::check_logits(logits, op);
    const int64_t N = logits.dim(0), K = logits.dim(1);
    BNN_CHECK(static_cast<int64_t>(labels.size()) == N, op, ": expected ", N, " labels for logits of shape ",
              logits.shape().str(), ", got ", labels.size());
    BNN_CHECK(label_smoothing >= 0.f && label_smoothing < 1.f, op, ": label_smoothing must be in [0, 1), got ",
              label_smoothing);
    Tensor<float> target = Tensor<float>::full(logits.shape(), label_smoothing / static_cast<float>(K));
    for (int64_t n = 0; n < N; ++n) {
        const int32_t y = labels[n];
        BNN_CHECK(y >= 0 && y < K, op, ": label ", y, " of sample ", n, " out of range [0, ", K, ")");
        target[n * K + y] += 1.f - label_smoothing;
    }
    return detail::soft_cross_entropy(logits, target, op);
}

/// Mean cross-entropy of logits [N, K] against target probabilities [N, K] (rows non-negative,
/// summing to 1, e.g. mix-up targets).
inline Variable cross_entropy(const Variable& logits, const Tensor<float>& target_probs) {
    const char* op = "losses::cross_entropy";
    detail::check_logits(logits, op);
    expect_shape(target_probs, logits.shape(), op, "target_probs");
    const int64_t N = logits.dim(0), K = logits.dim(1);
    for (int64_t n = 0; n < N; ++n) {
        double s = 0.0;
        for (int64_t k = 0; k < K; ++k) {
            const float t = target_probs[n * K + k];
            BNN_CHECK(t >= 0.f, op, ": target_probs must be non-negative, got ", t, " at [", n, ", ", k, "]");
            s += t;
        }
        BNN_CHECK(std::abs(s - 1.0) < 1e-3, op, ": each row of target_probs must sum to 1, row ", n, " sums to ", s);
    }
    // A copy: the caller may reuse its buffer for the next batch before backward.
    return detail::soft_cross_entropy(logits, target_probs.clone(), op);
}

}  // namespace bnn::losses
