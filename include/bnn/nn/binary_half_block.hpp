#pragma once
/// @file binary_half_block.hpp
/// The binary "half-block" of the Real-to-Binary paper (Sec. 4.1, Fig. 1; Sec. 4.3, Eq. 3): one
/// binary convolution with its own shortcut,
///
///     h = BN(x)                               real-valued batch norm
///     y = BinConv(act(h))                     act = tanh | sign by the stage's BinaryMode
///     y = y * alpha   or   y = y * G(h)       learned per-channel scale (strong baseline) or the
///                                             data-driven gate computed from h (Real-to-Bin)
///     out = PReLU(y) + shortcut(x)            identity, or Downsample when the shape changes
///
/// With the gate, the conv keeps alpha = mean |W| once its weights are binary
/// (docs/paper-mapping.md, "Alpha beside the gate"); with the learned scale, alpha multiplies
/// mean |W| then (see WeightScale::Learned).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "bnn/nn/activation.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/channel_gate.hpp"
#include "bnn/nn/downsample.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/ops/activation.hpp"
#include "bnn/ops/elementwise.hpp"

namespace bnn::nn {

/// How the binary conv's output is scaled per channel.
enum class BlockScale {
    Learned,  ///< the conv's learned scale, WeightScale::Learned (the strong baseline)
    Gate,     ///< the data-driven gate G(BN(x)) per sample and channel (Real-to-Bin)
};

struct BinaryHalfBlockOptions {
    int64_t in_channels = 0;
    int64_t out_channels = 0;
    int stride = 1;
    int kernel_size = 3;  ///< padding is kernel_size / 2
    BlockScale scale = BlockScale::Learned;
    int64_t gate_reduction = 8;  ///< gate hidden width = in_channels / gate_reduction (at least 1) ...
    int64_t gate_hidden = 0;     ///< ... unless given here (> 0)
    PadValue pad_value = PadValue::Zero;
    BinaryMode mode = BinaryMode::BinaryActivations;
    /// The conv's weight scale; by default MeanAbs with the gate, Learned with BlockScale::Learned.
    /// Deployment files set Folded (the conv's final scale stored in alpha).
    std::optional<WeightScale> conv_scale = std::nullopt;
    /// The conv holds its signs alone, as a deployment file does (BinaryConv2dOptions::deployed).
    bool deployed = false;
};

/// Parameters: bn.*, conv.weight (unless deployed) (+ conv.alpha), gate.weight1/2 (BlockScale::Gate), prelu.weight,
/// shortcut.* (Downsample, when the shape changes).
class BinaryHalfBlock : public Module {
public:
    explicit BinaryHalfBlock(const BinaryHalfBlockOptions& options) : options_(options) {
        const int64_t in = options.in_channels, out = options.out_channels;
        BNN_CHECK(in > 0 && out > 0 && options.stride > 0 && options.kernel_size > 0,
                  "BinaryHalfBlock: expected positive channels, stride and kernel size, got ", in, " -> ", out,
                  ", stride ", options.stride, ", kernel ", options.kernel_size);
        const bool gated = options.scale == BlockScale::Gate;
        bn = register_module("bn", std::make_shared<BatchNorm2d>(in));
        conv = register_module(
            "conv", std::make_shared<BinaryConv2d>(BinaryConv2dOptions{
                        .in_channels = in,
                        .out_channels = out,
                        .kernel_size = options.kernel_size,
                        .stride = options.stride,
                        .padding = options.kernel_size / 2,
                        .pad_value = options.pad_value,
                        .mode = options.mode,
                        .scale = options.conv_scale.value_or(gated ? WeightScale::MeanAbs : WeightScale::Learned),
                        .deployed = options.deployed}));
        if (gated)
            gate = register_module("gate", std::make_shared<ChannelGate>(ChannelGateOptions{
                                               .in_channels = in,
                                               .out_channels = out,
                                               .hidden_channels = options.gate_hidden,
                                               .reduction = options.gate_reduction}));
        prelu = register_module("prelu", std::make_shared<PReLU>(out));
        if (options.stride != 1 || in != out)
            shortcut = register_module("shortcut", std::make_shared<Downsample>(DownsampleOptions{
                                                       .in_channels = in, .out_channels = out, .stride = options.stride}));
    }

    Variable forward(const Variable& x) override {
        Variable h = bn->forward(x);
        // The conv's own remaining scale and the gate ([N, C]: per sample and channel) are fused
        // with the PReLU into one node: one pass each way instead of two or three.
        auto [y, scale] = conv->forward_unscaled(h);
        if (gate) {
            if (scale.defined()) y = ops::mul(y, scale);
            scale = gate->forward(h);
        }
        y = scale.defined() ? ops::scaled_prelu(y, scale, prelu->weight) : prelu->forward(y);
        return ops::add(y, shortcut ? shortcut->forward(x) : x);
    }
    std::string type_name() const override { return "BinaryHalfBlock"; }
    const BinaryHalfBlockOptions& options() const { return options_; }
    void set_mode(BinaryMode mode) {
        conv->set_mode(mode);
        options_.mode = mode;
    }

    std::shared_ptr<BatchNorm2d> bn;
    std::shared_ptr<BinaryConv2d> conv;
    std::shared_ptr<ChannelGate> gate;  ///< null with BlockScale::Learned
    std::shared_ptr<PReLU> prelu;
    std::shared_ptr<Downsample> shortcut;  ///< null for the identity

private:
    BinaryHalfBlockOptions options_;
};

}  // namespace bnn::nn
