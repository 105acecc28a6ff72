#pragma once
// The small models the checkpoint, deployment and resume fuzzers load into, shared with
// make_fuzz_corpus so the seeds match them: ResNet-18 (examples/resnet18.hpp) at width 1, and
// a short chain of bnn's layers. Small, so an execution stays well under a millisecond.
#include <memory>

#include "bnn/nn/activation.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/linear.hpp"
#include "bnn/nn/pool.hpp"
#include "bnn/nn/sequential.hpp"
#include "resnet18.hpp"

namespace bnn::fuzz {

inline constexpr int64_t kResNetWidth = 1;
inline constexpr int64_t kClasses = 10;

inline std::unique_ptr<examples::ResNet18> small_resnet(examples::Variant variant,
                                                        nn::BinaryMode mode = nn::BinaryMode::BinaryActivations) {
    return std::make_unique<examples::ResNet18>(
        examples::ResNetOptions{.variant = variant, .width = kResNetWidth, .num_classes = kClasses, .mode = mode});
}

/// conv, BN, PReLU, fully binary conv (stride 2), BN, global pool, linear.
inline std::shared_ptr<nn::Sequential> small_net() {
    auto net = std::make_shared<nn::Sequential>();
    net->push_back(std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 4, .padding = 1}));
    net->push_back(std::make_shared<nn::BatchNorm2d>(4));
    net->push_back(std::make_shared<nn::PReLU>(4));
    net->push_back(std::make_shared<nn::BinaryConv2d>(nn::BinaryConv2dOptions{.in_channels = 4,
                                                                              .out_channels = 8,
                                                                              .stride = 2,
                                                                              .padding = 1,
                                                                              .mode = nn::BinaryMode::FullyBinary,
                                                                              .scale = nn::WeightScale::Folded}));
    net->push_back(std::make_shared<nn::BatchNorm2d>(8));
    net->push_back(std::make_shared<nn::GlobalAvgPool>());
    net->push_back(std::make_shared<nn::Linear>(8, kClasses));
    return net;
}

}  // namespace bnn::fuzz
