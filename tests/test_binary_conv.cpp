// The binary convolution engine: bit packing and weight layout, the XNOR conv's shape checks, the
// sign STE, the binary conv op and the BinaryConv2d module. Every ISA path of the packing and the
// XNOR conv against the reference: tests/test_kernels.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/core/bit_tensor.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/kernels/xnor_conv.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/ops/activation.hpp"
#include "bnn/ops/binary_conv2d.hpp"
#include "bnn/ops/conv2d.hpp"
#include "bnn/ops/elementwise.hpp"
#include "bnn/ops/sign.hpp"
#include "gradcheck.hpp"

using namespace bnn;

namespace {

/// Uniform [-1, 1) values with a sprinkling of +0 and -0, which must pack as +1.
Tensor<float> random_with_zeros(const Shape& shape, Rng& rng) {
    Tensor<float> t = Tensor<float>::uniform(shape, rng, -1.f, 1.f);
    for (int64_t i = 0; i < t.numel(); ++i) {
        const uint64_t r = rng.below(16);
        if (r == 0) t[i] = 0.f;
        if (r == 1) t[i] = -0.f;
    }
    return t;
}

float sign_of(float v) { return v >= 0.f ? 1.f : -1.f; }

}  // namespace

TEST_CASE("BitTensor packs along channels with the padding bits zero", "[bitpack]") {
    BitTensor b(Shape{2, 3, 65});
    REQUIRE(b.pixels() == 6);
    REQUIRE(b.words_per_pixel() == 2);
    REQUIRE(b.sign_at(5, 64) == -1);
    b.set_sign(5, 64, 0.f);  // sign(0) = +1
    REQUIRE(b.sign_at(5, 64) == 1);
    REQUIRE(b.data()[5 * 2 + 1] == 1u);
    REQUIRE_THROWS_AS(b.sign_at(6, 0), Error);
    REQUIRE_THROWS_AS(b.sign_at(0, 65), Error);
    REQUIRE_THROWS_AS(BitTensor(Shape{}), Error);
}

TEST_CASE("pack_signs follows the sign rule with zero padding bits, unpack round-trips", "[bitpack]") {
    Rng rng(11);
    for (int64_t c : {1, 3, 8, 15, 16, 17, 63, 64, 65, 127, 128, 200, 512}) {
        Tensor<float> x = random_with_zeros(Shape{7, c}, rng);
        Tensor<float> a = Tensor<float>::uniform(Shape{c}, rng, -2.f, 2.f);
        Tensor<float> b = Tensor<float>::uniform(Shape{c}, rng, -0.5f, 0.5f);
        const int64_t words = kernels::words_for_channels(c);
        std::vector<uint64_t> ref(7 * words), ref_affine(7 * words);
        kernels::pack_signs_scalar(x.data(), 7, c, nullptr, nullptr, ref.data());
        kernels::pack_signs_scalar(x.data(), 7, c, a.data(), b.data(), ref_affine.data());
        // The reference itself against the rule, including the padding bits.
        for (int64_t p = 0; p < 7; ++p)
            for (int64_t bit = 0; bit < words * 64; ++bit) {
                const bool set = (ref[p * words + bit / 64] >> (bit % 64)) & 1;
                const bool set_affine = (ref_affine[p * words + bit / 64] >> (bit % 64)) & 1;
                if (bit >= c) {
                    REQUIRE_FALSE(set);
                    REQUIRE_FALSE(set_affine);
                } else {
                    REQUIRE(set == (x[p * c + bit] >= 0.f));
                    REQUIRE(set_affine == (std::fma(a[bit], x[p * c + bit], b[bit]) >= 0.f));
                }
            }
        // The packed BitTensor is the same words, and unpacks to the ±1 values.
        BitTensor plain = pack_signs(x);
        REQUIRE(plain.words().to_vector() == ref);
        REQUIRE(pack_signs(x, a, b).words().to_vector() == ref_affine);
        Tensor<float> back = unpack_signs(plain);
        REQUIRE(back.shape() == x.shape());
        for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(back[i] == sign_of(x[i]));
    }
    Tensor<float> x(Shape{2, 5});
    REQUIRE_THROWS_AS(pack_signs(x, Tensor<float>(Shape{4})), Error);
}

TEST_CASE("pack_conv_weights lays words out [K words][Cout] with tap sums", "[bitpack]") {
    Rng rng(5);
    const int64_t co = 3, kh = 2, kw = 3, ci = 70;
    Tensor<float> w = random_with_zeros(Shape{co, kh, kw, ci}, rng);
    kernels::PackedConvWeights p = kernels::pack_conv_weights(w);
    const int64_t coutp = kernels::padded_out_channels(co), wc = 2;
    REQUIRE(p.words.shape() == Shape{kh * kw * wc, coutp});
    for (int64_t o = 0; o < coutp; ++o)
        for (int64_t t = 0; t < kh * kw; ++t) {
            int64_t sum = 0;
            for (int64_t c = 0; c < wc * 64; ++c) {
                const bool bit = (p.words[(t * wc + c / 64) * coutp + o] >> (c % 64)) & 1;
                const bool want = o < co && c < ci && w[(o * kh * kw + t) * ci + c] >= 0.f;
                REQUIRE(bit == want);
                if (o < co && c < ci) sum += bit ? 1 : -1;
            }
            REQUIRE(p.tap_sums[t * coutp + o] == sum);
        }
    REQUIRE_THROWS_AS(kernels::pack_conv_weights(Tensor<float>(Shape{3, 3, 3})), Error);
}

TEST_CASE("xnor conv rejects bad shapes with bnn::Error", "[xnor_conv]") {
    Rng rng(1);
    BitTensor xb = pack_signs(Tensor<float>::uniform(Shape{1, 4, 4, 10}, rng, -1.f, 1.f));
    auto packed = kernels::pack_conv_weights(Tensor<float>::uniform(Shape{6, 3, 3, 10}, rng, -1.f, 1.f));
    auto wrong_c = kernels::pack_conv_weights(Tensor<float>::uniform(Shape{6, 3, 3, 11}, rng, -1.f, 1.f));
    auto too_big = kernels::pack_conv_weights(Tensor<float>::uniform(Shape{6, 7, 7, 10}, rng, -1.f, 1.f));
    REQUIRE_THROWS_WITH(kernels::xnor_conv2d(xb, wrong_c, {}, {}, 1, 1), Catch::Contains("11"));
    REQUIRE_THROWS_AS(kernels::xnor_conv2d(xb, too_big, {}, {}, 1, 1), Error);
    REQUIRE_THROWS_AS(kernels::xnor_conv2d(xb, packed, {}, {}, 0, 1), Error);
    REQUIRE_THROWS_AS(kernels::xnor_conv2d(xb, packed, {}, {}, 1, -1), Error);
    REQUIRE_THROWS_AS(kernels::xnor_conv2d(xb, packed, Tensor<float>(Shape{5}), {}, 1, 1), Error);
    REQUIRE_THROWS_AS(kernels::xnor_conv2d(pack_signs(Tensor<float>(Shape{4, 4, 10})), packed, {}, {}, 1, 1), Error);
}

// ---- the sign STE, the binary conv op and the module ---------------------------------------

namespace {
/// Values uniform in [lo, hi) kept `gap` away from 0 and ±1, where sign and its STE change.
Tensor<float> away_from_kinks(const Shape& shape, Rng& rng, float lo, float hi, float gap = 0.05f) {
    return test::random_variable_away_from(shape, rng, {0.f, 1.f, -1.f}, gap, lo, hi).value();
}
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
    ops::binary_conv2d(x, w, Variable(), 1, 1, kernels::PadMode::one).backward(r);
    // Reference: the input explicitly padded with 0.5 (sign +1), convolved without padding.
    Tensor<float> padded = Tensor<float>::full(Shape{1, 6, 7, 6}, 0.5f);
    for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 5; ++j)
            for (int64_t c = 0; c < 6; ++c) padded.at({0, i + 1, j + 1, c}) = xv.at({0, i, j, c});
    Variable xp(padded, true), w2(wv, true);
    Variable y = ops::binary_conv2d(xp, w2, Variable(), 1, 0);
    REQUIRE(y.value().to_vector() ==
            ops::binary_conv2d(Variable(xv), Variable(wv), Variable(), 1, 1, kernels::PadMode::one).value().to_vector());
    y.backward(r);
    require_equal(w.grad(), w2.grad());
    for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 5; ++j)
            for (int64_t c = 0; c < 6; ++c) REQUIRE(x.grad().at({0, i, j, c}) == Approx(xp.grad().at({0, i + 1, j + 1, c})));
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
