// Every kernel that has more than one instruction-set path, as one table of (kernel, awkward
// shape) cases. Each case is run on every path this CPU has (kernels/isa.hpp: scalar, AVX2,
// AVX-512) with 1 and 2 threads, and compared with a reference that shares no code with the fast
// paths:
//   exact      bit packing (the scalar packer), the XNOR convolution (the float convolution of
//              the ±1 tensors: integer sums, exact in float, then one fma)
//   tolerance  float GEMM and convolution (the 7-loop / i-j-k references summed in double),
//              whose summation order differs from path to path; each case states its bound.
// Shapes are chosen to cross tile, vector and block edges (1, 3, 17, 63, 65, ... channels, tiles
// of 14 x 32, 28 x 16, 8 x 48, depth blocks of 320) and the padding and stride cases.
// Also here: the run-time ISA choice itself (dispatch, forcing, refusing a missing path); the bit
// packing rule and weight layout and the XNOR conv's shape checks; the vectorised tanh and sign
// kernels against their scalar definitions.
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "bnn/core/bit_tensor.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/activation.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/kernels/conv2d.hpp"
#include "bnn/kernels/gemm.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/sgemm.hpp"
#include "bnn/kernels/sgemm_few_rows.hpp"
#include "bnn/kernels/sign.hpp"
#include "bnn/kernels/binary_conv2d.hpp"
#include "gradcheck.hpp"
#include "skip.hpp"

using namespace bnn;
using namespace bnn::kernels;

namespace {

// ---- the table ------------------------------------------------------------------------------

/// One output of a case: float values compared within `tolerance` (0: exactly), or words
/// compared exactly.
struct Output {
    std::string name;
    std::vector<float> values;
    std::vector<uint64_t> words;
    double tolerance = 0;
};
using Outputs = std::vector<Output>;

Output exact(std::string name, std::vector<float> v) { return {std::move(name), std::move(v), {}, 0}; }
Output within(std::string name, std::vector<float> v, double tol) { return {std::move(name), std::move(v), {}, tol}; }
Output bits(std::string name, std::vector<uint64_t> w) { return {std::move(name), {}, std::move(w), 0}; }

/// A kernel on one shape: `reference` computes the expected outputs (with their tolerances),
/// `run` the kernel's outputs on a path, in the same order.
struct KernelCase {
    std::string name;
    std::function<Outputs()> reference;
    std::function<Outputs(Isa)> run;
};

/// Restores the thread count a test changed.
struct ThreadCountGuard {
    int saved = num_threads();
    ~ThreadCountGuard() { set_num_threads(saved); }
};

/// Runs every case on every path and thread count; returns the number of (case, path) runs.
int64_t check_table(const std::vector<KernelCase>& cases) {
    ThreadCountGuard restore;
    int64_t runs = 0;
    for (const KernelCase& c : cases) {
        const Outputs want = c.reference();
        for (Isa isa : available_isas())
            for (int threads : {1, 2}) {
                set_num_threads(threads);
                IsaGuard guard(isa);
                const Outputs got = c.run(isa);
                REQUIRE(got.size() == want.size());
                for (size_t k = 0; k < want.size(); ++k) {
                    const Output& w = want[k];
                    const Output& g = got[k];
                    REQUIRE(g.values.size() == w.values.size());
                    REQUIRE(g.words.size() == w.words.size());
                    double worst = 0;
                    int64_t bad = 0, first_bad = -1;
                    for (size_t i = 0; i < w.values.size(); ++i) {
                        const double err = std::abs(double(g.values[i]) - double(w.values[i]));
                        worst = std::max(worst, err);
                        if (!(err <= w.tolerance)) {
                            if (first_bad < 0) first_bad = static_cast<int64_t>(i);
                            ++bad;
                        }
                    }
                    for (size_t i = 0; i < w.words.size(); ++i)
                        if (g.words[i] != w.words[i]) {
                            if (first_bad < 0) first_bad = static_cast<int64_t>(i);
                            ++bad;
                        }
                    INFO(c.name << " on " << isa_name(isa) << " with " << threads << " thread(s): output "
                                << w.name << ", " << bad << " of " << (w.values.size() + w.words.size())
                                << " elements off (first at " << first_bad << "), worst error " << worst
                                << ", tolerance " << w.tolerance);
                    REQUIRE(bad == 0);
                }
                ++runs;
            }
    }
    return runs;
}

// ---- inputs ---------------------------------------------------------------------------------

std::vector<float> uniform(int64_t n, Rng& rng, float lo = -1.f, float hi = 1.f) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = lo + (hi - lo) * rng.uniform();
    return v;
}

/// Uniform [-1, 1) with a sprinkling of +0 and -0, which must pack as +1.
std::vector<float> with_zeros(int64_t n, Rng& rng) {
    std::vector<float> v = uniform(n, rng);
    for (auto& x : v) {
        const uint64_t r = rng.below(16);
        if (r == 0) x = 0.f;
        if (r == 1) x = -0.f;
    }
    return v;
}

Tensor<float> tensor(const Shape& s, const std::vector<float>& v) { return Tensor<float>::from_vector(s, v); }

std::string shape_name(std::initializer_list<std::pair<const char*, int64_t>> dims) {
    std::ostringstream s;
    for (const auto& [k, v] : dims) s << ' ' << k << v;
    return s.str();
}

// ---- bit packing: exact ---------------------------------------------------------------------

void add_bitpack_cases(std::vector<KernelCase>& cases) {
    Rng rng(11);
    for (int64_t c : {1, 3, 8, 15, 16, 17, 63, 64, 65, 127, 128, 200, 512}) {
        const int64_t pixels = 7, words = words_for_channels(c);
        const auto x = with_zeros(pixels * c, rng), a = uniform(c, rng, -2.f, 2.f), b = uniform(c, rng, -.5f, .5f);
        cases.push_back(
            {"pack_signs / unpack_signs" + shape_name({{"pixels", pixels}, {"C", c}}),
             [=] {
                 std::vector<uint64_t> plain(pixels * words), affine(pixels * words);
                 pack_signs_scalar(x.data(), pixels, c, nullptr, nullptr, plain.data());
                 pack_signs_scalar(x.data(), pixels, c, a.data(), b.data(), affine.data());
                 std::vector<float> back(x.size());
                 unpack_signs_scalar(plain.data(), pixels, c, back.data());
                 return Outputs{bits("signs", plain), bits("signs of fma(a, x, b)", affine), exact("unpacked", back)};
             },
             [=](Isa isa) {
                 std::vector<uint64_t> plain(pixels * words), affine(pixels * words);
                 pack_signs(x.data(), pixels, c, nullptr, nullptr, plain.data(), isa);
                 pack_signs(x.data(), pixels, c, a.data(), b.data(), affine.data(), isa);
                 std::vector<float> back(x.size());
                 unpack_signs(plain.data(), pixels, c, back.data(), isa);
                 return Outputs{bits("signs", plain), bits("signs of fma(a, x, b)", affine), exact("unpacked", back)};
             }});
    }
}

// ---- XNOR convolution: exact ----------------------------------------------------------------

/// Float convolution of the ±1 tensors sign(x) [N,H,W,C] and sign(w) [Co,KH,KW,C], padded with
/// pad_value (0, or +1 for one-padding): the definition the popcount kernel must equal. Sums of
/// ±1 products are integers, exact in float.
std::vector<float> binary_conv_definition(const std::vector<float>& x, const std::vector<float>& w, int64_t N,
                                          int64_t H, int64_t W, int64_t C, int64_t Co, int64_t K, int64_t stride,
                                          int64_t pad, float pad_value) {
    auto sgn = [](float v) { return v >= 0.f ? 1.f : -1.f; };
    const int64_t OH = (H + 2 * pad - K) / stride + 1, OW = (W + 2 * pad - K) / stride + 1;
    std::vector<float> out(N * OH * OW * Co);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow)
                for (int64_t o = 0; o < Co; ++o) {
                    float acc = 0.f;
                    for (int64_t kh = 0; kh < K; ++kh)
                        for (int64_t kw = 0; kw < K; ++kw) {
                            const int64_t ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
                            const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
                            for (int64_t c = 0; c < C; ++c) {
                                const float xs = inside ? sgn(x[((n * H + ih) * W + iw) * C + c]) : pad_value;
                                acc += xs * sgn(w[((o * K + kh) * K + kw) * C + c]);
                            }
                        }
                    out[((n * OH + oh) * OW + ow) * Co + o] = acc;
                }
    return out;
}

void add_xnor_conv_case(std::vector<KernelCase>& cases, Rng& rng, int64_t n, int64_t h, int64_t w, int64_t c,
                        int64_t co, int64_t k, int64_t stride, int64_t pad, PadMode mode) {
    const auto x = with_zeros(n * h * w * c, rng), wt = with_zeros(co * k * k * c, rng);
    const auto scale = uniform(co, rng, 0.1f, 2.f), bias = uniform(co, rng, -3.f, 3.f);
    cases.push_back(
        {"xnor_conv2d" + shape_name({{"N", n}, {"H", h}, {"W", w}, {"C", c}, {"Cout", co}, {"k", k}, {"stride", stride},
                                     {"pad", pad}}) +
             (mode == PadMode::one ? " one-padding" : ""),
         [=] {
             std::vector<float> dots =
                 binary_conv_definition(x, wt, n, h, w, c, co, k, stride, pad, mode == PadMode::zero ? 0.f : 1.f);
             // The dots are exact, so the transformed reference is one fma away.
             std::vector<float> scaled(dots.size());
             for (size_t i = 0; i < dots.size(); ++i) scaled[i] = std::fma(dots[i], scale[i % co], bias[i % co]);
             return Outputs{exact("fma(dot, scale, bias)", scaled), exact("dot", dots)};
         },
         [=](Isa isa) {
             const BitTensor xb = pack_signs(tensor(Shape{n, h, w, c}, x), {}, {}, Isa::scalar);
             const PackedConvWeights packed = pack_conv_weights(tensor(Shape{co, k, k, c}, wt));
             const Tensor<float> sc = tensor(Shape{co}, scale), bi = tensor(Shape{co}, bias);
             return Outputs{exact("fma(dot, scale, bias)", xnor_conv2d(xb, packed, sc, bi, stride, pad, mode, isa).to_vector()),
                            exact("dot", xnor_conv2d(xb, packed, {}, {}, stride, pad, mode, isa).to_vector())};
         }});
}

void add_xnor_conv_cases(std::vector<KernelCase>& cases) {
    Rng rng(2024);
    // Channels around the 64-bit words, kernels 1 and 3, both strides, with and without padding
    // (zero-padding's border correction, one-padding's +1 border), output channels around the
    // 8- and 32-lane tiles; batch and image size drawn per case.
    for (int64_t c : {1, 3, 63, 64, 65, 127, 200, 512})
        for (int64_t k : {1, 3})
            for (int64_t stride : {1, 2})
                for (int64_t pad : {0, 1}) {
                    const int64_t n = 1 + static_cast<int64_t>(rng.below(3));
                    const int64_t max_side = c >= 500 ? 5 : c >= 127 ? 9 : 15;
                    const int64_t h = std::max<int64_t>(k - 2 * pad, 1 + rng.below(max_side));
                    const int64_t w = std::max<int64_t>(k - 2 * pad, 1 + rng.below(max_side));
                    const int64_t couts[] = {1, 5, 8, 31, 33, 64, 65, 100};
                    const int64_t co = couts[rng.below(8)];
                    add_xnor_conv_case(cases, rng, n, h, w, c, co, k, stride, pad, PadMode::zero);
                    if (pad > 0) add_xnor_conv_case(cases, rng, n, h, w, c, co, k, stride, pad, PadMode::one);
                }
    // Large enough (over 2^21 binary MACs) for the work to be split over threads.
    add_xnor_conv_case(cases, rng, 2, 9, 11, 130, 70, 3, 1, 1, PadMode::zero);
    add_xnor_conv_case(cases, rng, 1, 12, 12, 64, 64, 3, 2, 1, PadMode::zero);
}

// ---- float GEMM: within float rounding ------------------------------------------------------

/// One product C [M, N] (=/+=) op(A) op(B) with padded strides (ld = width + 3), so the kernels
/// cannot assume dense rows; the padding between rows of C must stay untouched.
void add_sgemm_case(std::vector<KernelCase>& cases, Rng& rng, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                    bool accumulate) {
    const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
    const int64_t lda = a_cols + 3, ldb = b_cols + 3, ldc = N + 3;
    const auto A = uniform(a_rows * lda, rng), B = uniform(b_rows * ldb, rng), C0 = uniform(M * ldc, rng);
    // Float rounding of a K-term sum of products of values in [-1, 1]: a few ulps of 1 per term,
    // plus the accumulated C.
    const double tol = 4.0 * 1.2e-7 * double(K + 2);
    auto split = [=](const std::vector<float>& c) {
        std::vector<float> values, padding;
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < ldc; ++j) (j < N ? values : padding).push_back(c[i * ldc + j]);
        return Outputs{within("C", values, tol), exact("padding between rows", padding)};
    };
    cases.push_back({std::string("sgemm") + (ta ? " A^T" : " A") + (tb ? " B^T" : " B") +
                         shape_name({{"M", M}, {"N", N}, {"K", K}}) + (accumulate ? " +=" : " ="),
                     [=] {
                         std::vector<float> c = C0;
                         sgemm_reference(ta, tb, M, N, K, A.data(), lda, B.data(), ldb, c.data(), ldc, accumulate);
                         return split(c);
                     },
                     [=](Isa isa) {
                         std::vector<float> c = C0;
                         sgemm(isa, ta, tb, M, N, K, A.data(), lda, B.data(), ldb, c.data(), ldc, accumulate);
                         return split(c);
                     }});
}

void add_sgemm_cases(std::vector<KernelCase>& cases) {
    Rng rng(12);
    // Every awkward size on each axis at least once, the third varied, for each transpose; not
    // all 343 combinations (the reference is cubic).
    const int64_t sizes[] = {1, 3, 17, 63, 65, 129, 255};
    for (int t = 0; t < 4; ++t)
        for (int64_t M : sizes)
            for (int64_t N : sizes)
                add_sgemm_case(cases, rng, t & 1, t & 2, M, N, sizes[(M + 2 * N) % 7], (M + N) % 2 == 0);
    // Several depth blocks (later ones add to the first), more rows than a row block, more
    // columns than a column block.
    add_sgemm_case(cases, rng, false, true, 65, 33, 2 * kSgemmKC + 17, false);
    add_sgemm_case(cases, rng, false, true, 65, 33, 2 * kSgemmKC + 17, true);
    add_sgemm_case(cases, rng, true, false, kSgemmMC + 29, 40, 70, true);
    add_sgemm_case(cases, rng, false, false, 20, kSgemmNC + 45, 31, false);
    // Thin products take the 28 x 16 and 8 x 48 AVX-512 tiles: the products of a width-16
    // convolution (forward, weight gradient, data gradient).
    add_sgemm_case(cases, rng, false, true, 300, 16, 144, false);
    add_sgemm_case(cases, rng, true, false, 16, 144, 300, true);
    add_sgemm_case(cases, rng, false, false, 300, 144, 16, false);
    // Products large enough to be split over threads, by rows and by columns.
    for (int t = 0; t < 4; ++t) {
        add_sgemm_case(cases, rng, t & 1, t & 2, 301, 70, 150, true);
        add_sgemm_case(cases, rng, t & 1, t & 2, 40, 333, 300, false);
    }
    // An empty sum clears C, or leaves it as it was.
    add_sgemm_case(cases, rng, false, false, 2, 3, 0, true);
    add_sgemm_case(cases, rng, false, false, 2, 3, 0, false);
}

/// gemm_nn / gemm_nt / gemm_tn, which choose their path from active_isa() (Eigen when scalar).
void add_gemm_cases(std::vector<KernelCase>& cases) {
    Rng rng(15);
    const int64_t M = 37, N = 45, K = 51;
    const auto a = uniform(M * K, rng), at = uniform(K * M, rng), b = uniform(K * N, rng), bt = uniform(N * K, rng);
    const auto c0 = uniform(M * N, rng);
    const double tol = 4.0 * 1.2e-7 * double(K + 2);
    cases.push_back({"gemm_nn / gemm_nt / gemm_tn" + shape_name({{"M", M}, {"N", N}, {"K", K}}),
                     [=] {
                         std::vector<float> nn(M * N), nt = c0, tn = c0;
                         sgemm_reference(false, false, M, N, K, a.data(), K, b.data(), N, nn.data(), N, false);
                         sgemm_reference(false, true, M, N, K, a.data(), K, bt.data(), K, nt.data(), N, true);
                         sgemm_reference(true, false, M, N, K, at.data(), M, b.data(), N, tn.data(), N, true);
                         return Outputs{within("A B", nn, tol), within("C + A B^T", nt, tol),
                                        within("C + A^T B", tn, tol)};
                     },
                     [=](Isa) {  // the path is active_isa(), set by the table's IsaGuard
                         std::vector<float> nn(M * N), nt = c0, tn = c0;
                         gemm_nn(M, N, K, a.data(), K, b.data(), N, nn.data(), N, false);
                         gemm_nt(M, N, K, a.data(), K, bt.data(), K, nt.data(), N, true);
                         gemm_tn(M, N, K, at.data(), M, b.data(), N, tn.data(), N, true);
                         return Outputs{within("A B", nn, tol), within("C + A B^T", nt, tol),
                                        within("C + A^T B", tn, tol)};
                     }});
}

// ---- float convolution: within float rounding -----------------------------------------------

/// Gradients of the convolution by their definitions, summed in double and added to dx0, dw0, db0.
void conv2d_backward_definition(const std::vector<float>& x, const std::vector<float>& w,
                                const std::vector<float>& dout, const Conv2dGeometry& g, std::vector<float>& dx,
                                std::vector<float>& dw, std::vector<float>& db) {
    std::vector<double> gx(dx.size()), gw(dw.size()), gb(db.size());
    for (int64_t n = 0; n < g.N; ++n)
        for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow)
                for (int64_t co = 0; co < g.Cout; ++co) {
                    const double d = dout[((n * g.OH + oh) * g.OW + ow) * g.Cout + co];
                    gb[co] += d;
                    for (int64_t kh = 0; kh < g.KH; ++kh)
                        for (int64_t kw = 0; kw < g.KW; ++kw) {
                            const int64_t ih = oh * g.stride - g.pad + kh, iw = ow * g.stride - g.pad + kw;
                            if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                            for (int64_t c = 0; c < g.C; ++c) {
                                const int64_t xi = ((n * g.H + ih) * g.W + iw) * g.C + c;
                                const int64_t wi = ((co * g.KH + kh) * g.KW + kw) * g.C + c;
                                gx[xi] += d * w[wi];
                                gw[wi] += d * x[xi];
                            }
                        }
                }
    for (size_t i = 0; i < dx.size(); ++i) dx[i] = static_cast<float>(dx[i] + gx[i]);
    for (size_t i = 0; i < dw.size(); ++i) dw[i] = static_cast<float>(dw[i] + gw[i]);
    for (size_t i = 0; i < db.size(); ++i) db[i] = static_cast<float>(db[i] + gb[i]);
}

void add_conv2d_case(std::vector<KernelCase>& cases, Rng& rng, int64_t n, int64_t h, int64_t w, int64_t c,
                     int64_t co, int64_t kh, int64_t kw, int64_t stride, int64_t pad, const char* why) {
    const Conv2dGeometry g = conv2d_geometry(n, h, w, c, co, kh, kw, stride, pad);
    const auto x = uniform(n * h * w * c, rng), wt = uniform(co * g.K(), rng), bias = uniform(co, rng);
    const auto dout = uniform(n * g.OH * g.OW * co, rng);
    // Gradients accumulate onto a non-zero start.
    const auto dx0 = uniform(static_cast<int64_t>(x.size()), rng), dw0 = uniform(static_cast<int64_t>(wt.size()), rng);
    const auto db0 = uniform(co, rng);
    // Float rounding of each output's sum: K terms forward, Cout*KH*KW for dx, N*OH*OW for dw.
    const double fwd_tol = 1e-5 * double(g.K() + 2), dx_tol = 1e-5 * double(co * kh * kw + 2);
    const double dw_tol = 1e-5 * double(n * g.OH * g.OW + 2);
    cases.push_back(
        {"conv2d forward and backward" +
             shape_name({{"N", n}, {"H", h}, {"W", w}, {"C", c}, {"Cout", co}, {"KH", kh}, {"KW", kw}, {"stride", stride},
                         {"pad", pad}}) +
             " (" + why + ")",
         [=] {
             std::vector<float> out(dout.size());
             conv2d_forward_reference(x.data(), wt.data(), bias.data(), out.data(), g);
             std::vector<float> dx = dx0, dw = dw0, db = db0;
             conv2d_backward_definition(x, wt, dout, g, dx, dw, db);
             return Outputs{within("out", out, fwd_tol),         within("dx", dx, dx_tol),
                            within("dw", dw, dw_tol),            within("db", db, dw_tol),
                            within("dx computed alone", dx, dx_tol), within("dw computed alone", dw, dw_tol)};
         },
         [=](Isa) {  // the path is active_isa(), set by the table's IsaGuard
             std::vector<float> out(dout.size(), 7.f);
             conv2d_forward(x.data(), wt.data(), bias.data(), out.data(), g);
             std::vector<float> dx = dx0, dw = dw0, db = db0;
             conv2d_backward(x.data(), wt.data(), dout.data(), dx.data(), dw.data(), db.data(), g);
             // Each gradient alone (null others) takes other branches of the backward.
             std::vector<float> dx_only = dx0, dw_only = dw0;
             conv2d_backward(x.data(), wt.data(), dout.data(), dx_only.data(), nullptr, nullptr, g);
             conv2d_backward(x.data(), wt.data(), dout.data(), nullptr, dw_only.data(), nullptr, g);
             return Outputs{within("out", out, fwd_tol),         within("dx", dx, dx_tol),
                            within("dw", dw, dw_tol),            within("db", db, dw_tol),
                            within("dx computed alone", dx_only, dx_tol), within("dw computed alone", dw_only, dw_tol)};
         }});
}

void add_conv2d_cases(std::vector<KernelCase>& cases) {
    Rng rng(21);
    add_conv2d_case(cases, rng, 2, 7, 6, 3, 17, 3, 3, 1, 1, "stem-like: 3 channels, taps shorter than a transpose");
    add_conv2d_case(cases, rng, 3, 9, 8, 20, 33, 3, 3, 1, 1, "channels across 16-row groups, Cout past a tile");
    add_conv2d_case(cases, rng, 2, 8, 7, 20, 15, 3, 3, 2, 1, "stride 2: the input gradient takes the column path");
    add_conv2d_case(cases, rng, 2, 6, 6, 16, 40, 1, 1, 2, 0, "1x1 stride 2, a ResNet shortcut");
    add_conv2d_case(cases, rng, 2, 6, 6, 16, 24, 1, 1, 1, 0, "1x1 stride 1: x is the column matrix");
    add_conv2d_case(cases, rng, 1, 9, 9, 5, 6, 5, 5, 1, 2, "5x5, batch 1: products thread inside sgemm");
    add_conv2d_case(cases, rng, 2, 6, 7, 4, 9, 2, 3, 1, 0, "non-square kernel, no padding");
    add_conv2d_case(cases, rng, 2, 4, 5, 6, 7, 3, 3, 1, 2, "padding of kernel - 1");
    add_conv2d_case(cases, rng, 4, 6, 6, 70, 18, 3, 3, 1, 1, "70 channels: taps cross depth blocks unevenly");
    // Rows of at least 16 outputs take the direct convolution on AVX-512 (forward, and the input
    // gradient when it is itself padded by 1).
    add_conv2d_case(cases, rng, 2, 5, 17, 20, 33, 3, 3, 1, 1, "direct: 14 x 32 tiles, a partial column panel");
    add_conv2d_case(cases, rng, 3, 4, 16, 6, 9, 3, 3, 1, 1, "direct: Cout <= 16, 28 x 16 tiles");
    add_conv2d_case(cases, rng, 2, 6, 18, 4, 40, 3, 3, 1, 0, "direct: no padding, 2 dropped columns per row");
    add_conv2d_case(cases, rng, 2, 3, 20, 5, 7, 5, 5, 1, 1, "direct: 5x5");
    // On AVX2 the weight gradient of rows of at least 8 outputs reads x and dout in place, in
    // chunks of about 64 output pixels (conv2d_weight_grad_direct.hpp).
    add_conv2d_case(cases, rng, 3, 9, 17, 7, 19, 3, 3, 2, 1, "direct weight gradient: stride 2");
    add_conv2d_case(cases, rng, 5, 3, 10, 9, 17, 3, 3, 1, 1, "direct weight gradient: two images to a chunk, the last alone");
    add_conv2d_case(cases, rng, 2, 6, 9, 5, 32, 3, 3, 1, 1, "direct weight gradient: Cout of whole tiles, dout read in place");
}

}  // namespace

TEST_CASE("every kernel equals its reference on every ISA path, awkward shapes", "[kernels]") {
    std::vector<KernelCase> cases;
    add_bitpack_cases(cases);
    add_xnor_conv_cases(cases);
    add_sgemm_cases(cases);
    add_gemm_cases(cases);
    add_conv2d_cases(cases);
    const int64_t runs = check_table(cases);
    // Every case ran on every path with both thread counts: nothing was skipped.
    REQUIRE(runs == static_cast<int64_t>(cases.size() * available_isas().size() * 2));
}

TEST_CASE("ISA dispatch lists the paths, parses names and forces a path", "[kernels][isa]") {
    auto isas = available_isas();
    REQUIRE(!isas.empty());
    REQUIRE(isas.front() == Isa::scalar);
    REQUIRE(isa_supported(active_isa()));
    REQUIRE(parse_isa("avx2") == Isa::avx2);
    REQUIRE(std::string(isa_name(Isa::avx512)) == "avx512");
    REQUIRE_THROWS_AS(parse_isa("sse9"), Error);
    for (Isa isa : isas) {
        IsaGuard guard(isa);
        REQUIRE(active_isa() == isa);
    }
}

TEST_CASE("kernels refuse a path the CPU lacks", "[kernels][isa]") {
    int refused = 0;
    for (Isa isa : {Isa::avx2, Isa::avx512}) {
        if (isa_supported(isa)) continue;
        float x = 0;
        REQUIRE_THROWS_AS(sgemm(isa, false, false, 1, 1, 1, &x, 1, &x, 1, &x, 1, false), Error);
        REQUIRE_THROWS_AS(set_isa(isa), Error);
        ++refused;
    }
    if (refused == 0) BNN_SKIP("this CPU has every path, so none can be refused");
}

// ---- bit packing and the XNOR conv's checks ------------------------------------------------

namespace {
using bnn::test::random_with_zeros;

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

// ---- the tanh and sign kernels -------------------------------------------------------------

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

TEST_CASE("sgemm_few_rows gives sgemm's floats on every vector path, and its vector code its plain code's",
          "[sgemm]") {
    Rng rng(31);
    const int64_t depths[] = {1, 5, kSgemmKC, kSgemmKC + 1, 2 * kSgemmKC + 61};
    for (int threads : {1, 2}) {
        set_num_threads(threads);
        for (int64_t M : {1, 2, 4})
            for (int64_t N : {1, 7, 31, 32, 33, 100, 1000})
                for (int64_t K : depths) {
                    INFO("threads " << threads << " M " << M << " N " << N << " K " << K);
                    const int64_t lda = K + 3, ldb = N + 5, ldc = N + 2;
                    const auto A = uniform(M * lda, rng), Bt = uniform(K * ldb, rng);
                    std::vector<float> plain(M * ldc, -7.f);
                    sgemm_few_rows(Isa::scalar, M, N, K, A.data(), lda, Bt.data(), ldb, plain.data(), ldc);
                    for (Isa isa : available_isas()) {
                        if (isa == Isa::scalar) continue;
                        INFO(isa_name(isa));
                        std::vector<float> few(M * ldc, -7.f), full(M * ldc, -7.f);
                        sgemm_few_rows(isa, M, N, K, A.data(), lda, Bt.data(), ldb, few.data(), ldc);
                        sgemm(isa, false, false, M, N, K, A.data(), lda, Bt.data(), ldb, full.data(), ldc, false);
                        for (int64_t i = 0; i < M * ldc; ++i) {
                            REQUIRE(std::bit_cast<uint32_t>(few[i]) == std::bit_cast<uint32_t>(full[i]));
                            REQUIRE(std::bit_cast<uint32_t>(few[i]) == std::bit_cast<uint32_t>(plain[i]));
                        }
                    }
                }
    }
    set_num_threads(2);
}
