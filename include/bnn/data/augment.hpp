#pragma once
/// @file augment.hpp
/// Per-image augmentations on one HWC image (bytes or floats): horizontal flip, shifted crop
/// (random crop from a zero-padded image), rotation with bilinear sampling and zero fill.
/// Randomness always comes from a caller's bnn::Rng, so a seed reproduces the result.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <type_traits>

#include "bnn/core/error.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::data {

/// Mirror left-right. src, dst: [H, W, C], distinct buffers.
template <class T>
void hflip(const T* src, T* dst, int H, int W, int C) {
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            const T* s = src + (static_cast<int64_t>(y) * W + (W - 1 - x)) * C;
            T* d = dst + (static_cast<int64_t>(y) * W + x) * C;
            for (int c = 0; c < C; ++c) d[c] = s[c];
        }
}

/// dst(y, x) = src(y + dy, x + dx), zero where that falls outside. This is the crop at offset
/// (pad + dy, pad + dx) of the image zero-padded by `pad` on every side, without building the
/// padded copy. src, dst: [H, W, C], distinct buffers.
template <class T>
void shifted_crop(const T* src, T* dst, int H, int W, int C, int dy, int dx) {
    for (int y = 0; y < H; ++y) {
        const int sy = y + dy;
        for (int x = 0; x < W; ++x) {
            const int sx = x + dx;
            T* d = dst + (static_cast<int64_t>(y) * W + x) * C;
            if (sy < 0 || sy >= H || sx < 0 || sx >= W) {
                for (int c = 0; c < C; ++c) d[c] = T(0);
            } else {
                const T* s = src + (static_cast<int64_t>(sy) * W + sx) * C;
                for (int c = 0; c < C; ++c) d[c] = s[c];
            }
        }
    }
}

/// Random crop of the image zero-padded by `padding` pixels: offsets uniform in
/// [-padding, padding] on each axis.
template <class T>
void random_crop(const T* src, T* dst, int H, int W, int C, int padding, Rng& rng) {
    BNN_CHECK(padding >= 0, "random_crop: padding must be >= 0, got ", padding);
    const int dy = static_cast<int>(rng.below(2 * padding + 1)) - padding;
    const int dx = static_cast<int>(rng.below(2 * padding + 1)) - padding;
    shifted_crop(src, dst, H, W, C, dy, dx);
}

/// Rotation by `degrees` (counter-clockwise as displayed, y pointing down) about the image
/// centre, bilinear sampling, zero outside the source. Bytes are rounded to nearest.
/// src, dst: [H, W, C], distinct buffers.
template <class T>
void rotate(const T* src, T* dst, int H, int W, int C, float degrees) {
    const double a = degrees * std::numbers::pi / 180.0;
    const double cs = std::cos(a), sn = std::sin(a);
    // The centre of the pixel grid, so a zero angle maps every pixel exactly onto itself.
    const double cy = (H - 1) * 0.5, cx = (W - 1) * 0.5;
    auto at = [&](int y, int x, int c) -> double {
        return (y < 0 || y >= H || x < 0 || x >= W) ? 0.0 : static_cast<double>(src[(static_cast<int64_t>(y) * W + x) * C + c]);
    };
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            // Inverse map: where in the source does this output pixel come from?
            const double u = x - cx, v = y - cy;
            const double sx = cs * u - sn * v + cx;
            const double sy = sn * u + cs * v + cy;
            const double fx = std::floor(sx), fy = std::floor(sy);
            const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
            const double wx = sx - fx, wy = sy - fy;
            T* d = dst + (static_cast<int64_t>(y) * W + x) * C;
            for (int c = 0; c < C; ++c) {
                const double val = (1 - wy) * ((1 - wx) * at(y0, x0, c) + wx * at(y0, x0 + 1, c)) +
                                   wy * ((1 - wx) * at(y0 + 1, x0, c) + wx * at(y0 + 1, x0 + 1, c));
                if constexpr (std::is_integral_v<T>)
                    d[c] = static_cast<T>(std::lround(std::clamp(val, 0.0, 255.0)));
                else
                    d[c] = static_cast<T>(val);
            }
        }
}

/// Rotation by an angle uniform in [-max_degrees, max_degrees].
template <class T>
void random_rotate(const T* src, T* dst, int H, int W, int C, float max_degrees, Rng& rng) {
    rotate(src, dst, H, W, C, rng.uniform(-max_degrees, max_degrees));
}

namespace detail {
template <class T>
Tensor<T> image_op(const Tensor<T>& image, const char* op, auto&& fn) {
    expect_rank(image, 3, op, "image");
    Tensor<T> out = Tensor<T>::empty(image.shape());
    fn(image.data(), out.data(), static_cast<int>(image.dim(0)), static_cast<int>(image.dim(1)),
       static_cast<int>(image.dim(2)));
    return out;
}
}  // namespace detail

/// Tensor forms for one [H, W, C] image, returning a new image.
template <class T>
Tensor<T> hflip(const Tensor<T>& image) {
    return detail::image_op(image, "hflip", [](const T* s, T* d, int h, int w, int c) { hflip(s, d, h, w, c); });
}
template <class T>
Tensor<T> shifted_crop(const Tensor<T>& image, int dy, int dx) {
    return detail::image_op(image, "shifted_crop",
                            [&](const T* s, T* d, int h, int w, int c) { shifted_crop(s, d, h, w, c, dy, dx); });
}
template <class T>
Tensor<T> rotate(const Tensor<T>& image, float degrees) {
    return detail::image_op(image, "rotate", [&](const T* s, T* d, int h, int w, int c) { rotate(s, d, h, w, c, degrees); });
}

}  // namespace bnn::data
