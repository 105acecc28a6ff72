#pragma once
/// @file conv2d_u8s16_scalar.hpp
/// The integer stem's scalar path (conv2d_u8s16.hpp): a tile of 4 pixels x 16 output channels of
/// exact int32 sums, and its conversion to floats.
#include <cmath>
#include <cstdint>

#include "bnn/kernels/conv2d_u8s16_quantize.hpp"

namespace bnn::kernels::detail {

inline constexpr int64_t u8s16_tile_pixels = 4;  // pixels per register tile

/// acc[r, j] = sum_k fields[r, k] * w[k, j] for a tile of 4 pixels x 16 channels; `wb` is one
/// channel block of U8S16ConvWeights::packed.
inline void u8s16_tile_scalar(const int16_t* fields, int64_t kp, const int16_t* wb, int32_t* acc) {
    for (int64_t r = 0; r < u8s16_tile_pixels; ++r)
        for (int64_t j = 0; j < u8s16_lanes; ++j) {
            int32_t s = 0;
            for (int64_t p = 0; p < kp / 2; ++p) {
                const int16_t* x = fields + r * kp + 2 * p;
                const int16_t* w = wb + (p * u8s16_lanes + j) * 2;
                s += int32_t{x[0]} * w[0] + int32_t{x[1]} * w[1];
            }
            acc[r * u8s16_lanes + j] = s;
        }
}

/// out[j] = fma(float(acc[j]), scale[j], bias[j]) for j < cols.
inline void u8s16_finish_scalar(const int32_t* acc, const float* scale, const float* bias, float* out, int64_t cols) {
    for (int64_t j = 0; j < cols; ++j) out[j] = std::fma(static_cast<float>(acc[j]), scale[j], bias[j]);
}

}  // namespace bnn::kernels::detail
