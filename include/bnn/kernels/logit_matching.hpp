#pragma once
/// @file logit_matching.hpp
/// Logit matching (Hinton et al.'s knowledge-distillation loss) on raw pointers; the loss and its
/// tape node are losses/logit_matching.hpp.
///
///   student zs [N, K], teacher zt [N, K], temperature T > 0 ->
///   ps, pt [N, K] = softmax(zs / T), softmax(zt / T);  loss = T^2 * mean_n KL(pt || ps)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace bnn::kernels {

/// z: [N, K] -> p: [N, K], p = softmax(z / t) row by row; logp: [N, K] its logarithm (each row's
/// log-sum-exp in double).
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

/// Writes ps and pt [N, K] (kept for the backward) and returns T^2 * mean_n KL(pt || ps), the KL
/// summed in double; positions where the teacher's probability is 0 add nothing.
inline double logit_matching_forward(const float* zs, const float* zt, float* ps, float* pt, int64_t n, int64_t k,
                                     float temperature) {
    std::vector<float> logps(static_cast<size_t>(n * k)), logpt(static_cast<size_t>(n * k));
    tempered_softmax_forward(zs, ps, logps.data(), n, k, temperature);
    tempered_softmax_forward(zt, pt, logpt.data(), n, k, temperature);
    double kl = 0;
    for (int64_t i = 0; i < n * k; ++i)
        if (pt[i] > 0.f) kl += static_cast<double>(pt[i]) * (static_cast<double>(logpt[i]) - logps[i]);
    const double t = temperature;
    return t * t * kl / static_cast<double>(n);
}

/// dzs [N, K] += dloss * T / N * (ps - pt): the gradient of logit_matching_forward's loss with
/// respect to the student's logits (the teacher's are constants).
inline void logit_matching_backward(const float* ps, const float* pt, float dloss, float* dzs, int64_t n, int64_t k,
                                    float temperature) {
    const double t = temperature;
    const float c = static_cast<float>(dloss * t / static_cast<double>(n));
    for (int64_t i = 0; i < n * k; ++i) dzs[i] += c * (ps[i] - pt[i]);
}

}  // namespace bnn::kernels
