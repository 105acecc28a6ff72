#pragma once
/// @file init.hpp
/// Weight initialisers. Every layer draws its initial weights from bnn::default_rng() unless
/// given another generator, so bnn::manual_seed() makes a model's initialisation reproducible.
#include <cmath>
#include <cstdint>
#include <numbers>

#include "bnn/core/error.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::nn::init {

/// Inputs feeding one output unit: the product of every dimension but the first, which is
/// KH*KW*Cin for an OHWI conv weight and `in` for a [out, in] linear weight.
inline int64_t fan_in(const Shape& weight_shape) {
    BNN_CHECK(weight_shape.rank() >= 2, "init::fan_in: expected a weight of rank >= 2, got ", weight_shape.str());
    BNN_CHECK(weight_shape[0] > 0, "init::fan_in: the weight ", weight_shape.str(), " has no outputs");
    return weight_shape.numel() / weight_shape[0];
}

/// Kaiming/He normal initialisation in place: N(0, gain^2 / fan_in), gain sqrt(2) for ReLU
/// networks, which keeps the activations' variance constant from layer to layer.
inline void kaiming_normal(Tensor<float>& w, int64_t fan_in, float gain = std::numbers::sqrt2_v<float>,
                           Rng& rng = default_rng()) {
    BNN_CHECK(fan_in > 0, "init::kaiming_normal: expected fan_in > 0, got ", fan_in);
    const float stddev = gain / std::sqrt(static_cast<float>(fan_in));
    for (int64_t i = 0; i < w.numel(); ++i) w[i] = rng.normal(0.f, stddev);
}

/// Kaiming normal with the fan-in taken from the weight's own shape.
inline void kaiming_normal(Tensor<float>& w, Rng& rng = default_rng()) {
    kaiming_normal(w, fan_in(w.shape()), std::numbers::sqrt2_v<float>, rng);
}

/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in place: PyTorch's default for Conv2d and Linear (Kaiming
/// uniform with a = sqrt(5)), standard deviation 1/sqrt(3 fan_in), 2.45x below Kaiming normal.
/// bnn's layers start from it: a binary branch that starts small against the residual stream,
/// and latent binary weights whose signs an Adam step of about lr can still flip, train better
/// than with Kaiming normal (docs/pytorch.md, "Initialisation", has the measurement).
inline void fan_in_uniform(Tensor<float>& w, Rng& rng = default_rng()) {
    const float bound = 1.f / std::sqrt(static_cast<float>(fan_in(w.shape())));
    for (int64_t i = 0; i < w.numel(); ++i) w[i] = rng.uniform(-bound, bound);
}

/// Uniform [lo, hi) in place.
inline void uniform(Tensor<float>& t, float lo, float hi, Rng& rng = default_rng()) {
    BNN_CHECK(lo <= hi, "init::uniform: expected lo <= hi, got [", lo, ", ", hi, ")");
    for (int64_t i = 0; i < t.numel(); ++i) t[i] = rng.uniform(lo, hi);
}

}  // namespace bnn::nn::init
