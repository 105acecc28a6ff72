#pragma once
/// @file module_tree.hpp
/// A module tree as JSON: the types and options of a network's modules, enough to rebuild the
/// network without its C++ code (deployment files store it beside the weights, deploy.hpp).
///
///   {"type": "Sequential", "children": [["stem", {...}], ["block1", {...}], ...]}
///   {"type": "BinaryConv2d", "options": {"in_channels": 64, "out_channels": 64, ...}}
///   {"type": "Residual", "body": {...}, "shortcut": {...} | null}
///
/// Every module bnn ships is described by its options. A module of another type whose
/// is_chain() is true (ResNet18 of the examples, a user's composite) is written as a Sequential
/// of its named children, which computes the same and keeps the parameter names. Reading checks
/// every type, option name and value, and reports the module path of what is wrong.
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "bnn/core/error.hpp"
#include "bnn/nn/activation.hpp"
#include "bnn/nn/basic_block.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/binary_basic_block.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/binary_half_block.hpp"
#include "bnn/nn/channel_gate.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/downsample.hpp"
#include "bnn/nn/flatten.hpp"
#include "bnn/nn/linear.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/nn/pool.hpp"
#include "bnn/nn/residual.hpp"
#include "bnn/nn/sequential.hpp"

namespace bnn::io {

using Json = nlohmann::json;

namespace detail {

inline std::string shown(const std::string& path) { return path.empty() ? std::string("<model>") : path; }
inline std::string child_path(const std::string& path, const std::string& name) {
    return path.empty() ? name : path + "." + name;
}

inline const char* mode_name(nn::BinaryMode m) {
    switch (m) {
        case nn::BinaryMode::SoftActivations: return "soft_activations";
        case nn::BinaryMode::BinaryActivations: return "binary_activations";
        case nn::BinaryMode::FullyBinary: return "fully_binary";
    }
    return "?";
}
inline const char* scale_name(nn::WeightScale s) {
    switch (s) {
        case nn::WeightScale::None: return "none";
        case nn::WeightScale::MeanAbs: return "mean_abs";
        case nn::WeightScale::Learned: return "learned";
        case nn::WeightScale::Alpha: return "alpha";
    }
    return "?";
}

/// Reads the options object of one module, checking names and value types.
class OptionReader {
public:
    OptionReader(const Json& node, std::string path, std::string type) : path_(std::move(path)), type_(std::move(type)) {
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
    E choice(const char* key, std::initializer_list<std::pair<const char*, E>> names) {
        const Json& v = get(key);
        std::string known;
        for (const auto& [n, e] : names) {
            if (v.is_string() && v.get<std::string>() == n) return e;
            known += (known.empty() ? "" : ", ") + std::string(n);
        }
        fail("option '", key, "' must be one of ", known, ", got ", v.dump());
    }
    /// Every option was read: an unknown one means a file from another bnn version.
    void finish() const {
        for (const auto& [k, v] : options_.items())
            check(read_.count(k), "unknown option '", k, "' (this build of bnn does not know it)");
    }
    template <class... P>
    [[noreturn]] void fail(const P&... p) const {
        ::bnn::fail("module tree: '", shown(path_), "' (", type_, "): ", p...);
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
    Json options_;
    std::string path_, type_;
    std::set<std::string> read_;
};

inline Json half_block_options(const nn::BinaryHalfBlockOptions& o, const nn::BinaryConv2d& conv, bool deployed) {
    return {{"in_channels", o.in_channels},
            {"out_channels", o.out_channels},
            {"stride", o.stride},
            {"kernel_size", o.kernel_size},
            {"scale", o.scale == nn::BlockScale::Gate ? "gate" : "alpha"},
            {"gate_reduction", o.gate_reduction},
            {"gate_hidden", o.gate_hidden},
            {"pad_value", o.pad_value == nn::PadValue::One ? "one" : "zero"},
            {"mode", mode_name(deployed ? nn::BinaryMode::FullyBinary : conv.mode())},
            {"conv_scale", scale_name(deployed ? nn::WeightScale::Alpha : conv.options().scale)}};
}

constexpr int kMaxDepth = 64;

}  // namespace detail

/// The JSON description of `m` (see the file comment). With `deployed`, binary convs are
/// described as deployment files rebuild them: fully binary, their final scale in alpha.
/// bnn::Error naming the path of a module that is neither bnn's nor a chain.
inline Json describe_module(const nn::Module& m, bool deployed = false, const std::string& path = "") {
    using detail::child_path;
    auto node = [&](const char* type, Json options) { return Json{{"type", type}, {"options", std::move(options)}}; };
    if (auto* c = dynamic_cast<const nn::Conv2d*>(&m)) {
        const auto& o = c->options();
        return node("Conv2d", {{"in_channels", o.in_channels}, {"out_channels", o.out_channels},
                               {"kernel_size", o.kernel_size}, {"stride", o.stride}, {"padding", o.padding},
                               {"bias", o.bias}});
    }
    if (auto* c = dynamic_cast<const nn::BinaryConv2d*>(&m)) {
        const auto& o = c->options();
        return node("BinaryConv2d",
                    {{"in_channels", o.in_channels}, {"out_channels", o.out_channels}, {"kernel_size", o.kernel_size},
                     {"stride", o.stride}, {"padding", o.padding},
                     {"pad_value", o.pad_value == nn::PadValue::One ? "one" : "zero"},
                     {"mode", detail::mode_name(deployed ? nn::BinaryMode::FullyBinary : c->mode())},
                     {"scale", detail::scale_name(deployed ? nn::WeightScale::Alpha : o.scale)}});
    }
    if (auto* b = dynamic_cast<const nn::BatchNorm2d*>(&m))
        return node("BatchNorm2d", {{"channels", b->channels()}, {"momentum", b->momentum()}, {"eps", b->eps()}});
    if (auto* l = dynamic_cast<const nn::Linear*>(&m))
        return node("Linear", {{"in_features", l->in_features()}, {"out_features", l->out_features()},
                               {"bias", l->bias.defined()}});
    if (auto* p = dynamic_cast<const nn::PReLU*>(&m)) return node("PReLU", {{"channels", p->weight.numel()}});
    if (dynamic_cast<const nn::ReLU*>(&m)) return node("ReLU", Json::object());
    if (dynamic_cast<const nn::Tanh*>(&m)) return node("Tanh", Json::object());
    if (dynamic_cast<const nn::Sigmoid*>(&m)) return node("Sigmoid", Json::object());
    if (auto* h = dynamic_cast<const nn::Hardtanh*>(&m)) return node("Hardtanh", {{"lo", h->lo()}, {"hi", h->hi()}});
    if (auto* p = dynamic_cast<const nn::MaxPool2d*>(&m))
        return node("MaxPool2d", {{"kernel", p->window().kernel}, {"stride", p->window().stride},
                                  {"padding", p->window().padding}});
    if (auto* p = dynamic_cast<const nn::AvgPool2d*>(&m))
        return node("AvgPool2d", {{"kernel", p->window().kernel}, {"stride", p->window().stride},
                                  {"padding", p->window().padding}});
    if (dynamic_cast<const nn::GlobalAvgPool*>(&m)) return node("GlobalAvgPool", Json::object());
    if (dynamic_cast<const nn::Flatten*>(&m)) return node("Flatten", Json::object());
    if (auto* g = dynamic_cast<const nn::ChannelGate*>(&m))
        return node("ChannelGate", {{"in_channels", g->in_channels()}, {"out_channels", g->out_channels()},
                                    {"hidden_channels", g->hidden_channels()}});
    if (auto* d = dynamic_cast<const nn::Downsample*>(&m))
        return node("Downsample", {{"in_channels", d->options().in_channels},
                                   {"out_channels", d->options().out_channels}, {"stride", d->options().stride}});
    if (auto* h = dynamic_cast<const nn::BinaryHalfBlock*>(&m))
        return node("BinaryHalfBlock", detail::half_block_options(h->options(), *h->conv, deployed));
    if (auto* b = dynamic_cast<const nn::BinaryBasicBlock*>(&m))
        return node("BinaryBasicBlock", detail::half_block_options(b->options(), *b->half1->conv, deployed));
    if (auto* b = dynamic_cast<const nn::BasicBlock*>(&m))
        return node("BasicBlock", {{"in_channels", b->options().in_channels},
                                   {"out_channels", b->options().out_channels}, {"stride", b->options().stride}});
    if (auto* r = dynamic_cast<const nn::Residual*>(&m))
        return Json{{"type", "Residual"},
                    {"body", describe_module(*r->body, deployed, child_path(path, "body"))},
                    {"shortcut", r->shortcut ? describe_module(*r->shortcut, deployed, child_path(path, "shortcut"))
                                             : Json(nullptr)}};
    if (m.is_chain()) {  // Sequential, or a composite that applies its children in order
        Json children = Json::array();
        for (const auto& [name, child] : m.children())
            children.push_back(Json::array({name, describe_module(*child, deployed, child_path(path, name))}));
        return Json{{"type", "Sequential"}, {"children", std::move(children)}};
    }
    ::bnn::fail("describe_module: '", detail::shown(path), "' is a ", m.type_name(),
                        ", which a module tree cannot describe: build it from bnn's modules, or override is_chain() "
                        "if its forward applies its children in order");
}

/// Rebuilds the modules of a describe_module() tree (fresh parameters: load them afterwards).
inline std::shared_ptr<nn::Module> build_module(const Json& node, const std::string& path = "", int depth = 0) {
    using detail::child_path;
    const std::string where = detail::shown(path);
    BNN_CHECK(depth <= detail::kMaxDepth, "module tree: '", where, "' is nested deeper than ", detail::kMaxDepth, " levels");
    BNN_CHECK(node.is_object() && node.contains("type") && node["type"].is_string(), "module tree: '", where,
              "' must be an object with a string 'type', got ", node.dump().substr(0, 200));
    const std::string type = node["type"].get<std::string>();
    detail::OptionReader o(node, path, type);
    std::shared_ptr<nn::Module> m;
    auto mode = [&](const char* key) {
        return o.choice<nn::BinaryMode>(key, {{"soft_activations", nn::BinaryMode::SoftActivations},
                                              {"binary_activations", nn::BinaryMode::BinaryActivations},
                                              {"fully_binary", nn::BinaryMode::FullyBinary}});
    };
    auto weight_scale = [&](const char* key) {
        return o.choice<nn::WeightScale>(key, {{"none", nn::WeightScale::None}, {"mean_abs", nn::WeightScale::MeanAbs},
                                               {"learned", nn::WeightScale::Learned}, {"alpha", nn::WeightScale::Alpha}});
    };
    auto pad_value = [&](const char* key) {
        return o.choice<nn::PadValue>(key, {{"zero", nn::PadValue::Zero}, {"one", nn::PadValue::One}});
    };
    constexpr int64_t big = int64_t{1} << 24;  // bounds sizes so a hostile file cannot ask for huge tensors
    auto half_options = [&] {
        nn::BinaryHalfBlockOptions h;
        h.in_channels = o.integer("in_channels", 1, big);
        h.out_channels = o.integer("out_channels", 1, big);
        h.stride = static_cast<int>(o.integer("stride", 1, 64));
        h.kernel_size = static_cast<int>(o.integer("kernel_size", 1, 64));
        h.scale = o.choice<nn::BlockScale>("scale", {{"alpha", nn::BlockScale::Alpha}, {"gate", nn::BlockScale::Gate}});
        h.gate_reduction = o.integer("gate_reduction", 1, big);
        h.gate_hidden = o.integer("gate_hidden", 0, big);
        h.pad_value = pad_value("pad_value");
        h.mode = mode("mode");
        h.conv_scale = weight_scale("conv_scale");
        return h;
    };
    try {
        if (type == "Sequential") {
            auto seq = std::make_shared<nn::Sequential>();
            o.check(node.contains("children") && node["children"].is_array(), "'children' must be an array");
            for (const Json& c : node["children"]) {
                o.check(c.is_array() && c.size() == 2 && c[0].is_string(), "each child must be [name, module]");
                const std::string name = c[0].get<std::string>();
                o.check(!name.empty() && name.find('.') == std::string::npos, "child name '", name,
                        "' must be non-empty without dots");
                seq->push_back(name, build_module(c[1], child_path(path, name), depth + 1));
            }
            m = seq;
        } else if (type == "Residual") {
            o.check(node.contains("body"), "'body' is missing");
            auto body = build_module(node["body"], child_path(path, "body"), depth + 1);
            std::shared_ptr<nn::Module> shortcut;
            if (node.contains("shortcut") && !node["shortcut"].is_null())
                shortcut = build_module(node["shortcut"], child_path(path, "shortcut"), depth + 1);
            m = std::make_shared<nn::Residual>(body, shortcut);
        } else if (type == "Conv2d") {
            m = std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = o.integer("in_channels", 1, big),
                                                               .out_channels = o.integer("out_channels", 1, big),
                                                               .kernel_size = static_cast<int>(o.integer("kernel_size", 1, 64)),
                                                               .stride = static_cast<int>(o.integer("stride", 1, 64)),
                                                               .padding = static_cast<int>(o.integer("padding", 0, 64)),
                                                               .bias = o.boolean("bias")});
        } else if (type == "BinaryConv2d") {
            nn::BinaryConv2dOptions b;
            b.in_channels = o.integer("in_channels", 1, big);
            b.out_channels = o.integer("out_channels", 1, big);
            b.kernel_size = static_cast<int>(o.integer("kernel_size", 1, 64));
            b.stride = static_cast<int>(o.integer("stride", 1, 64));
            b.padding = static_cast<int>(o.integer("padding", 0, 64));
            b.pad_value = pad_value("pad_value");
            b.mode = mode("mode");
            b.scale = weight_scale("scale");
            m = std::make_shared<nn::BinaryConv2d>(b);
        } else if (type == "BatchNorm2d") {
            m = std::make_shared<nn::BatchNorm2d>(o.integer("channels", 1, big), o.number("momentum"), o.number("eps"));
        } else if (type == "Linear") {
            m = std::make_shared<nn::Linear>(o.integer("in_features", 1, big), o.integer("out_features", 1, big),
                                             o.boolean("bias"));
        } else if (type == "PReLU") {
            m = std::make_shared<nn::PReLU>(o.integer("channels", 1, big));
        } else if (type == "ReLU") {
            m = std::make_shared<nn::ReLU>();
        } else if (type == "Tanh") {
            m = std::make_shared<nn::Tanh>();
        } else if (type == "Sigmoid") {
            m = std::make_shared<nn::Sigmoid>();
        } else if (type == "Hardtanh") {
            m = std::make_shared<nn::Hardtanh>(o.number("lo"), o.number("hi"));
        } else if (type == "MaxPool2d" || type == "AvgPool2d") {
            const int k = static_cast<int>(o.integer("kernel", 1, 64)), s = static_cast<int>(o.integer("stride", 1, 64));
            const int p = static_cast<int>(o.integer("padding", 0, 32));
            if (type == "MaxPool2d") m = std::make_shared<nn::MaxPool2d>(k, s, p);
            else m = std::make_shared<nn::AvgPool2d>(k, s, p);
        } else if (type == "GlobalAvgPool") {
            m = std::make_shared<nn::GlobalAvgPool>();
        } else if (type == "Flatten") {
            m = std::make_shared<nn::Flatten>();
        } else if (type == "ChannelGate") {
            m = std::make_shared<nn::ChannelGate>(nn::ChannelGateOptions{.in_channels = o.integer("in_channels", 1, big),
                                                                         .out_channels = o.integer("out_channels", 1, big),
                                                                         .hidden_channels = o.integer("hidden_channels", 1, big)});
        } else if (type == "Downsample") {
            m = std::make_shared<nn::Downsample>(nn::DownsampleOptions{.in_channels = o.integer("in_channels", 1, big),
                                                                       .out_channels = o.integer("out_channels", 1, big),
                                                                       .stride = static_cast<int>(o.integer("stride", 1, 64))});
        } else if (type == "BinaryHalfBlock") {
            m = std::make_shared<nn::BinaryHalfBlock>(half_options());
        } else if (type == "BinaryBasicBlock") {
            m = std::make_shared<nn::BinaryBasicBlock>(half_options());
        } else if (type == "BasicBlock") {
            m = std::make_shared<nn::BasicBlock>(nn::BasicBlockOptions{.in_channels = o.integer("in_channels", 1, big),
                                                                       .out_channels = o.integer("out_channels", 1, big),
                                                                       .stride = static_cast<int>(o.integer("stride", 1, 64))});
        } else {
            o.fail("unknown module type (this build of bnn knows Sequential, Residual, Conv2d, BinaryConv2d, "
                   "BatchNorm2d, Linear, PReLU, ReLU, Tanh, Sigmoid, Hardtanh, MaxPool2d, AvgPool2d, GlobalAvgPool, "
                   "Flatten, ChannelGate, Downsample, BinaryHalfBlock, BinaryBasicBlock, BasicBlock)");
        }
    } catch (const nlohmann::json::exception& e) {
        o.fail("malformed JSON value: ", e.what());
    } catch (const Error& e) {
        const std::string what = e.what();
        if (what.rfind("module tree:", 0) == 0) throw;
        o.fail(what);  // a constructor's own check, now with the path
    }
    o.finish();
    return m;
}

}  // namespace bnn::io
