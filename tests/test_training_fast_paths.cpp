// The fast paths of binary training: vectorised tanh and sign kernels against their scalar
// definitions, the tensor block cache, and fused ops against the compositions they replace.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "bnn/core/tensor.hpp"
#include "bnn/kernels/activation.hpp"
#include "bnn/kernels/sign.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/ops/activation.hpp"
#include "bnn/ops/batch_norm.hpp"
#include "bnn/ops/sign.hpp"
#include "bnn/ops/elementwise.hpp"
#include "gradcheck.hpp"
#include "skip.hpp"

using namespace bnn;
using bnn::test::check_gradients;
using bnn::test::random_variable_away_from;
using Inputs = std::vector<Variable>;

namespace {
/// Distance in units in the last place between two finite floats of the same sign.
int64_t ulp_distance(float a, float b) {
    if (a == b) return 0;
    if (std::signbit(a) != std::signbit(b)) return std::numeric_limits<int64_t>::max();
    return std::abs(static_cast<int64_t>(std::bit_cast<int32_t>(a)) - std::bit_cast<int32_t>(b));
}
}  // namespace

TEST_CASE("tanh kernel is within 3 ulp of std::tanh over every float in [-12, 12]", "[tanh]") {
    // Every float from -12 to 12 (about 2.1e9 values) would be slow; every 97th bit pattern covers
    // each binade densely, including the switch between polynomial and exponential at 0.625.
    std::vector<float> xs;
    for (int32_t b = 0; b <= std::bit_cast<int32_t>(12.f); b += 97) {
        const float v = std::bit_cast<float>(b);
        xs.push_back(v);
        xs.push_back(-v);
    }
    for (float v : {0.625f, std::nextafter(0.625f, 0.f), 9.f, 9.01f, 10.f, std::nextafter(10.f, 0.f), 1e-30f, 1e-45f}) {
        xs.push_back(v);
        xs.push_back(-v);
    }
    std::vector<float> ys(xs.size());
    kernels::tanh_forward(xs.data(), ys.data(), static_cast<int64_t>(xs.size()));
    int64_t worst = 0;
    float worst_x = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
        const int64_t d = ulp_distance(ys[i], std::tanh(xs[i]));
        if (d > worst) worst = d, worst_x = xs[i];
    }
    INFO("worst at x = " << worst_x);
    REQUIRE(worst <= 3);
}

TEST_CASE("tanh kernel saturates, keeps the sign of zero and propagates NaN", "[tanh]") {
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> xs{10.f, 20.f, 1e30f, inf, -10.f, -1e30f, -inf, 0.f, -0.f, std::nanf("")};
    std::vector<float> ys(xs.size());
    kernels::tanh_forward(xs.data(), ys.data(), static_cast<int64_t>(xs.size()));
    for (size_t i = 0; i < 7; ++i) REQUIRE(ys[i] == std::tanh(xs[i]));
    REQUIRE((ys[7] == 0.f && !std::signbit(ys[7])));
    REQUIRE((ys[8] == 0.f && std::signbit(ys[8])));
    REQUIRE(std::isnan(ys[9]));
}

TEST_CASE("sign kernels equal their scalar definitions at the edges", "[sign]") {
    const float nan = std::nanf("");
    std::vector<float> x{-2.f, -1.f, std::nextafter(-1.f, -2.f), -0.5f, -0.f, 0.f, 0.5f, 1.f,
                         std::nextafter(1.f, 2.f), 3.f, nan};
    const auto n = static_cast<int64_t>(x.size());
    std::vector<float> y(x.size()), dy(x.size()), dx(x.size(), 0.25f);
    for (size_t i = 0; i < x.size(); ++i) dy[i] = 1.f + static_cast<float>(i);
    kernels::sign_forward(x.data(), y.data(), n);
    kernels::sign_ste_backward(x.data(), dy.data(), dx.data(), n);
    for (size_t i = 0; i < x.size(); ++i) {
        INFO("x = " << x[i]);
        REQUIRE(y[i] == (x[i] >= 0.f ? 1.f : -1.f));
        REQUIRE(dx[i] == 0.25f + ((x[i] >= -1.f && x[i] <= 1.f) ? dy[i] : 0.f));
    }
}

TEST_CASE("scaled_prelu equals prelu(mul(x, scale)) exactly, values and gradients", "[scaled_prelu]") {
    Rng rng(11);
    // [N, H, W, C] with a per-channel scale and with a per-sample gate; C = 19 leaves a vector tail.
    for (Shape scale_shape : {Shape{19}, Shape{3, 19}}) {
        const Shape xs{3, 4, 5, 19};
        const Tensor<float> x0 = Tensor<float>::randn(xs, rng), s0 = Tensor<float>::uniform(scale_shape, rng, -1.5f, 1.5f);
        const Tensor<float> p0 = Tensor<float>::uniform({19}, rng, -0.5f, 0.5f), r = Tensor<float>::randn(xs, rng);
        auto run = [&](bool fused) {
            Variable x(x0.clone(), true), s(s0.clone(), true), p(p0.clone(), true);
            Variable y = fused ? ops::scaled_prelu(x, s, p) : ops::prelu(ops::mul(x, s), p);
            y.backward(r);
            return std::vector<std::vector<float>>{y.value().to_vector(), x.grad().to_vector(), s.grad().to_vector(),
                                                   p.grad().to_vector()};
        };
        const auto fused = run(true), plain = run(false);
        INFO("scale " << scale_shape.str());
        REQUIRE(fused[0] == plain[0]);
        REQUIRE(fused[1] == plain[1]);
        REQUIRE(fused[2] == plain[2]);
        REQUIRE(fused[3] == plain[3]);
    }
}

TEST_CASE("scaled_prelu gradients match finite differences", "[scaled_prelu]") {
    Rng rng(12);
    for (Shape scale_shape : {Shape{6}, Shape{2, 6}}) {
        // x and scale away from 0, so x * scale stays clear of the kink under the FD step.
        Variable x = random_variable_away_from({2, 3, 3, 6}, rng, {0.f}, 0.05f);
        Variable s = random_variable_away_from(scale_shape, rng, {0.f}, 0.3f, -1.5f, 1.5f);
        Variable p = bnn::test::random_variable({6}, rng, true, 0.05f, 0.5f);
        check_gradients([](const Inputs& in) { return ops::scaled_prelu(in[0], in[1], in[2]); }, {x, s, p});
    }
}

TEST_CASE("scaled_prelu skips gradients nobody wants and rejects bad shapes", "[scaled_prelu]") {
    Rng rng(13);
    Variable x(Tensor<float>::randn({2, 2, 2, 4}, rng), true);
    Variable s(Tensor<float>::uniform({2, 4}, rng, 0.5f, 1.f), false);
    Variable p(Tensor<float>::full({4}, 0.25f), false);
    ops::scaled_prelu(x, s, p).backward(Tensor<float>::full({2, 2, 2, 4}, 1.f));
    REQUIRE(x.has_grad());
    REQUIRE_FALSE(s.has_grad());
    REQUIRE_FALSE(p.has_grad());
    REQUIRE_THROWS_AS(ops::scaled_prelu(x, Variable(Tensor<float>({3})), p), Error);
    REQUIRE_THROWS_AS(ops::scaled_prelu(x, Variable(Tensor<float>({3, 4})), p), Error);
    REQUIRE_THROWS_AS(ops::scaled_prelu(x, s, Variable(Tensor<float>({5}))), Error);
    REQUIRE_THROWS_AS(ops::scaled_prelu(Variable(Tensor<float>({4})), Variable(Tensor<float>({4})), p), Error);
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

TEST_CASE("Tensor block cache reuses freed blocks, zero-fills on request, frees on a miss", "[alloc]") {
    auto& cache = detail::BlockCache::instance();
    cache.release();
    if (cache.limit() < (size_t{1} << 20)) BNN_SKIP("the block cache is switched off by BNN_TENSOR_CACHE_MB");
    const int64_t n = 100000;  // 400 KB: above the cache's minimum
    const float* first;
    {
        Tensor<float> t = Tensor<float>::full({n}, 7.f);
        first = t.data();
    }
    REQUIRE(cache.held_bytes() >= static_cast<size_t>(n) * sizeof(float));
    {
        Tensor<float> z({n});  // the same size: the freed block again, zero-filled
        REQUIRE(z.data() == first);
        bool all_zero = true;
        for (float v : z) all_zero = all_zero && v == 0.f;
        REQUIRE(all_zero);
        REQUIRE(cache.held_bytes() == 0);
    }
    // A miss with the cache full gives back idle memory before allocating.
    const size_t limit = cache.limit();
    cache.set_limit(static_cast<size_t>(n) * sizeof(float) + 100000);
    REQUIRE(cache.held_bytes() > 0);
    {
        Tensor<float> other = Tensor<float>::empty({n / 2});
        REQUIRE(cache.held_bytes() == 0);
    }
    cache.set_limit(limit);
    // Small tensors bypass the cache.
    const size_t before = cache.held_bytes();
    { Tensor<float> small({16}); }
    REQUIRE(cache.held_bytes() == before);
    cache.release();
    REQUIRE(cache.held_bytes() == 0);
}

TEST_CASE("adopt_grad takes a gradient only when there is none", "[grad_sink]") {
    Variable x(Tensor<float>::full({3}, 1.f), true);
    const Tensor<float> g = Tensor<float>::full({3}, 2.f);
    REQUIRE(x.adopt_grad(g));
    REQUIRE(x.grad().same_storage(g));
    REQUIRE_FALSE(x.adopt_grad(Tensor<float>::full({3}, 5.f)));
    REQUIRE(x.grad()[0] == 2.f);
    Variable y(Tensor<float>::full({3}, 1.f), true);
    REQUIRE_THROWS_AS(y.adopt_grad(Tensor<float>::full({4}, 1.f)), Error);
}

TEST_CASE("backward overwrites a fresh gradient exactly as it accumulates into a zero one", "[grad_sink]") {
    // Large enough for the block cache, which is first filled with NaN blocks of the same size:
    // an element a kernel forgot to write would show as NaN.
    const Shape shape{4, 8, 8, 160};
    Rng rng(21);
    const Tensor<float> x0 = Tensor<float>::randn(shape, rng), r = Tensor<float>::randn(shape, rng);
    Variable slope(Tensor<float>::uniform({160}, rng, 0.1f, 0.4f), true);
    Variable gate(Tensor<float>::uniform({4, 160}, rng, 0.2f, 1.f), true);
    Variable gamma(Tensor<float>::uniform({160}, rng, 0.5f, 1.5f), true), beta(Tensor<float>({160}), true);
    using Op = std::function<Variable(const Variable&)>;
    const std::vector<std::pair<const char*, Op>> ops_under_test{
        {"relu", [](const Variable& x) { return ops::relu(x); }},
        {"tanh", [](const Variable& x) { return ops::tanh(x); }},
        {"sign_ste", [](const Variable& x) { return ops::sign_ste(x); }},
        {"prelu", [&](const Variable& x) { return ops::prelu(x, slope); }},
        {"scaled_prelu", [&](const Variable& x) { return ops::scaled_prelu(x, gate, slope); }},
        {"batch_norm", [&](const Variable& x) { return ops::batch_norm(x, gamma, beta, {}, {}, true); }},
        {"batch_norm eval",
         [&](const Variable& x) {
             return ops::batch_norm(x, gamma, beta, Tensor<float>::full({160}, 0.1f), Tensor<float>::full({160}, 2.f),
                                    false);
         }},
        {"add", [](const Variable& x) { return ops::add(x, ops::scale(x, 0.5f)); }},
        {"sub", [](const Variable& x) { return ops::sub(ops::scale(x, 3.f), x); }},
        {"add to itself", [](const Variable& x) { return ops::add(x, x); }},
        {"sub from itself", [](const Variable& x) { return ops::scale(ops::sub(x, x), 1.f); }},
        {"residual", [](const Variable& x) { return ops::add(ops::sign_ste(x), ops::relu(x)); }},
    };
    for (const auto& [name, op] : ops_under_test) {
        INFO(name);
        auto grad_of_x = [&](bool pre_zeroed) {
            {  // dirty cached blocks, several alive at once so that several go back to the cache
                std::vector<Tensor<float>> junk;
                for (int k = 0; k < 6; ++k) junk.push_back(Tensor<float>::full(shape, std::nanf("")));
            }
            Variable x(x0.clone(), true);
            if (pre_zeroed) x.grad();  // an existing (zero) gradient: the accumulating path
            op(x).backward(r);
            return x.grad().to_vector();
        };
        const std::vector<float> fresh = grad_of_x(false), accumulated = grad_of_x(true);
        bool finite = true;
        for (float v : fresh) finite = finite && std::isfinite(v);
        REQUIRE(finite);
        REQUIRE(fresh == accumulated);
    }
}
