#pragma once
/// @file module.hpp
/// Module: the base of every layer and network. It owns named parameters (Variables that
/// require gradients), buffers (state that is saved but not trained, e.g. BN running statistics)
/// and child modules, and gives them dotted names ("layer1.0.conv1.weight").
///
/// Parameters and buffers are shared handles: a derived class keeps its own handle for fast
/// access, and the registry keeps another. Write through them in place; never rebind them
/// (loaders and optimisers rely on the storage staying the same).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bnn/autograd/variable.hpp"

namespace bnn::nn {

class Module {
public:
    Module() = default;
    virtual ~Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    /// The single-input forward used by Sequential and most layers. Modules with other
    /// signatures (several outputs, feature taps) add their own and leave this one throwing.
    virtual Variable forward(const Variable& x) {
        (void)x;
        ::bnn::fail(type_name(), ": this module has no single-input forward");
    }
    Variable operator()(const Variable& x) { return forward(x); }

    /// A short name of the layer type for messages ("Conv2d").
    virtual std::string type_name() const { return "Module"; }

    /// Every parameter of this module and its children, with dotted names, in registration order.
    std::vector<std::pair<std::string, Variable>> named_parameters() const {
        std::vector<std::pair<std::string, Variable>> out;
        collect_parameters("", out);
        return out;
    }
    std::vector<Variable> parameters() const {
        std::vector<Variable> out;
        for (auto& [name, p] : named_parameters()) out.push_back(p);
        return out;
    }
    /// Every buffer of this module and its children, with dotted names.
    std::vector<std::pair<std::string, Tensor<float>>> named_buffers() const {
        std::vector<std::pair<std::string, Tensor<float>>> out;
        collect_buffers("", out);
        return out;
    }
    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }
    /// This module (path "") and every descendant, depth first, with dotted paths
    /// ("block1.half1"); the pointers are valid while this module lives.
    std::vector<std::pair<std::string, Module*>> named_modules() const {
        std::vector<std::pair<std::string, Module*>> out{{"", const_cast<Module*>(this)}};
        collect_modules("", out);
        return out;
    }

    /// Names other frameworks give this module's parameters and buffers, as (foreign prefix, own
    /// prefix) pairs relative to this module, e.g. ("layer1.0.", "block1.") for torchvision's
    /// ResNet-18. io::load_module uses them for a file's tensors whose names are not the module's.
    virtual std::vector<std::pair<std::string, std::string>> name_aliases() const { return {}; }

    /// True when forward(x) is exactly the children applied one after another in registration
    /// order. Such a composite needs no code of its own to be compiled for inference or written to
    /// a deployment file: both treat it as a Sequential of its named children.
    virtual bool is_chain() const { return false; }

    /// Training mode (batch statistics, dropout-like behaviour) for this module and its children.
    void train(bool on = true) {
        training_ = on;
        for (auto& [name, c] : children_) c->train(on);
    }
    void eval() { train(false); }
    bool is_training() const { return training_; }

    /// Freezes (false) or unfreezes (true) every parameter, e.g. for a teacher.
    void set_requires_grad(bool on) {
        for (auto& [name, p] : named_parameters()) p.set_requires_grad(on);
    }
    void zero_grad() {
        for (auto& [name, p] : named_parameters()) p.zero_grad();
    }
    /// Projects parameters back onto their constraint set after an optimiser step (e.g. latent
    /// binary weights clipped to [-1, 1]); recursive.
    void apply_constraints() {
        constrain();
        for (auto& [name, c] : children_) c->apply_constraints();
    }
    /// Total number of parameter elements.
    int64_t num_parameters() const {
        int64_t n = 0;
        for (auto& [name, p] : named_parameters()) n += p.numel();
        return n;
    }

protected:
    /// Registers a trainable parameter initialised with `init`, returns its handle.
    Variable register_parameter(std::string name, Tensor<float> init, bool requires_grad = true) {
        Variable v(std::move(init), requires_grad);
        parameters_.emplace_back(std::move(name), v);
        return v;
    }
    /// Registers a buffer (saved, not trained), returns its handle.
    Tensor<float> register_buffer(std::string name, Tensor<float> init) {
        buffers_.emplace_back(std::move(name), init);
        return init;
    }
    /// Registers a child module under `name`, returns it.
    template <class M>
    std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> child) {
        BNN_CHECK(child != nullptr, type_name(), ": register_module(\"", name, "\") got a null module");
        children_.emplace_back(std::move(name), child);
        return child;
    }
    /// Override to enforce constraints on this module's own parameters (see apply_constraints).
    virtual void constrain() {}

private:
    void collect_parameters(const std::string& prefix, std::vector<std::pair<std::string, Variable>>& out) const {
        for (auto& [name, p] : parameters_) out.emplace_back(prefix + name, p);
        for (auto& [name, c] : children_) c->collect_parameters(prefix + name + ".", out);
    }
    void collect_modules(const std::string& prefix, std::vector<std::pair<std::string, Module*>>& out) const {
        for (auto& [name, c] : children_) {
            out.emplace_back(prefix + name, c.get());
            c->collect_modules(prefix + name + ".", out);
        }
    }
    void collect_buffers(const std::string& prefix,
                         std::vector<std::pair<std::string, Tensor<float>>>& out) const {
        for (auto& [name, b] : buffers_) out.emplace_back(prefix + name, b);
        for (auto& [name, c] : children_) c->collect_buffers(prefix + name + ".", out);
    }

    bool training_ = true;
    std::vector<std::pair<std::string, Variable>> parameters_;
    std::vector<std::pair<std::string, Tensor<float>>> buffers_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace bnn::nn
