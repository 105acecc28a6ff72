#pragma once
/// @file linear.hpp
/// Linear and ChannelGate in a module tree and a graph.
#include <memory>
#include <string>

#include "bnn/infer/modules/conv2d.hpp"
#include "bnn/nn/channel_gate.hpp"
#include "bnn/nn/linear.hpp"

namespace bnn::infer::modules {

inline ModuleType linear() {
    return module_type<nn::Linear>(
        "Linear",
        [](const nn::Linear& m, TreeWriter&) {
            return Json{{"in_features", m.in_features()}, {"out_features", m.out_features()}, {"bias", m.bias.defined()}};
        },
        [](TreeReader& r) {
            return std::make_shared<nn::Linear>(r.integer("in_features", 1, kMaxSize),
                                                r.integer("out_features", 1, kMaxSize), r.boolean("bias"));
        },
        [](Lowering& l, const nn::Linear& m, const std::string& path, int x) {
            return l.add(std::make_unique<LinearStep>(path, m.weight.value().clone(), copy_or_empty(m.bias),
                                                      l.options().dense == DensePrecision::int8),
                         {x});
        });
}

inline ModuleType channel_gate() {
    return module_type<nn::ChannelGate>(
        "ChannelGate",
        [](const nn::ChannelGate& m, TreeWriter&) {
            return Json{{"in_channels", m.in_channels()},
                        {"out_channels", m.out_channels()},
                        {"hidden_channels", m.hidden_channels()}};
        },
        [](TreeReader& r) {
            return std::make_shared<nn::ChannelGate>(
                nn::ChannelGateOptions{.in_channels = r.integer("in_channels", 1, kMaxSize),
                                       .out_channels = r.integer("out_channels", 1, kMaxSize),
                                       .hidden_channels = r.integer("hidden_channels", 1, kMaxSize)});
        },
        [](Lowering& l, const nn::ChannelGate& m, const std::string& path, int x) {
            return l.add(std::make_unique<GateStep>(path, m.weight1.value().clone(), m.weight2.value().clone()), {x});
        });
}

}  // namespace bnn::infer::modules
