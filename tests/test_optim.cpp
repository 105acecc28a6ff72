// Optimisers (SGD, Adam, AdamW) against PyTorch 1.13's update rules, and learning-rate schedules.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "bnn/optim/adam.hpp"
#include "bnn/optim/lr_schedule.hpp"
#include "bnn/optim/sgd.hpp"

using namespace bnn;
using namespace bnn::optim;

namespace {

// The same three gradients are fed to every optimiser; expected values were worked out from the
// update formulas in each header (and agree with torch.optim in PyTorch 1.13 to float precision).
const std::vector<std::vector<float>> kGrads = {{0.5f, 1.0f}, {-0.25f, 2.0f}, {1.5f, -0.5f}};

Variable make_param() { return Variable(Tensor<float>::from_vector({2}, {1.0f, -2.0f}), true); }

void set_grad(Variable& p, const std::vector<float>& g) { p.grad().copy_from(Tensor<float>::from_vector({2}, g)); }

// Runs the optimiser over kGrads and checks the parameter after each step.
void expect_trajectory(Optimizer& opt, Variable& p, const std::vector<std::vector<float>>& expected) {
    for (size_t s = 0; s < kGrads.size(); ++s) {
        set_grad(p, kGrads[s]);
        opt.step();
        INFO(opt.type_name() << " step " << s + 1);
        REQUIRE(p.value()[0] == Approx(expected[s][0]).epsilon(1e-5));
        REQUIRE(p.value()[1] == Approx(expected[s][1]).epsilon(1e-5));
    }
    REQUIRE(opt.step_count() == 3);
}

}  // namespace

TEST_CASE("SGD with momentum follows the heavy-ball recurrence", "[optim][sgd]") {
    // buf1 = g1; p = 1 - 0.1*0.5 = 0.95.  buf2 = 0.9*0.5 - 0.25 = 0.2; p = 0.95 - 0.02 = 0.93.
    // buf3 = 0.18 + 1.5 = 1.68; p = 0.93 - 0.168 = 0.762.
    Variable p = make_param();
    SGD opt({p}, {.lr = 0.1f, .momentum = 0.9f});
    expect_trajectory(opt, p, {{0.95f, -2.1f}, {0.93f, -2.39f}, {0.762f, -2.601f}});
}

TEST_CASE("SGD with Nesterov momentum and L2 weight decay", "[optim][sgd]") {
    // d1 = 0.5 + 0.01*1 = 0.51; buf = 0.51; p = 1 - 0.1*(0.51 + 0.9*0.51) = 0.9031.
    Variable p = make_param();
    SGD opt({p}, {.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f, .nesterov = true});
    expect_trajectory(opt, p, {{0.9031f, -2.1862f}, {0.90757412f, -2.64142609f}, {0.60318923f, -2.77307844f}});
}

TEST_CASE("SGD without momentum applies the decayed gradient directly", "[optim][sgd]") {
    // p = 1 - 0.1*(0.5 + 0.1*1) = 0.94; p = 0.94 - 0.1*(-0.25 + 0.094) = 0.9556.
    Variable p = make_param();
    SGD opt({p}, {.lr = 0.1f, .weight_decay = 0.1f});
    REQUIRE(opt.state_tensors().empty());
    expect_trajectory(opt, p, {{0.94f, -2.08f}, {0.9556f, -2.2592f}, {0.79604405f, -2.18660786f}});
}

TEST_CASE("Adam with bias correction", "[optim][adam]") {
    // Step 1: m = 0.05, v = 0.00025; m/(1-0.9) = 0.5, sqrt(v/(1-0.999)) = 0.5; p = 1 - 0.1 = 0.9.
    Variable p = make_param();
    Adam opt({p}, {.lr = 0.1f});
    REQUIRE(opt.type_name() == "Adam");
    expect_trajectory(opt, p, {{0.9f, -2.1f}, {0.87336636f, -2.19651818f}, {0.80631632f, -2.25537896f}});
}

TEST_CASE("Adam with L2 weight decay adds the decay to the gradient", "[optim][adam]") {
    Variable p = make_param();
    Adam opt({p}, {.lr = 0.1f, .weight_decay = 0.1f});
    expect_trajectory(opt, p, {{0.9f, -2.1f}, {0.8544414f, -2.19527197f}, {0.78211945f, -2.24238443f}});
}

TEST_CASE("AdamW decays the weights directly", "[optim][adam]") {
    // Step 1: p = 1*(1 - 0.1*0.1) = 0.99, then the Adam step of exactly lr: 0.89.
    Variable p = make_param();
    AdamW opt({p}, {.lr = 0.1f, .weight_decay = 0.1f});
    REQUIRE(opt.type_name() == "AdamW");
    expect_trajectory(opt, p, {{0.89f, -2.08f}, {0.85446638f, -2.15571833f}, {0.77887166f, -2.19302201f}});
}

TEST_CASE("Parameters without a gradient are skipped and keep their state", "[optim]") {
    Variable a = make_param(), b = make_param();
    Adam opt({a, b}, {.lr = 0.1f});
    set_grad(a, kGrads[0]);
    opt.step();
    REQUIRE_FALSE(b.has_grad());
    REQUIRE(b.value()[0] == 1.0f);
    // b's own step count stays 0, so its first real step is a bias-corrected first step.
    set_grad(a, kGrads[1]);
    set_grad(b, kGrads[0]);
    opt.step();
    REQUIRE(b.value()[0] == Approx(0.9f).epsilon(1e-6));
    REQUIRE(a.value()[0] == Approx(0.87336636f).epsilon(1e-6));
    REQUIRE(opt.step_count() == 2);
}

TEST_CASE("Parameter groups have their own lr and decay, and the lr factor scales every group", "[optim]") {
    Variable a = make_param(), b = make_param();
    SGD opt(std::vector<ParamGroup>{{{a}, 0.1f, 0.f}, {{b}, 0.01f, 0.5f}}, SGDOptions{});
    opt.set_lr_factor(0.5f);
    REQUIRE(opt.lr(0) == Approx(0.05f));
    REQUIRE(opt.lr(1) == Approx(0.005f));
    set_grad(a, {1.f, 1.f});
    set_grad(b, {1.f, 1.f});
    opt.step();
    REQUIRE(a.value()[0] == Approx(1.f - 0.05f));
    REQUIRE(b.value()[0] == Approx(1.f - 0.005f * (1.f + 0.5f * 1.f)));
    opt.zero_grad();
    REQUIRE(a.grad()[0] == 0.f);
    REQUIRE_THROWS_AS(opt.lr(2), Error);
}

TEST_CASE("State tensors are named, live, and restore a run exactly", "[optim]") {
    Variable p = make_param();
    Adam first({p}, {.lr = 0.1f});
    const auto names = first.state_tensors();
    REQUIRE(names.size() == 3);
    REQUIRE(names[0].first == "group0.param0.exp_avg");
    REQUIRE(names[1].first == "group0.param0.exp_avg_sq");
    REQUIRE(names[2].first == "group0.param0.step");
    set_grad(p, kGrads[0]);
    first.step();

    // Copy parameter and state into a fresh optimiser, then both take the same step.
    Variable q(p.value().clone(), true);
    Adam second({q}, {.lr = 0.1f});
    for (size_t k = 0; k < names.size(); ++k) second.state_tensors()[k].second.copy_from(names[k].second);
    second.set_step_count(first.step_count());
    set_grad(p, kGrads[1]);
    set_grad(q, kGrads[1]);
    first.step();
    second.step();
    REQUIRE(q.value()[0] == p.value()[0]);
    REQUIRE(q.value()[1] == p.value()[1]);
    REQUIRE(second.step_count() == 2);

    SGD sgd({p}, {.lr = 0.1f, .momentum = 0.9f});
    REQUIRE(sgd.state_tensors().size() == 1);
    REQUIRE(sgd.state_tensors()[0].first == "group0.param0.momentum_buffer");
}

TEST_CASE("The optimiser reads gradients afresh each step", "[optim]") {
    Variable p = make_param();
    SGD opt({p}, {.lr = 1.f});
    set_grad(p, {1.f, 1.f});
    opt.step();
    set_grad(p, {-2.f, 0.f});
    opt.step();
    REQUIRE(p.value()[0] == 1.f - 1.f + 2.f);
    REQUIRE(p.value()[1] == -2.f - 1.f);
}

TEST_CASE("Adam minimises a quadratic", "[optim][adam]") {
    // f(p) = sum((p - t)^2); gradient 2(p - t).
    Variable p(Tensor<float>::from_vector({3}, {5.f, -4.f, 0.f}), true);
    const std::vector<float> target = {1.f, 2.f, -3.f};
    Adam opt({p}, {.lr = 0.05f});
    for (int it = 0; it < 2000; ++it) {
        for (int k = 0; k < 3; ++k) p.grad()[k] = 2.f * (p.value()[k] - target[k]);
        opt.step();
    }
    for (int k = 0; k < 3; ++k) REQUIRE(p.value()[k] == Approx(target[k]).margin(1e-3));
}

TEST_CASE("Optimisers reject bad settings with bnn::Error", "[optim]") {
    Variable p = make_param();
    REQUIRE_THROWS_WITH(SGD({p}, {.lr = -1.f}), Catch::Contains("negative learning rate"));
    REQUIRE_THROWS_WITH(SGD({p}, {.lr = 0.1f, .nesterov = true}), Catch::Contains("Nesterov"));
    REQUIRE_THROWS_WITH(SGD({p, p}, {.lr = 0.1f}), Catch::Contains("more than once"));
    REQUIRE_THROWS_AS(SGD({Variable()}, {.lr = 0.1f}), Error);
    REQUIRE_THROWS_WITH(Adam({p}, {.beta1 = 1.f}), Catch::Contains("beta1"));
    SGD opt({p}, {.lr = 0.1f});
    REQUIRE_THROWS_AS(opt.set_lr_factor(-0.5f), Error);
    // A gradient of the wrong shape (written by a broken op) is caught at the step.
    Variable q = make_param();
    SGD opt2({q}, {.lr = 0.1f});
    q.grad() = Tensor<float>(Shape{3});
    REQUIRE_THROWS_WITH(opt2.step(), Catch::Contains("[3]"));
}

TEST_CASE("Step schedule multiplies by gamma at each milestone", "[optim][schedule]") {
    StepSchedule s({30, 60, 90}, 0.1f);
    REQUIRE(s(0) == 1.f);
    REQUIRE(s(29.99) == 1.f);
    REQUIRE(s(30) == Approx(0.1f));
    REQUIRE(s(75.5) == Approx(0.01f));
    REQUIRE(s(200) == Approx(0.001f));
    REQUIRE_THROWS_AS(StepSchedule({60, 30}, 0.1f), Error);
}

TEST_CASE("Cosine schedule goes from 1 to the minimum factor", "[optim][schedule]") {
    CosineSchedule c(100, 0.1f);
    REQUIRE(c(0) == Approx(1.f));
    REQUIRE(c(50) == Approx(0.55f));                                   // halfway: (1 + 0.1) / 2
    REQUIRE(c(25) == Approx(0.1f + 0.9f * 0.5f * (1.f + std::sqrt(0.5f))));  // cos(pi/4)
    REQUIRE(c(100) == Approx(0.1f));
    REQUIRE(c(150) == Approx(0.1f));
    REQUIRE_THROWS_AS(CosineSchedule(0), Error);
}

TEST_CASE("Warm-up ramps linearly, then hands over to the inner schedule", "[optim][schedule]") {
    auto cosine = std::make_shared<CosineSchedule>(100);
    WarmupSchedule w(5, cosine);
    REQUIRE(w(0) == 0.f);
    REQUIRE(w(2.5) == Approx(0.5f * cosine->factor(2.5)));
    REQUIRE(w(5) == Approx(cosine->factor(5)));
    REQUIRE(w(50) == Approx(0.5f));
    WarmupSchedule ws(2, std::make_shared<StepSchedule>(std::vector<double>{1, 10}, 0.5f), 0.1f);
    REQUIRE(ws(0) == Approx(0.1f));
    REQUIRE(ws(1) == Approx(0.55f * 0.5f));
    REQUIRE(ws(3) == Approx(0.5f));
    REQUIRE(ws(10) == Approx(0.25f));
    WarmupSchedule plain(4, std::make_shared<ConstantSchedule>());
    REQUIRE(plain(1) == Approx(0.25f));
    REQUIRE(plain(9) == 1.f);
}
