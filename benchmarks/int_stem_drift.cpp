// What the integer stem and the int8 dense layers cost in accuracy (docs/performance.md, "Integer
// stem", "Int8 dense layers"): one network compiled twice, all in fp32 on normalized floats and
// with the int16 (or --stem int8, the int8) stem on the image bytes and the dense layers in
// --dense (fp32 or int8), run over the same test images. Prints the largest logit difference
// (absolute, and relative to the image's largest |logit|), the share of images whose top-1 class
// agrees, and each graph's top-1 accuracy.
//
//   int_stem_drift --checkpoint real-to-bin-step3.safetensors --data data/cifar-100-binary [--dense int8]
//       a trainer checkpoint (its metadata gives the network and the normalization), CIFAR test set
//   int_stem_drift --imagenet --data data/cifar-100-binary [--limit 500]
//       an untrained Real-to-Bin ResNet-18 with the ImageNet stem (width 64, 1000 classes; batch
//       norm statistics calibrated on the images), the test images resized to 224x224
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "../examples/resnet18.hpp"
#include "../examples/trained_model.hpp"
#include "bnn/data/cifar.hpp"
#include "bnn/infer/compile.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/io/image.hpp"

namespace {

using namespace bnn;

/// Images [first, first + count) of `images`, each resized to side x side.
Tensor<uint8_t> batch_of(const Tensor<uint8_t>& images, int64_t first, int64_t count, int64_t side) {
    const int64_t H = images.dim(1), W = images.dim(2), C = images.dim(3);
    Tensor<uint8_t> out = Tensor<uint8_t>::zeros(Shape{count, side, side, C});
    for (int64_t i = 0; i < count; ++i) {
        Tensor<uint8_t> img = Tensor<uint8_t>::zeros(Shape{H, W, C});
        std::copy_n(images.data() + (first + i) * H * W * C, H * W * C, img.data());
        if (side != H || side != W) img = io::resize_image(img, static_cast<int>(side), static_cast<int>(side));
        std::copy_n(img.data(), side * side * C, out.data() + i * side * side * C);
    }
    return out;
}

int64_t argmax(const float* v, int64_t n) { return std::max_element(v, v + n) - v; }

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Logit drift and top-1 agreement of the integer stem and dense layers against fp32"};
    std::string checkpoint, data_dir, stem = "int16", dense = "fp32";
    bool imagenet = false;
    int64_t limit = 10000, batch = 50;
    app.add_option("--checkpoint", checkpoint, "a trainer checkpoint (CIFAR input)");
    app.add_flag("--imagenet", imagenet, "an untrained ImageNet-stem network on the images resized to 224");
    app.add_option("--data", data_dir, "CIFAR-100 binary directory (test.bin)")->required();
    app.add_option("--limit", limit, "test images to use")->check(CLI::PositiveNumber);
    app.add_option("--stem", stem, "the stem to hold against the fp32 one")
        ->check(CLI::IsMember({"fp32", "int16", "int8"}))
        ->capture_default_str();
    app.add_option("--dense", dense, "the dense layers (1x1 convs, classifier) to hold against fp32 ones")
        ->check(CLI::IsMember({"fp32", "int8"}))
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    try {
        BNN_CHECK(imagenet != !checkpoint.empty(), "give either --checkpoint or --imagenet");
        const data::Dataset test = data::load_cifar100(data_dir, data::Split::test);
        const int64_t n = std::min(limit, test.size());
        examples::Preprocessing p;
        std::unique_ptr<examples::ResNet18> net;
        int64_t side = test.height();
        if (imagenet) {
            side = 224;
            p.image_size = p.input_size = side;
            p.mean = {0.485f, 0.456f, 0.406f};
            p.std = {0.229f, 0.224f, 0.225f};
            examples::ResNetOptions o;
            o.variant = examples::Variant::RealToBin;
            o.mode = nn::BinaryMode::FullyBinary;
            o.stem = examples::Stem::ImageNet;
            o.width = 64;
            o.num_classes = 1000;
            manual_seed(5);
            net = std::make_unique<examples::ResNet18>(o);
            // Batch norm statistics from the images themselves (training-mode forwards), so
            // that activations have the spread of a trained network's rather than of N(0, 1).
            net->train();
            NoGradGuard no_tape;
            for (int64_t i = 0; i + batch <= std::min<int64_t>(n, 200); i += batch)
                net->forward(Variable(data::normalize(batch_of(test.images, i, batch, side), examples::input_normalization(p))));
        } else {
            io::SafetensorsFile file = io::load_safetensors(checkpoint);
            const nlohmann::json meta = io::checkpoint_metadata(file);
            p = examples::preprocessing_from(meta, checkpoint);
            BNN_CHECK(p.image_size == test.height() && p.input_size == test.height() && p.channels == test.channels(),
                      "'", checkpoint, "' takes ", p.input_size, "x", p.input_size, "x", p.channels,
                      " images, the test set has ", test.height(), "x", test.width(), "x", test.channels());
            examples::ResNetOptions o = examples::architecture_from(meta, checkpoint);
            o.in_channels = p.channels;
            net = std::make_unique<examples::ResNet18>(o);
            io::load_module(file, *net);
        }
        net->eval();
        const Shape shape{batch, side, side, p.channels};
        infer::Graph fp32 = infer::compile(*net, shape);
        const infer::CompileOptions options{.stem = infer::stem_precision(stem),
                                            .dense = infer::dense_precision(dense),
                                            .mean = p.mean,
                                            .std = p.std};
        infer::Graph quantised = infer::compile(*net, shape, options);
        double max_abs = 0, max_rel = 0, sum_rel = 0;
        int64_t agree = 0, right_fp32 = 0, right_quantised = 0, seen = 0;
        for (int64_t i = 0; i + batch <= n; i += batch) {
            const Tensor<uint8_t> bytes = batch_of(test.images, i, batch, side);
            const Tensor<float> normalized = data::normalize(bytes, examples::input_normalization(p));
            const Tensor<float> a = fp32.run(normalized).clone();
            const Tensor<float>& b = infer::reads_bytes(options.stem) ? quantised.run(bytes) : quantised.run(normalized);
            const int64_t K = a.dim(1);
            for (int64_t j = 0; j < batch; ++j) {
                const float* x = a.data() + j * K;
                const float* y = b.data() + j * K;
                double scale = 0, diff = 0;
                for (int64_t k = 0; k < K; ++k) {
                    scale = std::max(scale, double(std::fabs(x[k])));
                    diff = std::max(diff, double(std::fabs(x[k] - y[k])));
                }
                max_abs = std::max(max_abs, diff);
                const double rel = scale > 0 ? diff / scale : 0;
                max_rel = std::max(max_rel, rel);
                sum_rel += rel;
                const int64_t ca = argmax(x, K), cb = argmax(y, K), label = test.labels[i + j];
                agree += ca == cb;
                right_fp32 += ca == label;
                right_quantised += cb == label;
                ++seen;
            }
        }
        std::printf("%s: %lld images of %lldx%lld\n", imagenet ? "untrained ImageNet-stem Real-to-Bin ResNet-18" : checkpoint.c_str(),
                    static_cast<long long>(seen), static_cast<long long>(side), static_cast<long long>(side));
        std::printf("largest |logit difference|  %.3g\n", max_abs);
        std::printf("relative to the image's largest |logit|: largest %.3g, mean %.3g\n", max_rel, sum_rel / double(seen));
        std::printf("top-1 agreement  %lld of %lld (%.2f%%)\n", static_cast<long long>(agree), static_cast<long long>(seen),
                    100.0 * double(agree) / double(seen));
        std::printf("top-1 accuracy   fp32 %.2f%%, %s stem and %s dense layers %.2f%%\n",
                    100.0 * double(right_fp32) / double(seen), stem.c_str(), dense.c_str(),
                    100.0 * double(right_quantised) / double(seen));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "int_stem_drift: %s\n", e.what());
        return 1;
    }
    return 0;
}
