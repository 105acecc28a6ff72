#pragma once
/// @file deploy.hpp
/// Deployment files: a trained binary network in one self-describing safetensors file. Every
/// nn::BinaryConv2d is stored as its weight signs packed 1 bit per weight with its final output
/// scale α; every other parameter and buffer (stem, BN, PReLU, gates, shortcuts, classifier)
/// stays fp32; the module tree (module_tree.hpp) is stored as JSON in the metadata, so
/// load_deployed() rebuilds the network without its C++ code and infer::compile() runs it.
///
/// File layout:
///   "<conv>.sign_bits"  U64 [Cout*KH*KW, ceil(Cin/64)]  bit c%64 of word c/64 = sign(W[o,kh,kw,c]) >= 0
///   "<conv>.scale"      F32 [Cout]                       α: the conv's final per-channel factor
///   "<conv>.geometry"   I32 [6]                          Cout, KH, KW, Cin, stride, padding
///   "<name>"            F32                              every other parameter and buffer, by dotted name
///   __metadata__        {"format": "bnn-deploy-2", "module_tree": <JSON>, ...the caller's entries}
///
/// A rebuilt binary conv is deployed (BinaryConv2dOptions::deployed): fully binary with
/// WeightScale::Folded, its weights the file's sign bits packed straight into the XNOR kernel's
/// layout (never ±1 floats; compiled graphs share them) and alpha the stored scale, so it computes what the exported conv computed. The file's other tensors are
/// copied into the rebuilt modules and freed once loaded.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <variant>

#include "bnn/core/bit_tensor.hpp"
#include "bnn/core/error.hpp"
#include "bnn/io/module_tree.hpp"
#include "bnn/io/safetensors.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/module.hpp"

namespace bnn::io {

inline constexpr const char* kDeployFormat = "bnn-deploy-2";

/// Writes `model` for deployment (see the file layout). Every binary conv must be FullyBinary,
/// which is what is deployed. `metadata` entries (class names, input normalization and size)
/// are stored beside the module tree.
inline void save_deployed(const std::string& path, const nn::Module& model, Metadata metadata = {}) {
    NamedTensors tensors;
    std::set<std::string> packed;  // parameters stored as bits and scale
    for (const auto& [name, m] : model.named_modules()) {
        const auto* conv = dynamic_cast<const nn::BinaryConv2d*>(m);
        if (!conv) continue;
        BNN_CHECK(conv->mode() == nn::BinaryMode::FullyBinary, "save_deployed: binary conv '", name,
                  "' must be in FullyBinary mode to be deployed (its real-weight modes compute something else)");
        for (const auto& [pname, p] : conv->named_parameters()) packed.insert(name.empty() ? pname : name + "." + pname);
        const BitTensor signs = conv->weight_signs();
        const Shape& w = signs.shape();
        const auto& o = conv->options();
        tensors.emplace_back(name + ".sign_bits", signs.words());
        tensors.emplace_back(name + ".scale", conv->binary_weight_scale());
        tensors.emplace_back(name + ".geometry",
                             Tensor<int32_t>::from_vector({6}, {static_cast<int32_t>(w[0]), static_cast<int32_t>(w[1]),
                                                                static_cast<int32_t>(w[2]), static_cast<int32_t>(w[3]),
                                                                o.stride, o.padding}));
    }
    for (const auto& [name, p] : model.named_parameters())
        if (!packed.count(name)) tensors.emplace_back(name, p.value());
    for (const auto& [name, b] : model.named_buffers()) tensors.emplace_back(name, b);
    metadata["format"] = kDeployFormat;
    metadata["module_tree"] = describe_module(model, /*deployed=*/true).dump();
    save_safetensors(path, tensors, metadata);
}

namespace detail {
/// Roughly how many weights the modules of a module tree allocate, from their options alone:
/// per module (in·out + out²)·k² + max(hidden, in)·(in + out) + in·out (k = kernel_size, 3 when
/// absent), more than any of bnn's modules allocates for those options. Lets load_deployed refuse
/// a tree that asks for more memory than its file could fill before anything is allocated.
inline double described_weights(const Json& node, int depth = 0) {
    if (depth > kMaxDepth || !node.is_object()) return 0;  // build_module reports these
    double total = 0;
    if (node.contains("children") && node["children"].is_array())
        for (const Json& c : node["children"])
            if (c.is_array() && c.size() == 2) total += described_weights(c[1], depth + 1);
    for (const char* key : {"body", "shortcut"})
        if (node.contains(key)) total += described_weights(node[key], depth + 1);
    if (!node.contains("options") || !node["options"].is_object()) return total;
    const Json& o = node["options"];
    auto option = [&](std::initializer_list<const char*> keys, double fallback) {
        for (const char* k : keys)
            if (o.contains(k) && o[k].is_number()) return std::max(o[k].get<double>(), 0.0);
        return fallback;
    };
    const double in = option({"in_channels", "in_features", "channels"}, 1);
    const double out = option({"out_channels", "out_features"}, in);
    const double k = option({"kernel_size"}, 3), hidden = option({"hidden_channels", "gate_hidden"}, 0);
    return total + (in * out + out * out) * k * k + std::max(hidden, in) * (in + out) + in * out;
}
}  // namespace detail

/// A deployment file read back: the rebuilt network (eval mode) and the file's metadata.
struct Deployed {
    std::shared_ptr<nn::Module> model;
    Metadata metadata;
};

namespace detail {

/// The module tree of a deployment file, checked to be of this format, valid JSON and no larger
/// than the file's tensors could fill.
inline Json deployed_tree(const SafetensorsFile& file, const std::string& path) {
    auto fmt = file.metadata.find("format");
    BNN_CHECK(fmt != file.metadata.end() && fmt->second == kDeployFormat, "load_deployed '", path,
              "': not a bnn deployment file of this version (metadata format is '",
              fmt == file.metadata.end() ? std::string("absent") : fmt->second, "', expected '", kDeployFormat, "')");
    auto tree = file.metadata.find("module_tree");
    BNN_CHECK(tree != file.metadata.end(), "load_deployed '", path, "': the metadata has no module_tree");
    Json json;
    try {
        json = Json::parse(tree->second);
    } catch (const nlohmann::json::exception& e) {
        ::bnn::fail("load_deployed '", path, "': the module_tree is not valid JSON: ", e.what());
    }
    // A 1-bit weight is the densest a file stores: 64 of them per byte of tensors bounds a genuine tree.
    uint64_t tensor_bytes = 0;
    for (const auto& [name, t] : file.tensors) tensor_bytes += byte_size(t);
    const double weights = described_weights(json), holdable = 64.0 * static_cast<double>(tensor_bytes) + (1 << 20);
    BNN_CHECK(weights <= holdable, "load_deployed '", path, "': the module tree describes about ", weights,
              " weights, more than the file's ", tensor_bytes, " bytes of tensors can hold");
    return json;
}

/// Hands out a file's tensors by name and dtype and collects what does not fit: a tensor missing,
/// of another dtype or shape, or never taken.
class DeployedTensors {
public:
    explicit DeployedTensors(const SafetensorsFile& file) : file_(file) {}

    /// The tensor `name` if it has dtype T and shape `want`, else null (and a problem noted).
    template <class T>
    const Tensor<T>* take(const std::string& name, const Shape& want) {
        const AnyTensor* t = file_.find(name);
        if (!t) return note("missing tensor '" + name + "'");
        used_.insert(name);
        const Tensor<T>* v = std::get_if<Tensor<T>>(t);
        if (!v) return note("'" + name + "' has dtype " + dtype_of(*t) + ", expected " + DTypeName<T>::value);
        if (v->shape() != want) return note("'" + name + "': file " + v->shape().str() + ", model " + want.str());
        return v;
    }
    /// Copies the float tensor `name` into dst.
    void load(const std::string& name, Tensor<float> dst) {
        if (const auto* src = take<float>(name, dst.shape())) dst.copy_from(*src);
    }
    /// Records a problem (returns null, for take).
    std::nullptr_t note(const std::string& problem) {
        problems_ += "\n  " + problem;
        return nullptr;
    }
    /// Every problem, tensors never taken included ("" when everything fit).
    std::string problems() const {
        std::string all = problems_;
        for (const auto& [name, t] : file_.tensors)
            if (!used_.count(name)) all += "\n  tensor '" + name + "' belongs to no module of the described tree";
        return all;
    }

private:
    const SafetensorsFile& file_;
    std::set<std::string> used_;
    std::string problems_;
};

/// Sets a rebuilt binary conv's signs to the file's bits and its alpha to the stored scale. A
/// deployed conv packs the bits (never unpacked); one built with latent weights (by a user's
/// module type that ignores TreeReader::deployed) gets them as ±1 floats.
inline void load_binary_conv(DeployedTensors& tensors, const std::string& name, nn::BinaryConv2d& conv) {
    const auto& o = conv.options();
    const int64_t k = o.kernel_size;
    const Shape w{o.out_channels, k, k, o.in_channels};
    const Shape words{w[0] * w[1] * w[2], kernels::words_for_channels(w[3])};
    const auto* geometry = tensors.take<int32_t>(name + ".geometry", Shape{6});
    const auto* bits = tensors.take<uint64_t>(name + ".sign_bits", words);
    const auto* scale = tensors.take<float>(name + ".scale", Shape{w[0]});
    if (!geometry || !bits || !scale) return;
    const Tensor<int32_t>& g = *geometry;
    if (g[0] != w[0] || g[1] != w[1] || g[2] != w[2] || g[3] != w[3] || g[4] != o.stride || g[5] != o.padding) {
        tensors.note("'" + name + ".geometry' does not match the described conv");
        return;
    }
    BitTensor signs;
    try {
        signs = BitTensor(w, *bits);
    } catch (const Error& e) {  // bits set past the channels
        tensors.note("'" + name + ".sign_bits': " + e.what());
        return;
    }
    if (o.deployed) conv.set_weight_signs(std::move(signs));
    else conv.weight.value().copy_from(unpack_signs(signs));
    conv.alpha.value().copy_from(*scale);
}

}  // namespace detail

/// Rebuilds the network of a deployment file already read (`file.source` names it in errors):
/// the module tree, every binary conv on the file's sign bits, every other tensor copied. The
/// file is consumed: what the network does not share is freed on return. bnn::Error naming the
/// module path for an unknown type or option, a tensor missing, of another shape or dtype, or
/// left over.
inline Deployed load_deployed(SafetensorsFile file) {
    const std::string& path = file.source;
    const Json tree = detail::deployed_tree(file, path);
    Deployed d;
    try {
        d.model = build_module(tree, "", 0, /*deployed=*/true);
    } catch (const Error& e) {
        ::bnn::fail("load_deployed '", path, "': ", e.what());
    }
    detail::DeployedTensors tensors(file);
    std::set<std::string> packed;  // parameters of binary convs, loaded from their bits
    for (const auto& [name, m] : d.model->named_modules()) {
        auto* conv = dynamic_cast<nn::BinaryConv2d*>(m);
        if (!conv) continue;
        BNN_CHECK(conv->options().scale == nn::WeightScale::Folded && conv->mode() == nn::BinaryMode::FullyBinary,
                  "load_deployed '", path, "': binary conv '", name, "' is not described as deployed (fully binary, ",
                  "scale alpha)");
        for (const auto& [pname, p] : conv->named_parameters()) packed.insert(name.empty() ? pname : name + "." + pname);
        detail::load_binary_conv(tensors, name, *conv);
    }
    for (auto& [name, p] : d.model->named_parameters())
        if (!packed.count(name)) tensors.load(name, p.value());
    for (auto& [name, b] : d.model->named_buffers()) tensors.load(name, b);
    const std::string problems = tensors.problems();
    BNN_CHECK(problems.empty(), "load_deployed '", path, "': the tensors do not fit the described network:", problems);
    d.model->eval();
    d.metadata = std::move(file.metadata);
    return d;
}

/// Reads a deployment file (see load_deployed above).
inline Deployed load_deployed(const std::string& path) { return load_deployed(load_safetensors(path)); }

}  // namespace bnn::io
