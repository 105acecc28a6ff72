#pragma once
/// @file binary_half_block.hpp
/// BinaryHalfBlock and BinaryBasicBlock (two half-blocks, a chain) in a module tree and a graph.
/// Fully binary, a half-block is one BinaryConvNode: BN + sign + packing, the conv, its scale or
/// gate, PReLU and the shortcut's addition. In the real-weight modes it runs op by op as
/// BinaryHalfBlock::forward.
#include <memory>
#include <string>

#include "bnn/infer/modules/batch_norm.hpp"
#include "bnn/infer/modules/binary_conv2d.hpp"
#include "bnn/nn/binary_basic_block.hpp"
#include "bnn/nn/binary_half_block.hpp"

namespace bnn::infer::modules {

/// The file format's names: "alpha" says the block is scaled by its conv's alpha.
inline constexpr EnumNames<nn::BlockScale> kBlockScaleNames = {{"alpha", nn::BlockScale::Learned},
                                                               {"gate", nn::BlockScale::Gate}};

inline Json describe_half_block(const nn::BinaryHalfBlockOptions& o, const nn::BinaryConv2d& conv, const TreeWriter& w) {
    return Json{{"in_channels", o.in_channels},
                {"out_channels", o.out_channels},
                {"stride", o.stride},
                {"kernel_size", o.kernel_size},
                {"scale", name_of(kBlockScaleNames, o.scale)},
                {"gate_reduction", o.gate_reduction},
                {"gate_hidden", o.gate_hidden},
                {"pad_value", name_of(kPadValueNames, o.pad_value)},
                {"mode", described_mode(conv, w)},
                {"conv_scale", described_scale(conv, w)}};
}

inline nn::BinaryHalfBlockOptions read_half_block(TreeReader& r) {
    nn::BinaryHalfBlockOptions h;
    h.in_channels = r.integer("in_channels", 1, kMaxSize);
    h.out_channels = r.integer("out_channels", 1, kMaxSize);
    h.stride = r.small("stride", 1, 64);
    h.kernel_size = r.small("kernel_size", 1, 64);
    h.scale = r.choice("scale", kBlockScaleNames);
    h.gate_reduction = r.integer("gate_reduction", 1, kMaxSize);
    h.gate_hidden = r.integer("gate_hidden", 0, kMaxSize);
    h.pad_value = r.choice("pad_value", kPadValueNames);
    h.mode = read_mode(r, "mode");
    h.conv_scale = r.choice("conv_scale", kWeightScaleNames);
    h.deployed = r.deployed();
    return h;
}

inline int lower_half_block(Lowering& l, const nn::BinaryHalfBlock& half, const std::string& path, int x) {
    l.share(x);
    const int s = half.shortcut ? l.lower(*half.shortcut, join_path(path, "shortcut"), x) : x;
    const std::string conv_path = join_path(path, "conv");
    if (half.conv->mode() == nn::BinaryMode::FullyBinary) {
        auto node = binary_node(*half.conv, conv_path);
        node->fuse_batch_norm(fold_batch_norm(*half.bn));
        if (half.gate) node->fuse_gate(FrozenGate(half.gate->weight1.value(), half.gate->weight2.value()));
        node->fuse_prelu(half.prelu->weight.value().clone());
        node->fuse_residual();
        return l.add(std::move(node), {x, s});
    }
    // Real-weight modes, op by op as BinaryHalfBlock::forward.
    const int h = l.add(std::make_unique<BatchNormStep>(join_path(path, "bn"), fold_batch_norm(*half.bn)), {x});
    l.share(h);
    int y = lower_binary_conv_unscaled(l, *half.conv, conv_path, h);
    const std::string prelu_path = join_path(path, "prelu");
    const Tensor<float> slope = half.prelu->weight.value().clone();
    const bool alpha = half.conv->alpha.defined();
    if (half.gate) {
        if (alpha) y = l.add(std::make_unique<ScaleStep>(conv_path, half.conv->alpha.value().clone()), {y});
        const int g = l.lower(*half.gate, join_path(path, "gate"), h);
        y = l.add(std::make_unique<ScaledPReLUStep>(prelu_path, slope), {y, g});
    } else if (alpha) {
        y = l.add(std::make_unique<ScaledPReLUStep>(prelu_path, slope, half.conv->alpha.value().clone()), {y});
    } else {
        y = l.add(std::make_unique<ActivationStep>(prelu_path, ActivationStep::Op::PReLU, slope), {y});
    }
    return l.add(std::make_unique<AddStep>(path, false), {y, s});
}

inline ModuleType binary_half_block() {
    return module_type<nn::BinaryHalfBlock>(
        "BinaryHalfBlock",
        [](const nn::BinaryHalfBlock& m, TreeWriter& w) { return describe_half_block(m.options(), *m.conv, w); },
        [](TreeReader& r) { return std::make_shared<nn::BinaryHalfBlock>(read_half_block(r)); }, lower_half_block);
}

inline ModuleType binary_basic_block() {
    return module_type<nn::BinaryBasicBlock>(
        "BinaryBasicBlock",
        [](const nn::BinaryBasicBlock& m, TreeWriter& w) { return describe_half_block(m.options(), *m.half1->conv, w); },
        [](TreeReader& r) { return std::make_shared<nn::BinaryBasicBlock>(read_half_block(r)); },
        [](Lowering& l, const nn::BinaryBasicBlock& m, const std::string& path, int x) { return l.chain(m, path, x); });
}

}  // namespace bnn::infer::modules
