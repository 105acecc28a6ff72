#pragma once
/// @file module_type.hpp
/// ModuleType: everything bnn needs to know about one kind of module beyond its C++ class, said
/// once: how it is described in a module tree (JSON options, io/module_tree.hpp), rebuilt from
/// that description (its parameters and buffers then load by name), and lowered into inference
/// steps (lowering.hpp). bnn's own types are listed in module_registry.hpp, one file each under
/// infer/modules/; a user registers their own with register_module (docs/adding-a-layer.md).
///
///     register_module(module_type<MyScale>(
///         "MyScale",
///         [](const MyScale& m, TreeWriter&) { return Json{{"channels", m.channels()}}; },
///         [](TreeReader& r) { return std::make_shared<MyScale>(r.integer("channels", 1, kMaxSize)); },
///         [](Lowering& l, const MyScale& m, const std::string& path, int x) { return l.add(..., {x}); }));
///
/// It lives in infer because lowering needs the steps; io's module tree reads it from here.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <set>
#include <string>
#include <typeindex>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include <nlohmann/json.hpp>

#include "bnn/core/error.hpp"
#include "bnn/infer/lowering.hpp"
#include "bnn/nn/module.hpp"

namespace bnn::infer {

using Json = nlohmann::json;

/// The largest channel or feature count a module tree may ask for, so that a hostile file
/// cannot make a module allocate huge tensors.
inline constexpr int64_t kMaxSize = int64_t{1} << 24;
/// How deeply module-tree nodes may nest.
inline constexpr int kMaxDepth = 64;

/// "<model>" for the root's empty path.
inline std::string shown_path(const std::string& path) { return path.empty() ? std::string("<model>") : path; }

/// An enum's names in a module tree, e.g. {{"zero", PadValue::Zero}, {"one", PadValue::One}}.
template <class E>
using EnumNames = std::initializer_list<std::pair<const char*, E>>;

/// The name of `value` in `names` ("?" when absent).
template <class E>
const char* name_of(EnumNames<E> names, E value) {
    for (const auto& [n, e] : names)
        if (e == value) return n;
    return "?";
}

class TreeWriter;
class TreeReader;

/// How one module type is described, rebuilt and lowered (see the file comment).
struct ModuleType {
    std::string name;      ///< its "type" in a module tree
    std::type_index type;  ///< typeid of the class
    /// True for the class and its subclasses (a subclass that is not registered itself is taken
    /// for its registered base, as its forward is assumed to be the base's).
    std::function<bool(const nn::Module&)> is;
    /// Its options (a JSON object), or null for a node without options; further fields of the
    /// node (children) through the writer.
    std::function<Json(const nn::Module&, TreeWriter&)> describe;
    /// A fresh module from its node (parameters initialised; the caller loads them).
    std::function<std::shared_ptr<nn::Module>(TreeReader&)> build;
    /// Its steps applied to value x at `path`; returns the output value.
    std::function<int(Lowering&, const nn::Module&, const std::string& path, int x)> lower;
};

/// A ModuleType from functions that take the module as an M.
template <class M>
ModuleType module_type(std::string name, std::function<Json(const M&, TreeWriter&)> describe,
                       std::function<std::shared_ptr<nn::Module>(TreeReader&)> build,
                       std::function<int(Lowering&, const M&, const std::string&, int)> lower) {
    static_assert(std::is_base_of_v<nn::Module, M>, "module_type<M>: M must derive from nn::Module");
    return ModuleType{
        .name = std::move(name),
        .type = std::type_index(typeid(M)),
        .is = [](const nn::Module& m) { return dynamic_cast<const M*>(&m) != nullptr; },
        .describe = [f = std::move(describe)](const nn::Module& m, TreeWriter& w) { return f(static_cast<const M&>(m), w); },
        .build = std::move(build),
        .lower = [f = std::move(lower)](Lowering& l, const nn::Module& m, const std::string& path, int x) {
            return f(l, static_cast<const M&>(m), path, x);
        }};
}

/// Writes one module-tree node: describe functions ask it whether the tree is for a deployment
/// file and describe their children through it.
class TreeWriter {
public:
    using DescribeChild = std::function<Json(const nn::Module&, bool deployed, const std::string& path)>;
    TreeWriter(bool deployed, std::string path, DescribeChild describe)
        : deployed_(deployed), path_(std::move(path)), describe_(std::move(describe)) {}

    /// True when describing for a deployment file: binary convs are described as load_deployed
    /// rebuilds them (fully binary, their final scale in alpha).
    bool deployed() const { return deployed_; }
    /// The node of `child`, this module's child `name`.
    Json describe(const nn::Module& child, const std::string& name) const {
        return describe_(child, deployed_, join_path(path_, name));
    }
    /// Sets another field of this node ("children", "body").
    void set(const std::string& key, Json value) { fields_[key] = std::move(value); }
    /// The fields set so far.
    const Json& fields() const { return fields_; }

private:
    bool deployed_;
    std::string path_;
    DescribeChild describe_;
    Json fields_ = Json::object();
};

/// Reads one module-tree node: its options, checking names, value types and ranges, and its
/// children. Every error names the module's path and type.
class TreeReader {
public:
    using BuildChild = std::function<std::shared_ptr<nn::Module>(const Json& node, const std::string& path)>;
    TreeReader(const Json& node, std::string path, std::string type, BuildChild build, bool deployed = false)
        : node_(node), path_(std::move(path)), type_(std::move(type)), build_(std::move(build)), deployed_(deployed) {
        if (node.contains("options")) {
            check(node["options"].is_object(), "'options' must be an object");
            options_ = node["options"];
        } else {
            options_ = Json::object();
        }
    }

    int64_t integer(const char* key) {
        const Json& v = get(key);
        check(v.is_number_integer(), "option '", key, "' must be an integer, got ", v.dump());
        return v.get<int64_t>();
    }
    int64_t integer(const char* key, int64_t lo, int64_t hi) {
        const int64_t v = integer(key);
        check(v >= lo && v <= hi, "option '", key, "' must be in [", lo, ", ", hi, "], got ", v);
        return v;
    }
    /// An integer option that fits an int (strides, kernel sizes).
    int small(const char* key, int lo, int hi) { return static_cast<int>(integer(key, lo, hi)); }
    float number(const char* key) {
        const Json& v = get(key);
        check(v.is_number(), "option '", key, "' must be a number, got ", v.dump());
        return v.get<float>();
    }
    bool boolean(const char* key) {
        const Json& v = get(key);
        check(v.is_boolean(), "option '", key, "' must be true or false, got ", v.dump());
        return v.get<bool>();
    }
    template <class E>
    E choice(const char* key, EnumNames<E> names) {
        const Json& v = get(key);
        std::string known;
        for (const auto& [n, e] : names) {
            if (v.is_string() && v.get<std::string>() == n) return e;
            known += (known.empty() ? "" : ", ") + std::string(n);
        }
        fail("option '", key, "' must be one of ", known, ", got ", v.dump());
    }

    /// True when building from a deployment file: binary convs then hold their signs alone
    /// (BinaryConv2dOptions::deployed), which load_deployed sets from the file.
    bool deployed() const { return deployed_; }
    /// The whole node, for fields beside the options ("children", "body").
    const Json& node() const { return node_; }
    /// Builds the node `child`, this module's child `name`.
    std::shared_ptr<nn::Module> build(const Json& child, const std::string& name) const {
        return build_(child, join_path(path_, name));
    }

    /// Every option was read: an unknown one means a file from another bnn version.
    void finish() const {
        for (const auto& [k, v] : options_.items())
            check(read_.count(k), "unknown option '", k, "' (this build of bnn does not know it)");
    }
    template <class... P>
    [[noreturn]] void fail(const P&... p) const {
        ::bnn::fail("module tree: '", shown_path(path_), "' (", type_, "): ", p...);
    }
    template <class... P>
    void check(bool ok, const P&... p) const {
        if (!ok) fail(p...);
    }

private:
    const Json& get(const char* key) {
        check(options_.contains(key), "option '", key, "' is missing");
        read_.insert(key);
        return options_[key];
    }
    const Json& node_;
    Json options_;
    std::string path_, type_;
    BuildChild build_;
    bool deployed_;
    std::set<std::string> read_;
};

}  // namespace bnn::infer
