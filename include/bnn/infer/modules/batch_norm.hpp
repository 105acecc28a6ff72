#pragma once
/// @file batch_norm.hpp
/// BatchNorm2d in a module tree and a graph: one scale and shift per channel (eval mode), into
/// which a following ReLU or PReLU (activation.hpp) or fully binary conv (binary_conv2d.hpp)
/// fuses; itself fused into the 1x1 conv that produced its input (pointwise_conv_step.hpp).
#include <memory>
#include <string>

#include "bnn/infer/module_type.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/infer/pointwise_conv_step.hpp"
#include "bnn/nn/batch_norm.hpp"

namespace bnn::infer {

/// Eval-mode batch norm of a module as one scale and shift per channel.
inline FrozenBatchNorm fold_batch_norm(const nn::BatchNorm2d& bn) {
    return FrozenBatchNorm(bn.weight.value().data(), bn.bias.value().data(), bn.running_mean.data(),
                           bn.running_var.data(), bn.channels(), bn.eps());
}

namespace modules {

inline ModuleType batch_norm2d() {
    return module_type<nn::BatchNorm2d>(
        "BatchNorm2d",
        [](const nn::BatchNorm2d& m, TreeWriter&) {
            return Json{{"channels", m.channels()}, {"momentum", m.momentum()}, {"eps", m.eps()}};
        },
        [](TreeReader& r) {
            return std::make_shared<nn::BatchNorm2d>(r.integer("channels", 1, kMaxSize), r.number("momentum"),
                                                     r.number("eps"));
        },
        [](Lowering& l, const nn::BatchNorm2d& m, const std::string& path, int x) {
            if (auto* conv = l.fusable(x) ? dynamic_cast<PointwiseConvStep*>(&l.graph().producer(x)) : nullptr;
                conv && !conv->has_batch_norm()) {
                conv->fuse_batch_norm(fold_batch_norm(m));
                return x;
            }
            return l.add(std::make_unique<BatchNormStep>(path, fold_batch_norm(m)), {x});
        });
}

}  // namespace modules
}  // namespace bnn::infer
