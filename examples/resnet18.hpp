#pragma once
/// @file resnet18.hpp
/// The ResNet-18 variants of the Real-to-Binary paper, shared by the example programs:
///
/// - Variant::Real: the real-valued ResNet-18 (the teacher of stage 1): standard basic blocks,
///   1x1 stride-2 conv + BN downsample shortcuts.
/// - Variant::StrongBaseline: every 3x3 conv is a binary "half-block" with its own shortcut
///   (Sec. 4.1, Fig. 1):  y = PReLU( alpha * BinConv3x3( sign( BN(x) ) ) ) + shortcut(x),
///   alpha a learned per-channel scale; downsampling shortcut AvgPool 2x2/2 -> real 1x1 conv -> BN.
/// - Variant::RealToBin: the same half-block with the data-driven gate G computed from the BN
///   output in place of the learned scale (Sec. 4.3, Eq. 3), alpha = mean|W| per output channel
///   kept once the weights are binary (paper-notes section 4).
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
#include <vector>

#include "bnn/nn/activation.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/channel_gate.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/linear.hpp"
#include "bnn/nn/pool.hpp"
#include "bnn/nn/sequential.hpp"
#include "bnn/ops/elementwise.hpp"
#include "bnn/ops/pool.hpp"
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

/// The standard basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut a 1x1
/// strided conv + BN when the shape changes, else the identity.
class BasicBlock : public nn::Module {
public:
    BasicBlock(int64_t in, int64_t out, int stride) {
        conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(nn::Conv2dOptions{
                                              .in_channels = in, .out_channels = out, .stride = stride, .padding = 1}));
        bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(out));
        conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(
                                             nn::Conv2dOptions{.in_channels = out, .out_channels = out, .padding = 1}));
        bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(out));
        if (stride != 1 || in != out) {
            downsample = register_module("downsample", std::make_shared<nn::Sequential>());
            downsample->push_back(std::make_shared<nn::Conv2d>(
                nn::Conv2dOptions{.in_channels = in, .out_channels = out, .kernel_size = 1, .stride = stride}));
            downsample->push_back(std::make_shared<nn::BatchNorm2d>(out));
        }
    }
    Variable forward(const Variable& x) override {
        Variable y = ops::relu(bn1->forward(conv1->forward(x)));
        y = bn2->forward(conv2->forward(y));
        return ops::relu(ops::add(y, downsample ? downsample->forward(x) : x));
    }
    std::string type_name() const override { return "BasicBlock"; }

    std::shared_ptr<nn::Conv2d> conv1, conv2;
    std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
    std::shared_ptr<nn::Sequential> downsample;  ///< null for the identity
};

/// One binary 3x3 conv with its own shortcut (a "half-block"):
///     h = BN(x);  y = BinConv3x3(h) (sign or tanh of h inside);  y *= G(h) (Real-to-Bin);
///     out = PReLU(y) + shortcut(x)
/// shortcut: identity, or AvgPool 2x2/2 (when strided) -> real 1x1 conv -> BN when the shape changes.
class BinaryHalfBlock : public nn::Module {
public:
    BinaryHalfBlock(int64_t in, int64_t out, int stride, bool gated, int64_t reduction, nn::BinaryMode mode) {
        bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(in));
        conv = register_module(
            "conv", std::make_shared<nn::BinaryConv2d>(nn::BinaryConv2dOptions{
                        .in_channels = in,
                        .out_channels = out,
                        .kernel_size = 3,
                        .stride = stride,
                        .padding = 1,
                        .mode = mode,
                        .scale = gated ? nn::WeightScale::MeanAbs : nn::WeightScale::Learned}));
        if (gated) gate = register_module("gate", std::make_shared<nn::ChannelGate>(in, out, reduction));
        prelu = register_module("prelu", std::make_shared<nn::PReLU>(out));
        if (stride != 1 || in != out) {
            shortcut = register_module("shortcut", std::make_shared<nn::Sequential>());
            if (stride != 1) shortcut->push_back(std::make_shared<nn::AvgPool2d>(stride, stride));
            shortcut->push_back(std::make_shared<nn::Conv2d>(
                nn::Conv2dOptions{.in_channels = in, .out_channels = out, .kernel_size = 1}));
            shortcut->push_back(std::make_shared<nn::BatchNorm2d>(out));
        }
    }
    Variable forward(const Variable& x) override {
        Variable h = bn->forward(x);
        // The conv's own scale (learned alpha) and the gate ([N,C]: per sample and channel) are
        // fused with the PReLU into one node: one pass each way instead of two or three.
        auto [y, scale] = conv->forward_unscaled(h);
        if (gate) {
            if (scale.defined()) y = ops::mul(y, scale);
            scale = gate->forward(h);
        }
        y = scale.defined() ? ops::scaled_prelu(y, scale, prelu->weight) : prelu->forward(y);
        return ops::add(y, shortcut ? shortcut->forward(x) : x);
    }
    std::string type_name() const override { return "BinaryHalfBlock"; }

    std::shared_ptr<nn::BatchNorm2d> bn;
    std::shared_ptr<nn::BinaryConv2d> conv;
    std::shared_ptr<nn::ChannelGate> gate;  ///< null for the strong baseline
    std::shared_ptr<nn::PReLU> prelu;
    std::shared_ptr<nn::Sequential> shortcut;  ///< null for the identity
};

/// Two half-blocks: the binary counterpart of one basic block (one transfer point).
class BinaryBlock : public nn::Module {
public:
    BinaryBlock(int64_t in, int64_t out, int stride, bool gated, int64_t reduction, nn::BinaryMode mode) {
        half1 = register_module("half1", std::make_shared<BinaryHalfBlock>(in, out, stride, gated, reduction, mode));
        half2 = register_module("half2", std::make_shared<BinaryHalfBlock>(out, out, 1, gated, reduction, mode));
    }
    Variable forward(const Variable& x) override { return half2->forward(half1->forward(x)); }
    std::string type_name() const override { return "BinaryBlock"; }

    std::shared_ptr<BinaryHalfBlock> half1, half2;
};

/// ResNet-18 in any of the three variants. forward_features() returns the logits and the outputs
/// of "block1".."block8". Parameter names: "stem.0.weight" (conv), "stem.1.*" (BN), "stem.2.*"
/// (PReLU when used), "blockB.*", "fc.weight", "fc.bias".
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
                blocks.push_back(register_module(name, std::make_shared<BasicBlock>(in, out, block_stride(b))));
            else
                blocks.push_back(register_module(
                    name, std::make_shared<BinaryBlock>(in, out, block_stride(b), options.variant == Variant::RealToBin,
                                                        options.gate_reduction, options.mode)));
            in = out;
        }
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
        out.logits = fc->forward(ops::global_avg_pool(h));
        return out;
    }
    std::string type_name() const override { return "ResNet18"; }

    /// Switches every binary conv to a stage's mode (soft / binary activations / fully binary).
    /// bnn::Error on the real variant, which has no binary convs.
    void set_mode(nn::BinaryMode mode) {
        BNN_CHECK(options_.variant != Variant::Real, "ResNet18::set_mode: the real variant has no binary convs");
        options_.mode = mode;
        for (auto& conv : binary_convs()) conv->set_mode(mode);
    }
    /// The 16 binary convs in network order (empty for the real variant).
    std::vector<std::shared_ptr<nn::BinaryConv2d>> binary_convs() const {
        std::vector<std::shared_ptr<nn::BinaryConv2d>> convs;
        for (const auto& b : blocks)
            if (auto bb = std::dynamic_pointer_cast<BinaryBlock>(b)) {
                convs.push_back(bb->half1->conv);
                convs.push_back(bb->half2->conv);
            }
        return convs;
    }
    const ResNetOptions& options() const { return options_; }

    std::shared_ptr<nn::Sequential> stem;
    std::vector<std::shared_ptr<nn::Module>> blocks;  ///< BasicBlock or BinaryBlock, 8 of them
    std::shared_ptr<nn::Linear> fc;

private:
    ResNetOptions options_;
};

}  // namespace bnn::examples
