#pragma once
/// @file pool.hpp
/// Pooling layers over NHWC activations.
#include <string>

#include "bnn/nn/module.hpp"
#include "bnn/ops/pool.hpp"

namespace bnn::nn {

/// The k x k window of a pooling layer: kernel, stride (defaults to the kernel) and padding.
struct PoolWindow {
    PoolWindow(const char* layer, int kernel_size, int stride_or_default, int pad)
        : kernel(kernel_size), stride(stride_or_default < 0 ? kernel_size : stride_or_default), padding(pad) {
        BNN_CHECK(kernel > 0 && stride > 0 && padding >= 0 && 2 * padding <= kernel, layer,
                  ": expected kernel > 0, stride > 0, 0 <= padding <= kernel/2, got ", kernel_size, ", ",
                  stride_or_default, ", ", pad);
    }
    int kernel, stride, padding;
};

/// Maximum over k x k windows (padding counts as -infinity).
/// Requires: x is [N, H, W, C]. Ensures: [N, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1, C].
class MaxPool2d : public Module {
public:
    explicit MaxPool2d(int kernel, int stride = -1, int padding = 0) : w_("MaxPool2d", kernel, stride, padding) {}
    Variable forward(const Variable& x) override { return ops::max_pool2d(x, w_.kernel, w_.stride, w_.padding); }
    std::string type_name() const override { return "MaxPool2d"; }
    const PoolWindow& window() const { return w_; }

private:
    PoolWindow w_;
};

/// Mean over k x k windows; padded zeros count in the mean (count_include_pad).
/// Requires: x is [N, H, W, C]. Ensures: [N, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1, C].
class AvgPool2d : public Module {
public:
    explicit AvgPool2d(int kernel, int stride = -1, int padding = 0) : w_("AvgPool2d", kernel, stride, padding) {}
    Variable forward(const Variable& x) override { return ops::avg_pool2d(x, w_.kernel, w_.stride, w_.padding); }
    std::string type_name() const override { return "AvgPool2d"; }
    const PoolWindow& window() const { return w_; }

private:
    PoolWindow w_;
};

/// Mean over all spatial positions: [N, H, W, C] -> [N, C].
class GlobalAvgPool : public Module {
public:
    Variable forward(const Variable& x) override { return ops::global_avg_pool(x); }
    std::string type_name() const override { return "GlobalAvgPool"; }
};

}  // namespace bnn::nn
