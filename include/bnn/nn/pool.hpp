#pragma once
/// @file pool.hpp
/// Pooling layers over NHWC activations.
#include <string>

#include "bnn/nn/module.hpp"
#include "bnn/ops/pool.hpp"

namespace bnn::nn {

/// Maximum over k x k windows (padding counts as -infinity).
/// Requires: x is [N, H, W, C]. Ensures: [N, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1, C].
class MaxPool2d : public Module {
public:
    explicit MaxPool2d(int kernel, int stride = -1, int padding = 0)
        : kernel_(kernel), stride_(stride < 0 ? kernel : stride), padding_(padding) {
        BNN_CHECK(kernel_ > 0 && stride_ > 0 && padding_ >= 0 && 2 * padding_ <= kernel_,
                  "MaxPool2d: expected kernel > 0, stride > 0, 0 <= padding <= kernel/2, got ", kernel, ", ", stride,
                  ", ", padding);
    }
    Variable forward(const Variable& x) override { return ops::max_pool2d(x, kernel_, stride_, padding_); }
    std::string type_name() const override { return "MaxPool2d"; }

private:
    int kernel_, stride_, padding_;
};

/// Mean over k x k windows; padded zeros count in the mean (count_include_pad).
/// Requires: x is [N, H, W, C]. Ensures: [N, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1, C].
class AvgPool2d : public Module {
public:
    explicit AvgPool2d(int kernel, int stride = -1, int padding = 0)
        : kernel_(kernel), stride_(stride < 0 ? kernel : stride), padding_(padding) {
        BNN_CHECK(kernel_ > 0 && stride_ > 0 && padding_ >= 0 && 2 * padding_ <= kernel_,
                  "AvgPool2d: expected kernel > 0, stride > 0, 0 <= padding <= kernel/2, got ", kernel, ", ", stride,
                  ", ", padding);
    }
    Variable forward(const Variable& x) override { return ops::avg_pool2d(x, kernel_, stride_, padding_); }
    std::string type_name() const override { return "AvgPool2d"; }

private:
    int kernel_, stride_, padding_;
};

/// Mean over all spatial positions: [N, H, W, C] -> [N, C].
class GlobalAvgPool : public Module {
public:
    Variable forward(const Variable& x) override { return ops::global_avg_pool(x); }
    std::string type_name() const override { return "GlobalAvgPool"; }
};

}  // namespace bnn::nn
