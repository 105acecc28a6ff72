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

using bnn::Tensor;
using bnn::examples::Preprocessing;
using bnn::examples::architecture_from;
using bnn::examples::logits_of;
using bnn::examples::plain_preprocessing;
using bnn::examples::preprocessing_from;
using nlohmann::json;

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
    app.add_option("--stem", stem, "the first convolution on normalized floats (fp32) or on the image's bytes (int16)")
        ->check(CLI::IsMember({"fp32", "int16"}))
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    const infer::StemPrecision stem_precision = stem == "int16" ? infer::StemPrecision::int16 : infer::StemPrecision::fp32;
    // The image as the network takes it; a note of what was changed, once it has been read.
    auto input_of = [](const std::string& path, const Preprocessing& p) {
        examples::ImageInput in = examples::image_input(path, p);
        if (!in.note.empty()) std::printf("note: %s\n", in.note.c_str());
        return in.bytes;
    };
    try {
        io::SafetensorsFile file = io::load_safetensors(checkpoint);
        Tensor<float> logits;
        Preprocessing p;
        auto format = file.metadata.find("format");
        if (format != file.metadata.end() && format->second == io::kDeployFormat) {
            const json meta = examples::metadata_json(file.metadata);
            io::Deployed deployed = io::load_deployed(checkpoint);
            if (meta.contains("class_names")) {
                p = preprocessing_from(meta, checkpoint);
            } else {
                BNN_CHECK(size > 0, "'", checkpoint, "' has no trainer metadata (input size, normalization, "
                          "class names): give --size (and --channels)");
                p = plain_preprocessing(size, channels, 0);
            }
            size_t steps = 0;
            logits = logits_of(*deployed.model, input_of(image, p), p, stem_precision, steps);
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
            logits = logits_of(net, input_of(image, p), p, stem_precision, steps);
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
