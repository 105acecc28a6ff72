#pragma once
/// @file pytorch_layout.hpp
/// Files PyTorch wrote: the `safetensors` package saving a state_dict marks the file with
/// metadata "format" = "pt" and keeps PyTorch's layouts, NCHW activations and OIHW convolution
/// weights. bnn keeps OHWI weights (so a receptive field is contiguous in the input channels, as
/// in NHWC activations); linear weights are [out, in] in both, and 1-D tensors agree.
#include <cstdint>

#include "bnn/core/tensor.hpp"
#include "bnn/io/safetensors.hpp"

namespace bnn::io {

/// True when the file says PyTorch's `safetensors` package wrote it (metadata format "pt").
inline bool is_pytorch_file(const SafetensorsFile& file) {
    auto it = file.metadata.find("format");
    return it != file.metadata.end() && it->second == "pt";
}

/// A convolution weight [O, I, kh, kw] (PyTorch) as [O, kh, kw, I] (bnn).
inline Tensor<float> oihw_to_ohwi(const Tensor<float>& w) {
    BNN_CHECK(w.rank() == 4, "oihw_to_ohwi: expected a weight [O,I,kh,kw], got ", w.shape().str());
    const int64_t O = w.dim(0), I = w.dim(1), H = w.dim(2), W = w.dim(3);
    Tensor<float> out = Tensor<float>::empty(Shape{O, H, W, I});
    const float* src = w.data();
    float* dst = out.data();
    for (int64_t o = 0; o < O; ++o)
        for (int64_t i = 0; i < I; ++i)
            for (int64_t y = 0; y < H; ++y)
                for (int64_t x = 0; x < W; ++x) dst[((o * H + y) * W + x) * I + i] = src[((o * I + i) * H + y) * W + x];
    return out;
}

}  // namespace bnn::io
