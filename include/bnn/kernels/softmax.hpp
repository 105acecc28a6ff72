#pragma once
/// @file softmax.hpp
/// Softmax and log-softmax over the last dimension of x [N, K], stabilised by subtracting
/// each row's maximum (log-sum-exp) so large logits never overflow.
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace bnn::kernels {

/// y [N, K] = log_softmax(x) per row
inline void log_softmax_forward(const float* x, float* y, int64_t N, int64_t K) {
    for (int64_t n = 0; n < N; ++n) {
        const float* r = x + n * K;
        const float mx = *std::max_element(r, r + K);
        double s = 0.0;
        for (int64_t k = 0; k < K; ++k) s += std::exp(double(r[k] - mx));
        // (x - max) - log(s), not x - (max + log(s)): the latter rounds at the scale of max.
        const float ls = static_cast<float>(std::log(s));
        for (int64_t k = 0; k < K; ++k) y[n * K + k] = (r[k] - mx) - ls;
    }
}

/// y [N, K] = softmax(x) per row
inline void softmax_forward(const float* x, float* y, int64_t N, int64_t K) {
    for (int64_t n = 0; n < N; ++n) {
        const float* r = x + n * K;
        const float mx = *std::max_element(r, r + K);
        double s = 0.0;
        for (int64_t k = 0; k < K; ++k) {
            y[n * K + k] = std::exp(r[k] - mx);
            s += y[n * K + k];
        }
        const float inv = static_cast<float>(1.0 / s);
        for (int64_t k = 0; k < K; ++k) y[n * K + k] *= inv;
    }
}

/// dx [N, K] += y * (dy - sum_k(dy * y)),  y = softmax(x)
inline void softmax_backward(const float* y, const float* dy, float* dx, int64_t N, int64_t K) {
    for (int64_t n = 0; n < N; ++n) {
        double dot = 0.0;
        for (int64_t k = 0; k < K; ++k) dot += double(dy[n * K + k]) * y[n * K + k];
        for (int64_t k = 0; k < K; ++k) dx[n * K + k] += y[n * K + k] * (dy[n * K + k] - static_cast<float>(dot));
    }
}

/// dx [N, K] += dy - exp(y) * sum_k(dy),  y = log_softmax(x)
inline void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t N, int64_t K) {
    for (int64_t n = 0; n < N; ++n) {
        double s = 0.0;
        for (int64_t k = 0; k < K; ++k) s += dy[n * K + k];
        for (int64_t k = 0; k < K; ++k)
            dx[n * K + k] += dy[n * K + k] - std::exp(y[n * K + k]) * static_cast<float>(s);
    }
}

}  // namespace bnn::kernels
