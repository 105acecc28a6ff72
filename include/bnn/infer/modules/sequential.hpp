#pragma once
/// @file sequential.hpp
/// Sequential and Residual in a module tree and a graph:
///   {"type": "Sequential", "children": [["stem", {...}], ["block1", {...}], ...]}
///   {"type": "Residual", "body": {...}, "shortcut": {...} | null}
/// A module that is not registered but whose is_chain() is true is written as a Sequential of
/// its children too (module_registry.hpp).
#include <memory>
#include <string>

#include "bnn/infer/module_type.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/infer/binary_conv_node.hpp"
#include "bnn/nn/residual.hpp"
#include "bnn/nn/sequential.hpp"

namespace bnn::infer::modules {

/// The children of a chain as the "children" field of its node.
inline Json describe_children(const nn::Module& m, TreeWriter& w) {
    Json children = Json::array();
    for (const auto& [name, child] : m.children()) children.push_back(Json::array({name, w.describe(*child, name)}));
    w.set("children", std::move(children));
    return nullptr;
}

inline ModuleType sequential() {
    return module_type<nn::Sequential>(
        "Sequential", describe_children,
        [](TreeReader& r) {
            const Json& node = r.node();
            r.check(node.contains("children") && node["children"].is_array(), "'children' must be an array");
            auto seq = std::make_shared<nn::Sequential>();
            for (const Json& c : node["children"]) {
                r.check(c.is_array() && c.size() == 2 && c[0].is_string(), "each child must be [name, module]");
                const std::string name = c[0].get<std::string>();
                r.check(!name.empty() && name.find('.') == std::string::npos, "child name '", name,
                        "' must be non-empty without dots");
                seq->push_back(name, r.build(c[1], name));
            }
            return seq;
        },
        [](Lowering& l, const nn::Sequential& m, const std::string& path, int x) { return l.chain(m, path, x); });
}

inline ModuleType residual() {
    return module_type<nn::Residual>(
        "Residual",
        [](const nn::Residual& m, TreeWriter& w) {
            w.set("body", w.describe(*m.body, "body"));
            w.set("shortcut", m.shortcut ? w.describe(*m.shortcut, "shortcut") : Json(nullptr));
            return Json(nullptr);
        },
        [](TreeReader& r) {
            const Json& node = r.node();
            r.check(node.contains("body"), "'body' is missing");
            auto body = r.build(node["body"], "body");
            std::shared_ptr<nn::Module> shortcut;
            if (node.contains("shortcut") && !node["shortcut"].is_null()) shortcut = r.build(node["shortcut"], "shortcut");
            return std::make_shared<nn::Residual>(body, shortcut);
        },
        [](Lowering& l, const nn::Residual& m, const std::string& path, int x) {
            l.share(x);
            const int s = m.shortcut ? l.lower(*m.shortcut, join_path(path, "shortcut"), x) : x;
            const int y = l.lower(*m.body, join_path(path, "body"), x);
            // The addition goes into a fully binary conv's epilogue when it produced the body's output.
            if (l.fusable(y))
                if (auto* node = dynamic_cast<BinaryConvNode*>(&l.graph().producer(y)); node && !node->has_residual()) {
                    node->fuse_residual();
                    l.graph().producer_inputs(y).push_back(s);
                    return y;
                }
            return l.add(std::make_unique<AddStep>(path, false), {y, s});
        });
}

}  // namespace bnn::infer::modules
