// Classifies an image with a checkpoint written by the trainer (float or binary) or with any
// deployment file (whatever its architecture: the file describes its own network), and prints
// the five most likely classes. Both run through infer::compile.
//
//   classify --checkpoint runs/latest/real-to-bin-step3.deploy.safetensors --image shoe.png
//   classify --checkpoint my_net.deploy.safetensors --image cat.png --size 32   (no trainer metadata)
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>

#include <nlohmann/json.hpp>

#include "bnn/infer/compile.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/io/deploy.hpp"
#include "bnn/io/image.hpp"
#include "resnet18.hpp"

namespace {

using bnn::Tensor;
using nlohmann::json;

/// What the trainer records beside the weights to make a model usable on new images.
struct Preprocessing {
    int64_t image_size = 32, input_size = 32, channels = 3;
    std::vector<float> mean, std;
    std::vector<std::string> class_names;
};

/// Without the trainer's metadata: the image scaled to [0, 1] at `size`, classes by number.
Preprocessing plain_preprocessing(int64_t size, int64_t channels, int64_t classes) {
    Preprocessing p;
    p.image_size = p.input_size = size;
    p.channels = channels;
    p.mean.assign(channels, 0.f);
    p.std.assign(channels, 1.f);
    for (int64_t k = 0; k < classes; ++k) p.class_names.push_back("class " + std::to_string(k));
    return p;
}

Preprocessing preprocessing_from(const json& meta, const std::string& source) {
    for (const char* key : {"mean", "std", "class_names", "image_size", "input_size", "in_channels"})
        BNN_CHECK(meta.contains(key), "classify: '", source, "' lacks '", key,
                  "' in its metadata: it was not written by the bnn trainer");
    Preprocessing p;
    p.image_size = meta.at("image_size").get<int64_t>();
    p.input_size = meta.at("input_size").get<int64_t>();
    p.channels = meta.at("in_channels").get<int64_t>();
    p.mean = meta.at("mean").get<std::vector<float>>();
    p.std = meta.at("std").get<std::vector<float>>();
    p.class_names = meta.at("class_names").get<std::vector<std::string>>();
    return p;
}

/// The image as the network saw its training data: resized, zero-padded to the input size
/// (Fashion-MNIST's 28 -> 32), normalised per channel. [1, S, S, C].
Tensor<float> prepare(const std::string& path, const Preprocessing& p) {
    Tensor<uint8_t> img = bnn::io::load_image(path, static_cast<int>(p.image_size), static_cast<int>(p.image_size),
                                              static_cast<int>(p.channels));
    const int64_t S = p.input_size, off = (S - p.image_size) / 2, C = p.channels;
    Tensor<float> x(bnn::Shape{1, S, S, C});
    for (int64_t y = 0; y < S; ++y)
        for (int64_t xx = 0; xx < S; ++xx)
            for (int64_t c = 0; c < C; ++c) {
                const int64_t iy = y - off, ix = xx - off;
                const bool inside = iy >= 0 && ix >= 0 && iy < p.image_size && ix < p.image_size;
                const float v = inside ? img.at({iy, ix, c}) / 255.f : 0.f;
                x.at({0, y, xx, c}) = (v - p.mean[c]) / p.std[c];
            }
    return x;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace bnn;
    CLI::App app{"Classify an image with a bnn ResNet-18 checkpoint or deployment file"};
    std::string checkpoint, image;
    int top = 5;
    int64_t size = 0, channels = 3;
    app.add_option("--checkpoint", checkpoint, "a trainer checkpoint or a .deploy.safetensors file")->required();
    app.add_option("--image", image, "a PNG, JPEG or BMP image")->required();
    app.add_option("--top", top, "how many classes to print")->capture_default_str();
    app.add_option("--size", size, "input side for a deployment file without the trainer's metadata")
        ->check(CLI::Range(1, 4096));
    app.add_option("--channels", channels, "input channels for such a file")->check(CLI::Range(1, 4))->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    try {
        io::SafetensorsFile file = io::load_safetensors(checkpoint);
        Tensor<float> logits;
        Preprocessing p;
        auto format = file.metadata.find("format");
        if (format != file.metadata.end() && format->second == io::kDeployFormat) {
            json meta;
            for (const auto& [k, v] : file.metadata) meta[k] = json::parse(v, nullptr, false).is_discarded() ? json(v) : json::parse(v);
            io::Deployed deployed = io::load_deployed(checkpoint);
            if (meta.contains("class_names")) {
                p = preprocessing_from(meta, checkpoint);
            } else {
                BNN_CHECK(size > 0, "'", checkpoint, "' has no trainer metadata (input size, normalisation, "
                          "class names): give --size (and --channels)");
                p = plain_preprocessing(size, channels, 0);
            }
            const Tensor<float> x = prepare(image, p);
            infer::Graph graph = infer::compile(*deployed.model, x.shape());
            logits = graph.run(x).clone();
            if (p.class_names.empty()) p = plain_preprocessing(size, channels, logits.dim(1));
            std::printf("%s: deployed network, %zu inference steps (1-bit weights in every binary conv)\n",
                        checkpoint.c_str(), graph.num_steps());
        } else {
            json meta = io::checkpoint_metadata(file);
            p = preprocessing_from(meta, checkpoint);
            const std::string variant = meta.at("variant"), student = meta.at("student");
            examples::ResNetOptions o{.width = meta.at("width").get<int64_t>(),
                                      .num_classes = meta.at("num_classes").get<int64_t>(),
                                      .in_channels = p.channels};
            o.variant = variant == "real" ? examples::Variant::Real
                        : variant == "strong-baseline" ? examples::Variant::StrongBaseline
                                                       : examples::Variant::RealToBin;
            o.mode = student == "soft-activations"     ? nn::BinaryMode::SoftActivations
                     : student == "fully-binary"       ? nn::BinaryMode::FullyBinary
                                                       : nn::BinaryMode::BinaryActivations;
            examples::ResNet18 net(o);
            io::load_module(file, net);  // strict: a checkpoint of another model is an error
            net.eval();
            const Tensor<float> x = prepare(image, p);
            logits = infer::compile(net, x.shape()).run(x).clone();
            std::printf("%s: %s ResNet-18, %s, width %lld\n", checkpoint.c_str(), variant.c_str(), student.c_str(),
                        static_cast<long long>(o.width));
        }
        // softmax, then the `top` largest
        const int64_t K = logits.dim(1);
        BNN_CHECK(static_cast<int64_t>(p.class_names.size()) == K, "classify: ", K, " outputs but ",
                  p.class_names.size(), " class names in '", checkpoint, "'");
        std::vector<double> prob(K);
        const float m = *std::max_element(logits.begin(), logits.end());
        double z = 0;
        for (int64_t k = 0; k < K; ++k) z += prob[k] = std::exp(logits[k] - m);
        std::vector<int64_t> order(K);
        std::iota(order.begin(), order.end(), 0);
        const int64_t shown = std::min<int64_t>(top, K);
        std::partial_sort(order.begin(), order.begin() + shown, order.end(),
                          [&](int64_t a, int64_t b) { return prob[a] > prob[b]; });
        for (int64_t i = 0; i < shown; ++i)
            std::printf("  %6.2f%%  %s\n", 100 * prob[order[i]] / z, p.class_names[order[i]].c_str());
    } catch (const Error& e) {
        std::fprintf(stderr, "classify: %s\n", e.what());
        return 1;
    }
    return 0;
}
