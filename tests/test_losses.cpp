// losses/: attention transfer and logit matching against their definitions, cross-entropy with
// hard, smoothed and soft targets; gradients against finite differences, errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "bnn/losses/attention_transfer.hpp"
#include "bnn/losses/cross_entropy.hpp"
#include "bnn/losses/logit_matching.hpp"
#include "bnn/ops/softmax.hpp"
#include "gradcheck.hpp"

using namespace bnn;
using bnn::test::check_gradients;
using bnn::test::random_variable;
using Inputs = std::vector<Variable>;

namespace {

// Straight from the definition, in double: Q = sum_c A^2 per position, divided by its L2 norm
// (or max), squared difference averaged over samples and positions.
double reference_attention(const Tensor<float>& s, const Tensor<float>& t, losses::AttentionNorm norm,
                           losses::AttentionDistance dist) {
    const int64_t n = s.dim(0), p = s.dim(1) * s.dim(2);
    auto maps = [&](const Tensor<float>& a) {
        const int64_t c = a.dim(3);
        std::vector<double> q(n * p, 0.0);
        for (int64_t i = 0; i < n * p; ++i)
            for (int64_t k = 0; k < c; ++k) q[i] += double(a[i * c + k]) * a[i * c + k];
        for (int64_t b = 0; b < n; ++b) {
            double d = 1, sq = 0, mx = 0;
            for (int64_t i = 0; i < p; ++i) sq += q[b * p + i] * q[b * p + i], mx = std::max(mx, q[b * p + i]);
            if (norm == losses::AttentionNorm::L2) d = std::sqrt(sq);
            if (norm == losses::AttentionNorm::Max) d = mx;
            for (int64_t i = 0; i < p; ++i) q[b * p + i] /= d;
        }
        return q;
    };
    auto qs = maps(s), qt = maps(t);
    double loss = 0;
    for (int64_t b = 0; b < n; ++b) {
        double sq = 0;
        for (int64_t i = 0; i < p; ++i) {
            double e = qs[b * p + i] - qt[b * p + i];
            if (dist == losses::AttentionDistance::Squared) loss += e * e / double(n * p);
            if (dist == losses::AttentionDistance::Absolute) loss += std::abs(e) / double(n * p);
            sq += e * e;
        }
        if (dist == losses::AttentionDistance::L2Norm) loss += std::sqrt(sq) / double(n);
    }
    return loss;
}

}  // namespace

TEST_CASE("attention transfer equals its definition for every norm and distance", "[attention]") {
    Rng rng(11);
    auto s = Tensor<float>::uniform({3, 4, 5, 6}, rng, -1.f, 1.f);
    auto t = Tensor<float>::uniform({3, 4, 5, 9}, rng, -1.f, 1.f);  // teacher may be wider
    for (auto norm : {losses::AttentionNorm::L2, losses::AttentionNorm::Max, losses::AttentionNorm::None})
        for (auto dist : {losses::AttentionDistance::Squared, losses::AttentionDistance::Absolute,
                          losses::AttentionDistance::L2Norm}) {
            losses::AttentionOptions o;
            o.norm = norm;
            o.distance = dist;
            o.beta = 2.5f;
            double got = losses::attention_transfer(Variable(s), Variable(t), o).item();
            REQUIRE(got == Approx(2.5 * reference_attention(s, t, norm, dist)).epsilon(1e-5));
        }
    // Identical features (up to a scale, which the normalization removes) give zero loss.
    auto s2 = s.clone();
    for (auto& v : s2) v *= 3.f;
    REQUIRE(losses::attention_transfer(Variable(s), Variable(s2)).item() == Approx(0.0).margin(1e-9));
}

TEST_CASE("attention transfer over several points averages them", "[attention]") {
    Rng rng(12);
    Variable a = random_variable({2, 3, 3, 4}, rng), b = random_variable({2, 3, 3, 4}, rng);
    Variable c = random_variable({2, 2, 2, 8}, rng), d = random_variable({2, 2, 2, 5}, rng);
    losses::AttentionOptions o;
    o.beta = 30.f;
    float both = losses::attention_transfer({{a, b}, {c, d}}, o).item();
    float first = losses::attention_transfer(a, b, o).item();
    float second = losses::attention_transfer(c, d, o).item();
    REQUIRE(both == Approx((first + second) / 2).epsilon(1e-6));
}

TEST_CASE("attention transfer gradients match finite differences", "[attention][gradcheck]") {
    Rng rng(13);
    for (auto norm : {losses::AttentionNorm::L2, losses::AttentionNorm::Max, losses::AttentionNorm::None})
        for (auto dist : {losses::AttentionDistance::Squared, losses::AttentionDistance::Absolute,
                          losses::AttentionDistance::L2Norm}) {
            INFO("norm " << int(norm) << " distance " << int(dist));
            losses::AttentionOptions o;
            o.norm = norm;
            o.distance = dist;
            o.beta = 3.f;
            Variable s1 = random_variable({2, 3, 2, 4}, rng), t1 = random_variable({2, 3, 2, 3}, rng);
            Variable s2 = random_variable({2, 2, 2, 5}, rng), t2 = random_variable({2, 2, 2, 5}, rng);
            // |e| has a kink at e = 0: a smaller step keeps the differences from crossing it.
            bnn::test::GradcheckOptions go;
            if (dist == losses::AttentionDistance::Absolute) go.eps = 2e-4;
            check_gradients(
                [o](const std::vector<Variable>& in) {
                    return losses::attention_transfer({{in[0], in[1]}, {in[2], in[3]}}, o);
                },
                {s1, t1, s2, t2}, go);
        }
}

TEST_CASE("attention transfer rejects mismatched feature maps", "[attention]") {
    Rng rng(14);
    Variable a = random_variable({2, 4, 4, 3}, rng);
    REQUIRE_THROWS_AS(losses::attention_transfer(a, random_variable({2, 4, 3, 3}, rng)), Error);
    REQUIRE_THROWS_AS(losses::attention_transfer(a, random_variable({3, 4, 4, 3}, rng)), Error);
    REQUIRE_THROWS_WITH(losses::attention_transfer(a, random_variable({2, 16, 3}, rng)), Catch::Contains("[2, 16, 3]"));
    REQUIRE_THROWS_AS(losses::attention_transfer(std::vector<std::pair<Variable, Variable>>{}), Error);
}

TEST_CASE("logit matching equals T^2 KL(teacher || student) and its gradient checks", "[logit_matching]") {
    Rng rng(21);
    auto zs = Tensor<float>::uniform({4, 7}, rng, -3.f, 3.f);
    auto zt = Tensor<float>::uniform({4, 7}, rng, -3.f, 3.f);
    for (float temp : {1.f, 4.f}) {
        double ref = 0;
        for (int n = 0; n < 4; ++n) {
            double ss = 0, st = 0;
            for (int k = 0; k < 7; ++k) ss += std::exp(zs.at({n, k}) / temp), st += std::exp(zt.at({n, k}) / temp);
            for (int k = 0; k < 7; ++k) {
                double ps = std::exp(zs.at({n, k}) / temp) / ss, pt = std::exp(zt.at({n, k}) / temp) / st;
                ref += pt * std::log(pt / ps);
            }
        }
        ref *= temp * temp / 4;
        REQUIRE(losses::logit_matching(Variable(zs), zt, temp).item() == Approx(ref).epsilon(1e-5));
        Variable teacher(zt, true);  // even a teacher that requires grad gets none
        check_gradients(
            [teacher, temp](const std::vector<Variable>& in) { return losses::logit_matching(in[0], teacher, temp); },
            {Variable(zs.clone(), true)});
        REQUIRE_FALSE(teacher.has_grad());
    }
    REQUIRE(losses::logit_matching(Variable(zt), zt, 2.f).item() == Approx(0.0).margin(1e-6));
    REQUIRE_THROWS_AS(losses::logit_matching(Variable(zs), Tensor<float>({4, 6})), Error);
    REQUIRE_THROWS_AS(losses::logit_matching(Variable(zs), zt, 0.f), Error);
}

TEST_CASE("cross_entropy with labels, label smoothing and soft targets", "[loss][grad]") {
    Rng rng(91);
    Variable logits = random_variable({4, 6}, rng, true, -3.f, 3.f);
    const std::vector<int32_t> labels{0, 5, 2, 2};
    auto lp = ops::log_softmax(logits.detach()).value();
    double want = 0, want_smooth = 0;
    for (int64_t n = 0; n < 4; ++n) {
        want -= lp.at({n, labels[n]});
        double all = 0;
        for (int64_t k = 0; k < 6; ++k) all += lp.at({n, k});
        want_smooth -= 0.9 * lp.at({n, labels[n]}) + 0.1 / 6 * all;
    }
    REQUIRE(losses::cross_entropy(logits, labels).item() == Approx(want / 4).margin(1e-5));
    REQUIRE(losses::cross_entropy(logits, labels, 0.1f).item() == Approx(want_smooth / 4).margin(1e-5));
    check_gradients([&](const Inputs& in) { return losses::cross_entropy(in[0], labels); }, {logits});
    check_gradients([&](const Inputs& in) { return losses::cross_entropy(in[0], labels, 0.2f); }, {logits});

    // Mix-up style targets: the loss equals the mixture of the two hard-label losses.
    Tensor<float> target({4, 6});
    const std::vector<int32_t> other{3, 3, 1, 0};
    for (int64_t n = 0; n < 4; ++n) {
        target.at({n, labels[n]}) += 0.7f;
        target.at({n, other[n]}) += 0.3f;
    }
    double mixed = 0.7 * losses::cross_entropy(logits, labels).item() + 0.3 * losses::cross_entropy(logits, other).item();
    REQUIRE(losses::cross_entropy(logits, target).item() == Approx(mixed).margin(1e-5));
    check_gradients([&](const Inputs& in) { return losses::cross_entropy(in[0], target); }, {logits});

    // Huge logits stay finite (log-sum-exp).
    Variable big(Tensor<float>::from_vector({1, 2}, {1e4f, -1e4f}));
    REQUIRE(losses::cross_entropy(big, {1}).item() == Approx(2e4f));
}

TEST_CASE("cross_entropy rejects bad labels and targets", "[loss][errors]") {
    Variable logits(Tensor<float>({2, 3}));
    REQUIRE_THROWS_WITH(losses::cross_entropy(logits, {0, 3}), Catch::Contains("label 3"));
    REQUIRE_THROWS_AS(losses::cross_entropy(logits, {0, -1}), Error);
    REQUIRE_THROWS_AS(losses::cross_entropy(logits, {0}), Error);
    REQUIRE_THROWS_AS(losses::cross_entropy(logits, {0, 1}, 1.f), Error);
    REQUIRE_THROWS_AS(losses::cross_entropy(logits, Tensor<float>::full({2, 3}, 0.5f)), Error);
    REQUIRE_THROWS_AS(losses::cross_entropy(logits, Tensor<float>::full({3, 2}, 0.5f)), Error);
    REQUIRE_THROWS_AS(losses::cross_entropy(Variable(Tensor<float>({6})), {0}), Error);
}
