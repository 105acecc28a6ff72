#pragma once
/// @file gradcheck.hpp
/// A generic finite-difference gradient checker used by every test binary, and the random
/// inputs the tests feed it.
///
/// For an op `fn` and its inputs, the checker reduces the output to a scalar loss
/// L = sum(out * R) with R a fixed random tensor (so every output element matters with a
/// different weight), back-propagates R through the tape to get the analytic gradients, and
/// compares each element of each input that requires a gradient with the central difference
/// (L(x + e) - L(x - e)) / 2e, the loss accumulated in double to keep float rounding out of it.
///
/// Usage:
///   auto x = bnn::test::random_variable({2, 5, 5, 3}, rng);
///   bnn::test::check_gradients([](const auto& in) { return ops::relu(in[0]); }, {x});
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "bnn/autograd/grad_mode.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::test {

/// Step and tolerances of the check. With float32 forwards a step of ~1e-2..1e-3 balances
/// truncation error (grows with eps^2) against rounding error (grows with 1/eps).
struct GradcheckOptions {
    double eps = 3e-3;      ///< half-width of the central difference
    double atol = 2e-3;     ///< absolute tolerance
    double rtol = 1e-2;     ///< relative tolerance, against max(|analytic|, |numeric|)
    uint64_t seed = 1234;   ///< seed of the projection tensor R
    bool check_accumulation = true;  ///< a second backward must add, not overwrite
};

/// One element whose analytic and numeric gradients disagree.
struct GradMismatch {
    size_t input;     ///< index of the input in the list passed to the checker
    int64_t element;  ///< flat (row-major) index in that input
    double analytic;
    double numeric;
    bool overwrote = false;  ///< the backward assigned instead of accumulating
};

using GradFn = std::function<Variable(const std::vector<Variable>&)>;

/// A leaf Variable of uniform [lo, hi) values.
inline Variable random_variable(const Shape& shape, Rng& rng, bool requires_grad = true, float lo = -1.f,
                                float hi = 1.f) {
    return Variable(Tensor<float>::uniform(shape, rng, lo, hi), requires_grad);
}

/// A leaf Variable whose values keep at least `gap` away from every element of `kinks` and
/// from each other (avoids non-differentiable points of relu, max pool and the like).
inline Variable random_variable_away_from(const Shape& shape, Rng& rng, std::vector<float> kinks, float gap,
                                          float lo = -1.f, float hi = 1.f) {
    Tensor<float> t = Tensor<float>::empty(shape);
    for (int64_t i = 0; i < t.numel(); ++i) {
        float v;
        bool ok;
        do {
            v = rng.uniform(lo, hi);
            ok = true;
            for (float k : kinks) ok = ok && std::abs(v - k) >= gap;
        } while (!ok);
        t[i] = v;
    }
    return Variable(t, true);
}

/// Values uniform in [lo, hi) kept `gap` away from 0 and ±1, where sign and its STE change.
inline Tensor<float> away_from_kinks(const Shape& shape, Rng& rng, float lo, float hi, float gap = 0.05f) {
    return random_variable_away_from(shape, rng, {0.f, 1.f, -1.f}, gap, lo, hi).value();
}

/// Uniform [-1, 1) values with a sprinkling of +0 and -0, which must pack as +1.
inline Tensor<float> random_with_zeros(const Shape& shape, Rng& rng) {
    Tensor<float> t = Tensor<float>::uniform(shape, rng, -1.f, 1.f);
    for (int64_t i = 0; i < t.numel(); ++i) {
        const uint64_t r = rng.below(16);
        if (r == 0) t[i] = 0.f;
        if (r == 1) t[i] = -0.f;
    }
    return t;
}

namespace detail {
inline double projected_loss(const Tensor<float>& out, const Tensor<float>& r) {
    double s = 0;
    for (int64_t i = 0; i < out.numel(); ++i) s += static_cast<double>(out[i]) * static_cast<double>(r[i]);
    return s;
}
inline bool close(double a, double n, const GradcheckOptions& o) {
    return std::abs(a - n) <= o.atol + o.rtol * std::max(std::abs(a), std::abs(n));
}
}  // namespace detail

/// Compares analytic and numeric gradients and returns every mismatch (empty when the op is
/// right). Does not REQUIRE anything, so tests can also show that a wrong backward is caught.
inline std::vector<GradMismatch> gradient_mismatches(const GradFn& fn, std::vector<Variable> inputs,
                                                     GradcheckOptions options = {}) {
    std::vector<GradMismatch> bad;
    for (auto& in : inputs)
        if (in.defined() && in.requires_grad()) in.zero_grad();

    Variable out = fn(inputs);
    Rng rng(options.seed);
    Tensor<float> r = Tensor<float>::uniform(out.shape(), rng, -1.f, 1.f);
    if (!out.requires_grad()) {
        // Nothing on the tape: every input requiring a gradient would silently get none.
        for (size_t k = 0; k < inputs.size(); ++k)
            if (inputs[k].defined() && inputs[k].requires_grad()) bad.push_back({k, -1, 0.0, 0.0});
        return bad;
    }
    out.backward(r);

    std::vector<Tensor<float>> analytic(inputs.size());
    for (size_t k = 0; k < inputs.size(); ++k)
        if (inputs[k].defined() && inputs[k].requires_grad()) analytic[k] = inputs[k].grad().clone();

    if (options.check_accumulation) {
        // A second pass without zeroing must double the gradients: closures add with +=.
        Variable again = fn(inputs);
        again.backward(r);
        for (size_t k = 0; k < inputs.size(); ++k) {
            if (!analytic[k].defined()) continue;
            const Tensor<float>& g = inputs[k].grad();
            for (int64_t i = 0; i < g.numel(); ++i) {
                double twice = 2.0 * analytic[k][i];
                if (std::abs(g[i] - twice) > 1e-5 + 1e-4 * std::abs(twice)) {
                    bad.push_back({k, i, g[i] - analytic[k][i], analytic[k][i], true});
                    break;  // one report per input is enough
                }
            }
        }
    }

    NoGradGuard no_grad;
    for (size_t k = 0; k < inputs.size(); ++k) {
        if (!analytic[k].defined()) continue;
        Tensor<float>& x = inputs[k].value();
        for (int64_t i = 0; i < x.numel(); ++i) {
            const float saved = x[i];
            const float plus = static_cast<float>(saved + options.eps);
            const float minus = static_cast<float>(saved - options.eps);
            x[i] = plus;
            double lp = detail::projected_loss(fn(inputs).value(), r);
            x[i] = minus;
            double lm = detail::projected_loss(fn(inputs).value(), r);
            x[i] = saved;
            // Divide by the step actually taken in float, not the nominal one.
            double numeric = (lp - lm) / (static_cast<double>(plus) - static_cast<double>(minus));
            double a = analytic[k][i];
            if (!detail::close(a, numeric, options)) bad.push_back({k, i, a, numeric});
        }
    }
    return bad;
}

/// REQUIREs that the analytic gradient of every input requiring one matches central
/// differences; failures name the input, the element and both values.
inline void check_gradients(const GradFn& fn, std::vector<Variable> inputs, GradcheckOptions options = {}) {
    std::vector<GradMismatch> bad = gradient_mismatches(fn, std::move(inputs), options);
    const size_t shown = std::min<size_t>(bad.size(), 8);
    for (size_t j = 0; j < shown; ++j) {
        const GradMismatch& m = bad[j];
        std::ostringstream os;
        if (m.element < 0)
            os << "input " << m.input << " requires a gradient but the output recorded no tape node";
        else if (m.overwrote)
            os << "input " << m.input << " element " << m.element << ": a second backward added "
               << m.analytic << " to " << m.numeric << " instead of accumulating the same again";
        else
            os << "input " << m.input << " element " << m.element << ": analytic " << m.analytic << " vs numeric "
               << m.numeric;
        FAIL_CHECK(os.str());
    }
    INFO(bad.size() << " gradient mismatches");
    REQUIRE(bad.empty());
}

}  // namespace bnn::test
