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

/// Calls row(at, from) for each of the N*H rows of W*C values of x [N, H, W, C]: `from` is the
/// row's offset in x, `at` its offset in the padded [N, H + 2p, W + 2p, C]. Every padded copy
/// and its adjoint walks the interior this way.
template <class RowFn>
void for_each_padded_row(int64_t N, int64_t H, int64_t W, int64_t C, int64_t p, RowFn&& row) {
    const int64_t Hp = H + 2 * p, Wp = W + 2 * p;
    for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < H; ++h) row(((n * Hp + h + p) * Wp + p) * C, (n * H + h) * W * C);
}

inline void pad_forward(const float* x, float* y, int64_t N, int64_t H, int64_t W, int64_t C, int64_t p, float value) {
    std::fill(y, y + N * (H + 2 * p) * (W + 2 * p) * C, value);
    for_each_padded_row(N, H, W, C, p,
                        [&](int64_t at, int64_t from) { std::memcpy(y + at, x + from, sizeof(float) * W * C); });
}

inline void pad_backward(const float* dy, float* dx, int64_t N, int64_t H, int64_t W, int64_t C, int64_t p) {
    for_each_padded_row(N, H, W, C, p, [&](int64_t at, int64_t from) {
        const float* src = dy + at;
        float* dst = dx + from;
#pragma omp simd
        for (int64_t i = 0; i < W * C; ++i) dst[i] += src[i];
    });
}

}  // namespace bnn::kernels
