// Packed GEMM (kernels/sgemm.hpp): every path this CPU has against the double-precision
// reference, on sizes that are not multiples of any tile, all transpose combinations, with and
// without accumulation, strided operands, threaded and not. Then the implicit-GEMM convolution
// (kernels/conv2d.hpp) on every path against the 7-loop reference and the Eigen path.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "bnn/core/rng.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/conv2d.hpp"
#include "bnn/kernels/gemm.hpp"
#include "bnn/kernels/sgemm.hpp"

using namespace bnn;
using namespace bnn::kernels;

namespace {

std::vector<float> random_vector(int64_t n, Rng& rng) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = 2.f * rng.uniform() - 1.f;
    return v;
}

/// One product with padded strides (ld = width + 3) so the kernels cannot assume dense rows.
struct Problem {
    bool ta, tb;
    int64_t M, N, K, lda, ldb, ldc;
    std::vector<float> A, B, C0;

    Problem(bool ta_, bool tb_, int64_t M_, int64_t N_, int64_t K_, Rng& rng) : ta(ta_), tb(tb_), M(M_), N(N_), K(K_) {
        const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
        const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
        lda = a_cols + 3;
        ldb = b_cols + 3;
        ldc = N + 3;
        A = random_vector(a_rows * lda, rng);
        B = random_vector(b_rows * ldb, rng);
        C0 = random_vector(M * ldc, rng);
    }

    /// |C - reference| must stay within the float rounding of a K-term sum of products of
    /// values in [-1, 1]: a few ulps of 1 per term, plus the accumulated C.
    void check(Isa isa, bool accumulate) const {
        std::vector<float> expect = C0, got = C0;
        sgemm_reference(ta, tb, M, N, K, A.data(), lda, B.data(), ldb, expect.data(), ldc, accumulate);
        sgemm(isa, ta, tb, M, N, K, A.data(), lda, B.data(), ldb, got.data(), ldc, accumulate);
        const double tol = 4.0 * 1.2e-7 * double(K + 2);
        int64_t bad = 0;
        double worst = 0;
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < ldc; ++j) {
                const int64_t at = i * ldc + j;
                if (j >= N) {  // the padding between rows must be untouched
                    if (got[at] != C0[at]) ++bad;
                    continue;
                }
                const double err = std::abs(double(got[at]) - double(expect[at]));
                worst = std::max(worst, err);
                if (!(err <= tol)) ++bad;
            }
        INFO(isa_name(isa) << " ta " << ta << " tb " << tb << " M " << M << " N " << N << " K " << K << " accumulate "
                           << accumulate << " worst error " << worst << " tolerance " << tol);
        REQUIRE(bad == 0);
    }
};

}  // namespace

TEST_CASE("sgemm equals the reference on awkward sizes, every path and transpose", "[sgemm]") {
    const int64_t sizes[] = {1, 3, 17, 63, 65, 129, 255};
    Rng rng(11);
    for (Isa isa : available_isas())
        for (int t = 0; t < 4; ++t) {
            const bool ta = t & 1, tb = t & 2;
            // Every size on each axis at least once, with the other two varied, and not all 343
            // combinations (the reference is cubic).
            for (int64_t M : sizes)
                for (int64_t N : sizes) {
                    const int64_t K = sizes[(M + 2 * N) % 7];
                    Problem p(ta, tb, M, N, K, rng);
                    p.check(isa, false);
                    p.check(isa, true);
                }
        }
}

TEST_CASE("sgemm crosses the depth, row and column blocks", "[sgemm]") {
    // K > KC (several depth blocks: later ones add to the first), M > MC, N > NC.
    Rng rng(12);
    for (Isa isa : available_isas()) {
        Problem deep(false, true, 65, 33, 2 * kernels::detail::kSgemmKC + 17, rng);
        deep.check(isa, false);
        deep.check(isa, true);
        Problem tall(true, false, kernels::detail::kSgemmMC + 29, 40, 70, rng);
        tall.check(isa, true);
        Problem wide(false, false, 20, kernels::detail::kSgemmNC + 45, 31, rng);
        wide.check(isa, false);
    }
}

TEST_CASE("sgemm picks narrow and short tiles for thin products", "[sgemm]") {
    // N <= 16 takes the 28 x 16 AVX-512 tile, M = 16 the 8 x 48 one: check the shapes of
    // width-16 convolutions (forward [P, 144] x [144, 16], weight gradient [16, P] x [P, 144]).
    Rng rng(13);
    for (Isa isa : available_isas()) {
        Problem forward(false, true, 300, 16, 144, rng);
        forward.check(isa, false);
        Problem weight_grad(true, false, 16, 144, 300, rng);
        weight_grad.check(isa, true);
        Problem data_grad(false, false, 300, 144, 16, rng);
        data_grad.check(isa, false);
    }
}

TEST_CASE("sgemm splits large products over threads with the same result", "[sgemm]") {
    Rng rng(14);
    for (Isa isa : available_isas())
        for (int t = 0; t < 4; ++t) {
            Problem tall(t & 1, t & 2, 301, 70, 150, rng);  // split by rows
            tall.check(isa, true);
            Problem wide(t & 1, t & 2, 40, 333, 300, rng);  // split by columns
            wide.check(isa, false);
        }
}

TEST_CASE("sgemm with K = 0 clears or keeps C, and empty outputs do nothing", "[sgemm]") {
    for (Isa isa : available_isas()) {
        std::vector<float> c(6, 5.f);
        float dummy = 1.f;
        sgemm(isa, false, false, 2, 3, 0, &dummy, 1, &dummy, 3, c.data(), 3, true);
        REQUIRE(c == std::vector<float>(6, 5.f));
        sgemm(isa, false, false, 2, 3, 0, &dummy, 1, &dummy, 3, c.data(), 3, false);
        REQUIRE(c == std::vector<float>(6, 0.f));
        sgemm(isa, false, false, 0, 3, 4, &dummy, 4, &dummy, 3, c.data(), 3, false);
    }
}

TEST_CASE("gemm_nn/nt/tn agree with Eigen on every path", "[sgemm]") {
    Rng rng(15);
    const int64_t M = 37, N = 45, K = 51;
    auto a = random_vector(M * K, rng), b = random_vector(K * N, rng), bt = random_vector(N * K, rng),
         at = random_vector(K * M, rng);
    for (Isa isa : available_isas()) {
        IsaGuard guard(isa);
        std::vector<float> c(M * N), e(M * N);
        gemm_nn(M, N, K, a.data(), K, b.data(), N, c.data(), N, false);
        gemm_nn_eigen(M, N, K, a.data(), K, b.data(), N, e.data(), N, false);
        for (int64_t i = 0; i < M * N; ++i) REQUIRE(c[i] == Approx(e[i]).margin(1e-4));
        gemm_nt(M, N, K, a.data(), K, bt.data(), K, c.data(), N, true);
        gemm_nt_eigen(M, N, K, a.data(), K, bt.data(), K, e.data(), N, true);
        for (int64_t i = 0; i < M * N; ++i) REQUIRE(c[i] == Approx(e[i]).margin(1e-4));
        gemm_tn(M, N, K, at.data(), M, b.data(), N, c.data(), N, true);
        gemm_tn_eigen(M, N, K, at.data(), M, b.data(), N, e.data(), N, true);
        for (int64_t i = 0; i < M * N; ++i) REQUIRE(c[i] == Approx(e[i]).margin(1e-4));
    }
}

TEST_CASE("sgemm rejects a path the CPU lacks", "[sgemm][errors]") {
    for (Isa isa : {Isa::avx2, Isa::avx512}) {
        if (isa_supported(isa)) continue;
        float x = 0;
        REQUIRE_THROWS_AS(sgemm(isa, false, false, 1, 1, 1, &x, 1, &x, 1, &x, 1, false), Error);
    }
}

namespace {

struct ConvShape {
    int64_t n, h, w, c, cout, kh, kw, stride, pad;
};

/// Restores the thread count a test changed.
struct ThreadCountGuard {
    int saved = num_threads();
    ~ThreadCountGuard() { set_num_threads(saved); }
};

void require_near(const std::vector<float>& got, const std::vector<float>& want, double tol, const char* what) {
    REQUIRE(got.size() == want.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(double(got[i]) - double(want[i])));
    INFO(what << ": worst error " << worst << " tolerance " << tol);
    REQUIRE(worst <= tol);
}

}  // namespace

TEST_CASE("implicit-GEMM convolution equals the reference and the Eigen path on every path", "[sgemm][conv2d]") {
    ThreadCountGuard restore;
    const std::vector<ConvShape> shapes = {
        {2, 7, 6, 3, 17, 3, 3, 1, 1},    // stem-like: 3 channels, taps shorter than a transpose block
        {3, 9, 8, 20, 33, 3, 3, 1, 1},   // channels crossing the 16-row groups, Cout past a tile
        {2, 8, 7, 20, 15, 3, 3, 2, 1},   // stride 2: the input gradient takes the column path
        {2, 6, 6, 16, 40, 1, 1, 2, 0},   // 1x1 stride 2 (ResNet shortcut)
        {1, 9, 9, 5, 6, 5, 5, 1, 2},     // 5x5, batch 1: the products thread inside sgemm
        {2, 6, 7, 4, 9, 2, 3, 1, 0},     // non-square kernel, no padding
        {2, 4, 5, 6, 7, 3, 3, 1, 2},     // padding of kernel - 1
        {4, 6, 6, 70, 18, 3, 3, 1, 1},   // 70 channels: taps cross the depth blocks unevenly
        // Rows of at least 16 outputs take the direct convolution on AVX-512 (forward, and the
        // input gradient when it is itself padded by 1):
        {2, 5, 17, 20, 33, 3, 3, 1, 1},  // 14 x 32 tiles, a partial column panel
        {3, 4, 16, 6, 9, 3, 3, 1, 1},    // Cout <= 16: 28 x 16 tiles
        {2, 6, 18, 4, 40, 3, 3, 1, 0},   // no padding: 2 dropped columns per row
        {2, 3, 20, 5, 7, 5, 5, 1, 1},    // 5x5
    };
    Rng rng(21);
    for (const auto& s : shapes) {
        const auto g = conv2d_geometry(s.n, s.h, s.w, s.c, s.cout, s.kh, s.kw, s.stride, s.pad);
        CAPTURE(s.n, s.h, s.w, s.c, s.cout, s.kh, s.kw, s.stride, s.pad);
        auto x = random_vector(s.n * s.h * s.w * s.c, rng), w = random_vector(s.cout * g.K(), rng);
        auto bias = random_vector(s.cout, rng), dout = random_vector(s.n * g.OH * g.OW * s.cout, rng);
        std::vector<float> ref(dout.size());
        conv2d_forward_reference(x.data(), w.data(), bias.data(), ref.data(), g);
        // The Eigen (scalar) path's gradients, accumulated onto a non-zero start.
        const auto dx0 = random_vector(static_cast<int64_t>(x.size()), rng), dw0 = random_vector(static_cast<int64_t>(w.size()), rng),
                   db0 = random_vector(s.cout, rng);
        std::vector<float> dx_ref = dx0, dw_ref = dw0, db_ref = db0;
        {
            IsaGuard scalar(Isa::scalar);
            conv2d_backward(x.data(), w.data(), dout.data(), dx_ref.data(), dw_ref.data(), db_ref.data(), g);
        }
        const double fwd_tol = 1e-5 * double(g.K() + 2), dw_tol = 1e-5 * double(s.n * g.OH * g.OW + 2),
                     dx_tol = 1e-5 * double(s.cout * s.kh * s.kw + 2);
        for (Isa isa : available_isas())
            for (int threads : {1, 2}) {
                CAPTURE(isa_name(isa), threads);
                set_num_threads(threads);
                IsaGuard guard(isa);
                std::vector<float> out(dout.size(), 7.f);
                conv2d_forward(x.data(), w.data(), bias.data(), out.data(), g);
                require_near(out, ref, fwd_tol, "forward");
                std::vector<float> dx = dx0, dw = dw0, db = db0;
                conv2d_backward(x.data(), w.data(), dout.data(), dx.data(), dw.data(), db.data(), g);
                require_near(dx, dx_ref, dx_tol, "input gradient");
                require_near(dw, dw_ref, dw_tol, "weight gradient");
                require_near(db, db_ref, dw_tol, "bias gradient");
                // Each gradient alone (null others) gives the same as all together.
                std::vector<float> dx_only = dx0, dw_only = dw0;
                conv2d_backward(x.data(), w.data(), dout.data(), dx_only.data(), nullptr, nullptr, g);
                conv2d_backward(x.data(), w.data(), dout.data(), nullptr, dw_only.data(), nullptr, g);
                require_near(dx_only, dx, 0.0, "input gradient alone");
                require_near(dw_only, dw, 1e-6 * double(s.n * g.OH * g.OW + 2), "weight gradient alone");
            }
    }
}
