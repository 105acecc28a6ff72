#pragma once
/// @file deploy.hpp
/// Deployment export of binary networks: every nn::BinaryConv2d is stored as its weight signs
/// packed 1 bit per weight (safetensors dtype U64) with its output scale α as fp32; every other
/// parameter and buffer (stem, BN, PReLU, gates, shortcuts, classifier) stays fp32. A loaded
/// binary conv runs on the XNOR-popcount kernel with α folded into the kernel's per-channel
/// output transform (exact: it is the same multiply the training model does).
///
/// File layout (one safetensors file):
///   "<conv>.sign_bits"  U64 [Cout*KH*KW, ceil(Cin/64)]  bit c%64 of word c/64 = sign(W[o,kh,kw,c]) >= 0
///   "<conv>.scale"      F32 [Cout]                       α per output channel (1 when the conv has none)
///   "<conv>.geometry"   I32 [6]                          Cout, KH, KW, Cin, stride, padding
///   "<name>"            F32                              every other parameter and buffer, by dotted name
///   __metadata__        {"format": "bnn-deploy-1", ...caller's entries}
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "bnn/core/bit_tensor.hpp"
#include "bnn/core/error.hpp"
#include "bnn/io/safetensors.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/kernels/xnor_conv.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/module.hpp"

namespace bnn::io {

inline constexpr const char* kDeployFormat = "bnn-deploy-1";

/// A binary convolution frozen for inference: packed weight signs and the output scale.
struct FrozenBinaryConv {
    kernels::PackedConvWeights weights;
    Tensor<float> scale;  ///< α [Cout]
    int64_t stride = 1, padding = 0;

    /// x [N,H,W,Cin] (real values; their signs are taken) -> [N,OH,OW,Cout] = α * (sign(x) ⊛ sign(W)).
    Tensor<float> forward(const Tensor<float>& x) const {
        return kernels::xnor_conv2d(pack_signs(x), weights, scale, Tensor<float>(), stride, padding);
    }
};

/// The scale α a binary conv multiplies its fully binary output by (see
/// BinaryConv2d::binary_weight_scale).
inline Tensor<float> binary_conv_scale(const nn::BinaryConv2d& conv) { return conv.binary_weight_scale(); }

/// Every BinaryConv2d in a module tree with its dotted name ("block1.half1.conv").
inline std::vector<std::pair<std::string, std::shared_ptr<nn::BinaryConv2d>>> binary_convs(const nn::Module& m,
                                                                                       const std::string& prefix = "") {
    std::vector<std::pair<std::string, std::shared_ptr<nn::BinaryConv2d>>> out;
    for (const auto& [name, child] : m.children()) {
        const std::string full = prefix + name;
        if (auto conv = std::dynamic_pointer_cast<nn::BinaryConv2d>(child))
            out.emplace_back(full, conv);
        else
            for (auto& c : binary_convs(*child, full + ".")) out.push_back(std::move(c));
    }
    return out;
}

/// Packs a binary conv's sign(W) ([Cout,KH,KW,Cin] -> BitTensor along Cin) and takes its
/// effective output scale. The conv must be in FullyBinary mode: that is what is deployed.
inline FrozenBinaryConv freeze_binary_conv(const nn::BinaryConv2d& conv) {
    BNN_CHECK(conv.mode() == nn::BinaryMode::FullyBinary, "freeze_binary_conv: the conv must be in FullyBinary ",
              "mode to be deployed (its real-weight modes compute something else)");
    FrozenBinaryConv f;
    f.weights = kernels::pack_conv_weights(conv.weight.value());
    f.scale = binary_conv_scale(conv);
    f.stride = conv.options().stride;
    f.padding = conv.options().padding;
    return f;
}

/// Writes a module for deployment (see the file layout above). `metadata` entries are added to
/// the file's __metadata__ (e.g. the architecture needed to rebuild the model).
inline void save_deployed(const std::string& path, const nn::Module& model, Metadata metadata = {}) {
    NamedTensors tensors;
    std::set<std::string> binary_params;
    for (const auto& [name, conv] : binary_convs(model)) {
        for (const auto& [pname, p] : conv->named_parameters()) binary_params.insert(name + "." + pname);
        FrozenBinaryConv f = freeze_binary_conv(*conv);
        const Tensor<float>& w = conv->weight.value();
        BitTensor bits = pack_signs(w.reshape({w.dim(0) * w.dim(1) * w.dim(2), w.dim(3)}));
        tensors.emplace_back(name + ".sign_bits", bits.words());
        tensors.emplace_back(name + ".scale", f.scale);
        tensors.emplace_back(name + ".geometry",
                             Tensor<int32_t>::from_vector({6}, {static_cast<int32_t>(w.dim(0)), static_cast<int32_t>(w.dim(1)),
                                                                static_cast<int32_t>(w.dim(2)), static_cast<int32_t>(w.dim(3)),
                                                                static_cast<int32_t>(f.stride),
                                                                static_cast<int32_t>(f.padding)}));
    }
    for (const auto& [name, p] : model.named_parameters())
        if (!binary_params.count(name)) tensors.emplace_back(name, p.value());
    for (const auto& [name, b] : model.named_buffers()) tensors.emplace_back(name, b);
    metadata["format"] = kDeployFormat;
    save_safetensors(path, tensors, metadata);
}

/// The binary conv stored under `prefix` in a deployment file, rebuilt for the popcount kernel.
inline FrozenBinaryConv read_frozen_conv(const SafetensorsFile& file, const std::string& prefix) {
    Tensor<int32_t> g = file.get<int32_t>(prefix + ".geometry");
    BNN_CHECK(g.shape() == Shape{6}, "deploy '", file.source, "': ", prefix, ".geometry must have shape [6], got ",
              g.shape().str());
    const int64_t cout = g[0], kh = g[1], kw = g[2], cin = g[3];
    BNN_CHECK(cout > 0 && kh > 0 && kw > 0 && cin > 0 && g[4] > 0 && g[5] >= 0, "deploy '", file.source, "': ", prefix,
              ".geometry holds invalid sizes [", g[0], ", ", g[1], ", ", g[2], ", ", g[3], ", ", g[4], ", ", g[5], "]");
    Tensor<uint64_t> words = file.get<uint64_t>(prefix + ".sign_bits");
    const Shape expected{cout * kh * kw, kernels::words_for_channels(cin)};
    BNN_CHECK(words.shape() == expected, "deploy '", file.source, "': ", prefix, ".sign_bits must have shape ",
              expected.str(), " for weights [", cout, ", ", kh, ", ", kw, ", ", cin, "], got ", words.shape().str());
    BitTensor bits(Shape{cout * kh * kw, cin});
    std::copy(words.begin(), words.end(), bits.data());
    // Re-pack from the ±1 values: the kernel's weight layout ([K words][Cout lanes]) is an
    // implementation detail that the file does not freeze.
    Tensor<float> w = unpack_signs(bits).reshape({cout, kh, kw, cin});
    FrozenBinaryConv f;
    f.weights = kernels::pack_conv_weights(w);
    f.scale = file.get<float>(prefix + ".scale");
    expect_shape(f.scale, Shape{cout}, "read_frozen_conv", (prefix + ".scale").c_str());
    f.stride = g[4];
    f.padding = g[5];
    return f;
}

/// A deployment file read back: the frozen binary convs by name and the file itself.
struct DeployedModel {
    SafetensorsFile file;
    std::map<std::string, FrozenBinaryConv> convs;

    const FrozenBinaryConv& conv(const std::string& name) const {
        auto it = convs.find(name);
        BNN_CHECK(it != convs.end(), "deploy '", file.source, "': no binary conv named '", name, "'");
        return it->second;
    }
};

/// Reads a deployment file, checking its format tag, and unpacks every binary conv.
inline DeployedModel load_deployed(const std::string& path) {
    DeployedModel d;
    d.file = load_safetensors(path);
    auto fmt = d.file.metadata.find("format");
    BNN_CHECK(fmt != d.file.metadata.end() && fmt->second == kDeployFormat, "load_deployed '", path,
              "': not a bnn deployment file (metadata format is '",
              fmt == d.file.metadata.end() ? std::string("absent") : fmt->second, "', expected '", kDeployFormat, "')");
    const std::string suffix = ".geometry";
    for (const auto& [name, t] : d.file.tensors)
        if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            const std::string prefix = name.substr(0, name.size() - suffix.size());
            d.convs.emplace(prefix, read_frozen_conv(d.file, prefix));
        }
    return d;
}

/// Copies the fp32 tensors of a deployment file into a module of the same architecture (every
/// parameter and buffer except the binary convs' own). bnn::Error listing what is missing or
/// mismatched, so a wrong architecture never loads silently.
inline void load_real_parts(const DeployedModel& d, nn::Module& model) {
    std::set<std::string> binary_params;
    for (const auto& [name, conv] : binary_convs(model)) {
        BNN_CHECK(d.convs.count(name), "load_real_parts '", d.file.source, "': the model's binary conv '", name,
                  "' is not in the file");
        for (const auto& [pname, p] : conv->named_parameters()) binary_params.insert(name + "." + pname);
    }
    std::string problems;
    auto copy = [&](const std::string& name, Tensor<float> dst) {
        const AnyTensor* t = d.file.find(name);
        const Tensor<float>* src = t ? std::get_if<Tensor<float>>(t) : nullptr;
        if (!src)
            problems += "\n  missing F32 tensor '" + name + "'";
        else if (src->shape() != dst.shape())
            problems += "\n  '" + name + "': file " + src->shape().str() + ", model " + dst.shape().str();
        else
            dst.copy_from(*src);
    };
    for (auto& [name, p] : model.named_parameters())
        if (!binary_params.count(name)) copy(name, p.value());
    for (auto& [name, b] : model.named_buffers()) copy(name, b);
    BNN_CHECK(problems.empty(), "load_real_parts '", d.file.source, "': the file does not fit the model:", problems);
}

}  // namespace bnn::io
