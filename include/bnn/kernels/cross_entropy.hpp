#pragma once
/// @file cross_entropy.hpp
/// Cross-entropy of logits against target probabilities, averaged over the batch, on raw
/// pointers; the loss and its tape node are losses/cross_entropy.hpp.
///
///   logits [N, K], target [N, K] (rows of probabilities) -> logp [N, K] = log_softmax(logits),
///   loss = mean_n( -sum_k target[n,k] * logp[n,k] )
#include <cmath>
#include <cstdint>

#include "bnn/kernels/softmax.hpp"

namespace bnn::kernels {

/// Writes logp [N, K] and returns the mean cross-entropy (summed in double). Terms with a zero
/// target are skipped, so 0 * log p stays 0 even where p underflows to 0.
inline double cross_entropy_forward(const float* logits, const float* target, float* logp, int64_t N, int64_t K) {
    log_softmax_forward(logits, logp, N, K);
    double loss = 0.0;
    for (int64_t i = 0; i < N * K; ++i)
        if (target[i] != 0.f) loss -= double(target[i]) * logp[i];
    return loss / double(N);
}

/// dlogits [N, K] += dloss / N * (softmax(logits) - target), with softmax = exp(logp): the exact
/// gradient of the mean cross-entropy, cheaper than going back through log_softmax.
inline void cross_entropy_backward(const float* logp, const float* target, float dloss, float* dlogits, int64_t N,
                                   int64_t K) {
    const float s = dloss / static_cast<float>(N);
    for (int64_t i = 0; i < N * K; ++i) dlogits[i] += s * (std::exp(logp[i]) - target[i]);
}

}  // namespace bnn::kernels
