// Classifies an image with a checkpoint written by the trainer (float or binary) or with any
// deployment file (whatever its architecture: the file describes its own network), and prints
// the five most likely classes. Both run through infer::compile.
//
//   classify --checkpoint runs/latest/real-to-bin-step3.deploy.safetensors --image shoe.png
//   classify --checkpoint my_net.deploy.safetensors --image cat.png --size 32   (no trainer metadata)
//   classify ... --stem int16   (the first convolution on the image's bytes: docs/performance.md)
//   classify ... --stem int8 --dense int8   (also the 1x1 convs and the classifier in int8)
//   classify ... --logits       (also every class's logit, to the last bit: "logit INDEX VALUE")
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "bnn/infer/compile.hpp"
#include "cli_checks.hpp"
#include "trained_model.hpp"

using bnn::Tensor;
using bnn::examples::Preprocessing;
using bnn::examples::plain_preprocessing;
using nlohmann::json;

int main(int argc, char** argv) {
    using namespace bnn;
    CLI::App app{"Classify an image with a bnn ResNet-18 checkpoint or deployment file"};
    examples::one_line_errors(app, "classify");
    std::string checkpoint, image;
    int top = 5;
    int64_t size = 0, channels = 3;
    std::string stem = "fp32", dense = "fp32";
    bool print_logits = false;
    app.add_option("--checkpoint", checkpoint, "a trainer checkpoint or a .deploy.safetensors file")->required();
    app.add_option("--image", image, "a PNG, JPEG or BMP image")->required();
    app.add_option("--top", top, "how many classes to print")
        ->check(examples::positive_integer())
        ->capture_default_str();
    app.add_option("--size", size, "input side for a deployment file without the trainer's metadata")
        ->check(CLI::Range(1, 4096));
    app.add_option("--channels", channels, "input channels for such a file")->check(CLI::Range(1, 4))->capture_default_str();
    app.add_option("--stem", stem,
                   "the first convolution on normalized floats (fp32) or on the image's bytes with int16 or int8 weights")
        ->check(CLI::IsMember({"fp32", "int16", "int8"}))
        ->capture_default_str();
    app.add_option("--dense", dense, "the 1x1 convolutions and the classifier in fp32 or int8")
        ->check(CLI::IsMember({"fp32", "int8"}))
        ->capture_default_str();
    app.add_flag("--logits", print_logits, "also print every class's logit, with the digits that give back its float");
    CLI11_PARSE(app, argc, argv);

    const infer::CompileOptions precision{.stem = infer::stem_precision(stem), .dense = infer::dense_precision(dense)};
    // The image as the network takes it; a note of what was changed, once it has been read.
    auto input_of = [](const std::string& path, const Preprocessing& p) {
        examples::ImageInput in = examples::image_input(path, p);
        if (!in.note.empty()) std::printf("note: %s\n", in.note.c_str());
        return in.bytes;
    };
    try {
        examples::Network net = examples::load_network(checkpoint);
        release_idle_tensor_memory();  // the file's buffers, freed as the network took its tensors
        Preprocessing p;
        if (net.preprocessing) {
            p = *net.preprocessing;
        } else {
            BNN_CHECK(size > 0, "'", checkpoint, "' has no trainer metadata (input size, normalization, "
                      "class names): give --size (and --channels)");
            p = plain_preprocessing(size, channels, 0);
        }
        const Tensor<uint8_t> bytes = input_of(image, p);
        infer::Graph graph = examples::compile_for_bytes(*net.model, bytes.shape(), p, precision);
        const size_t steps = graph.num_steps();
        // The graph holds what it needs (the packed binary weights shared): the model and the
        // blocks its loading freed are no longer needed while the image runs.
        net.model.reset();
        release_idle_tensor_memory();
        const Tensor<float> logits = examples::run_on_bytes(graph, bytes, p, precision.stem);
        if (p.class_names.empty()) p = plain_preprocessing(size, channels, logits.dim(1));
        if (net.deployed)
            std::printf("%s: deployed network, %zu inference steps (1-bit weights in every binary conv)\n",
                        checkpoint.c_str(), steps);
        else
            std::printf("%s: %s\n", checkpoint.c_str(), net.description.c_str());
        const int64_t K = logits.dim(1);
        BNN_CHECK(static_cast<int64_t>(p.class_names.size()) == K, K, " outputs but ",
                  p.class_names.size(), " class names in '", checkpoint, "'");
        for (const examples::RankedClass& c : examples::top_classes(logits.data(), K, top))
            std::printf("  %6.2f%%  %s\n", 100 * c.probability, p.class_names[c.index].c_str());
        // Nine significant digits give back every float exactly (tests/cli/portable_deployment.sh
        // compares two machines' logits).
        if (print_logits)
            for (int64_t k = 0; k < K; ++k) std::printf("logit %lld %.9g\n", static_cast<long long>(k), logits.data()[k]);
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
