#pragma once
/// @file conv2d_fields.hpp
/// The receptive field of one output pixel of a convolution, gathered into a row:
///
///   image [H, W, C] (NHWC, one image) -> row [KH*KW*C] in (kh, kw, c) order, 0 for padded taps
///
/// The float convolution's im2col (conv2d.hpp) and few-channel stem (conv2d_few_channels.hpp)
/// gather float rows. (The integer stem, conv2d_u8s16.hpp, gathers nothing: it reads the kernel
/// rows in place in a widened copy of the image.)
#include <cstdint>
#include <cstring>

#include "bnn/kernels/conv2d_geometry.hpp"

namespace bnn::kernels::detail {

/// row [KH*KW*C] <- the receptive field whose top-left tap is input position (ih0, iw0) of image
/// (it may lie in the padding). A kernel row inside the image is one run of KW*C values, copied
/// at once; a row that crosses the left or right border goes tap by tap.
template <class T>
void gather_field(const T* image, const Conv2dGeometry& g, int64_t ih0, int64_t iw0, T* row) {
    const int64_t run = g.KW * g.C;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
        T* dst = row + kh * run;
        const int64_t ih = ih0 + kh;
        if (ih < 0 || ih >= g.H) {
            std::memset(dst, 0, sizeof(T) * run);
        } else if (iw0 >= 0 && iw0 + g.KW <= g.W) {
            std::memcpy(dst, image + (ih * g.W + iw0) * g.C, sizeof(T) * run);
        } else {
            for (int64_t kw = 0; kw < g.KW; ++kw) {
                const int64_t iw = iw0 + kw;
                if (iw < 0 || iw >= g.W) std::memset(dst + kw * g.C, 0, sizeof(T) * g.C);
                else std::memcpy(dst + kw * g.C, image + (ih * g.W + iw) * g.C, sizeof(T) * g.C);
            }
        }
    }
}

}  // namespace bnn::kernels::detail
