#pragma once
/// @file downsample.hpp
/// The real-valued shortcut of a binary block whose shape changes (Real-to-Binary Sec. 4.1,
/// Bi-Real Net): AvgPool 2x2/2 when strided, then a 1x1 float conv and BN. Pooling before the
/// 1x1 conv (instead of a strided 1x1 conv) keeps every input pixel's information.
#include <cstdint>
#include <string>

#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/pool.hpp"
#include "bnn/nn/sequential.hpp"

namespace bnn::nn {

struct DownsampleOptions {
    int64_t in_channels = 0;
    int64_t out_channels = 0;
    int stride = 1;  ///< the pool's kernel and stride; 1 leaves the pool out
};

/// x [N, H, W, in] -> [N, H / s, W / s, out] (floored). A chain: children "0" (AvgPool2d, when
/// strided), then the 1x1 Conv2d and the BatchNorm2d, so parameters read "1.weight" or "0.weight".
class Downsample : public Sequential {
public:
    explicit Downsample(const DownsampleOptions& options) : options_(options) {
        BNN_CHECK(options.in_channels > 0 && options.out_channels > 0 && options.stride > 0,
                  "Downsample: expected positive channels and stride, got ", options.in_channels, " -> ",
                  options.out_channels, ", stride ", options.stride);
        if (options.stride != 1) add<AvgPool2d>(options.stride, options.stride);
        add<Conv2d>(Conv2dOptions{.in_channels = options.in_channels, .out_channels = options.out_channels, .kernel_size = 1});
        add<BatchNorm2d>(options.out_channels);
    }
    std::string type_name() const override { return "Downsample"; }
    const DownsampleOptions& options() const { return options_; }

private:
    DownsampleOptions options_;
};

}  // namespace bnn::nn
