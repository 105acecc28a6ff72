#pragma once
/// @file sequential.hpp
/// Sequential: a chain of single-input modules, applied in order.
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bnn/nn/module.hpp"

namespace bnn::nn {

/// forward(x) = m_{n-1}(...m_1(m_0(x))). Children are named "0", "1", ... unless given a name,
/// so parameters read "0.weight", "3.running_mean", and nest ("layer1.0.conv1.weight").
///
///     nn::Sequential net;
///     net.add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 16, .padding = 1});
///     net.add<nn::BatchNorm2d>(16);
///     net.add<nn::ReLU>();
class Sequential : public Module {
public:
    Sequential() = default;
    Sequential(std::initializer_list<std::shared_ptr<Module>> modules) {
        for (const auto& m : modules) push_back(m);
    }

    /// Appends a module as child "<size()>"; returns it with its own type for further use.
    template <class M>
    std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
        BNN_CHECK(module != nullptr, "Sequential::push_back: got a null module at position ", modules_.size());
        register_module(std::to_string(modules_.size()), module);
        modules_.push_back(module);
        return module;
    }

    /// Appends a module under its own name (e.g. "stem", "fc").
    template <class M>
    std::shared_ptr<M> push_back(std::string name, std::shared_ptr<M> module) {
        BNN_CHECK(module != nullptr, "Sequential::push_back: got a null module for '", name, "'");
        for (const auto& [existing, child] : children())
            BNN_CHECK(existing != name, "Sequential::push_back: a module named '", name, "' is already registered");
        register_module(std::move(name), module);
        modules_.push_back(module);
        return module;
    }

    /// Constructs an M from `args` and appends it: `net.add<nn::ReLU>()`.
    template <class M, class... Args>
    std::shared_ptr<M> add(Args&&... args) {
        return push_back(std::make_shared<M>(std::forward<Args>(args)...));
    }

    Variable forward(const Variable& x) override {
        Variable h = x;
        for (auto& m : modules_) h = m->forward(h);
        return h;
    }
    std::string type_name() const override { return "Sequential"; }
    bool is_chain() const override { return true; }

    size_t size() const { return modules_.size(); }
    bool empty() const { return modules_.empty(); }
    /// The i-th module (checked).
    Module& operator[](size_t i) const {
        BNN_CHECK(i < modules_.size(), "Sequential: index ", i, " out of range (", modules_.size(), " modules)");
        return *modules_[i];
    }

private:
    std::vector<std::shared_ptr<Module>> modules_;
};

}  // namespace bnn::nn
