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
/// - after a BatchNorm2d: ReLU or PReLU in the same pass; after a residual addition: ReLU;
/// - a 1x1 stride-1 Conv2d with the unpadded average pool before it and the BatchNorm2d (and its
///   ReLU or PReLU) after it: one pass per thread over its share of pixels (pointwise_conv_step.hpp).
///
/// Everything else runs op by op with the training kernels (op_steps.hpp). Every step computes
/// the training ops' floats in their order, so the graph's output equals model.forward() in eval
/// mode (up to the sign of zeros). Each module is lowered as its registered type says
/// (module_registry.hpp: bnn's modules, one file each under infer/modules/, and a user's own);
/// a module of no registered type is lowered as its children in order when its is_chain() is
/// true. Any other module (its forward is C++ code the compiler cannot see) or a network whose
/// shapes do not fit is a bnn::Error naming the module's path.
///
/// The graph copies what it needs (packed weights, folded batch norms): the model may change or
/// go away afterwards. A deployed binary conv's packed weights, which never change in place, are
/// shared rather than copied (nn::BinaryConv2d::packed_weights).
///
/// CompileOptions::stem = StemPrecision::int16 (or int8) runs every Conv2d that reads the network
/// input on the raw uint8 image with the input normalization folded in (int_stem_step.hpp); the
/// graph then takes Tensor<uint8_t> images in run(). CompileOptions::dense = DensePrecision::int8
/// runs every 1x1 stride-1 Conv2d and every Linear in int8 (kernels/linear_int8.hpp). Both trade
/// the equality with eval mode for speed: their logits are close, not equal.
#include <algorithm>
#include <memory>
#include <string>

#include "bnn/core/error.hpp"
#include "bnn/core/shape.hpp"
#include "bnn/infer/graph.hpp"
#include "bnn/infer/int_stem_step.hpp"
#include "bnn/infer/lowering.hpp"
#include "bnn/infer/module_registry.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/nn/module.hpp"

namespace bnn::infer {

namespace detail {

/// With the int16 stem, the input (raw bytes) may be read by integer stem steps only.
inline void check_raw_input_readers(Graph& graph) {
    bool stem = false;
    for (size_t i = 0; i < graph.num_steps(); ++i) {
        const int v = static_cast<int>(i) + 1;
        const auto& in = graph.producer_inputs(v);
        if (std::find(in.begin(), in.end(), 0) == in.end()) continue;
        const Step& s = graph.producer(v);
        BNN_CHECK(dynamic_cast<const IntStemStep*>(&s), "infer::compile: with the int16 stem the input is a raw "
                  "uint8 image, which only a Conv2d may read, but '", shown_path(s.path()),
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
    Lowering lowering(graph, options);
    const int out = lowering.lower(model, "", 0);
    graph.set_output(out == 0 ? graph.add(std::make_unique<CopyStep>("output"), {0}) : out);
    graph.drop_dead(lowering.dead());
    if (reads_bytes(options.stem)) {
        detail::check_raw_input_readers(graph);
        graph.set_raw_input(true);
    }
    graph.plan(input_shape);
    return graph;
}

}  // namespace bnn::infer
