#pragma once
/// @file module_tree.hpp
/// A module tree as JSON: the types and options of a network's modules, enough to rebuild the
/// network without its C++ code (deployment files store it beside the weights, deploy.hpp).
///
///   {"type": "Sequential", "children": [["stem", {...}], ["block1", {...}], ...]}
///   {"type": "BinaryConv2d", "options": {"in_channels": 64, "out_channels": 64, ...}}
///   {"type": "Residual", "body": {...}, "shortcut": {...} | null}
///
/// Each module type says how it is described and rebuilt in its registration
/// (infer/module_registry.hpp): bnn's own modules and those a user registers. A module of no
/// registered type whose is_chain() is true (ResNet18 of the examples, a user's composite) is
/// written as a Sequential of its named children, which computes the same and keeps the
/// parameter names. Reading checks every type, option name and value, and reports the module
/// path of what is wrong.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "bnn/core/error.hpp"
#include "bnn/infer/module_registry.hpp"
#include "bnn/nn/module.hpp"

namespace bnn::io {

using Json = nlohmann::json;
using infer::kMaxDepth;

/// The JSON description of `m` (see the file comment). With `deployed`, binary convs are
/// described as deployment files rebuild them: fully binary, their final scale in alpha.
/// bnn::Error naming the path of a module of no registered type that is not a chain.
inline Json describe_module(const nn::Module& m, bool deployed = false, const std::string& path = "") {
    auto type = infer::find_module_type(m);
    if (!type && m.is_chain()) type = infer::find_module_type("Sequential");
    BNN_CHECK(type != nullptr, "describe_module: '", infer::shown_path(path), "' is a ", m.type_name(),
              ", which a module tree cannot describe: build it from bnn's modules, register its type "
              "(infer::register_module), or override is_chain() if its forward applies its children in order");
    infer::TreeWriter writer(deployed, path, [](const nn::Module& c, bool d, const std::string& p) {
        return describe_module(c, d, p);
    });
    Json options = type->describe(m, writer);
    Json node = writer.fields();
    node["type"] = type->name;
    if (!options.is_null()) node["options"] = std::move(options);
    return node;
}

/// Rebuilds the modules of a describe_module() tree (fresh parameters: load them afterwards).
/// `deployed`: the tree of a deployment file, whose binary convs hold their signs alone.
inline std::shared_ptr<nn::Module> build_module(const Json& node, const std::string& path = "", int depth = 0,
                                                bool deployed = false) {
    const std::string where = infer::shown_path(path);
    BNN_CHECK(depth <= kMaxDepth, "module tree: '", where, "' is nested deeper than ", kMaxDepth, " levels");
    BNN_CHECK(node.is_object() && node.contains("type") && node["type"].is_string(), "module tree: '", where,
              "' must be an object with a string 'type', got ", node.dump().substr(0, 200));
    const std::string name = node["type"].get<std::string>();
    infer::TreeReader reader(
        node, path, name,
        [deployed, depth](const Json& child, const std::string& child_path) {
            return build_module(child, child_path, depth + 1, deployed);
        },
        deployed);
    const auto type = infer::find_module_type(name);
    if (!type) reader.fail("unknown module type (this build of bnn knows ", infer::registered_module_names(), ")");
    std::shared_ptr<nn::Module> m;
    try {
        m = type->build(reader);
    } catch (const nlohmann::json::exception& e) {
        reader.fail("malformed JSON value: ", e.what());
    } catch (const Error& e) {
        const std::string what = e.what();
        if (what.rfind("module tree:", 0) == 0) throw;
        reader.fail(what);  // a constructor's own check, now with the path
    }
    reader.finish();
    return m;
}

}  // namespace bnn::io
