// Layers (nn/): names, initialisation, train/eval, gradients through modules, freezing, errors,
// and a small CNN that has to learn; the BinaryConv2d module in its modes, the channel gate and
// a Real-to-Bin half-block end to end.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "bnn/losses/cross_entropy.hpp"
#include "bnn/autograd/grad_mode.hpp"
#include "bnn/nn/init.hpp"
#include "bnn/nn/activation.hpp"
#include "bnn/nn/basic_block.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/binary_basic_block.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/channel_gate.hpp"
#include "bnn/nn/channel_shift.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/residual.hpp"
#include "bnn/ops/binary_conv2d.hpp"
#include "bnn/ops/channel_gate.hpp"
#include "bnn/ops/conv2d.hpp"
#include "bnn/ops/elementwise.hpp"
#include "bnn/ops/operators.hpp"
#include "bnn/ops/pad.hpp"
#include "bnn/nn/flatten.hpp"
#include "bnn/nn/linear.hpp"
#include "bnn/nn/pool.hpp"
#include "bnn/nn/sequential.hpp"
#include "bnn/ops/reduce.hpp"
#include "bnn/ops/sign.hpp"
#include "bnn/optim/sgd.hpp"
#include "gradcheck.hpp"

using namespace bnn;
using bnn::test::check_gradients;
using bnn::test::random_variable;

namespace {

// Mean and (population) standard deviation of a tensor's elements.
std::pair<double, double> moments(const Tensor<float>& t) {
    double s = 0, sq = 0;
    for (float v : t) s += v;
    const double mean = s / t.numel();
    for (float v : t) sq += (v - mean) * (v - mean);
    return {mean, std::sqrt(sq / t.numel())};
}

}  // namespace

TEST_CASE("Sequential names parameters and buffers with dotted paths", "[nn][module]") {
    nn::Sequential inner;
    inner.push_back(std::make_shared<nn::Linear>(4, 2));
    auto net = std::make_shared<nn::Sequential>();
    net->push_back(std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 4, .bias = true}));
    net->push_back(std::make_shared<nn::BatchNorm2d>(4));
    net->push_back(std::make_shared<nn::ReLU>());
    net->push_back(std::make_shared<nn::GlobalAvgPool>());
    auto head = net->push_back(std::make_shared<nn::Sequential>(
        std::initializer_list<std::shared_ptr<nn::Module>>{std::make_shared<nn::Linear>(4, 2, false)}));
    nn::Sequential outer{net};

    std::vector<std::string> names;
    for (auto& [name, p] : outer.named_parameters()) names.push_back(name);
    REQUIRE(names == std::vector<std::string>{"0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias", "0.4.0.weight"});
    std::vector<std::string> buffers;
    for (auto& [name, b] : outer.named_buffers()) buffers.push_back(name);
    REQUIRE(buffers == std::vector<std::string>{"0.1.running_mean", "0.1.running_var"});
    REQUIRE(outer.num_parameters() == 4 * 3 * 3 * 3 + 4 + 4 + 4 + 2 * 4);
    REQUIRE(head->size() == 1);
    REQUIRE((*net)[1].type_name() == "BatchNorm2d");
    REQUIRE_THROWS_AS((*net)[5], Error);

    // The registry and the layer's members are the same handles.
    auto& conv = dynamic_cast<nn::Conv2d&>((*net)[0]);
    REQUIRE(outer.named_parameters()[0].second.id() == conv.weight.id());

    outer.eval();
    REQUIRE_FALSE((*net)[1].is_training());
    outer.train();
    REQUIRE((*net)[1].is_training());
}

TEST_CASE("layers start from U(+-1/sqrt(fan_in)), as PyTorch, and follow manual_seed", "[nn][init]") {
    manual_seed(11);
    nn::Conv2d conv({.in_channels = 64, .out_channels = 128, .kernel_size = 3});
    REQUIRE(conv.weight.shape() == Shape{128, 3, 3, 64});
    REQUIRE_FALSE(conv.bias.defined());
    auto [mean, stddev] = moments(conv.weight.value());
    const double conv_bound = 1.0 / std::sqrt(3 * 3 * 64);
    REQUIRE(std::abs(mean) < 0.1 * conv_bound);
    REQUIRE(stddev == Approx(conv_bound / std::sqrt(3.0)).epsilon(0.02));
    for (float w : conv.weight.value()) REQUIRE(std::abs(w) <= conv_bound);

    nn::Linear fc(200, 300);
    auto [fm, fs] = moments(fc.weight.value());
    REQUIRE(fs == Approx(1.0 / std::sqrt(3.0 * 200)).epsilon(0.02));

    // Kaiming normal stays available: std sqrt(2 / fan_in).
    Tensor<float> k(Shape{128, 3, 3, 64});
    nn::init::kaiming_normal(k);
    REQUIRE(moments(k).second == Approx(std::sqrt(2.0 / (3 * 3 * 64))).epsilon(0.02));
    // Bias uniform in +-1/sqrt(in): bounded, and spread like a uniform (std = bound / sqrt(3)).
    const float bound = 1.f / std::sqrt(200.f);
    for (float b : fc.bias.value()) REQUIRE(std::abs(b) <= bound);
    REQUIRE(moments(fc.bias.value()).second == Approx(bound / std::sqrt(3.0)).epsilon(0.15));

    manual_seed(11);
    nn::Conv2d again({.in_channels = 64, .out_channels = 128, .kernel_size = 3});
    REQUIRE(again.weight.value().to_vector() == conv.weight.value().to_vector());

    nn::BatchNorm2d bn(5);
    for (int c = 0; c < 5; ++c) {
        REQUIRE(bn.weight.value()[c] == 1.f);
        REQUIRE(bn.bias.value()[c] == 0.f);
        REQUIRE(bn.running_mean[c] == 0.f);
        REQUIRE(bn.running_var[c] == 1.f);
    }
    nn::PReLU prelu(3);
    REQUIRE(prelu.weight.value().to_vector() == std::vector<float>{0.25f, 0.25f, 0.25f});
}

TEST_CASE("BatchNorm2d uses batch statistics in training and running ones in eval", "[nn][batchnorm]") {
    Rng rng(3);
    for (Shape shape : {Shape{4, 3, 5, 2}, Shape{16, 2}}) {
        const int64_t C = shape[-1];
        const int64_t rows = shape.numel() / C;
        nn::BatchNorm2d bn(C, 0.1f, 1e-5f);
        Variable x(Tensor<float>::randn(shape, rng, 2.f, 3.f));
        Variable y = bn(x);
        REQUIRE(y.shape() == shape);
        for (int64_t c = 0; c < C; ++c) {
            double s = 0, sq = 0, ys = 0, ysq = 0;
            for (int64_t r = 0; r < rows; ++r) {
                s += x.value()[r * C + c];
                ys += y.value()[r * C + c];
            }
            const double mean = s / rows, ymean = ys / rows;
            for (int64_t r = 0; r < rows; ++r) {
                sq += std::pow(x.value()[r * C + c] - mean, 2);
                ysq += std::pow(y.value()[r * C + c] - ymean, 2);
            }
            REQUIRE(ymean == Approx(0).margin(1e-5));
            REQUIRE(ysq / rows == Approx(1).epsilon(1e-3));
            // Running statistics move 10% towards the batch's mean and unbiased variance.
            REQUIRE(bn.running_mean[c] == Approx(0.1 * mean).epsilon(1e-4));
            REQUIRE(bn.running_var[c] == Approx(0.9 + 0.1 * sq / (rows - 1)).epsilon(1e-4));
        }

        bn.weight.value().fill(2.f);
        bn.bias.value().fill(0.5f);
        bn.eval();
        const auto mean_before = bn.running_mean.to_vector();
        Variable z = bn(x);
        REQUIRE(bn.running_mean.to_vector() == mean_before);
        for (int64_t i = 0; i < x.numel(); i += 7) {
            const int64_t c = i % C;
            const float expected =
                (x.value()[i] - bn.running_mean[c]) / std::sqrt(bn.running_var[c] + 1e-5f) * 2.f + 0.5f;
            REQUIRE(z.value()[i] == Approx(expected).epsilon(1e-4));
        }
    }
}

TEST_CASE("Gradients flow through layers to inputs and parameters", "[nn][grad]") {
    Rng rng(5);
    manual_seed(5);
    SECTION("Conv2d with bias, stride 2 and padding") {
        nn::Conv2d conv({.in_channels = 3, .out_channels = 4, .kernel_size = 3, .stride = 2, .padding = 1, .bias = true});
        auto x = test::random_variable({2, 5, 5, 3}, rng);
        test::check_gradients([&](const auto& in) { return conv(in[0]); }, {x, conv.weight, conv.bias});
    }
    SECTION("Linear") {
        nn::Linear fc(6, 3);
        auto x = test::random_variable({4, 6}, rng);
        test::check_gradients([&](const auto& in) { return fc(in[0]); }, {x, fc.weight, fc.bias});
    }
    SECTION("BatchNorm2d in training mode, 4-D and 2-D") {
        nn::BatchNorm2d bn(3);
        nn::init::uniform(bn.weight.value(), 0.5f, 1.5f, rng);
        nn::init::uniform(bn.bias.value(), -0.5f, 0.5f, rng);
        auto x4 = test::random_variable({2, 3, 3, 3}, rng);
        test::check_gradients([&](const auto& in) { return bn(in[0]); }, {x4, bn.weight, bn.bias});
        auto x2 = test::random_variable({6, 3}, rng);
        test::check_gradients([&](const auto& in) { return bn(in[0]); }, {x2, bn.weight, bn.bias});
    }
    SECTION("PReLU") {
        nn::PReLU prelu(3, 0.1f);
        auto x = test::random_variable_away_from({2, 2, 2, 3}, rng, {0.f}, 0.05f);
        test::check_gradients([&](const auto& in) { return prelu(in[0]); }, {x, prelu.weight});
    }
    SECTION("A Sequential conv-BN-ReLU-pool-flatten-linear stack") {
        nn::Sequential net;
        net.push_back(std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 2, .out_channels = 3, .padding = 1}));
        net.push_back(std::make_shared<nn::BatchNorm2d>(3));
        net.push_back(std::make_shared<nn::Tanh>());  // smooth, so finite differences see no kinks
        net.push_back(std::make_shared<nn::AvgPool2d>(2, 2));
        net.push_back(std::make_shared<nn::Flatten>());
        net.push_back(std::make_shared<nn::Linear>(2 * 2 * 3, 2));
        auto x = test::random_variable({3, 4, 4, 2}, rng);
        std::vector<Variable> inputs{x};
        for (auto& p : net.parameters()) inputs.push_back(p);
        REQUIRE(inputs.size() == 6);  // x, conv weight, BN weight and bias, linear weight and bias
        test::check_gradients([&](const auto& in) { return net(in[0]); }, inputs);
    }
}

TEST_CASE("A frozen module records nothing and gets no gradients", "[nn][freeze]") {
    Rng rng(9);
    nn::Sequential net{std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 2, .out_channels = 2, .padding = 1}),
                       std::make_shared<nn::BatchNorm2d>(2), std::make_shared<nn::ReLU>()};
    net.set_requires_grad(false);
    Variable x(Tensor<float>::randn({2, 3, 3, 2}, rng));
    Variable y = net(x);
    REQUIRE_FALSE(y.requires_grad());
    REQUIRE(y.is_leaf());

    // With an input that wants a gradient, the tape reaches the input but not the weights.
    Variable xg(Tensor<float>::randn({2, 3, 3, 2}, rng), true);
    Variable z = ops::sum(net(xg));
    z.backward();
    REQUIRE(xg.has_grad());
    for (auto& p : net.parameters()) REQUIRE_FALSE(p.has_grad());

    net.set_requires_grad(true);
    {
        NoGradGuard guard;
        REQUIRE(net(xg).is_leaf());
    }
    REQUIRE_FALSE(net(xg).is_leaf());
}

TEST_CASE("Layers reject bad shapes and options with bnn::Error", "[nn][errors]") {
    nn::Conv2d conv({.in_channels = 3, .out_channels = 8});
    REQUIRE_THROWS_WITH(conv(Variable(Tensor<float>({1, 5, 5, 4}))), Catch::Contains("[1, 5, 5, 4]"));
    REQUIRE_THROWS_AS(conv(Variable(Tensor<float>({5, 5, 3}))), Error);
    REQUIRE_THROWS_AS(nn::Conv2d({.in_channels = 0, .out_channels = 8}), Error);
    REQUIRE_THROWS_AS(nn::Conv2d({.in_channels = 3, .out_channels = 8, .stride = 0}), Error);
    nn::Linear fc(4, 2);
    REQUIRE_THROWS_WITH(fc(Variable(Tensor<float>({3, 5}))), Catch::Contains("[3, 5]"));
    nn::BatchNorm2d bn(3);
    REQUIRE_THROWS_WITH(bn(Variable(Tensor<float>({2, 4, 4, 2}))), Catch::Contains("BatchNorm2d"));
    REQUIRE_THROWS_AS(bn(Variable(Tensor<float>({2, 4, 3}))), Error);
    nn::PReLU prelu(4);
    REQUIRE_THROWS_AS(prelu(Variable(Tensor<float>({2, 3}))), Error);
    REQUIRE_THROWS_AS(nn::MaxPool2d(0), Error);
    REQUIRE_THROWS_AS(nn::AvgPool2d(2, 2, 3), Error);
    nn::Sequential empty;
    REQUIRE_THROWS_AS(empty.push_back(std::shared_ptr<nn::ReLU>()), Error);
}

TEST_CASE("A small CNN learns a separable image problem", "[nn][train]") {
    // Four classes: a bright 3x3 blob in one of the four quadrants of a noisy 8x8 image.
    constexpr int kClasses = 4, kSize = 8;
    Rng rng(2024);
    auto make_set = [&](int n, Tensor<float>& images, std::vector<int32_t>& labels) {
        images = Tensor<float>::randn({n, kSize, kSize, 1}, rng, 0.f, 0.5f);
        labels.resize(n);
        for (int i = 0; i < n; ++i) {
            const int c = static_cast<int>(rng.below(kClasses));
            labels[i] = c;
            const int oy = (c / 2) * 4 + static_cast<int>(rng.below(2)), ox = (c % 2) * 4 + static_cast<int>(rng.below(2));
            for (int y = oy; y < oy + 3; ++y)
                for (int x = ox; x < ox + 3; ++x) images.at({i, y, x, 0}) += 1.5f;
        }
    };
    Tensor<float> train_x, test_x;
    std::vector<int32_t> train_y, test_y;
    make_set(512, train_x, train_y);
    make_set(256, test_x, test_y);

    manual_seed(1);
    nn::Sequential net{std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 1, .out_channels = 8, .padding = 1}),
                       std::make_shared<nn::BatchNorm2d>(8), std::make_shared<nn::ReLU>(),
                       std::make_shared<nn::MaxPool2d>(2, 2), std::make_shared<nn::Flatten>(),
                       std::make_shared<nn::Linear>(4 * 4 * 8, kClasses)};
    optim::SGD opt(net.parameters(), {.lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-4f});

    constexpr int kBatch = 32;
    float first_loss = 0, last_loss = 0;
    for (int epoch = 0; epoch < 6; ++epoch) {
        for (int b = 0; b < 512 / kBatch; ++b) {
            Variable x(train_x.slice(b * kBatch, (b + 1) * kBatch));
            std::vector<int32_t> y(train_y.begin() + b * kBatch, train_y.begin() + (b + 1) * kBatch);
            opt.zero_grad();
            Variable loss = losses::cross_entropy(net(x), y);
            loss.backward();
            opt.step();
            if (epoch == 0 && b == 0) first_loss = loss.item();
            last_loss = loss.item();
        }
    }
    REQUIRE(last_loss < 0.5f * first_loss);

    net.eval();
    NoGradGuard no_grad;
    Tensor<float> logits = net(Variable(test_x)).value();
    int correct = 0;
    for (int i = 0; i < 256; ++i) {
        int best = 0;
        for (int k = 1; k < kClasses; ++k)
            if (logits.at({i, k}) > logits.at({i, best})) best = k;
        correct += best == test_y[i];
    }
    INFO("held-out accuracy " << correct << " / 256");
    REQUIRE(correct >= 0.95 * 256);
}

// ---- the paper's blocks and the module helpers -----------------------------------------------------

namespace {
std::vector<std::string> parameter_names(const nn::Module& m) {
    std::vector<std::string> names;
    for (const auto& [name, p] : m.named_parameters()) names.push_back(name);
    return names;
}
}  // namespace

TEST_CASE("the binary blocks keep the parameter names of the example ResNet-18's checkpoints", "[nn][blocks]") {
    manual_seed(3);
    nn::BinaryBasicBlock gated(nn::BinaryHalfBlockOptions{.in_channels = 8, .out_channels = 16, .stride = 2,
                                                          .scale = nn::BlockScale::Gate});
    REQUIRE(parameter_names(gated) ==
            std::vector<std::string>{"half1.bn.weight", "half1.bn.bias", "half1.conv.weight", "half1.gate.weight1",
                                     "half1.gate.weight2", "half1.prelu.weight", "half1.shortcut.1.weight",
                                     "half1.shortcut.2.weight", "half1.shortcut.2.bias", "half2.bn.weight",
                                     "half2.bn.bias", "half2.conv.weight", "half2.gate.weight1", "half2.gate.weight2",
                                     "half2.prelu.weight"});
    REQUIRE(gated.half1->gate->hidden_channels() == 1);  // 8 / 8
    nn::BinaryHalfBlock alpha(nn::BinaryHalfBlockOptions{.in_channels = 8, .out_channels = 16, .gate_hidden = 5});
    REQUIRE(parameter_names(alpha) == std::vector<std::string>{"bn.weight", "bn.bias", "conv.weight", "conv.alpha",
                                                               "prelu.weight", "shortcut.0.weight", "shortcut.1.weight",
                                                               "shortcut.1.bias"});
    nn::BasicBlock real(nn::BasicBlockOptions{.in_channels = 8, .out_channels = 16, .stride = 2});
    REQUIRE(parameter_names(real) == std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight",
                                                              "bn2.weight", "bn2.bias", "downsample.0.weight",
                                                              "downsample.1.weight", "downsample.1.bias"});
    nn::ChannelGate gate(nn::ChannelGateOptions{.in_channels = 8, .out_channels = 4, .hidden_channels = 3});
    REQUIRE(gate.weight1.shape() == Shape{3, 8});
    REQUIRE(gate.weight2.shape() == Shape{4, 3});
    // The stage switch reaches both convs; set_binary_mode any nested one.
    gated.set_mode(nn::BinaryMode::FullyBinary);
    REQUIRE(gated.half2->conv->mode() == nn::BinaryMode::FullyBinary);
    nn::Sequential outer;
    outer.push_back("inner", std::make_shared<nn::Sequential>())->add<nn::BinaryConv2d>(
        nn::BinaryConv2dOptions{.in_channels = 2, .out_channels = 2});
    REQUIRE(nn::set_binary_mode(outer, nn::BinaryMode::SoftActivations) == 1);
    REQUIRE_THROWS_WITH(outer.push_back("inner", std::make_shared<nn::ReLU>()), Catch::Contains("already"));
}

TEST_CASE("named_modules lists every module depth first with its path", "[nn][module]") {
    nn::Sequential net;
    net.add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 1, .out_channels = 2});
    net.push_back("res", std::make_shared<nn::Residual>(std::make_shared<nn::ReLU>()));
    std::vector<std::string> paths;
    for (const auto& [path, m] : net.named_modules()) paths.push_back(path + ":" + m->type_name());
    REQUIRE(paths == std::vector<std::string>{":Sequential", "0:Conv2d", "res:Residual", "res.body:ReLU"});
}

TEST_CASE("Residual adds its body to the shortcut or the input, and Variable operators are the ops", "[nn][ops]") {
    Rng rng(4);
    Variable x(Tensor<float>::randn({2, 3, 3, 4}, rng));
    nn::Residual identity(std::make_shared<nn::ReLU>());
    Tensor<float> y = identity.forward(x).value();
    for (int64_t i = 0; i < y.numel(); ++i) REQUIRE(y[i] == std::max(x.value()[i], 0.f) + x.value()[i]);
    Variable a(Tensor<float>::randn({2, 4}, rng)), b(Tensor<float>::randn({2, 4}, rng));
    Variable s(Tensor<float>::randn({4}, rng));
    const Tensor<float> sum = (a + b).value(), diff = (a - b).value(), prod = (a * s).value();
    const Tensor<float> twice = (2.f * a).value(), neg = (-a).value();
    for (int64_t i = 0; i < 8; ++i) {
        REQUIRE(sum[i] == a.value()[i] + b.value()[i]);
        REQUIRE(diff[i] == a.value()[i] - b.value()[i]);
        REQUIRE(prod[i] == a.value()[i] * s.value()[i % 4]);
        REQUIRE(twice[i] == 2.f * a.value()[i]);
        REQUIRE(neg[i] == -a.value()[i]);
    }
}

TEST_CASE("ops::pad puts a constant border around the image and its gradient checks", "[nn][ops][gradcheck]") {
    Rng rng(5);
    Variable x = test::random_variable({2, 3, 4, 2}, rng);
    Tensor<float> y = ops::pad(x, 2, 1.f).value();
    REQUIRE(y.shape() == Shape{2, 7, 8, 2});
    REQUIRE(y.at({0, 0, 0, 0}) == 1.f);
    REQUIRE(y.at({1, 6, 7, 1}) == 1.f);
    REQUIRE(y.at({1, 2, 3, 1}) == x.value().at({1, 0, 1, 1}));
    test::check_gradients([](const std::vector<Variable>& in) { return ops::pad(in[0], 1, -0.5f); }, {x});
    REQUIRE_THROWS_AS(ops::pad(x, -1, 0.f), Error);
}

TEST_CASE("BinaryConv2d one-padding: fully binary equals the ±1 float conv with a border of +1", "[nn][binary]") {
    Rng rng(6);
    for (nn::WeightScale scale : {nn::WeightScale::None, nn::WeightScale::MeanAbs, nn::WeightScale::Learned,
                                  nn::WeightScale::Folded}) {
        manual_seed(7);
        nn::BinaryConv2d conv(nn::BinaryConv2dOptions{.in_channels = 5, .out_channels = 3, .stride = 2,
                                                      .padding = 1, .pad_value = nn::PadValue::One,
                                                      .mode = nn::BinaryMode::FullyBinary, .scale = scale});
        if (conv.alpha.defined())
            for (float& v : conv.alpha.value()) v = rng.uniform(0.5f, 2.f);
        Tensor<float> x = Tensor<float>::randn({2, 5, 6, 5}, rng);
        NoGradGuard no_tape;
        const Tensor<float> got = conv.forward(Variable(x)).value();
        // Reference: sign(x) padded with +1, float conv with sign(W), times the binary scale.
        Tensor<float> ws = conv.weight.value().clone();
        for (float& v : ws) v = v >= 0.f ? 1.f : -1.f;
        Tensor<float> xs = x.clone();
        for (float& v : xs) v = v >= 0.f ? 1.f : -1.f;
        const Tensor<float> ref = ops::conv2d(ops::pad(Variable(xs), 1, 1.f), Variable(ws), Variable(), 2, 0).value();
        const Tensor<float> a = conv.binary_weight_scale();
        REQUIRE(got.shape() == ref.shape());
        for (int64_t i = 0; i < got.numel(); ++i) REQUIRE(got[i] == ref[i] * a[i % 3]);
        // The real-weight modes take the same border: with ±1 weights and inputs, sign mode agrees.
        nn::BinaryConv2d same(conv.options());
        same.weight.value().copy_from(ws);
        same.set_mode(nn::BinaryMode::BinaryActivations);
        const Tensor<float> soft = same.forward_unscaled(Variable(x)).first.value();
        for (int64_t i = 0; i < soft.numel(); ++i) REQUIRE(soft[i] == ref[i]);
    }
}

// ---- BinaryConv2d ------------------------------------------------------------------------------

namespace {
using bnn::test::away_from_kinks;
using bnn::test::random_with_zeros;

}  // namespace

TEST_CASE("BinaryConv2d real-weight modes pass finite-difference gradient checks", "[binary_conv2d]") {
    Rng rng(21);
    for (nn::WeightScale scale : {nn::WeightScale::None, nn::WeightScale::Learned}) {
        nn::BinaryConv2d soft({.in_channels = 3, .out_channels = 4, .kernel_size = 3, .stride = 1, .padding = 1,
                               .mode = nn::BinaryMode::SoftActivations, .scale = scale});
        if (soft.alpha.defined()) soft.alpha.value() = Tensor<float>::uniform(Shape{4}, rng, 0.5f, 1.5f);
        Variable x(Tensor<float>::uniform(Shape{2, 4, 5, 3}, rng, -2.f, 2.f), true);
        std::vector<Variable> inputs{x, soft.weight};
        if (soft.alpha.defined()) inputs.push_back(soft.alpha);
        test::check_gradients([&](const std::vector<Variable>&) { return soft.forward(x); }, inputs);

        // Binary activations: finite differences see sign(x) as constant, so the check covers the
        // weights and alpha; the STE to x is checked below against its definition.
        nn::BinaryConv2d hard({.in_channels = 3, .out_channels = 4, .kernel_size = 3, .stride = 2, .padding = 1,
                               .mode = nn::BinaryMode::BinaryActivations, .scale = scale});
        Variable xb(away_from_kinks(Shape{2, 5, 5, 3}, rng, -2.f, 2.f), false);
        std::vector<Variable> params{hard.weight};
        if (hard.alpha.defined()) params.push_back(hard.alpha);
        test::check_gradients([&](const std::vector<Variable>&) { return hard.forward(xb); }, params);
    }
}

TEST_CASE("BinaryActivations passes gradients to x only where |x| <= 1", "[binary_conv2d]") {
    Rng rng(4);
    nn::BinaryConv2d conv({.in_channels = 5, .out_channels = 3, .mode = nn::BinaryMode::BinaryActivations});
    Variable x(away_from_kinks(Shape{1, 6, 6, 5}, rng, -2.f, 2.f), true);
    Tensor<float> r = Tensor<float>::uniform(Shape{1, 6, 6, 3}, rng, -1.f, 1.f);
    conv.forward(x).backward(r);
    // Reference: the conv's gradient with respect to its ±1 input, masked.
    Variable s(ops::sign_ste(x.detach()).value(), true);
    ops::conv2d(s, conv.weight.detach(), Variable(), 1, 1).backward(r);
    int passed = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
        const bool inside = std::abs(x.value()[i]) <= 1.f;
        REQUIRE(x.grad()[i] == (inside ? s.grad()[i] : 0.f));
        passed += inside && s.grad()[i] != 0.f;
    }
    REQUIRE(passed > 0);
}

TEST_CASE("FullyBinary forward equals the float conv of sign(x) and sign(W) times alpha", "[binary_conv2d]") {
    Rng rng(99);
    for (nn::WeightScale scale : {nn::WeightScale::None, nn::WeightScale::MeanAbs, nn::WeightScale::Learned})
        for (int stride : {1, 2}) {
            nn::BinaryConv2d conv({.in_channels = 70, .out_channels = 37, .kernel_size = 3, .stride = stride,
                                   .padding = 1, .mode = nn::BinaryMode::FullyBinary, .scale = scale});
            if (conv.alpha.defined()) conv.alpha.value() = Tensor<float>::uniform(Shape{37}, rng, 0.1f, 2.f);
            Variable x(random_with_zeros(Shape{2, 7, 6, 70}, rng), false);
            Tensor<float> got = conv.forward(x).value();
            Variable xs(ops::sign_ste(x).value(), false), ws(ops::sign_ste(conv.weight.detach()).value(), false);
            Variable want = ops::conv2d(xs, ws, Variable(), stride, 1);
            if (scale == nn::WeightScale::MeanAbs) want = ops::mul(want, Variable(conv.mean_abs_weight(), false));
            if (scale == nn::WeightScale::Learned)  // learned alpha on top of mean|W|
                want = ops::mul(want, ops::mul(conv.alpha.detach(), Variable(conv.mean_abs_weight(), false)));
            REQUIRE(got.to_vector() == want.value().to_vector());
        }
}

TEST_CASE("BinaryConv2d clips latent weights, switches modes and rejects bad input", "[binary_conv2d]") {
    nn::BinaryConv2d conv({.in_channels = 4, .out_channels = 2, .scale = nn::WeightScale::Learned});
    auto names = conv.named_parameters();
    REQUIRE(names.size() == 2);
    REQUIRE(names[1].first == "alpha");
    conv.weight.value()[0] = 3.f;
    conv.weight.value()[1] = -7.f;
    conv.apply_constraints();
    REQUIRE(conv.weight.value()[0] == 1.f);
    REQUIRE(conv.weight.value()[1] == -1.f);
    REQUIRE(conv.mode() == nn::BinaryMode::BinaryActivations);
    conv.set_mode(nn::BinaryMode::FullyBinary);
    REQUIRE(conv.mode() == nn::BinaryMode::FullyBinary);
    Rng rng(2);
    Variable x(Tensor<float>::uniform(Shape{1, 3, 3, 4}, rng, -1.f, 1.f), false);
    REQUIRE(conv.forward(x).shape() == Shape{1, 3, 3, 2});
    REQUIRE_THROWS_WITH(conv.forward(Variable(Tensor<float>(Shape{1, 3, 3, 5}))), Catch::Contains("[1, 3, 3, 5]"));
    REQUIRE_THROWS_AS(conv.forward(Variable(Tensor<float>(Shape{3, 3, 4}))), Error);
    REQUIRE_THROWS_AS(nn::BinaryConv2d({.in_channels = 0, .out_channels = 2}), Error);
    Variable w(Tensor<float>(Shape{2, 3, 3, 4}), true);
    REQUIRE_THROWS_AS(ops::binary_conv2d(x, w, Variable(Tensor<float>(Shape{3})), 1, 1), Error);
    REQUIRE_THROWS_AS(ops::binary_conv2d(x, Variable(Tensor<float>(Shape{2, 3, 3, 5})), Variable(), 1, 1), Error);
    REQUIRE_THROWS_AS(ops::binary_conv2d(x, Variable(Tensor<float>(Shape{2, 5, 5, 4})), Variable(), 1, 0), Error);
}

TEST_CASE("BinaryConv2d::forward_unscaled times its scale is forward, in every mode", "[binary_conv]") {
    Rng rng(14);
    const Tensor<float> x0 = Tensor<float>::randn({2, 5, 5, 8}, rng);
    for (auto scale : {nn::WeightScale::None, nn::WeightScale::MeanAbs, nn::WeightScale::Learned})
        for (auto mode : {nn::BinaryMode::SoftActivations, nn::BinaryMode::BinaryActivations, nn::BinaryMode::FullyBinary}) {
            manual_seed(5);
            nn::BinaryConv2d conv({.in_channels = 8, .out_channels = 6, .mode = mode, .scale = scale});
            if (conv.alpha.defined())
                for (int64_t o = 0; o < 6; ++o) conv.alpha.value()[o] = 0.5f + 0.1f * static_cast<float>(o);
            Variable x(x0, false);
            auto [y, s] = conv.forward_unscaled(x);
            const Variable whole = conv.forward(x);
            const Variable parts = s.defined() ? ops::mul(y, s) : y;
            INFO("mode " << static_cast<int>(mode) << ", scale " << static_cast<int>(scale));
            REQUIRE(s.defined() == (scale == nn::WeightScale::Learned));
            REQUIRE(whole.value().to_vector() == parts.value().to_vector());
        }
}

// ---- the Real-to-Bin channel gate and half-block -------------------------------------------------

TEST_CASE("channel gate computes sigmoid(W2 relu(W1 mean(x))) and its gradients check", "[gate]") {
    manual_seed(5);
    nn::ChannelGate gate(16, 12, 8);
    REQUIRE(gate.hidden_channels() == 2);
    REQUIRE(gate.weight1.shape() == Shape{2, 16});
    REQUIRE(gate.weight2.shape() == Shape{12, 2});
    REQUIRE(gate.num_parameters() == 16 * 2 + 2 * 12);
    Rng rng(31);
    Variable x = random_variable({3, 4, 5, 16}, rng);
    Tensor<float> g = gate.forward(x).value();
    REQUIRE(g.shape() == Shape{3, 12});
    for (int n = 0; n < 3; ++n) {
        std::vector<double> m(16, 0), h(2, 0);
        for (int i = 0; i < 20; ++i)
            for (int c = 0; c < 16; ++c) m[c] += x.value()[(n * 20 + i) * 16 + c] / 20.0;
        for (int j = 0; j < 2; ++j)
            for (int c = 0; c < 16; ++c) h[j] += gate.weight1.value().at({j, c}) * m[c];
        for (int o = 0; o < 12; ++o) {
            double z = 0;
            for (int j = 0; j < 2; ++j) z += gate.weight2.value().at({o, j}) * std::max(h[j], 0.0);
            REQUIRE(g.at({n, o}) == Approx(1 / (1 + std::exp(-z))).epsilon(1e-5));
        }
    }
    // Initial weights U(+-1/sqrt(fan_in)): std 1/sqrt(3 fan_in), checked on a wide gate.
    nn::ChannelGate wide(512, 256, 8);
    double sq = 0;
    for (float v : wide.weight1.value()) sq += double(v) * v;
    REQUIRE(std::sqrt(sq / wide.weight1.numel()) == Approx(1.0 / std::sqrt(3.0 * 512)).epsilon(0.03));

    Rng r2(32);
    check_gradients([](const std::vector<Variable>& in) { return ops::channel_gate(in[0], in[1], in[2]); },
                    {random_variable({2, 3, 3, 8}, r2), random_variable({3, 8}, r2), random_variable({5, 3}, r2)});
    REQUIRE_THROWS_AS(gate.forward(random_variable({3, 4, 5, 15}, rng)), Error);
    REQUIRE_THROWS_AS(ops::channel_gate(x, gate.weight2, gate.weight1), Error);
}

TEST_CASE("a Real-to-Bin half-block in soft mode back-propagates correctly end to end", "[resnet][gradcheck]") {
    // tanh activations, real weights, gate and downsampling shortcut: every path of the block is
    // smooth (up to PReLU's and the gate ReLU's kinks), so finite differences apply to all inputs.
    manual_seed(51);
    nn::BinaryHalfBlock half(nn::BinaryHalfBlockOptions{.in_channels = 4, .out_channels = 6, .stride = 2,
                                                        .scale = nn::BlockScale::Gate, .gate_reduction = 2,
                                                        .mode = nn::BinaryMode::SoftActivations});
    half.eval();  // running statistics: the block is a fixed function of its inputs
    // The weights this check was written with (Kaiming normal, bnn's first default) and that keep
    // the finite differences clear of the kinks.
    manual_seed(51);
    for (auto& p : half.parameters())
        if (p.shape().rank() >= 2) nn::init::kaiming_normal(p.value());
    Rng rng(52);
    for (auto& [name, b] : half.named_buffers())
        if (name.find("running_var") != std::string::npos)
            for (auto& v : b) v = rng.uniform(0.5f, 1.5f);
    std::vector<Variable> inputs{random_variable({2, 4, 4, 4}, rng)};
    for (auto& p : half.parameters()) inputs.push_back(p);
    check_gradients([&half](const std::vector<Variable>& in) { return half.forward(in[0]); }, inputs);
}

TEST_CASE("ChannelShift starts as the identity, learns its shift and checks its channels", "[nn][channel_shift]") {
    nn::ChannelShift shift(3);
    REQUIRE(shift.named_parameters().size() == 1);
    REQUIRE(shift.named_parameters()[0].first == "shift");
    Rng rng(81);
    Variable x(Tensor<float>::randn({2, 2, 3}, rng), true);
    const Tensor<float> y0 = shift(x).value();
    for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(y0[i] == x.value()[i]);
    shift.shift.value().copy_from(Tensor<float>::from_vector({3}, {0.5f, -1.f, 2.f}));
    bnn::test::check_gradients([&](const std::vector<Variable>& in) { return shift(in[0]); }, {x});
    const Tensor<float> y = shift(x).value();
    for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(y[i] == x.value()[i] + shift.shift.value()[i % 3]);
    REQUIRE_THROWS_WITH(nn::ChannelShift(0), Catch::Contains("channels > 0"));
    REQUIRE_THROWS_AS(shift(Variable(Tensor<float>({2, 4}))), Error);
}
