#pragma once
/// @file backward_hook.hpp
/// BackwardHook: lets a caller act while Variable::backward() runs, e.g. start sending a
/// parameter's gradient to other processes as soon as no later node can add to it.
///
/// While a hook is alive on a thread, backward() on that thread counts, for every leaf it
/// reaches, the tape nodes that write into the leaf's gradient, and calls
///   on_leaf_ready(leaf)  once per leaf, right after the last of those nodes ran (its gradient is
///                        final for this backward; the leaf handle shares the gradient),
///   on_node_done()       after every node (a place to poll pending communication),
///   on_backward_end()    once every node ran.
/// Without a hook, backward() pays one branch per node. Hooks nest like TapeProfiler: the
/// innermost alive one is called.
namespace bnn {

class Variable;

class BackwardHook {
public:
    BackwardHook() : enclosing_(active_slot()) { active_slot() = this; }
    virtual ~BackwardHook() { active_slot() = enclosing_; }
    BackwardHook(const BackwardHook&) = delete;
    BackwardHook& operator=(const BackwardHook&) = delete;

    /// The innermost hook alive on this thread, or nullptr.
    static BackwardHook* active() { return active_slot(); }

    virtual void on_leaf_ready(const Variable& leaf) = 0;
    virtual void on_node_done() {}
    virtual void on_backward_end() {}

private:
    static BackwardHook*& active_slot() {
        thread_local BackwardHook* active = nullptr;
        return active;
    }
    BackwardHook* enclosing_;
};

}  // namespace bnn
