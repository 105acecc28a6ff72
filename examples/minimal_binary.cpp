// The worked example of docs/api-guide.md: a small binary network trained on a synthetic
// two-class problem, first with binary activations and real latent weights, then fully binary.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <vector>

#include "bnn/nn/activation.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/linear.hpp"
#include "bnn/nn/pool.hpp"
#include "bnn/nn/sequential.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/train/train_step.hpp"
#include "cli_checks.hpp"

using namespace bnn;

// Images [n, 8, 8, 1]: class 1 has a bright left half, class 0 a bright right half, plus noise.
static void make_batch(Rng& rng, int64_t n, Tensor<float>& images, std::vector<int32_t>& labels) {
    images = Tensor<float>::randn({n, 8, 8, 1}, rng, 0.f, 0.5f);
    labels.resize(n);
    for (int64_t i = 0; i < n; ++i) {
        labels[i] = static_cast<int32_t>(rng.below(2));
        for (int64_t h = 0; h < 8; ++h)
            for (int64_t w = 0; w < 4; ++w) images.at({i, h, labels[i] ? w : w + 4, 0}) += 1.f;
    }
}

int main(int argc, char** argv) {
    CLI::App app{"Train a small binary network on a synthetic two-class problem (docs/api-guide.md)"};
    examples::one_line_errors(app, "minimal_binary");
    CLI11_PARSE(app, argc, argv);  // no options: anything given is a mistake, not silently ignored

    manual_seed(1);
    // Real stem, then BN -> sign -> binary 3x3 conv (learned per-channel scale) -> PReLU, then a real head.
    auto binary = std::make_shared<nn::BinaryConv2d>(nn::BinaryConv2dOptions{
        .in_channels = 16, .out_channels = 16, .mode = nn::BinaryMode::BinaryActivations,
        .scale = nn::WeightScale::Learned});
    nn::Sequential model{std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 1, .out_channels = 16, .padding = 1}),
                         std::make_shared<nn::BatchNorm2d>(16), std::make_shared<nn::ReLU>(),
                         std::make_shared<nn::BatchNorm2d>(16), binary, std::make_shared<nn::PReLU>(16),
                         std::make_shared<nn::GlobalAvgPool>(), std::make_shared<nn::Linear>(16, 2)};
    optim::Adam optimizer(model.parameters(), {.lr = 1e-2f});

    Rng rng(2);
    train::StepBatch batch;
    for (nn::BinaryMode mode : {nn::BinaryMode::BinaryActivations, nn::BinaryMode::FullyBinary}) {
        binary->set_mode(mode);
        for (int step = 0; step < 60; ++step) {
            make_batch(rng, 32, batch.images, batch.labels);
            // Train mode, zero_grad, forward, cross-entropy, backward, Adam's step, then the
            // constraints (latent binary weights back into [-1, 1]).
            train::train_step(model, optimizer, batch);
        }
        // Evaluate without a tape: BN uses its running statistics.
        model.eval();
        NoGradGuard no_grad;
        Tensor<float> images;
        std::vector<int32_t> labels;
        make_batch(rng, 256, images, labels);
        Tensor<float> logits = model.forward(Variable(images)).value();
        int correct = 0;
        for (int64_t i = 0; i < 256; ++i) correct += (logits.at({i, 1}) > logits.at({i, 0})) == (labels[i] == 1);
        std::printf("%s: test accuracy %.1f%%\n",
                    mode == nn::BinaryMode::FullyBinary ? "fully binary" : "binary activations", correct / 2.56);
    }
    return 0;
}
