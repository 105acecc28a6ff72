#pragma once
/// @file basic_block.hpp
/// The real-valued ResNet basic block (He et al. 2016), the building block of the teacher:
///
///     y = ReLU( BN2(Conv2(ReLU(BN1(Conv1(x))))) + shortcut(x) )
///
/// Conv1 is 3x3 with the block's stride, Conv2 3x3 stride 1, neither with a bias. The shortcut
/// is the identity, or a 1x1 strided conv + BN ("downsample") when the shape changes.
#include <cstdint>
#include <memory>
#include <string>

#include "bnn/nn/activation.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/nn/sequential.hpp"
#include "bnn/ops/activation.hpp"
#include "bnn/ops/elementwise.hpp"

namespace bnn::nn {

struct BasicBlockOptions {
    int64_t in_channels = 0;
    int64_t out_channels = 0;
    int stride = 1;
};

/// Parameters: conv1, bn1, conv2, bn2 and, when the shape changes, downsample.0 (1x1 conv) and
/// downsample.1 (BN).
class BasicBlock : public Module {
public:
    explicit BasicBlock(const BasicBlockOptions& options) : options_(options) {
        const int64_t in = options.in_channels, out = options.out_channels;
        BNN_CHECK(in > 0 && out > 0 && options.stride > 0, "BasicBlock: expected positive channels and stride, got ",
                  in, " -> ", out, ", stride ", options.stride);
        conv1 = register_module("conv1", std::make_shared<Conv2d>(Conv2dOptions{
                                             .in_channels = in, .out_channels = out, .stride = options.stride, .padding = 1}));
        bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(out));
        conv2 = register_module(
            "conv2", std::make_shared<Conv2d>(Conv2dOptions{.in_channels = out, .out_channels = out, .padding = 1}));
        bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(out));
        if (options.stride != 1 || in != out) {
            downsample = register_module("downsample", std::make_shared<Sequential>());
            downsample->add<Conv2d>(
                Conv2dOptions{.in_channels = in, .out_channels = out, .kernel_size = 1, .stride = options.stride});
            downsample->add<BatchNorm2d>(out);
        }
    }
    Variable forward(const Variable& x) override {
        Variable y = ops::relu(bn1->forward(conv1->forward(x)));
        y = bn2->forward(conv2->forward(y));
        return ops::relu(ops::add(y, downsample ? downsample->forward(x) : x));
    }
    std::string type_name() const override { return "BasicBlock"; }
    const BasicBlockOptions& options() const { return options_; }

    std::shared_ptr<Conv2d> conv1, conv2;
    std::shared_ptr<BatchNorm2d> bn1, bn2;
    std::shared_ptr<Sequential> downsample;  ///< null for the identity

private:
    BasicBlockOptions options_;
};

}  // namespace bnn::nn
