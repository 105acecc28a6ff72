#pragma once
/// @file conv2d_fields.hpp
/// The receptive field of one output pixel of a convolution, gathered into a row:
///
///   image [H, W, C] (NHWC, one image) -> row [KH*KW*C] in (kh, kw, c) order, 0 for padded taps
///
/// The float convolution's im2col (conv2d.hpp) and few-channel stem (conv2d_few_channels.hpp)
/// gather float rows; the integer stem (conv2d_u8s16.hpp) widens uint8 pixels to int16.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "bnn/kernels/conv2d_geometry.hpp"

namespace bnn::kernels::detail {

/// dst[0, n) = src[0, n), converted from Src to Dst.
template <class Src, class Dst>
void copy_converted(const Src* src, Dst* dst, int64_t n) {
    if constexpr (std::is_same_v<Src, Dst>) {
        std::memcpy(dst, src, sizeof(Dst) * n);
    } else {
        for (int64_t j = 0; j < n; ++j) dst[j] = src[j];
    }
}

/// row [KH*KW*C] <- the receptive field whose top-left tap is input position (ih0, iw0) of image
/// (it may lie in the padding). A kernel row inside the image is one run of KW*C values, copied
/// at once; a row that crosses the left or right border goes tap by tap.
template <class Src, class Dst>
void gather_field(const Src* image, const Conv2dGeometry& g, int64_t ih0, int64_t iw0, Dst* row) {
    const int64_t run = g.KW * g.C;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
        Dst* dst = row + kh * run;
        const int64_t ih = ih0 + kh;
        if (ih < 0 || ih >= g.H) {
            std::memset(dst, 0, sizeof(Dst) * run);
        } else if (iw0 >= 0 && iw0 + g.KW <= g.W) {
            copy_converted(image + (ih * g.W + iw0) * g.C, dst, run);
        } else {
            for (int64_t kw = 0; kw < g.KW; ++kw) {
                const int64_t iw = iw0 + kw;
                if (iw < 0 || iw >= g.W) std::memset(dst + kw * g.C, 0, sizeof(Dst) * g.C);
                else copy_converted(image + (ih * g.W + iw) * g.C, dst + kw * g.C, g.C);
            }
        }
    }
}

}  // namespace bnn::kernels::detail
