#pragma once
// What a trainer checkpoint says about its model beyond the weights: the input it expects
// (size, channels, normalisation, class names) and the ResNet-18 it holds. Shared by the
// programs that load the trainer's files (classify, the integer stem's drift measurement).
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "resnet18.hpp"

namespace bnn::examples {

/// What the trainer records beside the weights to make a model usable on new images.
struct Preprocessing {
    int64_t image_size = 32, input_size = 32, channels = 3;
    std::vector<float> mean, std;
    std::vector<std::string> class_names;
};

/// Without the trainer's metadata: the image scaled to [0, 1] at `size`, classes by number.
inline Preprocessing plain_preprocessing(int64_t size, int64_t channels, int64_t classes) {
    Preprocessing p;
    p.image_size = p.input_size = size;
    p.channels = channels;
    p.mean.assign(channels, 0.f);
    p.std.assign(channels, 1.f);
    for (int64_t k = 0; k < classes; ++k) p.class_names.push_back("class " + std::to_string(k));
    return p;
}

/// From a trainer checkpoint's metadata (bnn::Error naming `source` when a key is missing or off).
inline Preprocessing preprocessing_from(const nlohmann::json& meta, const std::string& source) {
    for (const char* key : {"mean", "std", "class_names", "image_size", "input_size", "in_channels"})
        BNN_CHECK(meta.contains(key), "'", source, "' lacks '", key,
                  "' in its metadata: it was not written by the bnn trainer");
    Preprocessing p;
    p.image_size = meta.at("image_size").get<int64_t>();
    p.input_size = meta.at("input_size").get<int64_t>();
    p.channels = meta.at("in_channels").get<int64_t>();
    p.mean = meta.at("mean").get<std::vector<float>>();
    p.std = meta.at("std").get<std::vector<float>>();
    p.class_names = meta.at("class_names").get<std::vector<std::string>>();
    BNN_CHECK(p.channels >= 1 && p.channels <= 4 && p.image_size >= 1 && p.image_size <= p.input_size &&
                  p.input_size <= 4096,
              "'", source, "' gives images of ", p.image_size, " pixels and ", p.channels, " channels in an input of ",
              p.input_size, ", expected 1 to 4 channels and 1 <= image size <= input size <= 4096");
    BNN_CHECK(p.mean.size() == static_cast<size_t>(p.channels) && p.std.size() == static_cast<size_t>(p.channels),
              "'", source, "' gives ", p.mean.size(), " means and ", p.std.size(), " standard deviations for ",
              p.channels, " channels");
    return p;
}

/// The network's variant and mode from a trainer checkpoint's names of them; a name it does not
/// know is an error (a guess would load the weights into the wrong network).
inline ResNetOptions architecture_from(const nlohmann::json& meta, const std::string& source) {
    using nn::BinaryMode;
    ResNetOptions o;
    const std::string variant = meta.at("variant"), student = meta.at("student");
    bool known = false;
    for (Variant v : {Variant::Real, Variant::StrongBaseline, Variant::RealToBin})
        if (variant == variant_name(v)) o.variant = v, known = true;
    BNN_CHECK(known, "'", source, "' names the variant '", variant, "', expected real, strong-baseline or real-to-bin");
    if (student == "real" || student == "binary-activations") o.mode = BinaryMode::BinaryActivations;
    else if (student == "soft-activations") o.mode = BinaryMode::SoftActivations;
    else if (student == "fully-binary") o.mode = BinaryMode::FullyBinary;
    else fail("'", source, "' names the student '", student,
              "', expected real, soft-activations, binary-activations or fully-binary");
    o.width = meta.at("width").get<int64_t>();
    o.num_classes = meta.at("num_classes").get<int64_t>();
    BNN_CHECK(o.width > 0 && o.num_classes > 0, "'", source, "' gives width ", o.width, " and ", o.num_classes,
              " classes, expected positive numbers");
    return o;
}

/// Bytes [N, H, W, C] normalised as the network's training data: (x / 255 - mean[c]) / std[c].
inline Tensor<float> normalise(const Tensor<uint8_t>& bytes, const Preprocessing& p) {
    BNN_CHECK(bytes.dim(bytes.rank() - 1) == p.channels, "normalise: images of ", bytes.dim(bytes.rank() - 1),
              " channels for a network of ", p.channels);
    Tensor<float> x(bytes.shape());
    const int64_t C = p.channels;
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = (bytes[i] / 255.f - p.mean[i % C]) / p.std[i % C];
    return x;
}

}  // namespace bnn::examples
