#pragma once
/// @file conv2d_geometry.hpp
/// The sizes of a float 2-D convolution (NHWC activations, OHWI weights), shared by the
/// convolution's three ways of computing it (conv2d.hpp, conv2d_implicit.hpp,
/// conv2d_direct.hpp).
#include <cstdint>

#include "bnn/core/error.hpp"

namespace bnn::kernels {

/// The sizes of one convolution; build it with conv2d_geometry().
struct Conv2dGeometry {
    int64_t N, H, W, C, Cout, KH, KW, stride, pad, OH, OW;
    int64_t K() const { return KH * KW * C; }
    bool pointwise() const { return KH == 1 && KW == 1 && stride == 1 && pad == 0; }
};

/// Validates the sizes and derives the output extent.
inline Conv2dGeometry conv2d_geometry(int64_t N, int64_t H, int64_t W, int64_t C, int64_t Cout, int64_t KH,
                                      int64_t KW, int64_t stride, int64_t pad) {
    BNN_CHECK(stride >= 1, "conv2d: stride must be >= 1, got ", stride);
    BNN_CHECK(pad >= 0, "conv2d: padding must be >= 0, got ", pad);
    BNN_CHECK(KH >= 1 && KW >= 1, "conv2d: kernel must be at least 1x1, got ", KH, "x", KW);
    BNN_CHECK(H + 2 * pad >= KH && W + 2 * pad >= KW, "conv2d: kernel ", KH, "x", KW,
              " larger than the padded input ", H + 2 * pad, "x", W + 2 * pad);
    Conv2dGeometry g{N, H, W, C, Cout, KH, KW, stride, pad, 0, 0};
    g.OH = (H + 2 * pad - KH) / stride + 1;
    g.OW = (W + 2 * pad - KW) / stride + 1;
    return g;
}

}  // namespace bnn::kernels
