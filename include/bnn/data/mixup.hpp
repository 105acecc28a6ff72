#pragma once
/// @file mixup.hpp
/// Mix-up (Zhang et al. 2018) at batch level: one lambda ~ Beta(alpha, alpha) per batch, each
/// sample blended with the sample at a shuffled position, and soft targets blended likewise.
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::data {

/// Gamma(shape, 1) by Marsaglia and Tsang's method; shape < 1 uses the boost
/// Gamma(a) = Gamma(a + 1) * U^(1/a).
inline double sample_gamma(double shape, Rng& rng) {
    BNN_CHECK(shape > 0, "sample_gamma: shape must be positive, got ", shape);
    if (shape < 1) {
        const double u = (static_cast<double>(rng.next_u64() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
        return sample_gamma(shape + 1, rng) * std::pow(u, 1.0 / shape);
    }
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = rng.normal();
            v = 1.0 + c * x;
        } while (v <= 0);
        v = v * v * v;
        const double u = (static_cast<double>(rng.next_u64() >> 11) + 1.0) * 0x1.0p-53;
        if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
    }
}

/// Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
inline double sample_beta(double a, double b, Rng& rng) {
    const double x = sample_gamma(a, rng), y = sample_gamma(b, rng);
    // Both can underflow to 0 for tiny shapes; either endpoint is then equally plausible.
    if (x + y == 0) return rng.uniform() < 0.5 ? 0.0 : 1.0;
    return x / (x + y);
}

/// What mixup() did: the blend weight and the partner of each sample.
struct MixupInfo {
    float lambda = 1.f;
    std::vector<int64_t> partner;  ///< sample i was blended with sample partner[i]
};

/// Blends the batch in place: x_i <- lambda x_i + (1 - lambda) x_partner(i), and returns soft
/// targets [B, K] = lambda onehot(y_i) + (1 - lambda) onehot(y_partner(i)) whose rows sum to 1.
/// images: [B, ...]; labels: B values in [0, num_classes).
inline Tensor<float> mixup(Tensor<float>& images, const std::vector<int32_t>& labels, int num_classes, float alpha,
                           Rng& rng, MixupInfo* info = nullptr) {
    BNN_CHECK(alpha > 0, "mixup: alpha must be positive, got ", alpha);
    BNN_CHECK(images.rank() >= 1 && images.dim(0) == static_cast<int64_t>(labels.size()), "mixup: ",
              labels.size(), " labels for images of shape ", images.shape().str());
    BNN_CHECK(num_classes > 0, "mixup: num_classes must be positive, got ", num_classes);
    const int64_t B = images.dim(0);
    const float lam = static_cast<float>(sample_beta(alpha, alpha, rng));
    std::vector<int64_t> partner(B);
    std::iota(partner.begin(), partner.end(), 0);
    rng.shuffle(partner.begin(), partner.end());

    // Blend from a copy: a partner may already have been overwritten.
    const Tensor<float> original = images.clone();
    const int64_t row = B ? images.numel() / B : 0;
    for (int64_t i = 0; i < B; ++i) {
        float* d = images.data() + i * row;
        const float* a = original.data() + i * row;
        const float* b = original.data() + partner[i] * row;
        for (int64_t k = 0; k < row; ++k) d[k] = lam * a[k] + (1.f - lam) * b[k];
    }
    Tensor<float> targets(Shape{B, num_classes});
    for (int64_t i = 0; i < B; ++i) {
        const int32_t y = labels[i], z = labels[partner[i]];
        BNN_CHECK(y >= 0 && y < num_classes, "mixup: label ", y, " of sample ", i, " is outside [0, ", num_classes, ")");
        targets.at({i, y}) += lam;
        targets.at({i, z}) += 1.f - lam;
    }
    if (info) *info = {lam, std::move(partner)};
    return targets;
}

}  // namespace bnn::data
