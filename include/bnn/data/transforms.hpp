#pragma once
/// @file transforms.hpp
/// Per-channel normalization of byte images to float NHWC: y = (x / 255 - mean[c]) / std[c],
/// with mean and std on the [0, 1] scale (the convention of torchvision's Normalize).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::data {

/// Per-channel statistics on the [0, 1] scale. Empty vectors mean "no normalization" (x / 255).
struct Normalization {
    std::vector<float> mean;
    std::vector<float> std;
};

/// The usual CIFAR-100 training-set statistics.
inline Normalization cifar100_normalization() { return {{0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}}; }

namespace detail {
/// Checks a normalization against the channel count and fills in the defaults.
inline void resolve_normalization(const Normalization& n, int channels, std::vector<float>& scale,
                                  std::vector<float>& shift) {
    BNN_CHECK(n.mean.empty() || static_cast<int>(n.mean.size()) == channels, "normalize: ", n.mean.size(),
              " means for ", channels, " channels");
    BNN_CHECK(n.std.empty() || static_cast<int>(n.std.size()) == channels, "normalize: ", n.std.size(),
              " standard deviations for ", channels, " channels");
    scale.assign(channels, 1.f / 255.f);
    shift.assign(channels, 0.f);
    for (int c = 0; c < channels; ++c) {
        const float m = n.mean.empty() ? 0.f : n.mean[c];
        const float s = n.std.empty() ? 1.f : n.std[c];
        BNN_CHECK(s > 0.f && std::isfinite(s), "normalize: std of channel ", c, " must be positive, got ", s);
        // (x / 255 - m) / s as one multiply-add per value.
        scale[c] = 1.f / (255.f * s);
        shift[c] = -m / s;
    }
}
}  // namespace detail

/// Normalizes `pixels` byte values laid out [pixels, channels] into dst (same layout).
inline void normalize_into(const uint8_t* src, float* dst, int64_t pixels, int channels, const Normalization& n) {
    std::vector<float> scale, shift;
    detail::resolve_normalization(n, channels, scale, shift);
    for (int64_t p = 0; p < pixels; ++p)
        for (int c = 0; c < channels; ++c)
            dst[p * channels + c] = static_cast<float>(src[p * channels + c]) * scale[c] + shift[c];
}

/// Normalizes byte images [..., C] to floats of the same shape.
inline Tensor<float> normalize(const Tensor<uint8_t>& images, const Normalization& n) {
    BNN_CHECK(images.rank() >= 1, "normalize: images must have a channel dimension, got ", images.shape().str());
    Tensor<float> out = Tensor<float>::empty(images.shape());
    const int channels = static_cast<int>(images.dim(-1));
    normalize_into(images.data(), out.data(), channels ? images.numel() / channels : 0, channels, n);
    return out;
}

/// Mean and standard deviation per channel (last dim) of byte images, on the [0, 1] scale.
inline Normalization channel_statistics(const Tensor<uint8_t>& images) {
    BNN_CHECK(images.rank() >= 1 && images.numel() > 0, "channel_statistics: needs non-empty images, got ",
              images.shape().str());
    const int channels = static_cast<int>(images.dim(-1));
    const int64_t pixels = images.numel() / channels;
    std::vector<double> sum(channels, 0.0), sq(channels, 0.0);
    for (int64_t p = 0; p < pixels; ++p)
        for (int c = 0; c < channels; ++c) {
            const double v = images[p * channels + c] / 255.0;
            sum[c] += v;
            sq[c] += v * v;
        }
    Normalization n;
    for (int c = 0; c < channels; ++c) {
        const double m = sum[c] / pixels;
        n.mean.push_back(static_cast<float>(m));
        n.std.push_back(static_cast<float>(std::sqrt(std::max(0.0, sq[c] / pixels - m * m))));
    }
    return n;
}

}  // namespace bnn::data
