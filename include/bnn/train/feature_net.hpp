#pragma once
/// @file feature_net.hpp
/// FeatureNet: a classifier whose forward also exposes named intermediate feature maps (the
/// transfer points of attention matching). Teacher and student of the staged training both
/// implement it, and the distillation step matches their features by name.
#include <string>
#include <utility>
#include <vector>

#include "bnn/autograd/variable.hpp"
#include "bnn/nn/module.hpp"

namespace bnn::train {

/// Logits and the named feature maps of one forward pass.
struct Features {
    Variable logits;  ///< [N, classes]
    /// (name, [N,H,W,C]) in network order, e.g. "block1" .. "block8" for ResNet-18.
    std::vector<std::pair<std::string, Variable>> maps;

    /// The feature map called `name`; bnn::Error listing the available names when absent.
    const Variable& at(const std::string& name) const {
        for (const auto& [n, v] : maps)
            if (n == name) return v;
        std::string names;
        for (const auto& [n, v] : maps) names += (names.empty() ? "" : ", ") + n;
        ::bnn::fail("Features::at: no feature map named \"", name, "\" (have: ", names, ")");
    }
};

/// A network that returns its logits together with named feature maps.
class FeatureNet : public nn::Module {
public:
    /// Forward pass returning the logits and every transfer point.
    virtual Features forward_features(const Variable& x) = 0;
    /// The logits alone.
    Variable forward(const Variable& x) override { return forward_features(x).logits; }
};

}  // namespace bnn::train
