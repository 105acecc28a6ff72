#pragma once
/// @file resnet18.hpp
/// The ResNet-18 variants of the Real-to-Binary paper, shared by the example programs:
///
/// - Variant::Real: the real-valued ResNet-18 (the teacher of stage 1): nn::BasicBlock.
/// - Variant::StrongBaseline: nn::BinaryBasicBlock, two binary half-blocks with their own
///   shortcuts, each scaled by a learned alpha (nn/binary_half_block.hpp).
/// - Variant::RealToBin: the same blocks with the data-driven gate in place of the learned scale.
///
/// The network is a chain (is_chain()): stem, block1..block8, pool, fc. So infer::compile and
/// deployment files take it as they take any Sequential of bnn's modules.
///
/// All three expose the same 8 transfer points "block1".."block8" (the output of each basic
/// block, or of each pair of binary half-blocks), so attention matching pairs block b of the
/// teacher with block b of the student. The binary variants switch stage with set_mode():
/// tanh activations (stage 1), sign activations (stage 2), fully binary (stage 3).
///
/// Layout NHWC. Spatial sizes must stay even down to the last stage (32 for CIFAR, 224 for
/// ImageNet), because the AvgPool 2x2/2 shortcut floors where the stride-2 conv rounds up.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bnn/nn/activation.hpp"
#include "bnn/nn/basic_block.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/binary_basic_block.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/linear.hpp"
#include "bnn/nn/pool.hpp"
#include "bnn/nn/sequential.hpp"
#include "bnn/train/feature_net.hpp"

namespace bnn::examples {

/// Which network.
enum class Variant { Real, StrongBaseline, RealToBin };
/// Which input stem.
enum class Stem {
    Cifar,     ///< 3x3/1 conv, BN, ReLU, no max pool (32x32 inputs)
    ImageNet,  ///< 7x7/2 conv, BN, ReLU (PReLU for the strong baseline), max pool 3x3/2
};

struct ResNetOptions {
    Variant variant = Variant::Real;
    Stem stem = Stem::Cifar;
    int64_t width = 64;          ///< channels of the first stage; stages use w, 2w, 4w, 8w
    int64_t num_classes = 100;
    int64_t in_channels = 3;
    int64_t gate_reduction = 8;  ///< r of the channel gate (Real-to-Bin)
    nn::BinaryMode mode = nn::BinaryMode::BinaryActivations;  ///< initial stage of binary variants
};

/// Output channels and stride of block b (0-based) of ResNet-18: w,w,2w,2w,4w,4w,8w,8w, stride 2
/// at the first conv of blocks 3, 5 and 7 (1-based).
inline int64_t block_channels(int64_t width, int b) { return width << (b / 2); }
inline int block_stride(int b) { return (b > 0 && b % 2 == 0) ? 2 : 1; }

inline const char* variant_name(Variant v) {
    switch (v) {
        case Variant::Real: return "real";
        case Variant::StrongBaseline: return "strong-baseline";
        case Variant::RealToBin: return "real-to-bin";
    }
    return "?";
}

/// ResNet-18 in any of the three variants. forward_features() returns the logits and the outputs
/// of "block1".."block8". Parameter names: "stem.0.weight" (conv), "stem.1.*" (BN), "stem.2.*"
/// (PReLU when used), "blockB.*" (nn::BasicBlock: conv1, bn1, ..., downsample.0/1;
/// nn::BinaryBasicBlock: half1.bn, half1.conv, half1.gate, half1.prelu, half1.shortcut.0/1/2, ...),
/// "fc.weight", "fc.bias".
class ResNet18 : public train::FeatureNet {
public:
    explicit ResNet18(const ResNetOptions& options) : options_(options) {
        BNN_CHECK(options.width > 0 && options.num_classes > 0 && options.in_channels > 0,
                  "ResNet18: width, num_classes and in_channels must be positive, got ", options.width, ", ",
                  options.num_classes, ", ", options.in_channels);
        const int64_t w = options.width;
        stem = register_module("stem", std::make_shared<nn::Sequential>());
        if (options.stem == Stem::Cifar) {
            stem->push_back(std::make_shared<nn::Conv2d>(
                nn::Conv2dOptions{.in_channels = options.in_channels, .out_channels = w, .padding = 1}));
        } else {
            stem->push_back(std::make_shared<nn::Conv2d>(nn::Conv2dOptions{
                .in_channels = options.in_channels, .out_channels = w, .kernel_size = 7, .stride = 2, .padding = 3}));
        }
        stem->push_back(std::make_shared<nn::BatchNorm2d>(w));
        if (options.stem == Stem::ImageNet && options.variant == Variant::StrongBaseline)
            stem->push_back(std::make_shared<nn::PReLU>(w));
        else
            stem->push_back(std::make_shared<nn::ReLU>());
        if (options.stem == Stem::ImageNet) stem->push_back(std::make_shared<nn::MaxPool2d>(3, 2, 1));

        int64_t in = w;
        for (int b = 0; b < 8; ++b) {
            const int64_t out = block_channels(w, b);
            const std::string name = "block" + std::to_string(b + 1);
            if (options.variant == Variant::Real)
                blocks.push_back(register_module(name, std::make_shared<nn::BasicBlock>(nn::BasicBlockOptions{
                                                           .in_channels = in, .out_channels = out, .stride = block_stride(b)})));
            else
                blocks.push_back(register_module(
                    name, std::make_shared<nn::BinaryBasicBlock>(nn::BinaryHalfBlockOptions{
                              .in_channels = in,
                              .out_channels = out,
                              .stride = block_stride(b),
                              .scale = options.variant == Variant::RealToBin ? nn::BlockScale::Gate : nn::BlockScale::Learned,
                              .gate_reduction = options.gate_reduction,
                              .mode = options.mode})));
            in = out;
        }
        pool = register_module("pool", std::make_shared<nn::GlobalAvgPool>());
        fc = register_module("fc", std::make_shared<nn::Linear>(in, options.num_classes));
    }

    train::Features forward_features(const Variable& x) override {
        BNN_CHECK(x.shape().rank() == 4 && x.dim(3) == options_.in_channels, "ResNet18: expected input [N,H,W,",
                  options_.in_channels, "], got ", x.shape().str());
        train::Features out;
        Variable h = stem->forward(x);
        for (size_t b = 0; b < blocks.size(); ++b) {
            h = blocks[b]->forward(h);
            out.maps.emplace_back("block" + std::to_string(b + 1), h);
        }
        out.logits = fc->forward(pool->forward(h));
        return out;
    }
    std::string type_name() const override { return "ResNet18"; }
    bool is_chain() const override { return true; }
    /// torchvision's names: conv1 and bn1 are the stem's conv and BN, layerL.K is block 2(L-1)+K+1;
    /// inside the real variant's blocks and in fc the names already agree.
    std::vector<std::pair<std::string, std::string>> name_aliases() const override {
        std::vector<std::pair<std::string, std::string>> out{{"conv1.", "stem.0."}, {"bn1.", "stem.1."}};
        for (int b = 0; b < 8; ++b)
            out.emplace_back("layer" + std::to_string(b / 2 + 1) + "." + std::to_string(b % 2) + ".",
                             "block" + std::to_string(b + 1) + ".");
        return out;
    }

    /// Switches every binary conv to a stage's mode (soft / binary activations / fully binary).
    /// bnn::Error on the real variant, which has no binary convs.
    void set_mode(nn::BinaryMode mode) {
        BNN_CHECK(options_.variant != Variant::Real, "ResNet18::set_mode: the real variant has no binary convs");
        options_.mode = mode;
        nn::set_binary_mode(*this, mode);
    }
    /// The 16 binary convs in network order (empty for the real variant).
    std::vector<std::shared_ptr<nn::BinaryConv2d>> binary_convs() const {
        std::vector<std::shared_ptr<nn::BinaryConv2d>> convs;
        for (const auto& b : blocks)
            if (auto bb = std::dynamic_pointer_cast<nn::BinaryBasicBlock>(b)) {
                convs.push_back(bb->half1->conv);
                convs.push_back(bb->half2->conv);
            }
        return convs;
    }
    const ResNetOptions& options() const { return options_; }

    std::shared_ptr<nn::Sequential> stem;
    std::vector<std::shared_ptr<nn::Module>> blocks;  ///< nn::BasicBlock or nn::BinaryBasicBlock, 8 of them
    std::shared_ptr<nn::GlobalAvgPool> pool;
    std::shared_ptr<nn::Linear> fc;

private:
    ResNetOptions options_;
};

}  // namespace bnn::examples
