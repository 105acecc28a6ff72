// Float ops: gradients against finite differences, forwards against naive references, errors.
#include <catch2/catch.hpp>

#include "gradcheck.hpp"

using namespace bnn;
using bnn::test::check_gradients;
using bnn::test::random_variable;

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
