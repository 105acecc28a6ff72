#pragma once
/// @file pad.hpp
/// Constant padding of NHWC activations on the four spatial sides.
///
///   pad_forward:  x [N, H, W, C] -> y [N, H + 2p, W + 2p, C], border = value
///   pad_backward: dy [N, H + 2p, W + 2p, C] -> dx [N, H, W, C] += the interior of dy
#include <algorithm>
#include <cstdint>
#include <cstring>

namespace bnn::kernels {

inline void pad_forward(const float* x, float* y, int64_t N, int64_t H, int64_t W, int64_t C, int64_t p, float value) {
    const int64_t Hp = H + 2 * p, Wp = W + 2 * p;
    std::fill(y, y + N * Hp * Wp * C, value);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < H; ++h)
            std::memcpy(y + ((n * Hp + h + p) * Wp + p) * C, x + (n * H + h) * W * C, sizeof(float) * W * C);
}

inline void pad_backward(const float* dy, float* dx, int64_t N, int64_t H, int64_t W, int64_t C, int64_t p) {
    const int64_t Hp = H + 2 * p, Wp = W + 2 * p;
    for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < H; ++h) {
            const float* src = dy + ((n * Hp + h + p) * Wp + p) * C;
            float* dst = dx + (n * H + h) * W * C;
#pragma omp simd
            for (int64_t i = 0; i < W * C; ++i) dst[i] += src[i];
        }
}

}  // namespace bnn::kernels
