#pragma once
/// @file conv2d_u8s16_scalar.hpp
/// The integer stem's scalar path (conv2d_u8s16.hpp): a tile of 4 pixels x 16 output channels of
/// exact int32 sums, and its conversion to floats; also where a tile reads its pixels.
#include <cmath>
#include <cstdint>

#include "bnn/kernels/conv2d_u8s16_quantize.hpp"

namespace bnn::kernels::detail {

inline constexpr int64_t u8s16_tile_pixels = 4;      // pixels per register tile
inline constexpr int64_t u8s16_tile_blocks_max = 4;  // channel blocks of the widest tile (AVX-512's)

/// How a tile walks a receptive field in the padded image (conv2d_u8s16.hpp): `rows` kernel
/// rows of `steps` runs of taps each, `row_step` values apart. A run is an int16 pair in the
/// widened image, or four bytes in the byte image of the byte tiles; a kernel row whose taps
/// do not fill whole runs reads up to one (pairs) or three (bytes) values past its end, which
/// meet zero weights.
struct U8S16Taps {
    int64_t rows, steps, row_step;
};

/// acc[r, j] = sum over the taps of field[r] * w[., j] for a tile of 4 pixels x 16 channels:
/// fields[r] is where pixel r's receptive field starts; `wb` is one channel block of
/// U8S16ConvWeights::packed.
inline void u8s16_tile_scalar(const int16_t* const* fields, const U8S16Taps& t, const int16_t* wb, int32_t* acc) {
    for (int64_t r = 0; r < u8s16_tile_pixels; ++r)
        for (int64_t j = 0; j < u8s16_lanes; ++j) {
            int32_t s = 0;
            for (int64_t kh = 0; kh < t.rows; ++kh)
                for (int64_t p = 0; p < t.steps; ++p) {
                    const int16_t* x = fields[r] + kh * t.row_step + 2 * p;
                    const int16_t* w = wb + ((kh * t.steps + p) * u8s16_lanes + j) * 2;
                    s += int32_t{x[0]} * w[0] + int32_t{x[1]} * w[1];
                }
            acc[r * u8s16_lanes + j] = s;
        }
}

/// out[r][j] = fma(float(acc[r, j]), scale[j], bias[r][j]) for the first `rows` pixels of a tile
/// (acc [4, 16]) and j < cols; bias[r] and scale hold 16 values.
inline void u8s16_finish_scalar(const int32_t* acc, int64_t rows, const float* scale, const float* const* bias,
                                float* const* out, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j)
            out[r][j] = std::fma(static_cast<float>(acc[r * u8s16_lanes + j]), scale[j], bias[r][j]);
}

}  // namespace bnn::kernels::detail
