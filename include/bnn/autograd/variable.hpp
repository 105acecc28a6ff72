#pragma once
/// @file variable.hpp
/// Variable: a float tensor that takes part in automatic differentiation, and the tape.
///
/// The tape is dynamic (PyTorch's model): each differentiable op computes its output and, when
/// gradients are wanted, attaches a Node holding its inputs and a backward closure. backward()
/// walks the nodes in reverse topological order; each closure *accumulates* into its inputs'
/// gradients, so a Variable used twice (a residual branch) simply receives both contributions.
/// A TapeProfiler (tape_profiler.hpp) times those closures per op name; a BackwardHook
/// (backward_hook.hpp) hears when each leaf's gradient is final.
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "bnn/autograd/backward_hook.hpp"
#include "bnn/autograd/grad_mode.hpp"
#include "bnn/autograd/tape_profiler.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn {

class Variable;

namespace detail {
struct Node;

/// The autograd half of a Variable: what backward needs to route gradients. Tape nodes keep
/// only this half of their inputs, never the values, so an intermediate value is freed as soon
/// as no user handle and no backward closure (which captures exactly the tensors it needs)
/// refers to it; the tape then holds what PyTorch's would, not every activation.
struct GradState {
    Shape shape;                 // of the value, to allocate the gradient
    Tensor<float> grad;          // allocated on first use
    bool requires_grad = false;
    std::shared_ptr<Node> node;  // the op that made the value; null for leaves
};

struct VariableState {
    Tensor<float> value;  // undefined in the gradient-only handles that tape nodes hold
    std::shared_ptr<GradState> g;
};
}  // namespace detail

/// A handle to a value and its gradient. Copies share the same state (like shared_ptr).
class Variable {
public:
    /// An undefined Variable (defined() is false), e.g. an absent bias.
    Variable() = default;
    /// A leaf holding `value`; parameters pass requires_grad = true.
    explicit Variable(Tensor<float> value, bool requires_grad = false)
        : s_(std::make_shared<detail::VariableState>()) {
        s_->g = std::make_shared<detail::GradState>();
        s_->g->shape = value.shape();
        s_->g->requires_grad = requires_grad;
        s_->value = std::move(value);
    }

    bool defined() const { return s_ != nullptr; }
    const Tensor<float>& value() const { return state().value; }
    /// Mutable value, for optimisers and loaders that write in place. Never rebind it.
    Tensor<float>& value() { return state().value; }
    const Shape& shape() const { return state().value.defined() ? s_->value.shape() : s_->g->shape; }
    int64_t dim(int i) const { return shape()[i]; }
    int64_t numel() const { return shape().numel(); }
    /// The value of a one-element Variable (a loss).
    float item() const {
        BNN_CHECK(numel() == 1, "Variable::item: needs one element, got shape ", shape().str());
        return value()[0];
    }

    bool requires_grad() const { return grad_state().requires_grad; }
    /// Only meaningful for leaves (parameters); a frozen parameter sets false.
    void set_requires_grad(bool on) {
        BNN_CHECK(!grad_state().node, "Variable::set_requires_grad: only leaves can change it");
        grad_state().requires_grad = on;
    }
    bool has_grad() const { return grad_state().grad.defined(); }
    /// The gradient, allocated as zeros of the value's shape on first use.
    Tensor<float>& grad() {
        auto& g = grad_state();
        if (!g.grad.defined()) g.grad = Tensor<float>(shape());
        return g.grad;
    }
    /// For backward closures that produce an input's whole gradient at once: when this Variable
    /// has no gradient yet, `g` becomes it (storage shared, not copied or zero-filled; the caller
    /// must not write g afterwards) and true is returned; otherwise nothing changes, false is
    /// returned and the caller accumulates into grad() as usual.
    bool adopt_grad(const Tensor<float>& g) {
        auto& gs = grad_state();
        if (gs.grad.defined()) return false;
        expect_shape(g, shape(), "Variable::adopt_grad", "the gradient");
        gs.grad = g;
        return true;
    }
    /// Forgets the gradient (the next backward starts from zero).
    void zero_grad() {
        auto& g = grad_state();
        if (g.grad.defined()) g.grad.fill(0.f);
    }
    /// A leaf sharing this value, cut from the tape.
    Variable detach() const { return Variable(value(), false); }
    /// True when the Variable was made by an op that recorded a node.
    bool is_leaf() const { return !grad_state().node; }
    const std::shared_ptr<detail::Node>& node() const { return grad_state().node; }

    /// Back-propagates from this one-element Variable (seed 1).
    void backward();
    /// Back-propagates with the given seed gradient (same shape as the value).
    void backward(const Tensor<float>& seed);

    /// Identity of the shared gradient state, for graph walks and tests.
    const detail::GradState* id() const { return &grad_state(); }

private:
    friend Variable make_result(Tensor<float>, std::vector<Variable>,
                                std::function<void(const Tensor<float>&, std::vector<Variable>&)>,
                                const char*);
    detail::VariableState& state() const {
        BNN_CHECK(s_ != nullptr, "Variable: use of an undefined Variable");
        return *s_;
    }
    detail::GradState& grad_state() const { return *state().g; }
    /// A handle sharing only the gradient state (what tape nodes keep of their inputs).
    Variable gradient_only() const {
        Variable v;
        if (!s_) return v;
        v.s_ = std::make_shared<detail::VariableState>();
        v.s_->g = s_->g;
        return v;
    }
    std::shared_ptr<detail::VariableState> s_;
};

/// Backward closure: receives the gradient of the op's output and the op's inputs, and adds each
/// input's gradient into input.grad() for the inputs that require it.
using BackwardFn = std::function<void(const Tensor<float>& grad_out, std::vector<Variable>& inputs)>;

namespace detail {
struct Node {
    const char* name;  // the op, for error messages and debugging
    std::vector<Variable> inputs;
    BackwardFn backward;
};
}  // namespace detail

/// Wraps an op's output. Records a node when grad mode is on and any defined input requires a
/// gradient; otherwise the output is a plain leaf without gradient.
inline Variable make_result(Tensor<float> value, std::vector<Variable> inputs, BackwardFn backward,
                            const char* name) {
    Variable out(std::move(value), false);
    if (!grad_enabled()) return out;
    bool needed = false;
    for (const auto& in : inputs) needed = needed || (in.defined() && in.requires_grad());
    if (!needed) return out;
    for (auto& in : inputs) in = in.gradient_only();
    out.s_->g->requires_grad = true;
    out.s_->g->node = std::make_shared<detail::Node>(detail::Node{name, std::move(inputs), std::move(backward)});
    return out;
}

namespace detail {
/// Variables reachable from root through nodes, in topological order (inputs before outputs).
inline std::vector<Variable> topological_order(const Variable& root) {
    std::vector<Variable> order;
    std::unordered_set<const GradState*> seen;
    // Iterative DFS: deep networks must not overflow the stack.
    std::vector<std::pair<Variable, size_t>> stack{{root, 0}};
    seen.insert(root.id());
    while (!stack.empty()) {
        auto& [v, next] = stack.back();
        const auto& node = v.node();
        if (node && next < node->inputs.size()) {
            const Variable& in = node->inputs[next++];
            if (in.defined() && in.requires_grad() && seen.insert(in.id()).second) stack.push_back({in, 0});
        } else {
            order.push_back(v);
            stack.pop_back();
        }
    }
    return order;
}
}  // namespace detail

inline void Variable::backward() {
    BNN_CHECK(numel() == 1, "Variable::backward: without a seed the output must have one element, got ",
              shape().str());
    backward(Tensor<float>::full(shape(), 1.f));
}

inline void Variable::backward(const Tensor<float>& seed) {
    BNN_CHECK(requires_grad(), "Variable::backward: this value does not depend on anything that ",
              "requires a gradient");
    expect_shape(seed, shape(), "Variable::backward", "the seed");
    std::vector<Variable> order = detail::topological_order(*this);
    Tensor<float>& g = grad();
    for (int64_t i = 0; i < g.numel(); ++i) g[i] += seed[i];
    TapeProfiler* profiler = TapeProfiler::active();
    BackwardHook* hook = BackwardHook::active();
    // With a hook: how many nodes still write into each leaf's gradient.
    std::unordered_map<const detail::GradState*, int> writers_left;
    if (hook)
        for (const Variable& v : order)
            if (v.node())
                for (const Variable& in : v.node()->inputs)
                    if (in.defined() && in.requires_grad() && in.is_leaf()) ++writers_left[in.id()];
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        Variable& v = *it;
        auto node = v.node();
        if (!node) continue;  // a leaf: its gradient stays for the optimiser
        if (v.has_grad()) {
            if (profiler) {
                const double start = profiler->now();
                node->backward(v.grad(), node->inputs);
                profiler->record(node->name, profiler->now() - start);
            } else {
                node->backward(v.grad(), node->inputs);
            }
        }
        // The graph is used once: free saved tensors and intermediate gradients as we go, which
        // keeps peak memory at the forward's activations.
        auto& g = *v.s_->g;
        g.node.reset();
        g.grad = Tensor<float>();
        g.requires_grad = false;
        if (hook) {
            for (const Variable& in : node->inputs)
                if (in.defined() && in.requires_grad() && in.is_leaf() && --writers_left[in.id()] == 0)
                    hook->on_leaf_ready(in);
            hook->on_node_done();
        }
    }
    if (hook) hook->on_backward_end();
}

}  // namespace bnn
