#pragma once
/// @file flatten.hpp
/// Flatten: keeps the batch dimension and merges the rest, [N, ...] -> [N, rest].
#include <string>

#include "bnn/nn/module.hpp"
#include "bnn/ops/reshape.hpp"

namespace bnn::nn {

/// [N, d1, d2, ...] -> [N, d1 * d2 * ...]; the gradient is reshaped back.
class Flatten : public Module {
public:
    Variable forward(const Variable& x) override { return ops::flatten(x); }
    std::string type_name() const override { return "Flatten"; }
};

}  // namespace bnn::nn
