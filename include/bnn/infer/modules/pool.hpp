#pragma once
/// @file pool.hpp
/// MaxPool2d, AvgPool2d, GlobalAvgPool and Flatten in a module tree and a graph.
#include <memory>
#include <string>

#include "bnn/infer/module_type.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/nn/flatten.hpp"
#include "bnn/nn/pool.hpp"

namespace bnn::infer::modules {

/// A windowed pool: options kernel, stride and padding; one PoolStep.
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
