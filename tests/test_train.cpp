// bnn::train's helpers on a tiny network built from the library's layers: parameter groups,
// stage schedules, the training step and its constraints, evaluation and the distillation step;
// the Real-to-Binary stage table.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <numbers>
#include <vector>

#include "bnn/data/loader.hpp"
#include "bnn/losses/cross_entropy.hpp"
#include "bnn/nn/activation.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/flatten.hpp"
#include "bnn/nn/linear.hpp"
#include "bnn/nn/sequential.hpp"
#include "bnn/ops/pool.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/optim/sgd.hpp"
#include "bnn/train/distillation.hpp"
#include "bnn/train/evaluate.hpp"
#include "bnn/train/param_groups.hpp"
#include "bnn/train/stage_schedule.hpp"
#include "bnn/train/stages.hpp"
#include "bnn/train/train_step.hpp"

using namespace bnn;

namespace {

// Real conv + BN, then a binary conv with a learned scale and a PReLU nested one level down (so
// finding the binary conv needs a walk of the tree), then average pool and a classifier. The
// outputs of the two parts are its transfer points.
class TinyNet : public train::FeatureNet {
public:
    TinyNet(int64_t classes, nn::BinaryMode mode) {
        conv = register_module("conv", std::make_shared<nn::Conv2d>(
                                           nn::Conv2dOptions{.in_channels = 3, .out_channels = 4, .padding = 1}));
        bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(4));
        body = register_module("body", std::make_shared<nn::Sequential>());
        bconv = body->push_back(std::make_shared<nn::BinaryConv2d>(nn::BinaryConv2dOptions{
            .in_channels = 4, .out_channels = 4, .mode = mode, .scale = nn::WeightScale::Learned}));
        body->push_back(std::make_shared<nn::PReLU>(4));
        fc = register_module("fc", std::make_shared<nn::Linear>(4, classes));
    }
    train::Features forward_features(const Variable& x) override {
        train::Features f;
        Variable h = bn->forward(conv->forward(x));
        f.maps.emplace_back("block1", h);
        h = body->forward(h);
        f.maps.emplace_back("block2", h);
        f.logits = fc->forward(ops::global_avg_pool(h));
        return f;
    }
    std::string type_name() const override { return "TinyNet"; }

    std::shared_ptr<nn::Conv2d> conv;
    std::shared_ptr<nn::BatchNorm2d> bn;
    std::shared_ptr<nn::Sequential> body;
    std::shared_ptr<nn::BinaryConv2d> bconv;
    std::shared_ptr<nn::Linear> fc;
};

train::StepBatch random_batch(uint64_t seed, int64_t classes) {
    Rng rng(seed);
    std::vector<int32_t> labels;
    for (int i = 0; i < 6; ++i) labels.push_back(i % static_cast<int32_t>(classes));
    return {Tensor<float>::randn({6, 5, 5, 3}, rng), labels, {}};
}

}  // namespace

TEST_CASE("param_groups: latent binary weights alone without decay, in parameter order", "[train][groups]") {
    manual_seed(3);
    TinyNet net(5, nn::BinaryMode::BinaryActivations);
    auto groups = train::param_groups(net, 0.01f, 0.5f);
    REQUIRE(groups.size() == 2);
    REQUIRE(groups[1].params.size() == 1);
    REQUIRE(groups[1].params[0].id() == net.bconv->weight.id());
    REQUIRE(groups[1].weight_decay == 0.f);
    REQUIRE(groups[0].weight_decay == 0.5f);
    REQUIRE(groups[0].lr == 0.01f);
    REQUIRE(groups[1].lr == 0.01f);
    // Everything else, BN, PReLU, alpha and biases included, in the model's order.
    std::vector<const void*> expected;
    for (auto& [name, p] : net.named_parameters())
        if (name != "body.0.weight") expected.push_back(p.id());
    std::vector<const void*> got;
    for (auto& p : groups[0].params) got.push_back(p.id());
    REQUIRE(got == expected);

    // A real network has one group.
    nn::Sequential real{std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 2}),
                        std::make_shared<nn::BatchNorm2d>(2)};
    REQUIRE(train::param_groups(real, 0.1f, 0.f).size() == 1);
    REQUIRE_THROWS_AS(train::param_groups(real, 0.1f, -1.f), Error);
}

TEST_CASE("param_groups: a step with decay leaves the latent binary weights as a decay-free step does",
          "[train][groups]") {
    auto step = [](float decay) {
        manual_seed(5);
        auto net = std::make_unique<TinyNet>(5, nn::BinaryMode::BinaryActivations);
        optim::Adam opt(train::param_groups(*net, 0.05f, decay), {.decoupled_weight_decay = true});
        train::train_step(*net, opt, random_batch(6, 5));
        return net;
    };
    auto with = step(0.5f), without = step(0.f);
    REQUIRE(with->bconv->weight.value().to_vector() == without->bconv->weight.value().to_vector());
    // The decay reaches the other parameters, so the comparison above can tell.
    REQUIRE(with->fc->weight.value().to_vector() != without->fc->weight.value().to_vector());
    REQUIRE(with->bconv->alpha.value().to_vector() != without->bconv->alpha.value().to_vector());
}

TEST_CASE("stage_schedule: warm-up, milestones and cosine at hand-computed steps", "[train][schedule]") {
    const train::StageConfig s1 = train::real_to_binary_stage(1);  // 5 warm-up epochs, 150/250/320, x0.3
    auto paper = train::stage_schedule(s1, train::ScheduleShape::StepDecay, s1.epochs);
    REQUIRE(paper->factor(0) == Approx(0.0));
    REQUIRE(paper->factor(2.5) == Approx(0.5));
    REQUIRE(paper->factor(5) == Approx(1.0));
    REQUIRE(paper->factor(149.9) == Approx(1.0));
    REQUIRE(paper->factor(150) == Approx(0.3));
    REQUIRE(paper->factor(250) == Approx(0.09));
    REQUIRE(paper->factor(320) == Approx(0.027));
    REQUIRE(paper->factor(349.5) == Approx(0.027));

    // Cosine over 7 epochs: the warm-up shrinks to 5 * 7 / 350 = 0.1 epochs.
    auto cosine = train::stage_schedule(s1, train::ScheduleShape::Cosine, 7);
    REQUIRE(cosine->factor(0) == Approx(0.0));
    REQUIRE(cosine->factor(0.05) == Approx(0.5 * 0.5 * (1 + std::cos(std::numbers::pi * 0.05 / 7))));
    REQUIRE(cosine->factor(0.05) == Approx(0.4999371).epsilon(1e-6));
    REQUIRE(cosine->factor(0.1) == Approx(0.9994966).epsilon(1e-6));
    REQUIRE(cosine->factor(3.5) == Approx(0.5));
    REQUIRE(cosine->factor(7) == Approx(0.0).margin(1e-7));

    // Binary weights: no warm-up, so the first step runs at the full rate.
    const train::StageConfig s3 = train::real_to_binary_stage(3);
    auto binary = train::stage_schedule(s3, train::ScheduleShape::Cosine, 4);
    REQUIRE(binary->factor(0) == Approx(1.0));
    REQUIRE(binary->factor(1) == Approx(0.8535534).epsilon(1e-6));
    REQUIRE(binary->factor(2) == Approx(0.5));
    train::StageConfig strong = s3;
    strong.decay = 0.1f;
    REQUIRE(train::stage_schedule(strong, train::ScheduleShape::StepDecay, 350)->factor(260) == Approx(0.01));

    REQUIRE_THROWS_AS(train::stage_schedule(s1, train::ScheduleShape::Cosine, 0), Error);
}

TEST_CASE("train_step applies the constraints after the optimiser step", "[train][step]") {
    // Latent weights next to +-1 and a large learning rate: the update pushes some past 1.
    auto make = [] {
        manual_seed(7);
        auto net = std::make_unique<TinyNet>(5, nn::BinaryMode::BinaryActivations);
        for (float& w : net->bconv->weight.value()) w = w < 0 ? -0.95f : 0.95f;
        return net;
    };
    const train::StepBatch batch = random_batch(8, 5);
    auto max_abs = [](const Tensor<float>& t) {
        float m = 0;
        for (float v : t) m = std::max(m, std::abs(v));
        return m;
    };

    // Without the constraint (the same step by hand), weights leave [-1, 1]...
    auto free = make();
    {
        optim::SGD opt(free->parameters(), {.lr = 10.f});
        opt.zero_grad();
        losses::cross_entropy(free->forward(Variable(batch.images)), batch.labels).backward();
        opt.step();
    }
    REQUIRE(max_abs(free->bconv->weight.value()) > 1.f);

    // ... train_step clips them, and leaves the ones inside alone.
    auto net = make();
    optim::SGD opt(net->parameters(), {.lr = 10.f});
    net->eval();  // the step switches to train mode itself
    train::StepResult r = train::train_step(*net, opt, batch);
    REQUIRE(net->is_training());
    REQUIRE(max_abs(net->bconv->weight.value()) == 1.f);
    const auto clipped = net->bconv->weight.value().to_vector(), unclipped = free->bconv->weight.value().to_vector();
    for (size_t i = 0; i < clipped.size(); ++i) REQUIRE(clipped[i] == std::clamp(unclipped[i], -1.f, 1.f));
    REQUIRE(std::isfinite(r.parts.ce));
    REQUIRE(r.parts.total == r.parts.ce);

    // The general form too: whatever the loss, the constraint follows the step.
    auto other = make();
    optim::SGD opt2(other->parameters(), {.lr = 10.f});
    Variable loss = train::train_step(*other, opt2, [&] {
        return losses::cross_entropy(other->forward(Variable(batch.images)), batch.labels);
    });
    REQUIRE(loss.item() == Approx(r.parts.ce));
    REQUIRE(max_abs(other->bconv->weight.value()) == 1.f);
    REQUIRE_THROWS_AS(train::train_step(*other, opt2, [&] { return other->forward(Variable(batch.images)); }),
                      Error);
}

TEST_CASE("train_step returns the logits of the forward pass it stepped on", "[train][step]") {
    manual_seed(9);
    TinyNet net(5, nn::BinaryMode::FullyBinary);
    const train::StepBatch batch = random_batch(10, 5);
    Tensor<float> expected;
    {
        NoGradGuard no_tape;
        net.train();
        expected = net.forward(Variable(batch.images)).value();
    }
    optim::Adam opt(train::param_groups(net, 1e-2f, 0.f), {});
    train::StepResult r = train::train_step(net, opt, batch);
    REQUIRE(r.logits.to_vector() == expected.to_vector());
    REQUIRE(r.parts.ce == Approx(losses::cross_entropy(Variable(expected), batch.labels).item()));
}

TEST_CASE("distillation_step returns the student's logits and its loss parts", "[train][distillation]") {
    manual_seed(11);
    TinyNet teacher(5, nn::BinaryMode::SoftActivations);
    TinyNet student(5, nn::BinaryMode::BinaryActivations);
    train::freeze(teacher);
    const train::StepBatch batch = random_batch(12, 5);
    Tensor<float> expected;
    {
        NoGradGuard no_tape;
        student.train();
        expected = student.forward(Variable(batch.images)).value();
    }
    const train::StageConfig stage = train::real_to_binary_stage(1);
    optim::Adam opt(train::param_groups(student, stage.lr, stage.weight_decay), {.decoupled_weight_decay = true});
    const auto before = student.fc->weight.value().to_vector();
    train::StepResult r = train::distillation_step(&teacher, student, batch, stage.weights, opt);
    REQUIRE(r.logits.to_vector() == expected.to_vector());
    REQUIRE(r.parts.attention > 0.f);
    REQUIRE(r.parts.kd > 0.f);
    REQUIRE(r.parts.total == Approx(r.parts.ce + 30.f * r.parts.attention + 3.f * r.parts.kd).epsilon(1e-4));
    REQUIRE(student.fc->weight.value().to_vector() != before);  // it did step
}

namespace {

// Seven 1x1 images with 8 channels whose label has a known rank among the channels (how many
// channels are strictly brighter): 0, 1, 4, 5, 7, 0 (all equal: a tie counts for the label) and 0.
data::Dataset ranked_images() {
    data::Dataset d;
    d.num_classes = 8;
    d.name = "ranked";
    d.images = Tensor<uint8_t>(Shape{7, 1, 1, 8});
    auto set = [&](int64_t n, auto value) {
        for (int64_t c = 0; c < 8; ++c) d.images.data()[n * 8 + c] = static_cast<uint8_t>(value(c));
    };
    for (int64_t n = 0; n < 5; ++n) set(n, [](int64_t c) { return 10 + 30 * c; });
    set(5, [](int64_t) { return 100; });
    set(6, [](int64_t c) { return 220 - 30 * c; });
    d.labels = {7, 6, 3, 2, 0, 4, 0};
    return d;
}

// BN (identity on its initial running statistics in eval mode, not in train mode), then the
// 8 channels as the logits.
std::shared_ptr<nn::Sequential> channel_classifier() {
    auto fc = std::make_shared<nn::Linear>(8, 8);
    fc->weight.value().fill(0.f);
    for (int64_t k = 0; k < 8; ++k) fc->weight.value()[k * 8 + k] = 1.f;
    fc->bias.value().fill(0.f);
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::BatchNorm2d>(8), std::make_shared<nn::Flatten>(), fc});
}

}  // namespace

TEST_CASE("evaluate counts top-1 and top-5 over every batch in eval mode", "[train][evaluate]") {
    const data::Dataset d = ranked_images();
    auto model = channel_classifier();
    data::BatchLoader loader(d, {.batch_size = 3, .shuffle = false});  // 3 + 3 + 1

    model->train();
    train::Accuracy acc = train::evaluate(*model, loader);
    REQUIRE(acc.samples == 7);
    REQUIRE(acc.top1 == Approx(3.0 / 7));
    REQUIRE(acc.top5 == Approx(5.0 / 7));
    REQUIRE(model->is_training());  // restored
    for (auto& [name, b] : model->named_buffers())
        if (name.find("running_mean") != std::string::npos)
            REQUIRE(b.to_vector() == std::vector<float>(8, 0.f));  // eval mode: statistics untouched

    // The mean cross-entropy of the same logits, by the library's loss.
    Tensor<float> all(Shape{7, 1, 1, 8});
    for (int64_t i = 0; i < all.numel(); ++i) all[i] = d.images.data()[i] / 255.f;
    model->eval();
    Tensor<float> logits = model->forward(Variable(all)).value();
    REQUIRE(acc.loss == Approx(losses::cross_entropy(Variable(logits), d.labels).item()).epsilon(1e-5));
    REQUIRE(train::evaluate(*model, loader).top1 == acc.top1);
    REQUIRE_FALSE(model->is_training());  // restored to eval as well

    // Counting by hand on batch statistics would give other figures: the mode matters here.
    model->train();
    const train::Hits in_train_mode = train::count_hits(model->forward(Variable(all)).value(), d.labels);
    REQUIRE(in_train_mode.top1 != 3);

    // A shuffled loader sees the same samples.
    data::BatchLoader shuffled(d, {.batch_size = 2, .shuffle = true, .seed = 4});
    REQUIRE(train::evaluate(*model, shuffled).top5 == Approx(5.0 / 7));
}

TEST_CASE("evaluate and count_hits reject what would give wrong figures", "[train][evaluate]") {
    const data::Dataset d = ranked_images();
    auto model = channel_classifier();
    data::BatchLoader augmenting(d, {.batch_size = 3, .horizontal_flip = true});
    REQUIRE_THROWS_WITH(train::evaluate(*model, augmenting), Catch::Contains("must not augment"));
    data::BatchLoader dropping(d, {.batch_size = 3, .drop_last = true});
    REQUIRE_THROWS_WITH(train::evaluate(*model, dropping), Catch::Contains("drops the last 1"));
    Tensor<float> logits(Shape{2, 3});
    REQUIRE_THROWS_WITH(train::count_hits(logits, {0}), Catch::Contains("2 rows of logits but 1 labels"));
    REQUIRE_THROWS_WITH(train::count_hits(logits, {0, 3}), Catch::Contains("outside [0, 3)"));
    const train::Hits h = train::count_hits(Tensor<float>::from_vector(Shape{2, 3}, {0.f, 2.f, 1.f, 5.f, 4.f, 3.f}), {2, 0});
    REQUIRE(h.top1 == 1);
    REQUIRE(h.top5 == 2);
}

TEST_CASE("the stage table carries the paper's defaults", "[train]") {
    auto s = train::real_to_binary_stages();
    REQUIRE(s.size() == 4);
    REQUIRE(!s[0].student_mode);
    REQUIRE_FALSE(s[0].has_teacher);
    REQUIRE(s[1].student_mode == nn::BinaryMode::SoftActivations);
    REQUIRE(s[2].student_mode == nn::BinaryMode::BinaryActivations);
    REQUIRE(s[3].student_mode == nn::BinaryMode::FullyBinary);
    // The checkpoint metadata's names.
    REQUIRE(train::student_name(s[0].student_mode) == "real");
    REQUIRE(train::student_name(s[2].student_mode) == "binary-activations");
    REQUIRE(train::student_name(s[3].student_mode) == "fully-binary");
    REQUIRE(s[3].weights.attention == 0.f);
    REQUIRE(s[3].weights.kd == 0.8f);
    REQUIRE(s[1].lr == 1e-3f);
    REQUIRE(s[1].weight_decay == 1e-5f);
    REQUIRE(s[1].warmup_epochs == 5);
    REQUIRE(s[3].lr == 2e-4f);
    REQUIRE(s[3].weight_decay == 0.f);
    REQUIRE(s[3].warmup_epochs == 0);
    REQUIRE(s[2].init_from_previous);
    REQUIRE(s[3].init_from_previous);
    REQUIRE_THROWS_AS(train::real_to_binary_stage(4), Error);
}
