#pragma once
/// @file resnet18_deploy.hpp
/// Deployment of the binary ResNet-18 variants (examples/resnet18.hpp): export a fully binary
/// network to one safetensors file with 1-bit packed binary conv weights (io/deploy.hpp), and
/// rebuild an inference model from it whose binary convs run on the popcount kernel.
///
/// The inference model keeps BN, PReLU, the gate, the shortcuts, the stem and the classifier in
/// fp32. α is folded into the popcount kernel's output transform, which is exact; BN is *not*
/// folded into the sign threshold, because sign(a*x + b) can differ from sign(BN(x)) by float
/// rounding at values near zero, and the deployed model must predict exactly as the trained one.
#include <cstdint>
#include <string>

#include "bnn/autograd/grad_mode.hpp"
#include "bnn/io/deploy.hpp"
#include "resnet18.hpp"

namespace bnn::examples {

/// The architecture as metadata strings, enough to rebuild the network.
inline io::Metadata resnet_metadata(const ResNetOptions& o) {
    return {{"model", "resnet18"},
            {"variant", variant_name(o.variant)},
            {"stem", o.stem == Stem::Cifar ? "cifar" : "imagenet"},
            {"width", std::to_string(o.width)},
            {"num_classes", std::to_string(o.num_classes)},
            {"in_channels", std::to_string(o.in_channels)},
            {"gate_reduction", std::to_string(o.gate_reduction)}};
}

/// Parses resnet_metadata() back; bnn::Error naming the missing or bad entry.
inline ResNetOptions resnet_options_from(const io::Metadata& m, const std::string& source) {
    auto get = [&](const char* key) -> const std::string& {
        auto it = m.find(key);
        BNN_CHECK(it != m.end(), "resnet_options_from '", source, "': metadata lacks '", key, "'");
        return it->second;
    };
    auto number = [&](const char* key) {
        const std::string& v = get(key);
        try {
            return static_cast<int64_t>(std::stoll(v));
        } catch (const std::exception&) {
            ::bnn::detail::fail("resnet_options_from '", source, "': metadata '", key, "' is not a number: '", v, "'");
        }
    };
    BNN_CHECK(get("model") == "resnet18", "resnet_options_from '", source, "': model is '", get("model"),
              "', expected 'resnet18'");
    ResNetOptions o;
    const std::string& v = get("variant");
    if (v == variant_name(Variant::StrongBaseline))
        o.variant = Variant::StrongBaseline;
    else if (v == variant_name(Variant::RealToBin))
        o.variant = Variant::RealToBin;
    else
        ::bnn::detail::fail("resnet_options_from '", source, "': variant '", v, "' is not a binary ResNet-18");
    const std::string& stem = get("stem");
    BNN_CHECK(stem == "cifar" || stem == "imagenet", "resnet_options_from '", source, "': unknown stem '", stem, "'");
    o.stem = stem == "cifar" ? Stem::Cifar : Stem::ImageNet;
    o.width = number("width");
    o.num_classes = number("num_classes");
    o.in_channels = number("in_channels");
    o.gate_reduction = number("gate_reduction");
    o.mode = nn::BinaryMode::FullyBinary;
    return o;
}

/// Writes a fully binary ResNet-18 (strong baseline or Real-to-Bin) for deployment. `extra`
/// entries (e.g. the input normalisation and class names) are stored beside the architecture.
inline void export_resnet18(const std::string& path, const ResNet18& net, const io::Metadata& extra = {}) {
    BNN_CHECK(net.options().variant != Variant::Real, "export_resnet18: the real ResNet-18 has no binary convs to pack");
    io::Metadata m = resnet_metadata(net.options());
    m.insert(extra.begin(), extra.end());
    io::save_deployed(path, net, m);
}

/// Inference-only binary ResNet-18 rebuilt from a deployment file.
class DeployedResNet18 {
public:
    explicit DeployedResNet18(const std::string& path)
        : deployed_(io::load_deployed(path)), net_(resnet_options_from(deployed_.file.metadata, path)) {
        io::load_real_parts(deployed_, net_);
        net_.eval();
        // The frozen convs replace the binary convs' latent float weights, which would otherwise
        // take 32x the memory of the packed bits: release them (this module is never trained).
        for (auto& conv : net_.binary_convs()) conv->weight.value() = Tensor<float>();
    }

    /// Logits [N, classes] of images [N,H,W,C].
    Tensor<float> forward(const Tensor<float>& images) const {
        NoGradGuard no_tape;
        Variable h = net_.stem->forward(Variable(images));
        for (size_t b = 0; b < net_.blocks.size(); ++b) {
            auto block = std::static_pointer_cast<BinaryBlock>(net_.blocks[b]);
            const std::string name = "block" + std::to_string(b + 1);
            h = half_forward(*block->half1, deployed_.conv(name + ".half1.conv"), h);
            h = half_forward(*block->half2, deployed_.conv(name + ".half2.conv"), h);
        }
        return net_.fc->forward(ops::global_avg_pool(h)).value();
    }

    const ResNetOptions& options() const { return net_.options(); }

private:
    // BinaryHalfBlock::forward with the binary conv replaced by its frozen popcount form.
    static Variable half_forward(BinaryHalfBlock& half, const io::FrozenBinaryConv& conv, const Variable& x) {
        Variable hb = half.bn->forward(x);
        Variable y(conv.forward(hb.value()));
        if (half.gate) y = ops::mul(y, half.gate->forward(hb));
        y = half.prelu->forward(y);
        return ops::add(y, half.shortcut ? half.shortcut->forward(x) : x);
    }

    io::DeployedModel deployed_;
    // The real-valued layers, loaded from the file; its binary convs are never called.
    mutable ResNet18 net_;
};

}  // namespace bnn::examples
