// Ops: gradients against finite differences, forwards against naive references, errors; the sign
// STE, the binary conv op and the fused scaled_prelu against the compositions they replace.
#include <catch2/catch.hpp>

#include "gradcheck.hpp"
#include "same_bits.hpp"

using namespace bnn;
using bnn::test::check_gradients;
using bnn::test::random_variable;
using bnn::test::random_variable_away_from;

namespace {
// y = x^3 with a backward that can be made wrong, to show the checker catches it.
Variable cube(const Variable& x, float grad_factor, bool overwrite) {
    Tensor<float> out = Tensor<float>::empty(x.shape());
    for (int64_t i = 0; i < out.numel(); ++i) out[i] = x.value()[i] * x.value()[i] * x.value()[i];
    Tensor<float> saved = x.value();
    return make_result(out, {x},
                       [saved, grad_factor, overwrite](const Tensor<float>& g, std::vector<Variable>& in) {
                           auto& gx = in[0].grad();
                           for (int64_t i = 0; i < g.numel(); ++i) {
                               float d = grad_factor * 3.f * saved[i] * saved[i] * g[i];
                               gx[i] = overwrite ? d : gx[i] + d;
                           }
                       },
                       "cube");
}
}  // namespace

TEST_CASE("gradcheck accepts a correct backward and catches wrong ones", "[gradcheck]") {
    Rng rng(3);
    Variable x = random_variable({4, 5}, rng);
    check_gradients([](const std::vector<Variable>& in) { return cube(in[0], 1.f, false); }, {x});
    // 5% too large: a small slip, well outside the 1% relative tolerance.
    auto wrong = bnn::test::gradient_mismatches(
        [](const std::vector<Variable>& in) { return cube(in[0], 1.05f, false); }, {x});
    REQUIRE(wrong.size() > 10);
    REQUIRE(wrong[0].input == 0);
    auto overwriting = bnn::test::gradient_mismatches(
        [](const std::vector<Variable>& in) { return cube(in[0], 1.f, true); }, {x});
    REQUIRE_FALSE(overwriting.empty());
    REQUIRE(overwriting[0].overwrote);
    // An op that forgets to record a node is caught too.
    auto untracked = bnn::test::gradient_mismatches(
        [](const std::vector<Variable>& in) { return in[0].detach(); }, {x});
    REQUIRE(untracked.size() == 1);
}

// ---------------------------------------------------------------------------------------------
// Ops under test.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "bnn/core/threads.hpp"
#include "bnn/dist/sync_batch_norm.hpp"
#include "bnn/ops/activation.hpp"
#include "bnn/ops/batch_norm.hpp"
#include "bnn/ops/binary_conv2d.hpp"
#include "bnn/ops/channel_shift.hpp"
#include "bnn/ops/conv2d.hpp"
#include "bnn/ops/elementwise.hpp"
#include "bnn/ops/linear.hpp"
#include "bnn/ops/pool.hpp"
#include "bnn/ops/reduce.hpp"
#include "bnn/ops/reshape.hpp"
#include "bnn/ops/sign.hpp"
#include "bnn/ops/softmax.hpp"

namespace {
using Inputs = std::vector<Variable>;

/// Restores the thread count when a test changes it.
struct ThreadsGuard {
    int saved = num_threads();
    ~ThreadsGuard() { set_num_threads(saved); }
};

void require_close(const Tensor<float>& got, const Tensor<float>& want, float tol) {
    REQUIRE(got.shape() == want.shape());
    for (int64_t i = 0; i < got.numel(); ++i) {
        INFO("element " << i);
        REQUIRE(got[i] == Approx(want[i]).margin(tol).epsilon(tol));
    }
}

/// Values spread evenly over [-1, 1) in random order: all distinct by 2/n, so max pooling has
/// a clear winner in every window, even after a finite-difference step.
Variable distinct_variable(const Shape& shape, Rng& rng) {
    Tensor<float> t = Tensor<float>::empty(shape);
    std::vector<int64_t> idx(t.numel());
    std::iota(idx.begin(), idx.end(), 0);
    rng.shuffle(idx.begin(), idx.end());
    for (int64_t i = 0; i < t.numel(); ++i) t[i] = -1.f + 2.f * static_cast<float>(idx[i]) / t.numel();
    return Variable(t, true);
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// conv2d

struct ConvCase {
    int64_t n, h, w, cin, cout, k;
    int stride, pad;
    bool bias;
};

TEST_CASE("conv2d forward equals a direct 7-loop convolution on awkward sizes", "[conv2d]") {
    ThreadsGuard guard;
    Rng rng(11);
    const std::vector<ConvCase> cases = {
        {2, 7, 6, 3, 4, 3, 1, 1, true},  {3, 9, 5, 5, 7, 5, 2, 2, false}, {1, 6, 7, 4, 3, 1, 1, 0, true},
        {2, 5, 5, 3, 2, 1, 2, 0, false}, {2, 8, 8, 2, 5, 3, 2, 0, true},  {1, 4, 3, 6, 2, 3, 1, 2, false},
        // 32x32x64 3x3: the column buffer covers fewer rows than the image, so blocks split it.
        {2, 32, 32, 64, 8, 3, 1, 1, true},
    };
    for (int threads : {1, 2}) {
        set_num_threads(threads);
        for (const auto& c : cases) {
            CAPTURE(threads, c.n, c.h, c.w, c.cin, c.cout, c.k, c.stride, c.pad, c.bias);
            Variable x = random_variable({c.n, c.h, c.w, c.cin}, rng, false);
            Variable w = random_variable({c.cout, c.k, c.k, c.cin}, rng, false);
            Variable b = c.bias ? random_variable({c.cout}, rng, false) : Variable();
            Variable y = ops::conv2d(x, w, b, c.stride, c.pad);
            auto g = kernels::conv2d_geometry(c.n, c.h, c.w, c.cin, c.cout, c.k, c.k, c.stride, c.pad);
            REQUIRE(y.shape() == Shape{c.n, g.OH, g.OW, c.cout});
            Tensor<float> ref = Tensor<float>::empty(y.shape());
            kernels::conv2d_forward_reference(x.value().data(), w.value().data(), c.bias ? b.value().data() : nullptr,
                                              ref.data(), g);
            require_close(y.value(), ref, 1e-4f);
        }
    }
}

TEST_CASE("conv2d gradients match finite differences", "[conv2d][grad]") {
    ThreadsGuard guard;
    Rng rng(12);
    const std::vector<ConvCase> cases = {
        {2, 5, 4, 3, 2, 3, 1, 1, true},  {2, 6, 5, 2, 3, 3, 2, 0, false}, {1, 5, 5, 2, 2, 5, 1, 2, true},
        {2, 7, 6, 2, 2, 5, 2, 1, false}, {2, 3, 4, 3, 2, 1, 1, 0, true},  {1, 5, 4, 3, 2, 1, 2, 1, false},
        {3, 4, 5, 2, 2, 3, 2, 2, true},
    };
    // One thread: blocks of several images in order; two: images spread over threads.
    for (int threads : {1, 2})
    for (const auto& c : cases) {
        set_num_threads(threads);
        CAPTURE(threads, c.n, c.h, c.w, c.cin, c.cout, c.k, c.stride, c.pad, c.bias);
        Variable x = random_variable({c.n, c.h, c.w, c.cin}, rng);
        Variable w = random_variable({c.cout, c.k, c.k, c.cin}, rng);
        Variable b = c.bias ? random_variable({c.cout}, rng) : Variable();
        const int s = c.stride, p = c.pad;
        check_gradients([s, p](const Inputs& in) { return ops::conv2d(in[0], in[1], in[2], s, p); }, {x, w, b});
    }
}

TEST_CASE("conv2d backward is the same on one and two threads over split blocks", "[conv2d][grad]") {
    ThreadsGuard guard;
    Rng rng(13);
    Tensor<float> xv = Tensor<float>::uniform({4, 32, 32, 64}, rng, -1, 1);
    Tensor<float> wv = Tensor<float>::uniform({16, 3, 3, 64}, rng, -1, 1);
    Tensor<float> bv = Tensor<float>::uniform({16}, rng, -1, 1);
    Tensor<float> seed = Tensor<float>::uniform({4, 32, 32, 16}, rng, -1, 1);
    std::vector<Tensor<float>> grads[2];
    for (int threads : {1, 2}) {
        set_num_threads(threads);
        Variable x(xv, true), w(wv, true), b(bv, true);
        ops::conv2d(x, w, b, 1, 1).backward(seed);
        grads[threads - 1] = {x.grad().clone(), w.grad().clone(), b.grad().clone()};
    }
    for (int k = 0; k < 3; ++k) require_close(grads[1][k], grads[0][k], 1e-3f);
}

TEST_CASE("conv2d rejects mismatched shapes", "[conv2d][errors]") {
    Variable x(Tensor<float>({2, 5, 5, 3}));
    REQUIRE_THROWS_AS(ops::conv2d(x, Variable(Tensor<float>({4, 3, 3, 2})), Variable()), Error);
    REQUIRE_THROWS_WITH(ops::conv2d(x, Variable(Tensor<float>({4, 3, 3, 2})), Variable()),
                        Catch::Contains("ops::conv2d") && Catch::Contains("[2, 5, 5, 3]"));
    REQUIRE_THROWS_AS(ops::conv2d(Variable(Tensor<float>({5, 5, 3})), Variable(Tensor<float>({4, 3, 3, 3})),
                                  Variable()),
                      Error);
    REQUIRE_THROWS_AS(ops::conv2d(x, Variable(Tensor<float>({4, 3, 3, 3})), Variable(Tensor<float>({3}))), Error);
    REQUIRE_THROWS_AS(ops::conv2d(x, Variable(Tensor<float>({4, 7, 7, 3})), Variable()), Error);
    REQUIRE_THROWS_AS(ops::conv2d(x, Variable(Tensor<float>({4, 3, 3, 3})), Variable(), 0), Error);
}

// ---------------------------------------------------------------------------------------------
// linear

TEST_CASE("linear forward and gradients", "[linear][grad]") {
    Rng rng(21);
    Variable x = random_variable({3, 5}, rng), w = random_variable({4, 5}, rng), b = random_variable({4}, rng);
    Variable y = ops::linear(x, w, b);
    REQUIRE(y.shape() == Shape{3, 4});
    for (int64_t n = 0; n < 3; ++n)
        for (int64_t o = 0; o < 4; ++o) {
            double s = b.value()[o];
            for (int64_t i = 0; i < 5; ++i) s += double(x.value().at({n, i})) * w.value().at({o, i});
            REQUIRE(y.value().at({n, o}) == Approx(s).margin(1e-5));
        }
    check_gradients([](const Inputs& in) { return ops::linear(in[0], in[1], in[2]); }, {x, w, b});
    check_gradients([](const Inputs& in) { return ops::linear(in[0], in[1], Variable()); }, {x, w});
    REQUIRE_THROWS_AS(ops::linear(x, random_variable({4, 6}, rng), b), Error);
    REQUIRE_THROWS_AS(ops::linear(x, w, random_variable({5}, rng)), Error);
    REQUIRE_THROWS_AS(ops::linear(random_variable({3, 5, 1}, rng), w, b), Error);
}

// ---------------------------------------------------------------------------------------------
// batch norm

TEST_CASE("batch_norm training gradients match finite differences", "[batch_norm][grad]") {
    Rng rng(31);
    Variable x = random_variable({3, 2, 3, 4}, rng);
    Variable gamma = random_variable({4}, rng, true, 0.5f, 1.5f), beta = random_variable({4}, rng);
    Tensor<float> rm({4}), rv = Tensor<float>::full({4}, 1.f);
    check_gradients(
        [&](const Inputs& in) { return ops::batch_norm(in[0], in[1], in[2], rm, rv, true); }, {x, gamma, beta});
    check_gradients([&](const Inputs& in) { return ops::batch_norm(in[0], Variable(), Variable(), rm, rv, true); },
                    {x});
    // [N, C] features, as after a linear layer.
    Variable f = random_variable({6, 3}, rng);
    check_gradients(
        [](const Inputs& in) { return ops::batch_norm(in[0], Variable(), Variable(), Tensor<float>(), Tensor<float>(), true); },
        {f});
}

TEST_CASE("batch_norm eval gradients match finite differences", "[batch_norm][grad]") {
    Rng rng(32);
    Variable x = random_variable({2, 3, 2, 5}, rng);
    Variable gamma = random_variable({5}, rng), beta = random_variable({5}, rng);
    Tensor<float> rm = Tensor<float>::uniform({5}, rng, -0.5, 0.5), rv = Tensor<float>::uniform({5}, rng, 0.5, 2);
    check_gradients(
        [&](const Inputs& in) { return ops::batch_norm(in[0], in[1], in[2], rm, rv, false); }, {x, gamma, beta});
}

TEST_CASE("batch_norm normalizes with batch stats and updates running stats with momentum", "[batch_norm]") {
    Rng rng(33);
    const int64_t M = 2 * 3 * 3, C = 3;
    Variable x = random_variable({2, 3, 3, C}, rng, false, -2.f, 3.f);
    Variable gamma(Tensor<float>::from_vector({C}, {1.f, 2.f, 0.5f}));
    Variable beta(Tensor<float>::from_vector({C}, {0.f, -1.f, 3.f}));
    Tensor<float> rm = Tensor<float>::from_vector({C}, {0.5f, 0.f, -1.f});
    Tensor<float> rv = Tensor<float>::from_vector({C}, {2.f, 1.f, 1.f});
    Tensor<float> rm0 = rm.clone(), rv0 = rv.clone();
    Variable y = ops::batch_norm(x, gamma, beta, rm, rv, true, 0.2f, 1e-5f);
    for (int64_t c = 0; c < C; ++c) {
        double mean = 0, var = 0;
        for (int64_t m = 0; m < M; ++m) mean += x.value()[m * C + c];
        mean /= M;
        for (int64_t m = 0; m < M; ++m) var += std::pow(x.value()[m * C + c] - mean, 2);
        const double biased = var / M, unbiased = var / (M - 1);
        for (int64_t m = 0; m < M; ++m) {
            double want = gamma.value()[c] * (x.value()[m * C + c] - mean) / std::sqrt(biased + 1e-5) + beta.value()[c];
            REQUIRE(y.value()[m * C + c] == Approx(want).margin(1e-4));
        }
        REQUIRE(rm[c] == Approx(0.8 * rm0[c] + 0.2 * mean).margin(1e-5));
        REQUIRE(rv[c] == Approx(0.8 * rv0[c] + 0.2 * unbiased).margin(1e-5));
    }
    // Eval uses the running statistics and leaves them alone.
    Tensor<float> rm1 = rm.clone(), rv1 = rv.clone();
    Variable e = ops::batch_norm(x, gamma, beta, rm, rv, false, 0.2f, 1e-5f);
    for (int64_t i = 0; i < x.numel(); ++i) {
        const int64_t c = i % C;
        double want = gamma.value()[c] * (x.value()[i] - rm1[c]) / std::sqrt(rv1[c] + 1e-5) + beta.value()[c];
        REQUIRE(e.value()[i] == Approx(want).margin(1e-4));
    }
    require_close(rm, rm1, 0.f);
    require_close(rv, rv1, 0.f);
}

TEST_CASE("batch_norm on a large batch: threaded sums agree with one thread", "[batch_norm]") {
    ThreadsGuard guard;
    Rng rng(34);
    Tensor<float> xv = Tensor<float>::randn({8, 32, 32, 16}, rng, 3.f, 2.f);
    Tensor<float> seed = Tensor<float>::randn({8, 32, 32, 16}, rng);
    Tensor<float> gv = Tensor<float>::uniform({16}, rng, 0.5f, 1.5f);
    std::vector<Tensor<float>> results[2];
    for (int threads : {1, 2}) {
        set_num_threads(threads);
        Variable x(xv, true), gamma(gv, true), beta(Tensor<float>({16}), true);
        Tensor<float> rm({16}), rv = Tensor<float>::full({16}, 1.f);
        Variable y = ops::batch_norm(x, gamma, beta, rm, rv, true);
        Tensor<float> yv = y.value().clone();
        y.backward(seed);
        results[threads - 1] = {yv, x.grad().clone(), gamma.grad().clone(), beta.grad().clone(), rm, rv};
    }
    for (int k = 0; k < 6; ++k) require_close(results[1][k], results[0][k], 1e-4f);
    // Normalized output: zero mean, unit variance per channel before gamma; dx sums to zero.
    const Tensor<float>& y = results[0][0];
    const Tensor<float>& dx = results[0][1];
    const int64_t M = 8 * 32 * 32;
    for (int64_t c = 0; c < 16; ++c) {
        double s = 0, q = 0, d = 0;
        for (int64_t m = 0; m < M; ++m) {
            s += y[m * 16 + c] / gv[c];
            q += std::pow(y[m * 16 + c] / gv[c], 2);
            d += dx[m * 16 + c];
        }
        REQUIRE(s / M == Approx(0).margin(1e-4));
        REQUIRE(q / M == Approx(1).margin(1e-3));
        REQUIRE(d == Approx(0).margin(1e-2));
    }
}

TEST_CASE("sync batch norm over one process is ops::batch_norm bit for bit", "[batch_norm][dist]") {
    // Both run the passes of kernels/batch_norm.hpp; in a group of one the all-reduces change
    // nothing, so every output, gradient and running statistic is the same float.
    ThreadsGuard guard;
    dist::ProcessGroup self = dist::ProcessGroup::self();
    Rng rng(35);
    for (const Shape& shape : {Shape{3, 5, 7, 19}, Shape{37, 6}, Shape{8, 16, 16, 24}})
        for (int threads : {1, 2})
            for (bool affine : {true, false}) {
                set_num_threads(threads);
                const int64_t C = shape[-1];
                Tensor<float> xv = Tensor<float>::randn(shape, rng, 1.f, 2.f), seed = Tensor<float>::randn(shape, rng);
                Tensor<float> gv = Tensor<float>::uniform({C}, rng, 0.5f, 1.5f), bv = Tensor<float>::randn({C}, rng);
                std::vector<Tensor<float>> results[2];
                for (int sync : {0, 1}) {
                    Variable x(xv, true), gamma, beta;
                    if (affine) gamma = Variable(gv, true), beta = Variable(bv, true);
                    Tensor<float> rm = Tensor<float>::full({C}, 0.5f), rv = Tensor<float>::full({C}, 2.f);
                    Variable y = sync ? dist::sync_batch_norm(self, x, gamma, beta, rm, rv, true)
                                      : ops::batch_norm(x, gamma, beta, rm, rv, true);
                    Tensor<float> yv = y.value().clone();
                    y.backward(seed);
                    results[sync] = {yv, rm, rv, x.grad().clone()};
                    if (affine) results[sync].insert(results[sync].end(), {gamma.grad().clone(), beta.grad().clone()});
                }
                INFO("shape " << shape.str() << ", " << threads << " threads, affine " << affine);
                REQUIRE(results[1].size() == results[0].size());
                for (size_t k = 0; k < results[0].size(); ++k) CHECK(bnn::test::bits_equal(results[1][k], results[0][k]));
            }
}

TEST_CASE("sync batch norm training gradients match finite differences", "[batch_norm][dist][grad]") {
    dist::ProcessGroup self = dist::ProcessGroup::self();
    Rng rng(36);
    Variable x = random_variable({3, 2, 3, 4}, rng);
    Variable gamma = random_variable({4}, rng, true, 0.5f, 1.5f), beta = random_variable({4}, rng);
    check_gradients(
        [&](const Inputs& in) {
            return dist::sync_batch_norm(self, in[0], in[1], in[2], Tensor<float>(), Tensor<float>(), true);
        },
        {x, gamma, beta});
}

TEST_CASE("sync batch norm names a running statistic of the wrong shape", "[batch_norm][dist][errors]") {
    dist::ProcessGroup self = dist::ProcessGroup::self();
    Variable x(Tensor<float>({2, 2, 2, 3}));
    REQUIRE_THROWS_WITH(dist::sync_batch_norm(self, x, Variable(), Variable(), Tensor<float>({2}), Tensor<float>({3}), true),
                        Catch::Contains("running_mean") && Catch::Contains("[3]") && Catch::Contains("[2]"));
}

TEST_CASE("batch_norm rejects bad shapes and missing statistics", "[batch_norm][errors]") {
    Variable x(Tensor<float>({2, 2, 2, 3}));
    Tensor<float> rm({3}), rv({3});
    REQUIRE_THROWS_AS(ops::batch_norm(x, Variable(Tensor<float>({4})), Variable(), rm, rv, true), Error);
    REQUIRE_THROWS_AS(ops::batch_norm(x, Variable(), Variable(), Tensor<float>({2}), rv, true), Error);
    REQUIRE_THROWS_AS(ops::batch_norm(x, Variable(), Variable(), Tensor<float>(), Tensor<float>(), false), Error);
    REQUIRE_THROWS_AS(ops::batch_norm(Variable(Tensor<float>({1, 3})), Variable(), Variable(), rm, rv, true), Error);
}

// ---------------------------------------------------------------------------------------------
// activations

TEST_CASE("activation gradients match finite differences away from kinks", "[activation][grad]") {
    Rng rng(41);
    Variable x = test::random_variable_away_from({2, 3, 4}, rng, {0.f}, 0.02f, -2.f, 2.f);
    check_gradients([](const Inputs& in) { return ops::relu(in[0]); }, {x});
    check_gradients([](const Inputs& in) { return ops::tanh(in[0]); }, {x});
    check_gradients([](const Inputs& in) { return ops::sigmoid(in[0]); }, {x});
    Variable h = test::random_variable_away_from({2, 3, 4}, rng, {-1.f, 1.f, -0.5f, 0.75f}, 0.02f, -2.f, 2.f);
    check_gradients([](const Inputs& in) { return ops::hardtanh(in[0]); }, {h});
    check_gradients([](const Inputs& in) { return ops::hardtanh(in[0], -0.5f, 0.75f); }, {h});
    Variable slope = random_variable({4}, rng);
    check_gradients([](const Inputs& in) { return ops::prelu(in[0], in[1]); }, {x, slope});
}

TEST_CASE("activation forwards", "[activation]") {
    Variable x(Tensor<float>::from_vector({5}, {-3.f, -0.5f, 0.f, 0.5f, 100.f}));
    REQUIRE(ops::relu(x).value().to_vector() == std::vector<float>{0.f, 0.f, 0.f, 0.5f, 100.f});
    REQUIRE(ops::hardtanh(x).value().to_vector() == std::vector<float>{-1.f, -0.5f, 0.f, 0.5f, 1.f});
    auto s = ops::sigmoid(Variable(Tensor<float>::from_vector({3}, {-100.f, 0.f, 100.f}))).value();
    REQUIRE(s[0] == Approx(0.f).margin(1e-30));
    REQUIRE(s[1] == 0.5f);
    REQUIRE(s[2] == 1.f);
    REQUIRE(ops::tanh(x).value()[1] == Approx(std::tanh(-0.5f)));
    Variable xc(Tensor<float>::from_vector({2, 2}, {-2.f, -2.f, 3.f, -1.f}));
    Variable slope(Tensor<float>::from_vector({2}, {0.25f, 0.5f}));
    REQUIRE(ops::prelu(xc, slope).value().to_vector() == std::vector<float>{-0.5f, -1.f, 3.f, -0.5f});
    REQUIRE_THROWS_AS(ops::prelu(xc, Variable(Tensor<float>({3}))), Error);
    REQUIRE_THROWS_AS(ops::hardtanh(x, 1.f, -1.f), Error);
}

// ---------------------------------------------------------------------------------------------
// element-wise

TEST_CASE("add, sub, mul (three broadcast forms) and scale: values and gradients", "[elementwise][grad]") {
    Rng rng(51);
    Variable a = random_variable({2, 3, 2, 4}, rng), b = random_variable({2, 3, 2, 4}, rng);
    Variable per_c = random_variable({4}, rng), per_nc = random_variable({2, 4}, rng);
    auto y = ops::mul(a, per_nc).value();
    REQUIRE(y.at({1, 2, 1, 3}) == a.value().at({1, 2, 1, 3}) * per_nc.value().at({1, 3}));
    REQUIRE(ops::mul(a, per_c).value().at({1, 0, 1, 2}) == a.value().at({1, 0, 1, 2}) * per_c.value()[2]);
    REQUIRE(ops::sub(a, b).value()[7] == a.value()[7] - b.value()[7]);
    REQUIRE(ops::scale(a, -3.f).value()[5] == -3.f * a.value()[5]);
    check_gradients([](const Inputs& in) { return ops::add(in[0], in[1]); }, {a, b});
    check_gradients([](const Inputs& in) { return ops::sub(in[0], in[1]); }, {a, b});
    check_gradients([](const Inputs& in) { return ops::mul(in[0], in[1]); }, {a, b});
    check_gradients([](const Inputs& in) { return ops::mul(in[0], in[1]); }, {a, per_c});
    check_gradients([](const Inputs& in) { return ops::mul(in[0], in[1]); }, {a, per_nc});
    check_gradients([](const Inputs& in) { return ops::scale(in[0], 2.5f); }, {a});
    // The same Variable on both sides (a residual-style reuse) gets both contributions.
    check_gradients([](const Inputs& in) { return ops::mul(in[0], in[0]); }, {b});
    check_gradients([](const Inputs& in) { return ops::sub(in[0], in[0]); }, {b});
}

TEST_CASE("element-wise ops reject mismatched shapes", "[elementwise][errors]") {
    Variable a(Tensor<float>({2, 3, 4})), b(Tensor<float>({2, 4, 3}));
    REQUIRE_THROWS_AS(ops::add(a, b), Error);
    REQUIRE_THROWS_WITH(ops::sub(a, b), Catch::Contains("[2, 3, 4]") && Catch::Contains("[2, 4, 3]"));
    REQUIRE_THROWS_AS(ops::mul(a, b), Error);
    REQUIRE_THROWS_AS(ops::mul(a, Variable(Tensor<float>({3}))), Error);
    REQUIRE_THROWS_AS(ops::mul(a, Variable(Tensor<float>({3, 4}))), Error);
}

// ---------------------------------------------------------------------------------------------
// pooling

TEST_CASE("avg_pool2d counts padding as zeros, max_pool2d never picks padding", "[pool]") {
    Variable x(Tensor<float>::from_vector({1, 2, 2, 1}, {-1.f, -2.f, -3.f, -4.f}));
    auto avg = ops::avg_pool2d(x, 3, 1, 1).value();
    REQUIRE(avg.shape() == Shape{1, 2, 2, 1});
    REQUIRE(avg[0] == Approx(-10.f / 9.f));
    auto mx = ops::max_pool2d(x, 2, 1, 1).value();
    REQUIRE(mx.shape() == Shape{1, 3, 3, 1});
    REQUIRE(mx.to_vector() == std::vector<float>{-1.f, -1.f, -2.f, -1.f, -1.f, -2.f, -3.f, -3.f, -4.f});
    // Stride 2 over an odd extent drops the last column, as in PyTorch.
    Variable y(Tensor<float>::from_vector({1, 1, 5, 1}, {1.f, 2.f, 3.f, 4.f, 5.f}));
    REQUIRE(ops::max_pool2d(y, 1, 2).value().to_vector() == std::vector<float>{1.f, 3.f, 5.f});
    REQUIRE(ops::avg_pool2d(Variable(Tensor<float>::full({1, 5, 5, 2}, 1.f)), 2, 2).value().shape() ==
            Shape{1, 2, 2, 2});
}

TEST_CASE("pool gradients match finite differences", "[pool][grad]") {
    Rng rng(61);
    Variable x = distinct_variable({2, 7, 6, 3}, rng);
    for (auto [k, s, p] : std::vector<std::tuple<int, int, int>>{{2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {2, 1, 1}, {5, 2, 2}}) {
        CAPTURE(k, s, p);
        check_gradients([k = k, s = s, p = p](const Inputs& in) { return ops::avg_pool2d(in[0], k, s, p); }, {x});
        check_gradients([k = k, s = s, p = p](const Inputs& in) { return ops::max_pool2d(in[0], k, s, p); }, {x});
    }
    check_gradients([](const Inputs& in) { return ops::global_avg_pool(in[0]); }, {x});
    auto gp = ops::global_avg_pool(x).value();
    double s = 0;
    for (int64_t h = 0; h < 7; ++h)
        for (int64_t w = 0; w < 6; ++w) s += x.value().at({1, h, w, 2});
    REQUIRE(gp.at({1, 2}) == Approx(s / 42).margin(1e-6));
}

TEST_CASE("pools reject bad arguments", "[pool][errors]") {
    Variable x(Tensor<float>({1, 4, 4, 2}));
    REQUIRE_THROWS_AS(ops::max_pool2d(x, 2, 2, 2), Error);
    REQUIRE_THROWS_AS(ops::avg_pool2d(x, 0, 1), Error);
    REQUIRE_THROWS_AS(ops::avg_pool2d(x, 5, 1), Error);
    REQUIRE_THROWS_AS(ops::max_pool2d(Variable(Tensor<float>({4, 4, 2})), 2, 2), Error);
    REQUIRE_THROWS_AS(ops::global_avg_pool(Variable(Tensor<float>({4, 2}))), Error);
}

// ---------------------------------------------------------------------------------------------
// reshape, reductions, softmax

TEST_CASE("flatten, reshape, sum and mean", "[reshape][reduce][grad]") {
    Rng rng(71);
    Variable x = random_variable({2, 3, 2, 2}, rng);
    REQUIRE(ops::flatten(x).shape() == Shape{2, 12});
    REQUIRE(ops::reshape(x, {4, -1}).shape() == Shape{4, 6});
    REQUIRE_THROWS_AS(ops::reshape(x, {5, -1}), Error);
    Variable s = ops::sum(x), m = ops::mean(x);
    REQUIRE(s.shape().rank() == 0);
    double want = 0;
    for (float v : x.value()) want += v;
    REQUIRE(s.item() == Approx(want).margin(1e-5));
    REQUIRE(m.item() == Approx(want / 24).margin(1e-6));
    // Through a reshape into something that mixes elements, so a wrong layout would show.
    check_gradients([](const Inputs& in) { return ops::mul(ops::flatten(in[0]), ops::reshape(in[0], {2, 12})); }, {x});
    check_gradients([](const Inputs& in) { return ops::sum(in[0]); }, {x});
    check_gradients([](const Inputs& in) { return ops::mean(ops::mul(in[0], in[0])); }, {x});
}

TEST_CASE("softmax and log_softmax: values, stability and gradients", "[softmax][grad]") {
    Rng rng(81);
    Variable x = random_variable({3, 5}, rng, true, -3.f, 3.f);
    auto p = ops::softmax(x).value();
    auto lp = ops::log_softmax(x).value();
    for (int64_t n = 0; n < 3; ++n) {
        double z = 0;
        for (int64_t k = 0; k < 5; ++k) z += std::exp(double(x.value().at({n, k})));
        for (int64_t k = 0; k < 5; ++k) {
            REQUIRE(p.at({n, k}) == Approx(std::exp(x.value().at({n, k})) / z).margin(1e-6));
            REQUIRE(lp.at({n, k}) == Approx(x.value().at({n, k}) - std::log(z)).margin(1e-5));
        }
    }
    Variable big(Tensor<float>::from_vector({1, 3}, {1000.f, 1000.f, -1000.f}));
    auto pb = ops::softmax(big).value();
    REQUIRE(pb[0] == Approx(0.5f));
    REQUIRE(std::isfinite(ops::log_softmax(big).value()[2]));
    check_gradients([](const Inputs& in) { return ops::softmax(in[0]); }, {x});
    check_gradients([](const Inputs& in) { return ops::log_softmax(in[0]); }, {x});
    REQUIRE_THROWS_AS(ops::softmax(Variable(Tensor<float>({2, 3, 4}))), Error);
}

// ---------------------------------------------------------------------------------------------
// the sign STE and the binary conv op

namespace {
using bnn::test::away_from_kinks;

void require_equal(const Tensor<float>& a, const Tensor<float>& b) {
    REQUIRE(a.shape() == b.shape());
    for (int64_t i = 0; i < a.numel(); ++i) REQUIRE(a[i] == Approx(b[i]).margin(1e-5));
}
}  // namespace

TEST_CASE("sign_ste: sign(0) = +1 forward, clipped identity backward", "[sign]") {
    Variable x(Tensor<float>::from_vector({6}, {-2.f, -1.f, -0.f, 0.f, 0.5f, 3.f}), true);
    Variable y = ops::sign_ste(x);
    REQUIRE(y.value().to_vector() == std::vector<float>{-1.f, -1.f, 1.f, 1.f, 1.f, 1.f});
    y.backward(Tensor<float>::from_vector({6}, {1.f, 2.f, 3.f, 4.f, 5.f, 6.f}));
    REQUIRE(x.grad().to_vector() == std::vector<float>{0.f, 2.f, 3.f, 4.f, 5.f, 0.f});
}

TEST_CASE("sign_ste's gradient is the finite-difference gradient of its surrogate hardtanh", "[sign]") {
    Rng rng(8);
    Tensor<float> xv = away_from_kinks(Shape{3, 4, 5}, rng, -2.f, 2.f);
    Tensor<float> r = Tensor<float>::uniform(xv.shape(), rng, -1.f, 1.f);
    Variable x(xv, true);
    ops::sign_ste(x).backward(r);
    const float eps = 1e-2f;
    for (int64_t i = 0; i < xv.numel(); ++i) {
        // d/dx of sum(r * clip(x, -1, 1)) at element i, by central differences.
        auto clip = [](float v) { return std::clamp(v, -1.f, 1.f); };
        const double numeric = r[i] * (clip(xv[i] + eps) - clip(xv[i] - eps)) / (2.0 * eps);
        REQUIRE(x.grad()[i] == Approx(numeric).margin(1e-4));
    }
}

TEST_CASE("binary_conv2d backward: STE through float convs of the ±1 values", "[binary_conv2d]") {
    Rng rng(13);
    for (int stride : {1, 2}) {
        Variable x(away_from_kinks(Shape{2, 5, 6, 9}, rng, -1.5f, 1.5f), true);
        Variable w(away_from_kinks(Shape{4, 3, 3, 9}, rng, -1.f, 1.f), true);
        Variable a(Tensor<float>::uniform(Shape{4}, rng, 0.5f, 1.5f), true);
        Tensor<float> r = Tensor<float>::uniform(Shape{2, (5 + 2 - 3) / stride + 1, (6 + 2 - 3) / stride + 1, 4}, rng,
                                                 -1.f, 1.f);
        ops::binary_conv2d(x, w, a, stride, 1).backward(r);
        // The same function composed from the float ops (W in [-1, 1], so sign_ste's mask is the identity).
        Variable x2(x.value(), true), w2(w.value(), true), a2(a.value(), true);
        ops::mul(ops::conv2d(ops::sign_ste(x2), ops::sign_ste(w2), Variable(), stride, 1), a2).backward(r);
        require_equal(x.grad(), x2.grad());
        require_equal(w.grad(), w2.grad());
        require_equal(a.grad(), a2.grad());
        // alpha enters linearly: finite differences agree exactly with its gradient.
        Variable xc(x.value(), false), wc(w.value(), false);
        test::check_gradients(
            [&](const std::vector<Variable>& in) { return ops::binary_conv2d(xc, wc, in[0], stride, 1); },
            {Variable(a.value().clone(), true)});
    }
}

TEST_CASE("binary_conv2d with one-padding differentiates the +1 border", "[binary_conv2d]") {
    Rng rng(17);
    Tensor<float> xv = away_from_kinks(Shape{1, 4, 5, 6}, rng, -1.5f, 1.5f);
    Tensor<float> wv = away_from_kinks(Shape{3, 3, 3, 6}, rng, -1.f, 1.f);
    Tensor<float> r = Tensor<float>::uniform(Shape{1, 4, 5, 3}, rng, -1.f, 1.f);
    Variable x(xv, true), w(wv, true);
    ops::binary_conv2d(x, w, Variable(), 1, 1, kernels::PadValue::One).backward(r);
    // Reference: the input explicitly padded with 0.5 (sign +1), convolved without padding.
    Tensor<float> padded = Tensor<float>::full(Shape{1, 6, 7, 6}, 0.5f);
    for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 5; ++j)
            for (int64_t c = 0; c < 6; ++c) padded.at({0, i + 1, j + 1, c}) = xv.at({0, i, j, c});
    Variable xp(padded, true), w2(wv, true);
    Variable y = ops::binary_conv2d(xp, w2, Variable(), 1, 0);
    REQUIRE(y.value().to_vector() ==
            ops::binary_conv2d(Variable(xv), Variable(wv), Variable(), 1, 1, kernels::PadValue::One).value().to_vector());
    y.backward(r);
    require_equal(w.grad(), w2.grad());
    for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 5; ++j)
            for (int64_t c = 0; c < 6; ++c) REQUIRE(x.grad().at({0, i, j, c}) == Approx(xp.grad().at({0, i + 1, j + 1, c})));
}

// ---------------------------------------------------------------------------------------------
// scaled_prelu

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

TEST_CASE("channel_shift adds one shift per channel, its gradients match finite differences", "[channel_shift]") {
    Rng rng(14);
    for (Shape shape : {Shape{5}, Shape{3, 7}, Shape{2, 3, 5, 17}}) {
        INFO(shape.str());
        const int64_t C = shape[-1];
        Variable x = bnn::test::random_variable(shape, rng);
        Variable b = bnn::test::random_variable({C}, rng);
        const Tensor<float> y = ops::channel_shift(x, b).value();
        REQUIRE(y.shape() == shape);
        for (int64_t i = 0; i < y.numel(); ++i) REQUIRE(y[i] == x.value()[i] + b.value()[i % C]);
        check_gradients([](const Inputs& in) { return ops::channel_shift(in[0], in[1]); }, {x, b});
    }
}

TEST_CASE("channel_shift skips gradients nobody wants and rejects bad shapes", "[channel_shift]") {
    Rng rng(15);
    Variable x(Tensor<float>::randn({2, 3, 4}, rng), false);
    Variable b(Tensor<float>::randn({4}, rng), true);
    ops::channel_shift(x, b).backward(Tensor<float>::full({2, 3, 4}, 1.f));
    REQUIRE_FALSE(x.has_grad());
    for (int64_t c = 0; c < 4; ++c) REQUIRE(b.grad()[c] == 6.f);
    REQUIRE_THROWS_WITH(ops::channel_shift(x, Variable(Tensor<float>({3}))),
                        Catch::Contains("ops::channel_shift") && Catch::Contains("[4]") && Catch::Contains("[3]"));
    REQUIRE_THROWS_AS(ops::channel_shift(Variable(Tensor<float>({2, 0})), Variable(Tensor<float>({0}))), Error);
}
