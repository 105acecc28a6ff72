// The binary convolution engine: bit packing, XNOR-popcount conv on every ISA path, the sign
// STE, the binary conv op and the BinaryConv2d module.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/core/bit_tensor.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/xnor_conv.hpp"

using namespace bnn;
using kernels::Isa;
using kernels::PadMode;

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

/// Naive float convolution of the ±1 tensors sign(x) and sign(w), padded with `pad_value`
/// (0 or +1), then fma(dot, scale, bias): the definition the popcount kernel must equal.
Tensor<float> reference_binary_conv(const Tensor<float>& x, const Tensor<float>& w, const std::vector<float>& scale,
                                    const std::vector<float>& bias, int64_t stride, int64_t pad, float pad_value) {
    const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
    const int64_t Co = w.dim(0), KH = w.dim(1), KW = w.dim(2);
    const int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
    Tensor<float> out(Shape{N, OH, OW, Co});
    for (int64_t n = 0; n < N; ++n)
        for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow)
                for (int64_t o = 0; o < Co; ++o) {
                    float acc = 0.f;
                    for (int64_t kh = 0; kh < KH; ++kh)
                        for (int64_t kw = 0; kw < KW; ++kw) {
                            const int64_t ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
                            const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
                            for (int64_t c = 0; c < C; ++c) {
                                const float xv = inside ? sign_of(x[((n * H + ih) * W + iw) * C + c]) : pad_value;
                                acc += xv * sign_of(w[((o * KH + kh) * KW + kw) * C + c]);
                            }
                        }
                    out[((n * OH + oh) * OW + ow) * Co + o] = std::fma(acc, scale[o], bias[o]);
                }
    return out;
}

}  // namespace

TEST_CASE("ISA dispatch lists the paths, parses names and forces a path", "[isa]") {
    auto isas = kernels::available_isas();
    REQUIRE(!isas.empty());
    REQUIRE(isas.front() == Isa::scalar);
    REQUIRE(kernels::isa_supported(kernels::active_isa()));
    REQUIRE(kernels::parse_isa("avx2") == Isa::avx2);
    REQUIRE(std::string(kernels::isa_name(Isa::avx512)) == "avx512");
    REQUIRE_THROWS_AS(kernels::parse_isa("sse9"), Error);
    for (Isa isa : isas) {
        kernels::IsaGuard guard(isa);
        REQUIRE(kernels::active_isa() == isa);
    }
}

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

TEST_CASE("pack_signs: every path equals the scalar reference, unpack round-trips", "[bitpack]") {
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
        for (Isa isa : kernels::available_isas()) {
            INFO("isa " << kernels::isa_name(isa) << ", C = " << c);
            BitTensor plain = pack_signs(x, {}, {}, isa);
            BitTensor affine = pack_signs(x, a, b, isa);
            REQUIRE(plain.words().to_vector() == ref);
            REQUIRE(affine.words().to_vector() == ref_affine);
            Tensor<float> back = unpack_signs(plain, isa);
            REQUIRE(back.shape() == x.shape());
            for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(back[i] == sign_of(x[i]));
            REQUIRE(pack_signs(back, {}, {}, isa).words().to_vector() == ref);
        }
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

TEST_CASE("xnor conv equals the float conv of the ±1 tensors on every path", "[xnor_conv]") {
    Rng rng(2024);
    const auto isas = kernels::available_isas();
    int cases = 0;
    for (int64_t c : {1, 3, 63, 64, 65, 127, 200, 512}) {
        for (int64_t k : {1, 3})
            for (int64_t stride : {1, 2})
                for (int64_t pad : {0, 1}) {
                    const int64_t n = 1 + static_cast<int64_t>(rng.below(3));
                    const int64_t max_side = c >= 200 ? 7 : 15;
                    const int64_t h = std::max<int64_t>(k - 2 * pad, 1 + rng.below(max_side));
                    const int64_t w = std::max<int64_t>(k - 2 * pad, 1 + rng.below(max_side));
                    const int64_t couts[] = {1, 5, 8, 31, 33, 64, 65, 100};
                    const int64_t co = couts[rng.below(8)];
                    Tensor<float> x = random_with_zeros(Shape{n, h, w, c}, rng);
                    Tensor<float> wt = random_with_zeros(Shape{co, k, k, c}, rng);
                    Tensor<float> scale = Tensor<float>::uniform(Shape{co}, rng, 0.1f, 2.f);
                    Tensor<float> bias = Tensor<float>::uniform(Shape{co}, rng, -3.f, 3.f);
                    auto packed = kernels::pack_conv_weights(wt);
                    BitTensor xb = pack_signs(x);
                    for (PadMode mode : {PadMode::zero, PadMode::one}) {
                        if (mode == PadMode::one && pad == 0) continue;
                        Tensor<float> want = reference_binary_conv(x, wt, scale.to_vector(), bias.to_vector(), stride,
                                                                   pad, mode == PadMode::zero ? 0.f : 1.f);
                        std::vector<float> ones(co, 1.f), zeros(co, 0.f);
                        Tensor<float> want_plain =
                            reference_binary_conv(x, wt, ones, zeros, stride, pad, mode == PadMode::zero ? 0.f : 1.f);
                        for (Isa isa : isas) {
                            INFO("isa " << kernels::isa_name(isa) << " N=" << n << " H=" << h << " W=" << w
                                        << " C=" << c << " Cout=" << co << " k=" << k << " stride=" << stride
                                        << " pad=" << pad << (mode == PadMode::one ? " one-padding" : ""));
                            Tensor<float> got = kernels::xnor_conv2d(xb, packed, scale, bias, stride, pad, mode, isa);
                            REQUIRE(got.shape() == want.shape());
                            REQUIRE(got.to_vector() == want.to_vector());
                            Tensor<float> plain = kernels::xnor_conv2d(xb, packed, {}, {}, stride, pad, mode, isa);
                            REQUIRE(plain.to_vector() == want_plain.to_vector());
                            ++cases;
                        }
                    }
                }
    }
    REQUIRE(cases >= 64 * static_cast<int>(isas.size()));
}

TEST_CASE("xnor conv threads over pixels give the single-thread result", "[xnor_conv]") {
    Rng rng(3);
    Tensor<float> x = random_with_zeros(Shape{2, 9, 11, 130}, rng);
    Tensor<float> wt = random_with_zeros(Shape{70, 3, 3, 130}, rng);
    auto packed = kernels::pack_conv_weights(wt);
    BitTensor xb = pack_signs(x);
    std::vector<float> ones(70, 1.f), zeros(70, 0.f);
    Tensor<float> want = reference_binary_conv(x, wt, ones, zeros, 1, 1, 0.f);
    const int saved = num_threads();
    for (Isa isa : kernels::available_isas()) {
        for (int threads : {1, 2, 3}) {
            set_num_threads(threads);
            REQUIRE(kernels::xnor_conv2d(xb, packed, {}, {}, 1, 1, PadMode::zero, isa).to_vector() ==
                    want.to_vector());
        }
    }
    set_num_threads(saved);
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
