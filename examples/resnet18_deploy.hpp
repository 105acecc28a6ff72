#pragma once
/// @file resnet18_deploy.hpp
/// Deployment of the binary ResNet-18 variants (examples/resnet18.hpp): io::save_deployed with
/// the architecture's options as metadata (the file describes its network itself; these
/// entries only tell a reader which ResNet-18 it is). io::load_deployed and infer::compile run it.
#include <cstdint>
#include <string>

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

/// Writes a fully binary ResNet-18 (strong baseline or Real-to-Bin) for deployment. `extra`
/// entries (e.g. the input normalization and class names) are stored beside the architecture.
inline void export_resnet18(const std::string& path, const ResNet18& net, const io::Metadata& extra = {}) {
    BNN_CHECK(net.options().variant != Variant::Real, "export_resnet18: the real ResNet-18 has no binary convs to pack");
    io::Metadata m = resnet_metadata(net.options());
    m.insert(extra.begin(), extra.end());
    io::save_deployed(path, net, m);
}

}  // namespace bnn::examples
