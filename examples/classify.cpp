// Classifies an image with a checkpoint written by the trainer (float or binary) or with any
// deployment file (whatever its architecture: the file describes its own network), and prints
// the five most likely classes. Both run through infer::compile.
//
//   classify --checkpoint runs/latest/real-to-bin-step3.deploy.safetensors --image shoe.png
//   classify --checkpoint my_net.deploy.safetensors --image cat.png --size 32   (no trainer metadata)
//   classify ... --stem int16   (the first convolution on the image's bytes: docs/performance.md)
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
#include "cli_checks.hpp"
#include "resnet18.hpp"
#include "trained_model.hpp"

namespace {

using bnn::Tensor;
using bnn::examples::Preprocessing;
using bnn::examples::architecture_from;
using bnn::examples::plain_preprocessing;
using bnn::examples::preprocessing_from;
using nlohmann::json;

/// The image as the network saw its training data, in bytes: resized, zero-padded to the input
/// size (Fashion-MNIST's 28 -> 32). [1, S, S, C]. Says so when the file's size or channels are
/// not the network's: the result is still a fair input, but not the same picture.
Tensor<uint8_t> prepare_bytes(const std::string& path, const Preprocessing& p) {
    int file_w = 0, file_h = 0, file_c = 0;
    if (stbi_info(path.c_str(), &file_w, &file_h, &file_c) &&
        (file_w != p.image_size || file_h != p.image_size || file_c != p.channels))
        std::printf("note: '%s' is %dx%d with %d channel%s; the network takes %lldx%lld with %lld, so it was %s\n",
                    path.c_str(), file_w, file_h, file_c, file_c == 1 ? "" : "s", static_cast<long long>(p.image_size),
                    static_cast<long long>(p.image_size), static_cast<long long>(p.channels),
                    file_w != p.image_size || file_h != p.image_size
                        ? (file_c != p.channels ? "resized and its channels converted" : "resized")
                        : "converted to that many channels");
    Tensor<uint8_t> img = bnn::io::load_image(path, static_cast<int>(p.image_size), static_cast<int>(p.image_size),
                                              static_cast<int>(p.channels));
    const int64_t S = p.input_size, off = (S - p.image_size) / 2, C = p.channels;
    Tensor<uint8_t> x = Tensor<uint8_t>::zeros(bnn::Shape{1, S, S, C});
    for (int64_t y = 0; y < p.image_size; ++y)
        for (int64_t xx = 0; xx < p.image_size; ++xx)
            for (int64_t c = 0; c < C; ++c) x.at({0, y + off, xx + off, c}) = img.at({y, xx, c});
    return x;
}

/// The network's logits for the image: with the fp32 stem from the image normalised per channel,
/// with the int16 stem from its bytes (the stem folds the normalisation in).
Tensor<float> logits_of(const bnn::nn::Module& model, const Tensor<uint8_t>& bytes, const Preprocessing& p,
                        bool int16_stem, size_t& steps) {
    using namespace bnn;
    if (int16_stem) {
        infer::Graph graph =
            infer::compile(model, bytes.shape(), {.stem = infer::StemPrecision::int16, .mean = p.mean, .std = p.std});
        steps = graph.num_steps();
        return graph.run(bytes).clone();
    }
    const Tensor<float> x = examples::normalise(bytes, p);
    infer::Graph graph = infer::compile(model, x.shape());
    steps = graph.num_steps();
    return graph.run(x).clone();
}

}  // namespace

int main(int argc, char** argv) {
    using namespace bnn;
    CLI::App app{"Classify an image with a bnn ResNet-18 checkpoint or deployment file"};
    examples::one_line_errors(app, "classify");
    std::string checkpoint, image;
    int top = 5;
    int64_t size = 0, channels = 3;
    std::string stem = "fp32";
    app.add_option("--checkpoint", checkpoint, "a trainer checkpoint or a .deploy.safetensors file")->required();
    app.add_option("--image", image, "a PNG, JPEG or BMP image")->required();
    app.add_option("--top", top, "how many classes to print")
        ->check(examples::positive_integer())
        ->capture_default_str();
    app.add_option("--size", size, "input side for a deployment file without the trainer's metadata")
        ->check(CLI::Range(1, 4096));
    app.add_option("--channels", channels, "input channels for such a file")->check(CLI::Range(1, 4))->capture_default_str();
    app.add_option("--stem", stem, "the first convolution on normalised floats (fp32) or on the image's bytes (int16)")
        ->check(CLI::IsMember({"fp32", "int16"}))
        ->capture_default_str();
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
            size_t steps = 0;
            logits = logits_of(*deployed.model, prepare_bytes(image, p), p, stem == "int16", steps);
            if (p.class_names.empty()) p = plain_preprocessing(size, channels, logits.dim(1));
            std::printf("%s: deployed network, %zu inference steps (1-bit weights in every binary conv)\n",
                        checkpoint.c_str(), steps);
        } else {
            json meta = io::checkpoint_metadata(file);
            p = preprocessing_from(meta, checkpoint);
            examples::ResNetOptions o = architecture_from(meta, checkpoint);
            o.in_channels = p.channels;
            const std::string variant = meta.at("variant"), student = meta.at("student");
            examples::ResNet18 net(o);
            io::load_module(file, net);  // strict: a checkpoint of another model is an error
            net.eval();
            size_t steps = 0;
            logits = logits_of(net, prepare_bytes(image, p), p, stem == "int16", steps);
            std::printf("%s: %s ResNet-18, %s, width %lld\n", checkpoint.c_str(), variant.c_str(), student.c_str(),
                        static_cast<long long>(o.width));
        }
        // softmax, then the `top` largest
        const int64_t K = logits.dim(1);
        BNN_CHECK(static_cast<int64_t>(p.class_names.size()) == K, K, " outputs but ",
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
    } catch (const json::exception& e) {  // trainer metadata of the wrong type
        std::fprintf(stderr, "classify: '%s' has unusable metadata: %s\n", checkpoint.c_str(), e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "classify: %s\n", e.what());
        return 1;
    }
    return 0;
}
