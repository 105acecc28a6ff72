#pragma once
/// @file pool.hpp
/// MaxPool2d, AvgPool2d, GlobalAvgPool and Flatten in a module tree and a graph.
#include <memory>
#include <string>

#include "bnn/infer/int_stem_step.hpp"
#include "bnn/infer/module_type.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/nn/flatten.hpp"
#include "bnn/nn/pool.hpp"

namespace bnn::infer::modules {

/// A max pool of value x fused into the integer stem that produced it, directly or through a
/// batch norm (with its activation) that only the pool reads, when only these read the values:
/// returns the stem's value, now the pooled one, or -1 when there is nothing to fuse into.
inline int fuse_max_pool_into_int_stem(Lowering& l, int x, const nn::PoolWindow& w) {
    if (!l.fusable(x) || !IntStemStep::can_pool(w.kernel, w.padding)) return -1;
    if (auto* stem = dynamic_cast<IntStemStep*>(&l.graph().producer(x)); stem && !stem->pooled()) {
        stem->fuse_max_pool(nullptr, w.kernel, w.stride, w.padding);
        return x;
    }
    auto* bn = dynamic_cast<BatchNormStep*>(&l.graph().producer(x));
    if (!bn) return -1;
    const int y = l.graph().producer_inputs(x).at(0);
    auto* stem = l.fusable(y) ? dynamic_cast<IntStemStep*>(&l.graph().producer(y)) : nullptr;
    if (!stem || stem->pooled()) return -1;
    stem->fuse_max_pool(bn, w.kernel, w.stride, w.padding);
    l.fuse_away(x);
    return y;
}

/// A windowed pool: options kernel, stride and padding; one PoolStep (a max pool may fuse into
/// the integer stem).
template <class M>
ModuleType window_pool(const char* name, bool max) {
    return module_type<M>(
        name,
        [](const M& m, TreeWriter&) {
            return Json{{"kernel", m.window().kernel}, {"stride", m.window().stride}, {"padding", m.window().padding}};
        },
        [](TreeReader& r) {
            const int k = r.small("kernel", 1, 64), s = r.small("stride", 1, 64), p = r.small("padding", 0, 32);
            return std::make_shared<M>(k, s, p);
        },
        [max](Lowering& l, const M& m, const std::string& path, int x) {
            const auto& w = m.window();
            if (max) {
                const int y = fuse_max_pool_into_int_stem(l, x, w);
                if (y >= 0) return y;
            }
            return l.add(std::make_unique<PoolStep>(path, max, w.kernel, w.stride, w.padding), {x});
        });
}

inline ModuleType max_pool2d() { return window_pool<nn::MaxPool2d>("MaxPool2d", true); }
inline ModuleType avg_pool2d() { return window_pool<nn::AvgPool2d>("AvgPool2d", false); }

/// A module without options or parameters, lowered to one step S(path).
template <class M, class S>
ModuleType plain_module(const char* name) {
    return module_type<M>(
        name, [](const M&, TreeWriter&) { return Json::object(); }, [](TreeReader&) { return std::make_shared<M>(); },
        [](Lowering& l, const M&, const std::string& path, int x) { return l.add(std::make_unique<S>(path), {x}); });
}

inline ModuleType global_avg_pool() { return plain_module<nn::GlobalAvgPool, GlobalAvgPoolStep>("GlobalAvgPool"); }
inline ModuleType flatten() { return plain_module<nn::Flatten, FlattenStep>("Flatten"); }

}  // namespace bnn::infer::modules
