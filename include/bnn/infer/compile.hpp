#pragma once
/// @file compile.hpp
/// infer::compile: a network built from bnn's modules, in eval mode, to an inference Graph.
///
///     nn::Sequential net; ...train...; net.eval();
///     infer::Graph graph = infer::compile(net, Shape{1, 32, 32, 3});
///     const Tensor<float>& logits = graph.run(images);
///
/// The module tree is lowered to steps, fusing what the binary convolution can absorb:
///
/// - a BatchNorm2d whose only reader is a fully binary conv: BN + sign + bit packing in one pass
///   into the conv's planned input bits (the BN output is never stored);
/// - after a fully binary conv: its scale alpha, a half-block's gate G, a PReLU and a residual
///   addition, in the XNOR tile's epilogue;
/// - after a BatchNorm2d: ReLU or PReLU in the same pass; after a residual addition: ReLU.
///
/// Everything else runs op by op with the training kernels (op_steps.hpp). Every step computes
/// the training ops' floats in their order, so the graph's output equals model.forward() in eval
/// mode (up to the sign of zeros). Modules the compiler knows: Sequential and any module whose
/// is_chain() is true, Conv2d, Linear, BatchNorm2d, ReLU, PReLU, Tanh, Sigmoid, Hardtanh,
/// MaxPool2d, AvgPool2d, GlobalAvgPool, Flatten, BinaryConv2d in every mode, ChannelGate,
/// BinaryHalfBlock, BinaryBasicBlock, Downsample, BasicBlock, Residual. A module of another kind
/// (its forward is C++ code the compiler cannot see) or a network whose shapes do not fit is a
/// bnn::Error naming the module's path.
///
/// The graph copies what it needs (packed weights, folded batch norms): the model may change or
/// go away afterwards.
///
/// CompileOptions::stem = StemPrecision::int16 runs every Conv2d that reads the network input on
/// the raw uint8 image with the input normalization folded in (int_stem_step.hpp); the graph then
/// takes Tensor<uint8_t> images in run().
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/shape.hpp"
#include "bnn/infer/binary_conv_node.hpp"
#include "bnn/infer/graph.hpp"
#include "bnn/infer/int_stem_step.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/nn/activation.hpp"
#include "bnn/nn/basic_block.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/binary_basic_block.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/binary_half_block.hpp"
#include "bnn/nn/channel_gate.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/flatten.hpp"
#include "bnn/nn/linear.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/nn/pool.hpp"
#include "bnn/nn/residual.hpp"
#include "bnn/nn/sequential.hpp"

namespace bnn::infer {

/// The arithmetic of the convolutions that read the network input.
enum class StemPrecision {
    fp32,   ///< the float convolution of the normalized input (run() takes floats)
    int16,  ///< raw uint8 pixels x int16 weights, int32 sums (run() takes uint8 images)
};

/// Options of infer::compile.
struct CompileOptions {
    StemPrecision stem = StemPrecision::fp32;
    /// With the int16 stem: the normalization the network was trained on, per input channel,
    /// x_n = (x / 255 - mean[c]) / std[c] (ImageNet: 0.485, 0.456, 0.406 and 0.229, 0.224, 0.225).
    std::vector<float> mean, std;
};

/// Eval-mode batch norm of a module as one scale and shift per channel.
inline FrozenBatchNorm fold_batch_norm(const nn::BatchNorm2d& bn) {
    return FrozenBatchNorm(bn.weight.value().data(), bn.bias.value().data(), bn.running_mean.data(),
                           bn.running_var.data(), bn.channels(), bn.eps());
}

namespace detail {

inline std::string join(const std::string& path, const std::string& name) {
    return path.empty() ? name : path + "." + name;
}

/// The lowering of a module tree into a Graph (see the file comment).
class Lowering {
public:
    Lowering(Graph& graph, const CompileOptions& options) : g_(graph), options_(options) { shared_.push_back(true); }

    /// Lowers `m` (at `path`) applied to value x; returns the value of its output.
    int lower(const nn::Module& m, const std::string& path, int x) {
        if (auto* seq = dynamic_cast<const nn::Sequential*>(&m)) return chain(*seq, path, x);
        if (auto* conv = dynamic_cast<const nn::Conv2d*>(&m); conv && x == 0 && options_.stem == StemPrecision::int16)
            return add(std::make_unique<IntStemStep>(path, conv->weight.value(), copy_or_empty(conv->bias),
                                                     conv->options().stride, conv->options().padding, options_.mean,
                                                     options_.std),
                       {x});
        if (auto* conv = dynamic_cast<const nn::Conv2d*>(&m))
            return add(std::make_unique<FloatConvStep>(path, conv->weight.value().clone(),
                                                       copy_or_empty(conv->bias), conv->options().stride,
                                                       conv->options().padding),
                       {x});
        if (auto* bn = dynamic_cast<const nn::BatchNorm2d*>(&m))
            return add(std::make_unique<BatchNormStep>(path, fold_batch_norm(*bn)), {x});
        if (dynamic_cast<const nn::ReLU*>(&m)) return activation(path, x, Activation::ReLU, {});
        if (auto* p = dynamic_cast<const nn::PReLU*>(&m)) return activation(path, x, Activation::PReLU, p->weight.value());
        if (dynamic_cast<const nn::Tanh*>(&m)) return elementwise(path, x, ActivationStep::Op::Tanh);
        if (dynamic_cast<const nn::Sigmoid*>(&m)) return elementwise(path, x, ActivationStep::Op::Sigmoid);
        if (auto* h = dynamic_cast<const nn::Hardtanh*>(&m))
            return add(std::make_unique<ActivationStep>(path, ActivationStep::Op::Hardtanh, Tensor<float>(), h->lo(), h->hi()),
                       {x});
        if (auto* p = dynamic_cast<const nn::MaxPool2d*>(&m))
            return add(std::make_unique<PoolStep>(path, true, p->window().kernel, p->window().stride, p->window().padding),
                       {x});
        if (auto* p = dynamic_cast<const nn::AvgPool2d*>(&m))
            return add(std::make_unique<PoolStep>(path, false, p->window().kernel, p->window().stride, p->window().padding),
                       {x});
        if (dynamic_cast<const nn::GlobalAvgPool*>(&m)) return add(std::make_unique<GlobalAvgPoolStep>(path), {x});
        if (dynamic_cast<const nn::Flatten*>(&m)) return add(std::make_unique<FlattenStep>(path), {x});
        if (auto* lin = dynamic_cast<const nn::Linear*>(&m))
            return add(std::make_unique<LinearStep>(path, lin->weight.value().clone(), copy_or_empty(lin->bias)), {x});
        if (auto* gate = dynamic_cast<const nn::ChannelGate*>(&m))
            return add(std::make_unique<GateStep>(path, gate->weight1.value().clone(), gate->weight2.value().clone()), {x});
        if (auto* conv = dynamic_cast<const nn::BinaryConv2d*>(&m)) return binary_conv(*conv, path, x);
        if (auto* half = dynamic_cast<const nn::BinaryHalfBlock*>(&m)) return half_block(*half, path, x);
        if (auto* block = dynamic_cast<const nn::BasicBlock*>(&m)) return basic_block(*block, path, x);
        if (auto* res = dynamic_cast<const nn::Residual*>(&m)) return residual(*res, path, x);
        if (m.is_chain()) return chain(m, path, x);
        ::bnn::fail("infer::compile: '", path.empty() ? std::string("<model>") : path, "' is a ", m.type_name(),
                            ", whose forward the compiler cannot see; build it from bnn's modules (Sequential, "
                            "Residual, the binary blocks, ...) or, if its forward applies its children in order, "
                            "override is_chain() to return true");
    }

private:
    static Tensor<float> copy_or_empty(const Variable& v) { return v.defined() ? v.value().clone() : Tensor<float>(); }

    int add(std::unique_ptr<Step> step, std::vector<int> inputs) {
        const int v = g_.add(std::move(step), std::move(inputs));
        shared_.push_back(false);
        return v;
    }
    // A value that other steps may read too: nothing may be fused into its producer.
    bool fusable(int v) const { return v > 0 && !shared_[v]; }
    void share(int v) { shared_[v] = true; }

    int chain(const nn::Module& m, const std::string& path, int x) {
        for (const auto& [name, child] : m.children()) x = lower(*child, join(path, name), x);
        return x;
    }

    int elementwise(const std::string& path, int x, ActivationStep::Op op) {
        return add(std::make_unique<ActivationStep>(path, op), {x});
    }

    // ReLU / PReLU: into the batch norm or binary conv that produced x when only they read it.
    int activation(const std::string& path, int x, Activation act, const Tensor<float>& slope) {
        if (fusable(x)) {
            if (auto* bn = dynamic_cast<BatchNormStep*>(&g_.producer(x)); bn && !bn->has_activation()) {
                bn->fuse_activation(act, act == Activation::PReLU ? slope.clone() : Tensor<float>());
                return x;
            }
            if (auto* node = dynamic_cast<BinaryConvNode*>(&g_.producer(x));
                node && act == Activation::PReLU && !node->has_prelu() && !node->has_residual()) {
                node->fuse_prelu(slope.clone());
                return x;
            }
        }
        if (act == Activation::ReLU) return elementwise(path, x, ActivationStep::Op::ReLU);
        return add(std::make_unique<ActivationStep>(path, ActivationStep::Op::PReLU, slope.clone()), {x});
    }

    // sign(W) packed and the conv's final scale: the fully binary node.
    static std::unique_ptr<BinaryConvNode> binary_node(const nn::BinaryConv2d& conv, const std::string& path) {
        const auto& o = conv.options();
        return std::make_unique<BinaryConvNode>(
            path, kernels::pack_conv_weights(conv.weight.value()), conv.binary_weight_scale(), o.stride, o.padding,
            o.pad_value == nn::Padding::One ? kernels::PadMode::one : kernels::PadMode::zero);
    }

    int binary_conv(const nn::BinaryConv2d& conv, const std::string& path, int x) {
        if (conv.mode() == nn::BinaryMode::FullyBinary) {
            auto node = binary_node(conv, path);
            // A batch norm read only by this conv is folded into its packing pass.
            if (fusable(x))
                if (auto* bn = dynamic_cast<BatchNormStep*>(&g_.producer(x)); bn && !bn->has_activation()) {
                    node->fuse_batch_norm(bn->batch_norm());
                    const int bn_input = g_.producer_inputs(x).at(0);
                    g_.producer_inputs(x).clear();  // the BN step is now dead: drop_dead() removes it
                    dead_.push_back(x);
                    return add(std::move(node), {bn_input});
                }
            return add(std::move(node), {x});
        }
        // Real-weight modes: forward_unscaled's ops, then the scale it leaves (alpha) as forward().
        const int y = binary_conv_unscaled(conv, path, x);
        if (conv.alpha.defined()) return add(std::make_unique<ScaleStep>(path, conv.alpha.value().clone()), {y});
        return y;
    }

    int half_block(const nn::BinaryHalfBlock& half, const std::string& path, int x) {
        share(x);
        const int s = half.shortcut ? lower(*half.shortcut, join(path, "shortcut"), x) : x;
        const std::string conv_path = join(path, "conv");
        if (half.conv->mode() == nn::BinaryMode::FullyBinary) {
            auto node = binary_node(*half.conv, conv_path);
            node->fuse_batch_norm(fold_batch_norm(*half.bn));
            if (half.gate) node->fuse_gate(FrozenGate(half.gate->weight1.value(), half.gate->weight2.value()));
            node->fuse_prelu(half.prelu->weight.value().clone());
            node->fuse_residual();
            return add(std::move(node), {x, s});
        }
        // Real-weight modes, op by op as BinaryHalfBlock::forward.
        const int h = add(std::make_unique<BatchNormStep>(join(path, "bn"), fold_batch_norm(*half.bn)), {x});
        share(h);
        int y = binary_conv_unscaled(*half.conv, conv_path, h);
        const std::string prelu_path = join(path, "prelu");
        const Tensor<float> slope = half.prelu->weight.value().clone();
        const bool alpha = half.conv->alpha.defined();
        if (half.gate) {
            if (alpha) y = add(std::make_unique<ScaleStep>(conv_path, half.conv->alpha.value().clone()), {y});
            const int g = lower(*half.gate, join(path, "gate"), h);
            y = add(std::make_unique<ScaledPReLUStep>(prelu_path, slope), {y, g});
        } else if (alpha) {
            y = add(std::make_unique<ScaledPReLUStep>(prelu_path, slope, half.conv->alpha.value().clone()), {y});
        } else {
            y = add(std::make_unique<ActivationStep>(prelu_path, ActivationStep::Op::PReLU, slope), {y});
        }
        return add(std::make_unique<AddStep>(path, false), {y, s});
    }

    // The conv of a real-weight mode without its scale (BinaryConv2d::forward_unscaled's first half).
    int binary_conv_unscaled(const nn::BinaryConv2d& conv, const std::string& path, int x) {
        const auto& o = conv.options();
        int a = elementwise(path, x, o.mode == nn::BinaryMode::SoftActivations ? ActivationStep::Op::Tanh
                                                                               : ActivationStep::Op::Sign);
        int pad = o.padding;
        if (o.pad_value == nn::Padding::One && o.padding > 0) {
            a = add(std::make_unique<PadStep>(path, o.padding, 1.f), {a});
            pad = 0;
        }
        return add(std::make_unique<FloatConvStep>(path, conv.weight.value().clone(), Tensor<float>(), o.stride, pad), {a});
    }

    int basic_block(const nn::BasicBlock& b, const std::string& path, int x) {
        share(x);
        const int s = b.downsample ? lower(*b.downsample, join(path, "downsample"), x) : x;
        int y = lower(*b.conv1, join(path, "conv1"), x);
        y = lower(*b.bn1, join(path, "bn1"), y);
        y = activation(join(path, "relu"), y, Activation::ReLU, {});
        y = lower(*b.conv2, join(path, "conv2"), y);
        y = lower(*b.bn2, join(path, "bn2"), y);
        return add(std::make_unique<AddStep>(path, true), {y, s});
    }

    int residual(const nn::Residual& r, const std::string& path, int x) {
        share(x);
        const int s = r.shortcut ? lower(*r.shortcut, join(path, "shortcut"), x) : x;
        const int y = lower(*r.body, join(path, "body"), x);
        if (fusable(y))
            if (auto* node = dynamic_cast<BinaryConvNode*>(&g_.producer(y)); node && !node->has_residual()) {
                node->fuse_residual();
                g_.producer_inputs(y).push_back(s);
                return y;
            }
        return add(std::make_unique<AddStep>(path, false), {y, s});
    }

public:
    /// Values whose steps were fused away (their inputs cleared).
    std::vector<int> dead_;

private:
    Graph& g_;
    const CompileOptions& options_;
    std::vector<bool> shared_;  // per value
};

/// With the int16 stem, the input (raw bytes) may be read by integer stem steps only.
inline void check_raw_input_readers(Graph& graph) {
    bool stem = false;
    for (size_t i = 0; i < graph.num_steps(); ++i) {
        const int v = static_cast<int>(i) + 1;
        const auto& in = graph.producer_inputs(v);
        if (std::find(in.begin(), in.end(), 0) == in.end()) continue;
        const Step& s = graph.producer(v);
        BNN_CHECK(dynamic_cast<const IntStemStep*>(&s), "infer::compile: with the int16 stem the input is a raw "
                  "uint8 image, which only a Conv2d may read, but '", s.path().empty() ? std::string("<model>") : s.path(),
                  "' (", s.kind(), ") reads it too; compile with the fp32 stem");
        stem = true;
    }
    BNN_CHECK(stem, "infer::compile: the int16 stem was asked for, but no Conv2d reads the network input");
}

}  // namespace detail

/// Compiles an eval-mode network for inputs of `input_shape` ([N, H, W, C]); see the file
/// comment. The graph re-plans itself for other shapes or thread counts on run().
inline Graph compile(const nn::Module& model, const Shape& input_shape, const CompileOptions& options = {}) {
    BNN_CHECK(!model.is_training(), "infer::compile: the model is in training mode; call eval() first (batch norm "
              "would otherwise use batch statistics)");
    for (const auto& [path, m] : model.named_modules())
        BNN_CHECK(!m->is_training(), "infer::compile: '", path, "' is in training mode while its parent is not; "
                  "call eval() on the whole model");
    Graph graph;
    detail::Lowering lowering(graph, options);
    const int out = lowering.lower(model, "", 0);
    graph.set_output(out == 0 ? graph.add(std::make_unique<CopyStep>("output"), {0}) : out);
    graph.drop_dead(lowering.dead_);
    if (options.stem == StemPrecision::int16) {
        detail::check_raw_input_readers(graph);
        graph.set_raw_input(true);
    }
    graph.plan(input_shape);
    return graph;
}

}  // namespace bnn::infer
