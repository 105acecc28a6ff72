#pragma once
/// @file binary_conv2d.hpp
/// BinaryConv2d in a module tree and a graph. Fully binary, it is one BinaryConvNode: the weight
/// signs packed, its final scale, and a batch norm read only by it folded into its packing pass.
/// In the real-weight modes it runs op by op as BinaryConv2d::forward.
#include <memory>
#include <string>

#include "bnn/infer/binary_conv_node.hpp"
#include "bnn/infer/module_type.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/nn/binary_conv2d.hpp"

namespace bnn::infer::modules {

/// The file format's names, older than the enum's: "alpha" says the scale is alpha alone.
inline constexpr EnumNames<nn::WeightScale> kWeightScaleNames = {{"none", nn::WeightScale::None},
                                                                 {"mean_abs", nn::WeightScale::MeanAbs},
                                                                 {"learned", nn::WeightScale::Learned},
                                                                 {"alpha", nn::WeightScale::Folded}};
inline constexpr EnumNames<nn::PadValue> kPadValueNames = {{"zero", nn::PadValue::Zero}, {"one", nn::PadValue::One}};

/// The mode and weight scale a binary conv is described with: as deployed (fully binary, its
/// final scale in alpha) or as it is.
inline const char* described_mode(const nn::BinaryConv2d& conv, const TreeWriter& w) {
    return nn::binary_mode_name(w.deployed() ? nn::BinaryMode::FullyBinary : conv.mode());
}
inline const char* described_scale(const nn::BinaryConv2d& conv, const TreeWriter& w) {
    return name_of(kWeightScaleNames, w.deployed() ? nn::WeightScale::Folded : conv.options().scale);
}

/// The option `key` as a BinaryMode, by nn::binary_mode_name.
inline nn::BinaryMode read_mode(TreeReader& r, const char* key) {
    using M = nn::BinaryMode;
    return r.choice<M>(key, {{nn::binary_mode_name(M::SoftActivations), M::SoftActivations},
                             {nn::binary_mode_name(M::BinaryActivations), M::BinaryActivations},
                             {nn::binary_mode_name(M::FullyBinary), M::FullyBinary}});
}

/// sign(W) packed and the conv's final scale: the fully binary node.
inline std::unique_ptr<BinaryConvNode> binary_node(const nn::BinaryConv2d& conv, const std::string& path) {
    const auto& o = conv.options();
    return std::make_unique<BinaryConvNode>(path, conv.packed_weights(),
                                            conv.binary_weight_scale(), o.stride, o.padding, o.pad_value);
}

/// The conv of a real-weight mode without its scale (BinaryConv2d::forward_unscaled's first half).
inline int lower_binary_conv_unscaled(Lowering& l, const nn::BinaryConv2d& conv, const std::string& path, int x) {
    const auto& o = conv.options();
    int a = l.add(std::make_unique<ActivationStep>(path, o.mode == nn::BinaryMode::SoftActivations ? ActivationStep::Op::Tanh
                                                                                                   : ActivationStep::Op::Sign),
                  {x});
    int pad = o.padding;
    if (o.pad_value == nn::PadValue::One && o.padding > 0) {
        a = l.add(std::make_unique<PadStep>(path, o.padding, 1.f), {a});
        pad = 0;
    }
    return l.add(std::make_unique<FloatConvStep>(path, conv.weight.value().clone(), Tensor<float>(), o.stride, pad), {a});
}

inline int lower_binary_conv(Lowering& l, const nn::BinaryConv2d& conv, const std::string& path, int x) {
    if (conv.mode() == nn::BinaryMode::FullyBinary) {
        auto node = binary_node(conv, path);
        // A batch norm read only by this conv is folded into its packing pass.
        if (l.fusable(x))
            if (auto* bn = dynamic_cast<BatchNormStep*>(&l.graph().producer(x)); bn && !bn->has_activation()) {
                node->fuse_batch_norm(bn->batch_norm());
                const int bn_input = l.graph().producer_inputs(x).at(0);
                l.fuse_away(x);
                return l.add(std::move(node), {bn_input});
            }
        return l.add(std::move(node), {x});
    }
    // Real-weight modes: forward_unscaled's ops, then the scale it leaves (alpha) as forward().
    const int y = lower_binary_conv_unscaled(l, conv, path, x);
    if (conv.alpha.defined()) return l.add(std::make_unique<ScaleStep>(path, conv.alpha.value().clone()), {y});
    return y;
}

inline ModuleType binary_conv2d() {
    return module_type<nn::BinaryConv2d>(
        "BinaryConv2d",
        [](const nn::BinaryConv2d& m, TreeWriter& w) {
            const auto& o = m.options();
            return Json{{"in_channels", o.in_channels},
                        {"out_channels", o.out_channels},
                        {"kernel_size", o.kernel_size},
                        {"stride", o.stride},
                        {"padding", o.padding},
                        {"pad_value", name_of(kPadValueNames, o.pad_value)},
                        {"mode", described_mode(m, w)},
                        {"scale", described_scale(m, w)}};
        },
        [](TreeReader& r) {
            nn::BinaryConv2dOptions o;
            o.in_channels = r.integer("in_channels", 1, kMaxSize);
            o.out_channels = r.integer("out_channels", 1, kMaxSize);
            o.kernel_size = r.small("kernel_size", 1, 64);
            o.stride = r.small("stride", 1, 64);
            o.padding = r.small("padding", 0, 64);
            o.pad_value = r.choice("pad_value", kPadValueNames);
            o.mode = read_mode(r, "mode");
            o.scale = r.choice("scale", kWeightScaleNames);
            o.deployed = r.deployed();
            return std::make_shared<nn::BinaryConv2d>(o);
        },
        lower_binary_conv);
}

}  // namespace bnn::infer::modules
