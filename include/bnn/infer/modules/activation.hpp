#pragma once
/// @file activation.hpp
/// The element-wise activations in a module tree and a graph. ReLU and PReLU fuse into the batch
/// norm that produced their input (a step of its own, or fused into a 1x1 conv), PReLU also into
/// a fully binary conv's epilogue.
#include <memory>
#include <string>

#include "bnn/infer/binary_conv_node.hpp"
#include "bnn/infer/module_type.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/infer/pointwise_conv_step.hpp"
#include "bnn/nn/activation.hpp"

namespace bnn::infer::modules {

/// ReLU or PReLU (slope [C]) of value x: into the batch norm (or 1x1 conv with its batch norm) or
/// binary conv that produced x when only they read it, else a step of its own.
inline int lower_activation(Lowering& l, const std::string& path, int x, Activation act, const Tensor<float>& slope) {
    if (l.fusable(x)) {
        if (auto* bn = dynamic_cast<BatchNormStep*>(&l.graph().producer(x)); bn && !bn->has_activation()) {
            bn->fuse_activation(act, act == Activation::PReLU ? slope.clone() : Tensor<float>());
            return x;
        }
        if (auto* conv = dynamic_cast<PointwiseConvStep*>(&l.graph().producer(x));
            conv && conv->has_batch_norm() && !conv->has_activation()) {
            conv->fuse_activation(act, act == Activation::PReLU ? slope.clone() : Tensor<float>());
            return x;
        }
        if (auto* node = dynamic_cast<BinaryConvNode*>(&l.graph().producer(x));
            node && act == Activation::PReLU && !node->has_prelu() && !node->has_residual()) {
            node->fuse_prelu(slope.clone());
            return x;
        }
    }
    if (act == Activation::ReLU) return l.add(std::make_unique<ActivationStep>(path, ActivationStep::Op::ReLU), {x});
    return l.add(std::make_unique<ActivationStep>(path, ActivationStep::Op::PReLU, slope.clone()), {x});
}

/// An activation without options or parameters, lowered to one ActivationStep.
template <class M>
ModuleType plain_activation(const char* name, ActivationStep::Op op) {
    return module_type<M>(
        name, [](const M&, TreeWriter&) { return Json::object(); },
        [](TreeReader&) { return std::make_shared<M>(); },
        [op](Lowering& l, const M&, const std::string& path, int x) {
            return l.add(std::make_unique<ActivationStep>(path, op), {x});
        });
}

/// ReLU fuses like PReLU (lower_activation).
inline ModuleType relu() {
    ModuleType t = plain_activation<nn::ReLU>("ReLU", ActivationStep::Op::ReLU);
    t.lower = [](Lowering& l, const nn::Module&, const std::string& path, int x) {
        return lower_activation(l, path, x, Activation::ReLU, {});
    };
    return t;
}

inline ModuleType tanh() { return plain_activation<nn::Tanh>("Tanh", ActivationStep::Op::Tanh); }
inline ModuleType sigmoid() { return plain_activation<nn::Sigmoid>("Sigmoid", ActivationStep::Op::Sigmoid); }
inline ModuleType sign() { return plain_activation<nn::Sign>("Sign", ActivationStep::Op::Sign); }

inline ModuleType hardtanh() {
    return module_type<nn::Hardtanh>(
        "Hardtanh", [](const nn::Hardtanh& m, TreeWriter&) { return Json{{"lo", m.lo()}, {"hi", m.hi()}}; },
        [](TreeReader& r) { return std::make_shared<nn::Hardtanh>(r.number("lo"), r.number("hi")); },
        [](Lowering& l, const nn::Hardtanh& m, const std::string& path, int x) {
            return l.add(std::make_unique<ActivationStep>(path, ActivationStep::Op::Hardtanh, Tensor<float>(), m.lo(), m.hi()),
                         {x});
        });
}

inline ModuleType prelu() {
    return module_type<nn::PReLU>(
        "PReLU", [](const nn::PReLU& m, TreeWriter&) { return Json{{"channels", m.weight.numel()}}; },
        [](TreeReader& r) { return std::make_shared<nn::PReLU>(r.integer("channels", 1, kMaxSize)); },
        [](Lowering& l, const nn::PReLU& m, const std::string& path, int x) {
            return lower_activation(l, path, x, Activation::PReLU, m.weight.value());
        });
}

}  // namespace bnn::infer::modules
