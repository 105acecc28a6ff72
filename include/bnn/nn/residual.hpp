#pragma once
/// @file residual.hpp
/// Residual: out = body(x) + shortcut(x), the shortcut being the identity when not given. The
/// generic skip connection for networks of one's own (Bi-Real-style single skips around each
/// binary conv, pre-activation blocks, ...); the paper's blocks have their own classes.
#include <memory>
#include <string>
#include <utility>

#include "bnn/nn/module.hpp"
#include "bnn/ops/elementwise.hpp"

namespace bnn::nn {

/// Parameters: body.* and shortcut.*. Requires body(x) and shortcut(x) of the same shape.
class Residual : public Module {
public:
    explicit Residual(std::shared_ptr<Module> body_module, std::shared_ptr<Module> shortcut_module = nullptr) {
        body = register_module("body", std::move(body_module));
        if (shortcut_module) shortcut = register_module("shortcut", std::move(shortcut_module));
    }
    Variable forward(const Variable& x) override {
        return ops::add(body->forward(x), shortcut ? shortcut->forward(x) : x);
    }
    std::string type_name() const override { return "Residual"; }

    std::shared_ptr<Module> body;
    std::shared_ptr<Module> shortcut;  ///< null for the identity
};

}  // namespace bnn::nn
