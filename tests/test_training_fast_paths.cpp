// The fast paths of binary training: vectorised tanh and sign kernels against their scalar
// definitions.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "bnn/kernels/activation.hpp"
#include "gradcheck.hpp"

using namespace bnn;

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
