#pragma once
// What a trainer checkpoint says about its model beyond the weights: the input it expects
// (size, channels, normalization, class names) and the ResNet-18 it holds; either kind of network
// file loaded for inference; an image file made into the network's input, and the most probable
// classes of its logits. Shared by the programs that load the trainer's files (classify, the
// integer stem's drift measurement, the Python module) and by the test that holds classify to
// the trainer.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/data/transforms.hpp"
#include "bnn/infer/compile.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/io/deploy.hpp"
#include "bnn/io/image.hpp"
#include "bnn/io/safetensors.hpp"
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

/// A deployment file's metadata as JSON: each value parsed where it is JSON (the trainer writes
/// class names, normalization and sizes so), kept as a string where it is not.
inline nlohmann::json metadata_json(const io::Metadata& metadata) {
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [key, value] : metadata) {
        nlohmann::json parsed = nlohmann::json::parse(value, nullptr, false);
        meta[key] = parsed.is_discarded() ? nlohmann::json(value) : std::move(parsed);
    }
    return meta;
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

/// A network file loaded for inference: a trainer checkpoint (the ResNet-18 its metadata names)
/// or any deployment file (the network its module tree describes).
struct Network {
    std::shared_ptr<nn::Module> model;  ///< in eval mode
    nlohmann::json metadata;            ///< the trainer's (checkpoint) or every entry, parsed (deployment file)
    /// The trainer's input description; absent for a deployment file written without it.
    std::optional<Preprocessing> preprocessing;
    bool deployed = false;
    std::string description;  ///< a checkpoint's "real-to-bin ResNet-18, fully-binary, width 64"
};

/// Loads either kind of file (bnn::Error naming `path` for a file of neither kind, metadata that
/// does not describe the weights, weights that do not fit).
inline Network load_network(const std::string& path) {
    io::SafetensorsFile file = io::load_safetensors(path);
    Network n;
    auto format = file.metadata.find("format");
    if (format != file.metadata.end() && format->second == io::kDeployFormat) {
        n.metadata = metadata_json(file.metadata);
        n.model = io::load_deployed(std::move(file)).model;  // read once; freed as it is consumed
        if (n.metadata.contains("class_names")) n.preprocessing = preprocessing_from(n.metadata, path);
        n.deployed = true;
        return n;
    }
    n.metadata = io::checkpoint_metadata(file);
    n.preprocessing = preprocessing_from(n.metadata, path);
    ResNetOptions o = architecture_from(n.metadata, path);
    o.in_channels = n.preprocessing->channels;
    auto net = std::make_shared<ResNet18>(o);
    io::load_module(file, *net);  // strict: a checkpoint of another model is an error
    net->eval();
    n.model = net;
    n.description = n.metadata.at("variant").get<std::string>() + " ResNet-18, " +
                    n.metadata.at("student").get<std::string>() + ", width " + std::to_string(o.width);
    return n;
}

/// The normalization the network's training data had: data::normalize with it is the very
/// function the trainer's loader applies, so an image's floats are the trainer's to the bit.
inline data::Normalization input_normalization(const Preprocessing& p) { return {p.mean, p.std}; }

/// An image file as the network takes it, in bytes [1, S, S, C]: converted to the network's
/// channels, resized to its image size and zero-padded to its input size (Fashion-MNIST's
/// 28 -> 32), as the trainer pads its data before normalizing. `note` says, once the image has
/// been read, what was changed when the file's size or channels are not the network's.
struct ImageInput {
    Tensor<uint8_t> bytes;
    std::string note;
};

inline ImageInput image_input(const std::string& path, const Preprocessing& p) {
    const Tensor<uint8_t> file = io::load_image(path, static_cast<int>(p.channels));
    int file_w = 0, file_h = 0, file_c = 0;
    stbi_info(path.c_str(), &file_w, &file_h, &file_c);
    const bool resized = file.dim(0) != p.image_size || file.dim(1) != p.image_size, converted = file_c != p.channels;
    ImageInput in;
    if (resized || converted)
        in.note = "'" + path + "' is " + std::to_string(file.dim(1)) + "x" + std::to_string(file.dim(0)) + " with " +
                  std::to_string(file_c) + " channel" + (file_c == 1 ? "" : "s") + "; the network takes " +
                  std::to_string(p.image_size) + "x" + std::to_string(p.image_size) + " with " +
                  std::to_string(p.channels) + ", so it was " +
                  (resized ? (converted ? "resized and its channels converted" : "resized")
                           : "converted to that many channels");
    const Tensor<uint8_t> img = io::resize_image(file, static_cast<int>(p.image_size), static_cast<int>(p.image_size));
    const int64_t S = p.input_size, off = (S - p.image_size) / 2, C = p.channels;
    in.bytes = Tensor<uint8_t>::zeros(Shape{1, S, S, C});
    for (int64_t y = 0; y < p.image_size; ++y)
        for (int64_t x = 0; x < p.image_size; ++x)
            for (int64_t c = 0; c < C; ++c) in.bytes.at({0, y + off, x + off, c}) = img.at({y, x, c});
    return in;
}

/// The network compiled (infer::compile) for input bytes of `shape` [N, S, S, C] with the stem and
/// dense layers of `options`: with an integer stem it reads the bytes themselves, the stem folding
/// in the normalization of p (which replaces options' mean and std).
inline infer::Graph compile_for_bytes(const nn::Module& model, const Shape& shape, const Preprocessing& p,
                                      infer::CompileOptions options) {
    options.mean = options.std = {};
    if (infer::reads_bytes(options.stem)) {
        options.mean = p.mean;
        options.std = p.std;
    }
    return infer::compile(model, shape, options);
}

/// The logits of a graph from compile_for_bytes for input bytes: with the fp32 stem from the bytes
/// normalized as the training data were.
inline Tensor<float> run_on_bytes(infer::Graph& graph, const Tensor<uint8_t>& bytes, const Preprocessing& p,
                                  infer::StemPrecision stem) {
    if (infer::reads_bytes(stem)) return graph.run(bytes).clone();
    return graph.run(data::normalize(bytes, input_normalization(p))).clone();
}

/// The network's logits for input bytes [N, S, S, C], compiled with `options` as compile_for_bytes
/// does; `steps` gets the graph's number of steps.
inline Tensor<float> logits_of(const nn::Module& model, const Tensor<uint8_t>& bytes, const Preprocessing& p,
                               const infer::CompileOptions& options, size_t& steps) {
    infer::Graph graph = compile_for_bytes(model, bytes.shape(), p, options);
    steps = graph.num_steps();
    return run_on_bytes(graph, bytes, p, options.stem);
}

/// One class among a row of logits, with its softmax probability.
struct RankedClass {
    int64_t index;
    double probability;
};

/// The `top` most probable of `count` logits, most probable first: softmax in double, from the
/// largest logit.
inline std::vector<RankedClass> top_classes(const float* logits, int64_t count, int64_t top) {
    std::vector<double> prob(count);
    const float m = *std::max_element(logits, logits + count);
    double z = 0;
    for (int64_t k = 0; k < count; ++k) z += prob[k] = std::exp(logits[k] - m);
    std::vector<int64_t> order(count);
    std::iota(order.begin(), order.end(), 0);
    const int64_t shown = std::min<int64_t>(top, count);
    std::partial_sort(order.begin(), order.begin() + shown, order.end(),
                      [&](int64_t a, int64_t b) { return prob[a] > prob[b]; });
    std::vector<RankedClass> ranked;
    for (int64_t i = 0; i < shown; ++i) ranked.push_back({order[i], prob[order[i]] / z});
    return ranked;
}

}  // namespace bnn::examples
