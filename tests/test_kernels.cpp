// Every kernel that has more than one code path, as one table of (kernel, awkward shape) cases. A
// path is an instruction set (kernels/isa.hpp: scalar, AVX2, AVX-512, NEON) or a variant the kernel
// chooses by shape (a tile, the direct convolution, work split over threads). Each case runs on
// every instruction set this CPU has, with 1 and 2 threads, and is compared with a reference
// written here (or the naive loops of sgemm_reference / conv2d_forward_reference) that shares no
// code with the paths:
//   bit for bit  the sign packing and bn_sign_pack (the sign rule), the XNOR convolutions (the
//                float convolution of the ±1 tensors: integer sums, exact in float) with their
//                fused transforms (one float operation per step, as the kernels promise), the
//                integer stem (int64 sums, one fma), sgemm_few_rows (the fma chains it promises),
//                max pooling with and without recording the winners;
//   tolerance    float GEMM and convolution (references summed in double), whose summation order
//                differs from path to path; each case states its bound.
// A path this CPU lacks is a warning, or a failure when BNN_REQUIRE_ISA names it ("avx512,avx2",
// or "all"). The table then checks that its cases reached every variant of kVariants on every
// path it ran: a shape edited so that, say, the direct convolution is no longer taken fails there.
// Also here: the run-time ISA choice itself (dispatch, forcing, refusing a missing path); the bit
// packing rule and weight layout and the XNOR conv's shape checks; the vectorised tanh and sign
// kernels against their scalar definitions; kernels that promise another kernel's floats.
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bnn/core/bit_tensor.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/infer/fused_steps.hpp"
#include "bnn/kernels/activation.hpp"
#include "bnn/kernels/binary_conv2d.hpp"
#include "bnn/kernels/binary_conv2d_planned.hpp"
#include "bnn/kernels/binary_conv2d_ste.hpp"
#include "bnn/kernels/channel_gate.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/kernels/conv2d.hpp"
#include "bnn/kernels/conv2d_few_channels.hpp"
#include "bnn/kernels/conv2d_u8s16.hpp"
#include "bnn/kernels/linear_int8.hpp"
#include "bnn/kernels/gemm.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/pool.hpp"
#include "bnn/kernels/sgemm.hpp"
#include "bnn/kernels/sgemm_few_rows.hpp"
#include "bnn/kernels/sign.hpp"
#include "gradcheck.hpp"
#include "skip.hpp"

using namespace bnn;
using namespace bnn::kernels;

namespace {

// ---- the paths ------------------------------------------------------------------------------

const std::vector<Isa> kAllIsas(std::begin(kIsas), std::end(kIsas));
const std::vector<Isa> kVectorIsas = {Isa::avx2, Isa::avx2_vnni, Isa::avx512, Isa::avx512_vpopcntdq};  // x86's
const std::vector<Isa> kAvx2WidestIsas = {Isa::avx2, Isa::avx2_vnni};
const std::vector<Isa> kNeonIsas = {Isa::neon, Isa::neon_dotprod};
const std::vector<Isa> kAvx512Isas = {Isa::avx512, Isa::avx512_vpopcntdq};
/// The paths whose sgemm runs on packed micro-kernels (has_packed_sgemm).
const std::vector<Isa> kPackedSgemmIsas = {Isa::avx2, Isa::avx2_vnni, Isa::avx512, Isa::avx512_vpopcntdq, Isa::neon, Isa::neon_dotprod};
/// The paths whose float convolutions take im2col + GEMM (NEON has no implicit or direct one yet).
const std::vector<Isa> kPortableFloatIsas = {Isa::scalar, Isa::neon, Isa::neon_dotprod};

/// True for the paths of the architecture this test is built for: only their absence is news.
bool path_of_this_architecture(Isa isa) { return isa == Isa::scalar || (BNN_X86 ? has_avx2(isa) : has_neon(isa)); }

bool contains(const std::vector<Isa>& paths, Isa isa) { return std::find(paths.begin(), paths.end(), isa) != paths.end(); }

/// The paths a test runs (those the CPU supports) and the ones it lacks, split into those
/// BNN_REQUIRE_ISA requires (a failure) and the others (a warning).
struct PathPlan {
    std::vector<Isa> run, missing_required, missing;
};

/// The plan for a BNN_REQUIRE_ISA value (path names separated by commas, "all", or empty) on a
/// CPU that supports the paths `supported` says it does.
PathPlan plan_paths(std::string_view required, const std::function<bool(Isa)>& supported) {
    std::vector<Isa> wanted;
    if (required == "all") {
        wanted = kAllIsas;
    } else {
        while (!required.empty()) {
            const size_t comma = std::min(required.find(','), required.size());
            std::string_view name = required.substr(0, comma);
            required.remove_prefix(std::min(comma + 1, required.size()));
            while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
            while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
            if (!name.empty()) wanted.push_back(parse_isa(name));
        }
    }
    PathPlan plan;
    for (Isa isa : kAllIsas)
        (supported(isa) ? plan.run : contains(wanted, isa) ? plan.missing_required : plan.missing).push_back(isa);
    return plan;
}

/// The paths this CPU has. Each path it lacks is a failure when BNN_REQUIRE_ISA requires it, and
/// otherwise a warning that names it.
std::vector<Isa> paths_to_test() {
    const char* env = std::getenv("BNN_REQUIRE_ISA");
    INFO("BNN_REQUIRE_ISA=" << (env ? env : ""));
    const PathPlan plan = plan_paths(env ? env : "", isa_supported);
    for (Isa isa : plan.missing)
        if (path_of_this_architecture(isa))
            WARN("the " << isa_name(isa) << " path is not tested: this CPU lacks it (BNN_REQUIRE_ISA=" << isa_name(isa)
                    << " makes that a failure)");
    for (Isa isa : plan.missing_required)
        FAIL_CHECK("BNN_REQUIRE_ISA requires the " << isa_name(isa) << " path, which this CPU lacks");
    return plan.run;
}

// ---- the table ------------------------------------------------------------------------------

/// One output of a case: float values or words, compared bit for bit (tolerance 0) or within
/// `tolerance`.
struct Output {
    std::string name;
    std::vector<float> values;
    std::vector<uint64_t> words;
    double tolerance = 0;
};
using Outputs = std::vector<Output>;

Output exact(std::string name, std::vector<float> v) { return {std::move(name), std::move(v), {}, 0}; }
Output exact(std::string name, std::vector<uint64_t> w) { return {std::move(name), {}, std::move(w), 0}; }
Output within(std::string name, std::vector<float> v, double tol) { return {std::move(name), std::move(v), {}, tol}; }

/// The shape-chosen variants a case took on one run (names from kVariants).
using Variants = std::vector<std::string>;

/// A kernel on one shape: `want`, the outputs of its reference (with their tolerances), and `run`,
/// which computes the kernel's outputs on a path (the active one, set by the table) in the same
/// order and adds the variants of kVariants it took. The reference runs when the case is made, so
/// that only `run` keeps a copy of the inputs.
struct KernelCase {
    KernelCase(std::string name, const std::function<Outputs()>& reference, std::function<Outputs(Isa, Variants&)> run)
        : name(std::move(name)), want(reference()), run(std::move(run)) {}
    std::string name;
    Outputs want;
    std::function<Outputs(Isa, Variants&)> run;
};

/// Restores the thread count a test changed.
struct ThreadCountGuard {
    int saved = num_threads();
    ~ThreadCountGuard() { set_num_threads(saved); }
};

/// Requires `got` to equal `want`, bit for bit or within want's tolerance; returns the number of
/// elements compared.
int64_t compare(const Output& want, const Output& got) {
    REQUIRE(got.name == want.name);
    REQUIRE(got.values.size() == want.values.size());
    REQUIRE(got.words.size() == want.words.size());
    double worst = 0;
    int64_t bad = 0;
    std::ostringstream first;
    for (size_t i = 0; i < want.values.size(); ++i) {
        const float w = want.values[i], g = got.values[i];
        const double err = std::abs(double(g) - double(w));
        if (err > worst) worst = err;
        const bool ok = want.tolerance == 0 ? std::bit_cast<uint32_t>(g) == std::bit_cast<uint32_t>(w)
                                            : err <= want.tolerance;
        if (!ok && bad++ == 0) first << "element " << i << ": got " << g << ", want " << w;
    }
    for (size_t i = 0; i < want.words.size(); ++i)
        if (got.words[i] != want.words[i] && bad++ == 0)
            first << "word " << i << ": got " << std::hex << got.words[i] << ", want " << want.words[i] << std::dec;
    const size_t n = want.values.size() + want.words.size();
    INFO("output " << want.name << ": " << bad << " of " << n << " elements off (first: " << first.str()
                   << "), worst error " << worst << ", tolerance " << want.tolerance);
    REQUIRE(bad == 0);
    return static_cast<int64_t>(n);
}

/// (variant, path) pairs some run took.
using Reached = std::set<std::pair<std::string, Isa>>;

/// Runs every case on every path with 1 and 2 threads and requires its reference's outputs;
/// returns the variants the runs took.
Reached check_table(const std::vector<KernelCase>& cases, const std::vector<Isa>& paths) {
    ThreadCountGuard restore;
    Reached reached;
    for (const KernelCase& c : cases) {
        const Outputs& want = c.want;
        for (Isa isa : paths)
            for (int threads : {1, 2}) {
                set_num_threads(threads);
                IsaGuard guard(isa);
                INFO(c.name << " on " << isa_name(isa) << " with " << threads << " thread(s)");
                Variants taken;
                const Outputs got = c.run(isa, taken);
                REQUIRE(got.size() == want.size());
                int64_t compared = 0;
                for (size_t k = 0; k < want.size(); ++k) compared += compare(want[k], got[k]);
                REQUIRE(compared > 0);  // a case that compares nothing tests nothing
                for (const std::string& v : taken) reached.insert({v, isa});
            }
    }
    return reached;
}

/// The variants that kernels choose by shape or thread count, and the paths that have each: the
/// table's cases must reach every one on every path this CPU has (require_variants_reached).
const std::vector<std::pair<std::string, std::vector<Isa>>> kVariants = {
    {"binary conv over 2 threads", kAllIsas},
    {"binary conv AVX2 tile: byte counts flushed", {Isa::avx2, Isa::avx2_vnni, Isa::avx512}},
    {"binary conv AVX-512 tile in 32-bit halves", {Isa::avx512_vpopcntdq}},
    {"binary conv AVX-512 tile in whole words", {Isa::avx512_vpopcntdq}},
    {"binary conv NEON tile: uint16 sums folded mid-field", kNeonIsas},
    {"binary conv: a thread's plan reused with other weights", kAllIsas},
    {"planned conv: pixel blocks outermost", kAllIsas},
    {"planned conv: channel blocks outermost", kAllIsas},
    {"planned conv over 2 threads", kAllIsas},
    {"planned conv: AVX-512 tile in 32-bit halves", {Isa::avx512_vpopcntdq}},
    {"planned conv: AVX-512 tile in whole words", {Isa::avx512_vpopcntdq}},
    {"bn_sign_pack by rows over 2 threads", kAllIsas},
    {"u8s16 over 2 threads, channel blocks split", kAllIsas},
    {"u8s16 tile short of 4 pixels: the last pixel repeated", kAllIsas},
    {"u8s16 finish of a partial channel block by the scalar rule", {Isa::avx2, Isa::avx2_vnni, Isa::neon, Isa::neon_dotprod}},
    {"u8s16 AVX-512 tile of 4 channel blocks", kAvx512Isas},
    {"u8s16 AVX-512 tile of 1 to 3 channel blocks", kAvx512Isas},
    {"u8s16 AVX-512 tile with vpdpwssd", {Isa::avx512_vpopcntdq}},
    {"u8s16 AVX-512 tile with vpmaddwd + vpaddd", {Isa::avx512}},
    {"u8s16 AVX2 tile with vpmaddwd + vpaddd", {Isa::avx2}},
    {"u8s16 AVX2 tile with vpdpwssd (AVX-VNNI)", {Isa::avx2_vnni}},
    {"u8s8 AVX2 tile with vpdpbusd (AVX-VNNI)", {Isa::avx2_vnni}},
    {"u8s8 AVX2 tile with vpdpbusd: kernel rows read past their end", {Isa::avx2_vnni}},
    {"u8s8 AVX-512 tile with vpdpbusd", {Isa::avx512_vpopcntdq}},
    {"u8s8 AVX-512 tile with vpdpbusd of 1 to 3 channel blocks", {Isa::avx512_vpopcntdq}},
    {"u8s8 AVX-512 tile with vpdpbusd: kernel rows read past their end", {Isa::avx512_vpopcntdq}},
    {"u8s8 NEON tile with SDOT", {Isa::neon_dotprod}},
    {"u8s8 NEON tile with SDOT short of 4 pixels", {Isa::neon_dotprod}},
    {"u8s8 NEON tile with SDOT: a partial channel block", {Isa::neon_dotprod}},
    {"u8s8 NEON tile with SDOT: padded taps", {Isa::neon_dotprod}},
    {"u8s8 NEON tile with SDOT: kernel rows read past their end", {Isa::neon_dotprod}},
    {"int8 linear: rows quantised to bytes for vpdpbusd", {Isa::avx2_vnni, Isa::avx512_vpopcntdq}},
    {"int8 linear: rows quantised to signed bytes for SDOT", {Isa::neon_dotprod}},
    {"int8 linear: rows widened to int16 for the int16 tiles", {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon}},
    {"int8 linear: a row's last C % 8 values after its AVX2 vectors", kAvx2WidestIsas},
    {"int8 linear: a masked last vector of a row", kAvx512Isas},
    {"int8 linear: more rows than a chunk of 32", kAllIsas},
    {"sgemm_few_rows over 2 threads", kAllIsas},
    {"sgemm 14x32 tile", kAvx512Isas},
    {"sgemm 28x16 tile", kAvx512Isas},
    {"sgemm 8x48 tile", kAvx512Isas},
    {"sgemm over 2 threads by rows", kPackedSgemmIsas},
    {"sgemm over 2 threads by columns", kPackedSgemmIsas},
    {"conv2d forward: im2col + GEMM", kPortableFloatIsas},
    {"conv2d forward: pointwise GEMM", kAllIsas},
    {"conv2d forward: pointwise GEMM in pixel shares over 2 threads", kPackedSgemmIsas},
    {"conv2d forward: implicit GEMM", kVectorIsas},
    {"conv2d forward: direct 6x16", kAvx2WidestIsas},
    {"conv2d forward: direct 14x32", kAvx512Isas},
    {"conv2d forward: direct 28x16", kAvx512Isas},
    {"conv2d forward: direct 28x16, 16 channels", kAvx512Isas},
    {"input gradient: direct convolution", kVectorIsas},
    {"input gradient: implicit-GEMM convolution", kVectorIsas},
    {"input gradient: GEMM and col2im", kAllIsas},
    {"weight gradient: direct 6x16", kAvx2WidestIsas},
    {"weight gradient: direct 6x64", kAvx512Isas},
    {"weight gradient: direct 48x8", kAvx512Isas},
    {"weight gradient: implicit GEMM", kVectorIsas},
    {"weight gradient: im2col + GEMM", kPortableFloatIsas},
    {"conv2d: threads over images", kAllIsas},
    {"few channels: gathered fields", kVectorIsas},
    {"few channels: conv2d_forward's direct convolution", kVectorIsas},
    {"max pool over 2 threads", kAllIsas},
};

/// Requires every variant of kVariants reached on each of its paths that ran, and every variant
/// reached to be listed there.
void require_variants_reached(const Reached& reached, const std::vector<Isa>& paths) {
    for (const auto& [name, where] : kVariants)
        for (Isa isa : where)
            if (contains(paths, isa)) {
                INFO("no case reaches the variant \"" << name << "\" on " << isa_name(isa));
                CHECK(reached.count({name, isa}) == 1);
            }
    for (const auto& [name, isa] : reached) {
        INFO("a case took the variant \"" << name << "\" on " << isa_name(isa) << ", which kVariants does not list");
        CHECK(std::any_of(kVariants.begin(), kVariants.end(),
                          [&](const auto& v) { return v.first == name && contains(v.second, isa); }));
    }
}

/// The tolerance of a float sum of n products of values in [-1, 1] (plus start values in
/// [-1, 1]), summed in any order, against the same sum in double: each addition rounds by at most
/// half an ulp of its running sum, which for these random terms stays below 16 (it grows like
/// sqrt(n) / 3, n <= 700 here), where half an ulp is 4 FLT_EPSILON. The errors seen are under a
/// fifth of that bound; a dropped or doubled term is far above it.
double sum_tolerance(int64_t n) { return 4.0 * 1.2e-7 * double(n + 2); }

// ---- inputs ---------------------------------------------------------------------------------

std::vector<float> uniform(int64_t n, Rng& rng, float lo = -1.f, float hi = 1.f) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = rng.uniform(lo, hi);
    return v;
}

/// Uniform [-1, 1) with a sprinkling of +0 and -0, which count as +1, and with `nan` of NaN,
/// which counts as -1.
std::vector<float> with_zeros(int64_t n, Rng& rng, bool nan = false) {
    std::vector<float> v = uniform(n, rng);
    for (auto& x : v) {
        const uint64_t r = rng.below(16);
        if (r == 0) x = 0.f;
        if (r == 1) x = -0.f;
        if (r == 2 && nan) x = std::nanf("");
    }
    return v;
}

Tensor<float> tensor(const Shape& s, const std::vector<float>& v) { return Tensor<float>::from_vector(s, v); }

std::string shape_name(std::initializer_list<std::pair<const char*, int64_t>> dims) {
    std::ostringstream s;
    for (const auto& [k, v] : dims) s << ' ' << k << v;
    return s.str();
}

float sign_of(float v) { return v >= 0.f ? 1.f : -1.f; }

/// The sizes of a convolution case: input [n, h, w, c], weights [co, kh, kw, c].
struct ConvShape {
    int64_t n, h, w, c, co, kh, kw, stride, pad;
    int64_t oh() const { return (h + 2 * pad - kh) / stride + 1; }
    int64_t ow() const { return (w + 2 * pad - kw) / stride + 1; }
    int64_t inputs() const { return n * h * w * c; }
    int64_t weights() const { return co * kh * kw * c; }
    int64_t outputs() const { return n * oh() * ow() * co; }
    /// Multiply-accumulates of the forward convolution.
    int64_t macs() const { return outputs() * kh * kw * c; }
    Conv2dGeometry geometry() const { return conv2d_geometry(n, h, w, c, co, kh, kw, stride, pad); }
    std::string str() const {
        return shape_name({{"N", n}, {"H", h}, {"W", w}, {"C", c}, {"Cout", co}, {"KH", kh}, {"KW", kw},
                           {"stride", stride}, {"pad", pad}});
    }
};

// ---- bit packing: exact ---------------------------------------------------------------------

/// The sign rule written out: bit c % 64 of word c / 64 of a pixel is y >= 0, with y = x, or
/// y = fma(a, x, b) when a or b is given (a = 1, b = 0 when null); bits past C are zero.
std::vector<uint64_t> signs_definition(const std::vector<float>& x, int64_t pixels, int64_t C, const float* a,
                                       const float* b) {
    const int64_t wc = (C + 63) / 64;
    std::vector<uint64_t> out(pixels * wc, 0);
    for (int64_t p = 0; p < pixels; ++p)
        for (int64_t c = 0; c < C; ++c) {
            const float v = x[p * C + c];
            const float y = a || b ? std::fma(a ? a[c] : 1.f, v, b ? b[c] : 0.f) : v;
            if (y >= 0.f) out[p * wc + c / 64] |= uint64_t{1} << (c % 64);
        }
    return out;
}

void add_bitpack_cases(std::vector<KernelCase>& cases) {
    Rng rng(11);
    // Channels around the 8- and 16-float vectors and the 64-bit words, one pixel or several.
    for (int64_t c : {1, 3, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 128, 129, 200, 512})
        for (int64_t pixels : {1, 7}) {
            const int64_t words = words_for_channels(c);
            const auto x = with_zeros(pixels * c, rng, true), a = uniform(c, rng, -2.f, 2.f),
                       b = uniform(c, rng, -.5f, .5f);
            cases.push_back(
                {"pack_signs / unpack_signs" + shape_name({{"pixels", pixels}, {"C", c}}),
                 [=] {
                     std::vector<float> back(x.size());
                     for (size_t i = 0; i < x.size(); ++i) back[i] = sign_of(x[i]);
                     return Outputs{exact("signs", signs_definition(x, pixels, c, nullptr, nullptr)),
                                    exact("signs of fma(a, x, b)", signs_definition(x, pixels, c, a.data(), b.data())),
                                    exact("signs of a x", signs_definition(x, pixels, c, a.data(), nullptr)),
                                    exact("signs of x + b", signs_definition(x, pixels, c, nullptr, b.data())),
                                    exact("unpacked", back)};
                 },
                 [=](Isa isa, Variants&) {
                     auto pack = [&](const float* pa, const float* pb) {
                         std::vector<uint64_t> bits(pixels * words, 0x5555555555555555u);  // every word must be written
                         pack_signs(x.data(), pixels, c, pa, pb, bits.data(), isa);
                         return bits;
                     };
                     const std::vector<uint64_t> plain = pack(nullptr, nullptr);
                     std::vector<float> back(x.size(), 7.f);
                     unpack_signs(plain.data(), pixels, c, back.data(), isa);
                     return Outputs{exact("signs", plain), exact("signs of fma(a, x, b)", pack(a.data(), b.data())),
                                    exact("signs of a x", pack(a.data(), nullptr)),
                                    exact("signs of x + b", pack(nullptr, b.data())), exact("unpacked", back)};
                 }});
        }
}

/// pack_signs_batch_norm written out: y = x * scale + shift (batch_norm_normalize's expression),
/// bit = y >= 0, sums[c] += y pixel after pixel.
std::pair<std::vector<uint64_t>, std::vector<float>> batch_norm_signs_definition(
    const std::vector<float>& x, int64_t ldx, int64_t pixels, int64_t C, const std::vector<float>& scale,
    const std::vector<float>& shift, std::vector<float> sums) {
    const int64_t wc = (C + 63) / 64;
    std::vector<uint64_t> bits(pixels * wc, 0);
    for (int64_t p = 0; p < pixels; ++p)
        for (int64_t c = 0; c < C; ++c) {
            const float y = x[p * ldx + c] * scale[c] + shift[c];
            sums[c] += y;
            if (y >= 0.f) bits[p * wc + c / 64] |= uint64_t{1} << (c % 64);
        }
    return {bits, sums};
}

void add_batch_norm_sign_cases(std::vector<KernelCase>& cases) {
    Rng rng(12);
    // Channels around the 16-float vectors and the 64-bit words; pixels ldx = C + 3 apart; a
    // quarter of the shifts 0, so that zero inputs give BN values of +0 and -0.
    for (int64_t c : {1, 15, 16, 17, 63, 64, 65, 100, 128, 129, 512})
        for (int64_t pixels : {1, 7}) {
            const int64_t ldx = c + 3, words = words_for_channels(c);
            const auto x = with_zeros(pixels * ldx, rng, true), scale = uniform(c, rng, -2.f, 2.f),
                       sums0 = uniform(c, rng, -1.f, 1.f);
            auto shift = uniform(c, rng, -.5f, .5f);
            for (int64_t k = 0; k < c; k += 4) shift[k] = 0.f;
            cases.push_back(
                {"pack_signs_batch_norm" + shape_name({{"pixels", pixels}, {"C", c}}),
                 [=] {
                     const auto [bits, sums] = batch_norm_signs_definition(x, ldx, pixels, c, scale, shift, sums0);
                     return Outputs{exact("signs", bits), exact("sums", sums),
                                    exact("signs without sums", bits)};
                 },
                 [=](Isa isa, Variants&) {
                     std::vector<uint64_t> bits(pixels * words, 0x5555555555555555u), plain(bits);  // every word written
                     std::vector<float> sums = sums0;
                     pack_signs_batch_norm(x.data(), ldx, pixels, c, scale.data(), shift.data(), sums.data(),
                                           bits.data(), isa);
                     pack_signs_batch_norm(x.data(), ldx, pixels, c, scale.data(), shift.data(), nullptr,
                                           plain.data(), isa);
                     return Outputs{exact("signs", bits), exact("sums", sums), exact("signs without sums", plain)};
                 }});
        }
}

// ---- XNOR convolutions: exact ---------------------------------------------------------------

/// The float convolution of the ±1 tensors sign(x) [N,H,W,C] and sign(w) [Co,KH,KW,C], padded
/// with 0 (zero padding) or +1 (one-padding): the definition every XNOR kernel must equal. Sums
/// of ±1 products are integers, exact in float.
std::vector<float> binary_conv_definition(const std::vector<float>& x, const std::vector<float>& w, const ConvShape& s,
                                          PadValue mode) {
    const float pad_value = mode == PadValue::Zero ? 0.f : 1.f;
    const int64_t OH = s.oh(), OW = s.ow();
    std::vector<float> out(s.outputs());
    for (int64_t n = 0; n < s.n; ++n)
        for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow)
                for (int64_t o = 0; o < s.co; ++o) {
                    float acc = 0.f;
                    for (int64_t kh = 0; kh < s.kh; ++kh)
                        for (int64_t kw = 0; kw < s.kw; ++kw) {
                            const int64_t ih = oh * s.stride - s.pad + kh, iw = ow * s.stride - s.pad + kw;
                            const bool inside = ih >= 0 && ih < s.h && iw >= 0 && iw < s.w;
                            for (int64_t c = 0; c < s.c; ++c) {
                                const float xs = inside ? sign_of(x[((n * s.h + ih) * s.w + iw) * s.c + c]) : pad_value;
                                acc += xs * sign_of(w[((o * s.kh + kh) * s.kw + kw) * s.c + c]);
                            }
                        }
                    out[((n * OH + oh) * OW + ow) * s.co + o] = acc;
                }
    return out;
}

const char* pad_value_name(PadValue mode) { return mode == PadValue::Zero ? " zero-padding" : " one-padding"; }

/// Whether the XNOR drivers split a convolution over threads (binary_conv2d.hpp and
/// binary_conv2d_planned.hpp: from 2^21 binary multiply-accumulates).
bool binary_conv_splits(const ConvShape& s) { return num_threads() > 1 && s.macs() >= (int64_t{1} << 21); }

/// binary_conv2d's words per receptive field (AVX2 tiles flush their byte counts every 31 words).
int64_t binary_conv_field_words(const ConvShape& s) { return s.kh * s.kw * words_for_channels(s.c); }

/// Random signs, or with `opposite` every input sign +1 and every weight sign -1: each XOR bit
/// is 1 and the popcounts reach their largest value (the extreme dot -K).
std::pair<std::vector<float>, std::vector<float>> binary_conv_inputs(const ConvShape& s, Rng& rng, bool opposite) {
    auto x = with_zeros(s.inputs(), rng), w = with_zeros(s.weights(), rng);
    if (opposite) {
        for (float& v : x) v = std::abs(v);       // +0 counts as +1
        for (float& v : w) v = -std::abs(v) - .5f;
    }
    return {x, w};
}

/// after_other_weights: each path first convolves the same input with other weights, so the call
/// checked reuses the calling thread's plan of that geometry (only its border corrections, which
/// come from the weights, are refilled).
void add_binary_conv_case(std::vector<KernelCase>& cases, Rng& rng, const ConvShape& s, PadValue mode,
                        bool opposite = false, bool after_other_weights = false) {
    const auto [x, wt] = binary_conv_inputs(s, rng, opposite);
    const auto scale = uniform(s.co, rng, 0.1f, 2.f), bias = uniform(s.co, rng, -3.f, 3.f);
    const auto other = after_other_weights ? with_zeros(s.weights(), rng) : std::vector<float>{};
    cases.push_back(
        {"binary_conv2d" + s.str() + pad_value_name(mode) + (opposite ? " opposite signs" : "") +
             (after_other_weights ? " after other weights" : ""),
         [=] {
             const std::vector<float> dots = binary_conv_definition(x, wt, s, mode);
             // The dots are exact, so the transformed reference is one fma away.
             std::vector<float> scaled(dots.size());
             for (size_t i = 0; i < dots.size(); ++i) scaled[i] = std::fma(dots[i], scale[i % s.co], bias[i % s.co]);
             return Outputs{exact("fma(dot, scale, bias)", scaled), exact("dot", dots)};
         },
         [=](Isa isa, Variants& taken) {
             const BitTensor xb = pack_signs(tensor(Shape{s.n, s.h, s.w, s.c}, x), {}, {}, Isa::scalar);
             const PackedConvWeights packed = pack_conv_weights(tensor(Shape{s.co, s.kh, s.kw, s.c}, wt));
             const Tensor<float> sc = tensor(Shape{s.co}, scale), bi = tensor(Shape{s.co}, bias);
             if (binary_conv_splits(s)) taken.push_back("binary conv over 2 threads");
             if (has_avx2(isa) && isa != Isa::avx512_vpopcntdq && binary_conv_field_words(s) > 31) taken.push_back("binary conv AVX2 tile: byte counts flushed");
             if (isa == Isa::avx512_vpopcntdq)
                 taken.push_back(kernels::detail::counts_half_words(isa, binary_conv_field_words(s))
                                     ? "binary conv AVX-512 tile in 32-bit halves"
                                     : "binary conv AVX-512 tile in whole words");
             if (has_neon(isa) && binary_conv_field_words(s) > 2 * kernels::detail::kNeonPairsPerFlush)
                 taken.push_back("binary conv NEON tile: uint16 sums folded mid-field");
             if (after_other_weights) {
                 const PackedConvWeights first = pack_conv_weights(tensor(Shape{s.co, s.kh, s.kw, s.c}, other));
                 (void)binary_conv2d(xb, first, sc, bi, s.stride, s.pad, mode, isa);
                 taken.push_back("binary conv: a thread's plan reused with other weights");
             }
             return Outputs{
                 exact("fma(dot, scale, bias)", binary_conv2d(xb, packed, sc, bi, s.stride, s.pad, mode, isa).to_vector()),
                 exact("dot", binary_conv2d(xb, packed, {}, {}, s.stride, s.pad, mode, isa).to_vector())};
         }});
}

void add_binary_conv_cases(std::vector<KernelCase>& cases) {
    Rng rng(2024);
    // Channels around the 64-bit words, kernels 1, 3 and 2x3, both strides, with and without
    // padding (zero-padding's border correction, one-padding's +1 border), output channels
    // around the 8- and 32-lane tiles; batch and image size drawn per case.
    for (int64_t c : {1, 3, 63, 64, 65, 127, 200, 512})
        for (auto [kh, kw] : {std::pair<int64_t, int64_t>{1, 1}, {3, 3}, {2, 3}})
            for (int64_t stride : {1, 2})
                for (int64_t pad : {0, 1}) {
                    const int64_t n = 1 + static_cast<int64_t>(rng.below(3));
                    const int64_t max_side = c >= 500 ? 5 : c >= 127 ? 9 : 15;
                    const int64_t h = std::max<int64_t>(kh - 2 * pad, 1 + rng.below(max_side));
                    const int64_t w = std::max<int64_t>(kw - 2 * pad, 1 + rng.below(max_side));
                    const int64_t couts[] = {1, 5, 8, 31, 33, 64, 65, 100};
                    const ConvShape s{n, h, w, c, couts[rng.below(8)], kh, kw, stride, pad};
                    add_binary_conv_case(cases, rng, s, PadValue::Zero);
                    if (pad > 0) add_binary_conv_case(cases, rng, s, PadValue::One);
                }
    // Receptive fields of 31, 32, 62 and 63 words, around the AVX2 tile's flush of its byte
    // counts (8 bits a word: 31 words fill a byte to 248), with random signs and with every XOR
    // bit set.
    for (int64_t kw : {31, 32, 62, 63})
        for (bool opposite : {false, true})
            add_binary_conv_case(cases, rng, {2, 3, kw + 4, 64, 9, 1, kw, 1, 0}, PadValue::Zero, opposite);
    add_binary_conv_case(cases, rng, {1, 4, 5, 512, 40, 3, 3, 1, 1}, PadValue::One, true);
    // A plan of the same geometry reused with other weights: its corrections must follow them.
    add_binary_conv_case(cases, rng, {2, 6, 5, 64, 33, 3, 3, 1, 1}, PadValue::Zero, false, true);
    add_binary_conv_case(cases, rng, {1, 7, 9, 130, 70, 3, 3, 2, 1}, PadValue::Zero, false, true);
    // The longest field the AVX-512 path counts in 32-bit halves (18 words, kHalfWordMaxFieldWords)
    // and one word more, with every XOR bit set: the halves' sums are largest there.
    add_binary_conv_case(cases, rng, {1, 5, 7, 128, 65, 3, 3, 1, 1}, PadValue::Zero, true);
    add_binary_conv_case(cases, rng, {1, 3, 22, 64, 33, 1, 19, 1, 0}, PadValue::Zero, true);
    // The NEON tile's uint16 sums, folded every kNeonPairsPerFlush word pairs: the
    // largest kernel (64x64) over one word a pixel is 4096 words, one pair more than a uint16
    // lane holds with every XOR bit set, so a fold too late wraps; 63x63 over three words is
    // longer still and odd (its last word runs alone).
    add_binary_conv_case(cases, rng, {1, 65, 64, 64, 9, 64, 64, 1, 0}, PadValue::Zero, true);
    add_binary_conv_case(cases, rng, {1, 63, 64, 129, 3, 63, 63, 1, 0}, PadValue::Zero, true);
    // The largest kernels the geometry allows (64 taps a side: the padding patterns are 64-bit
    // masks), padded at both ends, so the masks' first and last bits are used.
    for (PadValue mode : {PadValue::Zero, PadValue::One}) {
        add_binary_conv_case(cases, rng, {1, 3, 66, 5, 9, 3, 64, 1, 2}, mode);
        add_binary_conv_case(cases, rng, {1, 10, 10, 1, 5, 64, 64, 1, 30}, mode);
    }
    // Large enough (over 2^21 binary MACs) for the work to be split over threads.
    add_binary_conv_case(cases, rng, {2, 9, 11, 130, 70, 3, 3, 1, 1}, PadValue::Zero);
    add_binary_conv_case(cases, rng, {1, 12, 12, 64, 64, 3, 3, 2, 1}, PadValue::One);
}

/// Writes the signs of one pixel's C floats as words (bit 1 where v >= 0, bits past C zero).
void write_sign_words(const float* v, int64_t C, uint64_t* words) {
    for (int64_t j = 0; j < words_for_channels(C); ++j) words[j] = 0;
    for (int64_t c = 0; c < C; ++c)
        if (v[c] >= 0.f) words[c / 64] |= uint64_t{1} << (c % 64);
}

/// Word k of a pixel of C channels that are all +1 (the bits past C clear).
uint64_t plus_word(int64_t C, int64_t k) {
    const int64_t bits = std::min<int64_t>(64, C - 64 * k);
    return bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
}

/// The planned conv's padded input bits [N, H+2p, W+2p, words] (from its first border word).
std::vector<uint64_t> planned_input_bits(PlannedBinaryConv& step) {
    const BinaryConvGeometry& g = step.geometry();
    const uint64_t* first = step.input_pixel(0, -g.pad, -g.pad);
    return std::vector<uint64_t>(first, first + g.N * step.image_stride_words());
}

/// The epilogue parts of a planned conv case: gate, PReLU slope, residual (bits 2, 1, 0).
struct EpilogueParts {
    bool gate, slope, residual;
    std::string str() const {
        const std::string s = std::string(gate ? " gate" : "") + (slope ? " PReLU" : "") + (residual ? " residual" : "");
        return s.empty() ? " alpha only" : s;
    }
};

/// PlannedBinaryConv with the epilogue `parts` (the residual in place over the output when
/// in_place), against the binary conv definition and the epilogue written out: one float
/// operation per step, in the order binary_conv2d_planned.hpp gives.
void add_planned_conv_case(std::vector<KernelCase>& cases, Rng& rng, const ConvShape& s, PadValue mode,
                           EpilogueParts parts, bool in_place) {
    const auto x = with_zeros(s.inputs(), rng), wt = with_zeros(s.weights(), rng);
    const auto alpha = uniform(s.co, rng, -2.f, 2.f), gate = uniform(s.n * s.co, rng, 0.f, 1.f);
    const auto slope = uniform(s.co, rng, -.5f, .5f), residual = uniform(s.outputs(), rng, -3.f, 3.f);
    cases.push_back(
        {"PlannedBinaryConv" + s.str() + pad_value_name(mode) + parts.str() + (in_place ? " in place" : ""),
         [=] {
             const std::vector<float> dots = binary_conv_definition(x, wt, s, mode);
             const int64_t per_image = s.oh() * s.ow() * s.co;
             std::vector<float> out(dots.size());
             for (size_t i = 0; i < dots.size(); ++i) {
                 const int64_t o = static_cast<int64_t>(i) % s.co, n = static_cast<int64_t>(i) / per_image;
                 float y = dots[i] * alpha[o] + 0.f;
                 if (parts.gate) y = y * gate[n * s.co + o];
                 if (parts.slope) y = y > 0.f ? y : slope[o] * y;
                 if (parts.residual) y = y + residual[i];
                 out[i] = y;
             }
             return Outputs{exact("out", out)};
         },
         [=](Isa isa, Variants& taken) {
             const PackedConvWeights packed = pack_conv_weights(tensor(Shape{s.co, s.kh, s.kw, s.c}, wt));
             PlannedBinaryConv step(packed, s.stride, s.pad, s.n, s.h, s.w, isa, mode);
             for (int64_t n = 0; n < s.n; ++n)
                 for (int64_t i = 0; i < s.h; ++i)
                     for (int64_t j = 0; j < s.w; ++j)
                         write_sign_words(x.data() + ((n * s.h + i) * s.w + j) * s.c, s.c, step.input_pixel(n, i, j));
             std::vector<float> out = in_place ? residual : std::vector<float>(s.outputs(), std::nanf(""));
             const BinaryConvEpilogue t{alpha.data(), parts.gate ? gate.data() : nullptr, parts.slope ? slope.data() : nullptr,
                                  parts.residual ? (in_place ? out.data() : residual.data()) : nullptr};
             step.run(t, out.data());
             taken.push_back(step.pixel_major() ? "planned conv: pixel blocks outermost"
                                                : "planned conv: channel blocks outermost");
             if (binary_conv_splits(s)) taken.push_back("planned conv over 2 threads");
             if (isa == Isa::avx512_vpopcntdq)
                 taken.push_back(kernels::detail::counts_half_words(isa, binary_conv_field_words(s))
                                     ? "planned conv: AVX-512 tile in 32-bit halves"
                                     : "planned conv: AVX-512 tile in whole words");
             return Outputs{exact("out", out)};
         }});
}

void add_planned_conv_cases(std::vector<KernelCase>& cases) {
    Rng rng(77);
    // Output channels around the 8- and 16-float epilogue vectors and the 8- and 32-lane tiles,
    // pixel counts around the 3- and 6-pixel tiles; weights that fit L1 (pixel blocks outermost)
    // and weights that do not (channel blocks outermost).
    const ConvShape shapes[] = {
        {1, 1, 1, 1, 1, 1, 1, 1, 0},     {2, 5, 7, 3, 5, 3, 3, 1, 1},     {1, 4, 9, 130, 33, 3, 3, 1, 1},
        {2, 6, 6, 64, 40, 3, 3, 2, 1},   {2, 3, 5, 70, 17, 2, 3, 1, 2},   {1, 5, 4, 512, 65, 3, 3, 1, 1},
        {3, 3, 3, 64, 47, 3, 3, 1, 1},
    };
    for (const ConvShape& s : shapes)
        for (int k = 0; k < 8; ++k)
            for (PadValue mode : {PadValue::Zero, PadValue::One}) {
                const EpilogueParts parts{(k & 4) != 0, (k & 2) != 0, (k & 1) != 0};
                add_planned_conv_case(cases, rng, s, mode, parts, parts.residual && mode == PadValue::Zero);
            }
    // The largest kernel, and enough work to split over threads (both ways round).
    add_planned_conv_case(cases, rng, {1, 10, 10, 1, 5, 64, 64, 1, 30}, PadValue::Zero, {true, true, true}, false);
    add_planned_conv_case(cases, rng, {2, 9, 11, 130, 70, 3, 3, 1, 1}, PadValue::Zero, {true, true, true}, true);
    add_planned_conv_case(cases, rng, {2, 14, 14, 64, 64, 3, 3, 1, 1}, PadValue::One, {false, true, true}, false);
}

/// bn_sign_pack into a planned conv's input bits (the whole padded buffer: its border must stay
/// as the conv set it) and, when `pooled`, the per-channel means of BN(x), against the sign rule
/// and the sums written out in the gate's order (each image row, then the rows). BN(x) is
/// x * scale + shift, two roundings, the training op's float. The conv has `cout` outputs: few
/// keep its weights in L1 (it walks pixels outermost), many do not (channel blocks outermost);
/// either way its threads, and so the pack's, share out rows.
void add_bn_sign_pack_case(std::vector<KernelCase>& cases, Rng& rng, int64_t N, int64_t H, int64_t W, int64_t C,
                           int64_t pad, PadValue mode, bool pooled, int64_t cout = 3) {
    const auto gamma = uniform(C, rng, -2.f, 2.f), beta = uniform(C, rng, -.5f, .5f);
    const auto mean = uniform(C, rng), var = uniform(C, rng, .2f, 3.f);
    const auto bn = std::make_shared<infer::FrozenBatchNorm>(gamma.data(), beta.data(), mean.data(), var.data(), C, 1e-5f);
    const float* scale = bn->scale.data();
    const float* shift = bn->shift.data();
    auto x = uniform(N * H * W * C, rng, -3.f, 3.f);
    // The first pixels sit on each channel's zero crossing -shift/scale, and next to it.
    for (int64_t i = 0; i < std::min<int64_t>(3 * C, x.size()); ++i) {
        const int64_t c = i % C;
        const float t = -shift[c] / scale[c];
        x[i] = i < C ? t : i < 2 * C ? std::nextafter(t, 1e30f) : std::nextafter(t, -1e30f);
    }
    const int64_t P = H * W, wc = words_for_channels(C);
    const ConvShape s{N, H, W, C, cout, 3, 3, 1, pad};
    cases.push_back(
        {"bn_sign_pack" + shape_name({{"N", N}, {"H", H}, {"W", W}, {"C", C}, {"pad", pad}, {"Cout", cout}}) +
             pad_value_name(mode) +
             (pooled ? " with means" : ""),
         [=] {
             const int64_t Hp = H + 2 * pad, Wp = W + 2 * pad;
             std::vector<uint64_t> bits(N * Hp * Wp * wc);
             std::vector<float> h(C), sums(N * C, 0.f), row_sums(C);
             for (int64_t n = 0; n < N; ++n)
                 for (int64_t i = 0; i < Hp; ++i) {
                     std::fill(row_sums.begin(), row_sums.end(), 0.f);
                     for (int64_t j = 0; j < Wp; ++j) {
                         uint64_t* dst = bits.data() + ((n * Hp + i) * Wp + j) * wc;
                         const int64_t ih = i - pad, iw = j - pad;
                         if (ih < 0 || ih >= H || iw < 0 || iw >= W) {  // the border: -1 bits, or +1 for one-padding
                             for (int64_t k = 0; k < wc; ++k) dst[k] = mode == PadValue::Zero ? 0 : plus_word(C, k);
                             continue;
                         }
                         const float* in = x.data() + ((n * H + ih) * W + iw) * C;
                         for (int64_t c = 0; c < C; ++c) {
                             h[c] = in[c] * scale[c] + shift[c];
                             row_sums[c] += h[c];
                         }
                         write_sign_words(h.data(), C, dst);
                     }
                     if (i >= pad && i < pad + H)
                         for (int64_t c = 0; c < C; ++c) sums[n * C + c] += row_sums[c];
                 }
             Outputs out{exact("input bits", bits)};
             if (pooled) {
                 for (float& v : sums) v /= static_cast<float>(P);
                 out.push_back(exact("means", sums));
             }
             return out;
         },
         [=](Isa isa, Variants& taken) {
             const PackedConvWeights packed = pack_conv_weights(Tensor<float>::full(Shape{s.co, s.kh, s.kw, C}, 1.f));
             PlannedBinaryConv step(packed, 1, pad, N, H, W, isa, mode);
             std::vector<float> means(N * C, std::nanf(""));
             infer::bn_sign_pack(x.data(), N, H, W, C, *bn, step, pooled ? means.data() : nullptr, isa);
             // bn_sign_pack's threads are the conv's.
             if (step.threads() > 1 && N * H > 1) taken.push_back("bn_sign_pack by rows over 2 threads");
             Outputs out{exact("input bits", planned_input_bits(step))};
             if (pooled) out.push_back(exact("means", means));
             return out;
         }});
}

void add_bn_sign_pack_cases(std::vector<KernelCase>& cases) {
    Rng rng(5);
    // Channels around the half words, the words, the 8- and 16-float vectors of the packers.
    for (int64_t C : {1, 7, 31, 33, 40, 64, 70, 130})
        for (PadValue mode : {PadValue::Zero, PadValue::One}) {
            add_bn_sign_pack_case(cases, rng, 2, 3, 5, C, 1, mode, true);
            add_bn_sign_pack_case(cases, rng, 1, 4, 3, C, 2, mode, mode == PadValue::One);
        }
    // Convs of 2^21 multiply-accumulates or more, whose threads the pack takes, walking pixels
    // outermost or (9 * words * Cout * 8 bytes of weights over 32 KiB) channel blocks outermost.
    add_bn_sign_pack_case(cases, rng, 1, 33, 33, 64, 1, PadValue::Zero, true, 64);
    add_bn_sign_pack_case(cases, rng, 1, 33, 33, 64, 1, PadValue::Zero, true, 480);
    add_bn_sign_pack_case(cases, rng, 1, 41, 41, 40, 1, PadValue::One, true, 480);
    add_bn_sign_pack_case(cases, rng, 1, 41, 41, 40, 0, PadValue::Zero, false, 64);
    add_bn_sign_pack_case(cases, rng, 2, 23, 23, 70, 1, PadValue::Zero, true, 256);
    add_bn_sign_pack_case(cases, rng, 1, 19, 21, 200, 1, PadValue::Zero, true, 128);
    add_bn_sign_pack_case(cases, rng, 1, 19, 21, 200, 1, PadValue::One, true);
}

// ---- the integer stem: exact ----------------------------------------------------------------

/// The row transform of the fused stem's cases (a batch norm with ReLU, written out): v * a + b,
/// then 0 where that is not above 0.
void u8s16_case_after_row(float* row, int64_t OW, int64_t C, const std::vector<float>& a, const std::vector<float>& b) {
    for (int64_t i = 0; i < OW; ++i)
        for (int64_t c = 0; c < C; ++c) {
            const float v = row[i * C + c] * a[c] + b[c];
            row[i * C + c] = v > 0.f ? v : 0.f;
        }
}

/// max_pool2d_forward written out: each window's maximum over its taps inside the image, taken in
/// (kh, kw) order from the first, a later tap winning only when larger; taps (when not null)
/// receives the winner's kh * k + kw.
std::vector<float> max_pool_definition(const std::vector<float>& x, const PoolGeometry& g,
                                       std::vector<uint64_t>* taps = nullptr) {
    std::vector<float> y(g.N * g.OH * g.OW * g.C);
    if (taps) taps->assign(y.size(), 0);
    for (int64_t n = 0; n < g.N; ++n)
        for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow)
                for (int64_t c = 0; c < g.C; ++c) {
                    bool found = false;
                    float best = 0.f;
                    uint64_t tap = 0;
                    for (int64_t kh = 0; kh < g.k; ++kh)
                        for (int64_t kw = 0; kw < g.k; ++kw) {
                            const int64_t ih = oh * g.stride - g.pad + kh, iw = ow * g.stride - g.pad + kw;
                            if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                            const float v = x[((n * g.H + ih) * g.W + iw) * g.C + c];
                            if (!found || v > best) best = v, tap = static_cast<uint64_t>(kh * g.k + kw);
                            found = true;
                        }
                    const int64_t o = ((n * g.OH + oh) * g.OW + ow) * g.C + c;
                    y[o] = best;
                    if (taps) (*taps)[o] = tap;
                }
    return y;
}

/// The image of a conv2d_u8s16 case: random bytes (the first 0, the last 255); every pixel 255
/// with every folded weight +-1 (q = +-weight_max), sums at the edge of int32 for int16 weights;
/// or random pixels of 0 and 255 only, the ends of the byte range (-128 and 127 in the SDOT tile's
/// shifted image, where the padding is -128 too).
enum class StemPixels { random, extreme, ends };

/// conv2d_u8s16 (dots and output) against int64 sums of x * q over the taps inside the image,
/// and the output written out: fma(float(dot), scale[o], bias), where bias is the folded bias
/// plus scale[o] times the tap corrections of the pixel's padded taps, summed in double in
/// (kh, kw) order as plan_conv2d_u8s16 promises. weight_max: u8s16_weight_max, or
/// u8s8_weight_max for weights of int8's range (the byte tiles, vpdpbusd and SDOT).
void add_u8s16_case(std::vector<KernelCase>& cases, Rng& rng, const ConvShape& s, StemPixels image,
                    int32_t weight_max = u8s16_weight_max) {
    std::vector<float> w = uniform(s.weights(), rng, -.5f, .5f), bias = uniform(s.co, rng, -1.f, 1.f);
    std::vector<float> mean = uniform(s.c, rng, .3f, .6f), stdev = uniform(s.c, rng, .15f, .35f);
    std::vector<uint8_t> x(s.inputs());
    for (uint8_t& v : x) v = static_cast<uint8_t>(image == StemPixels::ends ? 255 * rng.below(2) : rng.below(256));
    x[0] = 0;
    x.back() = 255;
    const bool extreme = image == StemPixels::extreme;
    if (extreme) {
        const int64_t K = s.kh * s.kw * s.c;
        for (int64_t i = 0; i < s.weights(); ++i) w[i] = i < K ? 1.f : i < 2 * K ? -1.f : (rng.below(2) ? 1.f : -1.f);
        std::fill(mean.begin(), mean.end(), 0.f);
        std::fill(stdev.begin(), stdev.end(), 1.f / 255.f);
        std::fill(x.begin(), x.end(), uint8_t{255});
    }
    const auto q = std::make_shared<U8S16ConvWeights>(
        quantize_conv2d_u8s16(w.data(), bias.data(), s.co, s.kh, s.kw, s.c, mean.data(), stdev.data(), weight_max));
    const bool bytes = weight_max <= u8s8_weight_max;
    // The fused max pool (conv2d_u8s16_max_pool_forward): ImageNet's 3x3 / 2 padded by 1, or
    // 2x2 / 1 unpadded (windows sharing rows) for an odd Cout and outputs of 2 x 2 or more; a
    // batch norm and ReLU on each row.
    const bool overlapping = s.co % 2 == 1 && std::min(s.oh(), s.ow()) >= 2;
    const int64_t pk = overlapping ? 2 : 3, ps = overlapping ? 1 : 2, pp = overlapping ? 0 : 1;
    const PoolGeometry pool = PoolGeometry::make(s.n, s.oh(), s.ow(), s.co, pk, ps, pp);
    const std::vector<float> row_a = uniform(s.co, rng, -2.f, 2.f), row_b = uniform(s.co, rng, -.5f, .5f);
    cases.push_back(
        {"conv2d_u8s16" + s.str() + (extreme ? " extreme sums" : "") +
             (image == StemPixels::ends ? " pixels 0 and 255" : "") + (bytes ? " int8 weights" : ""),
         [=] {
             const int64_t OH = s.oh(), OW = s.ow(), K = q->K();
             std::vector<uint64_t> dots(s.outputs());
             std::vector<float> out(s.outputs());
             for (int64_t n = 0, i = 0; n < s.n; ++n)
                 for (int64_t oh = 0; oh < OH; ++oh)
                     for (int64_t ow = 0; ow < OW; ++ow)
                         for (int64_t o = 0; o < s.co; ++o, ++i) {
                             int64_t dot = 0;
                             double correction = 0;
                             for (int64_t kh = 0; kh < s.kh; ++kh)
                                 for (int64_t kw = 0; kw < s.kw; ++kw) {
                                     const int64_t ih = oh * s.stride - s.pad + kh, iw = ow * s.stride - s.pad + kw;
                                     if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) {
                                         correction += q->tap_correction[(kh * s.kw + kw) * s.co + o];
                                         continue;
                                     }
                                     for (int64_t c = 0; c < s.c; ++c)
                                         dot += int64_t{x[((n * s.h + ih) * s.w + iw) * s.c + c]} *
                                                q->q[o * K + (kh * s.kw + kw) * s.c + c];
                                 }
                             dots[i] = static_cast<uint64_t>(dot);
                             const float b = static_cast<float>(q->bias[o] + double(q->scale[o]) * correction);
                             out[i] = std::fma(static_cast<float>(dot), q->scale[o], b);
                         }
             std::vector<float> rows = out;
             for (int64_t r = 0; r < s.n * OH; ++r) u8s16_case_after_row(rows.data() + r * OW * s.co, OW, s.co, row_a, row_b);
             return Outputs{exact("dots", dots), exact("out", out), exact("pooled", max_pool_definition(rows, pool))};
         },
         [=](Isa isa, Variants& taken) {  // the path is active_isa(), set by the table's IsaGuard
             const Conv2dGeometry g = s.geometry();
             U8S16ConvPlan plan;
             plan_conv2d_u8s16(*q, g, plan);
             std::vector<int32_t> dots32(s.outputs(), -1);
             conv2d_u8s16_dots(x.data(), *q, g, dots32.data());
             std::vector<float> out(s.outputs(), std::nanf(""));
             conv2d_u8s16_forward(x.data(), *q, plan, out.data());
             std::vector<uint64_t> dots(dots32.size());
             for (size_t i = 0; i < dots.size(); ++i) dots[i] = static_cast<uint64_t>(int64_t{dots32[i]});
             // conv2d_u8s16.hpp's split: threads from 2^16 vector operations, channel blocks
             // split into groups when there are fewer than 4 pixel chunks per thread.
             const int64_t pixels = s.n * s.oh() * s.ow(), chunks = (pixels + 31) / 32, blocks = q->CoutP() / 16;
             if (num_threads() > 1 && worth_threading(pixels * q->CoutP() * q->Kp() / 16) && blocks > 1 &&
                 chunks < 4 * num_threads())
                 taken.push_back("u8s16 over 2 threads, channel blocks split");
             if (pixels % 4 != 0) taken.push_back("u8s16 tile short of 4 pixels: the last pixel repeated");
             if (s.co % 16 != 0 && (avx2_is_widest(isa) || has_neon(isa)))
                 taken.push_back("u8s16 finish of a partial channel block by the scalar rule");
             if (avx2_is_widest(isa)) {  // conv2d_u8s16_avx2.hpp
                 if (bytes && has_avx_vnni(isa)) {
                     taken.push_back("u8s8 AVX2 tile with vpdpbusd (AVX-VNNI)");
                     if (s.kw * s.c % 4 != 0) taken.push_back("u8s8 AVX2 tile with vpdpbusd: kernel rows read past their end");
                 } else {
                     taken.push_back(has_avx_vnni(isa) ? "u8s16 AVX2 tile with vpdpwssd (AVX-VNNI)"
                                                       : "u8s16 AVX2 tile with vpmaddwd + vpaddd");
                 }
             }
             if (has_avx512(isa)) {  // conv2d_u8s16_avx512.hpp: tiles of up to 4 blocks
                 if (blocks >= 4) taken.push_back("u8s16 AVX-512 tile of 4 channel blocks");
                 if (blocks % 4 != 0) taken.push_back("u8s16 AVX-512 tile of 1 to 3 channel blocks");
                 if (bytes && has_avx512_vnni(isa)) {
                     taken.push_back("u8s8 AVX-512 tile with vpdpbusd");
                     if (blocks % 4 != 0) taken.push_back("u8s8 AVX-512 tile with vpdpbusd of 1 to 3 channel blocks");
                     if (s.kw * s.c % 4 != 0)
                         taken.push_back("u8s8 AVX-512 tile with vpdpbusd: kernel rows read past their end");
                 } else {
                     taken.push_back(has_avx512_vnni(isa) ? "u8s16 AVX-512 tile with vpdpwssd"
                                                          : "u8s16 AVX-512 tile with vpmaddwd + vpaddd");
                 }
             }
             if (bytes && has_neon_dotprod(isa)) {  // conv2d_u8s16_neon_dotprod.hpp: 4 pixels x 16 channels
                 taken.push_back("u8s8 NEON tile with SDOT");
                 if (pixels % 4 != 0) taken.push_back("u8s8 NEON tile with SDOT short of 4 pixels");
                 if (s.co % 16 != 0) taken.push_back("u8s8 NEON tile with SDOT: a partial channel block");
                 if (s.pad > 0) taken.push_back("u8s8 NEON tile with SDOT: padded taps");
                 if (s.kw * s.c % 4 != 0) taken.push_back("u8s8 NEON tile with SDOT: kernel rows read past their end");
             }
             std::vector<float> pooled(pool.N * pool.OH * pool.OW * pool.C, std::nanf(""));
             conv2d_u8s16_max_pool_forward(
                 x.data(), *q, plan, pool,
                 [&](float* row) { u8s16_case_after_row(row, s.ow(), s.co, row_a, row_b); }, pooled.data());
             return Outputs{exact("dots", dots), exact("out", out), exact("pooled", pooled)};
         }});
}

void add_u8s16_cases(std::vector<KernelCase>& cases) {
    Rng rng(91);
    // Output channels around the 16-channel tiles, pixel counts around the 4-pixel tiles and
    // 32-pixel chunks, paddings up to kernel - 1, strides 1 to 3.
    const ConvShape shapes[] = {
        {1, 7, 9, 3, 5, 3, 3, 1, 1},    {2, 11, 13, 1, 17, 5, 5, 2, 2}, {3, 9, 8, 3, 33, 7, 7, 2, 3},
        {2, 5, 6, 3, 16, 3, 3, 1, 0},   {1, 4, 5, 1, 1, 2, 2, 1, 1},    {2, 12, 7, 3, 20, 4, 4, 3, 2},
        {3, 3, 5, 1, 7, 3, 3, 1, 2},    {1, 1, 1, 2, 15, 1, 1, 1, 0},   {2, 6, 9, 4, 31, 2, 3, 1, 1},
        // Enough work for threads: a few chunks (channel blocks split), many chunks.
        {1, 11, 11, 3, 300, 7, 7, 2, 3}, {2, 40, 37, 3, 40, 7, 7, 2, 3},
        // The ImageNet stem's kernel (7x7x3, stride 2, padding 3, 64 channels) on odd sizes.
        {1, 23, 21, 3, 64, 7, 7, 2, 3},
        // The largest receptive fields: 64 taps wide (the plan's 64-bit masks, first and last
        // bits used) at K = 256, and 16 x 16 over one channel, both padded.
        {1, 2, 40, 4, 7, 1, 64, 1, 33}, {1, 9, 9, 1, 18, 16, 16, 1, 8},
    };
    for (const ConvShape& s : shapes) add_u8s16_case(cases, rng, s, StemPixels::random);
    // K = 257 = u8s16_max_taps, the largest the quantiser takes: 255 * 32767 * 257 = 2^31 - 98302.
    add_u8s16_case(cases, rng, {1, 2, 3, 257, 4, 1, 1, 1, 0}, StemPixels::extreme);
    add_u8s16_case(cases, rng, {1, 3, 9, 257, 3, 1, 1, 2, 0}, StemPixels::extreme);
    // Near it with a 7x7 kernel: K = 245 in rows of 35 taps (odd: each row's last pair reads the
    // next pixel's first value against a zero weight), padded.
    add_u8s16_case(cases, rng, {1, 8, 9, 5, 20, 7, 7, 1, 3}, StemPixels::extreme);
    // Weights of int8's range (the byte tiles, vpdpbusd and SDOT, on the image bytes): kernel rows
    // of 21, 15, 3, 8, 64, 9 and 10 taps (3, 1, 0 or 2 bytes read past a row's end), channel blocks
    // of 1 to 4 and partial, pixel counts short of a 4-pixel tile (82, 35, 15), padded and not.
    const ConvShape int8_shapes[] = {
        {1, 23, 21, 3, 64, 7, 7, 2, 3}, {3, 9, 8, 3, 33, 7, 7, 2, 3}, {2, 12, 7, 3, 20, 5, 5, 3, 2},
        {1, 4, 5, 1, 1, 3, 3, 1, 1},    {2, 6, 9, 4, 31, 2, 2, 1, 1}, {1, 11, 11, 3, 300, 7, 7, 2, 3},
        {1, 2, 40, 4, 7, 1, 16, 1, 8},  {1, 5, 7, 3, 17, 3, 3, 1, 1}, {2, 5, 6, 1, 3, 2, 2, 1, 0},
    };
    for (const ConvShape& s : int8_shapes) add_u8s16_case(cases, rng, s, StemPixels::random, u8s8_weight_max);
    add_u8s16_case(cases, rng, {1, 8, 9, 5, 20, 7, 7, 1, 3}, StemPixels::extreme, u8s8_weight_max);
    // Pixels of 0 and 255 only, around padding (the ends of the SDOT tile's shifted bytes, -128
    // the padding's value too), 15 pixels, 21 channels.
    add_u8s16_case(cases, rng, {1, 9, 5, 2, 21, 5, 5, 2, 2}, StemPixels::ends, u8s8_weight_max);
}

// ---- int8 dense layers: exact -------------------------------------------------------------------

/// quantize_linear_int8 and linear_int8_rows against their definition written out
/// (linear_int8.hpp): each output channel's weights rounded to multiples of max |w| / 127 (in
/// double, ties to even), each row's levels 128 + round(x * (127 / m)) in float, ties to even,
/// int64 sums, and fma(float(sum - 128 sum q) * m / 127, ws, b). Row 0 is all zeros (y = b), the
/// last row holds +-m exactly (levels 1 and 255), rows of tiny and huge values keep their own
/// steps, and row 3 holds ties (x * 127 / m = k + 1/2).
void add_linear_int8_case(std::vector<KernelCase>& cases, Rng& rng, int64_t rows, int64_t C, int64_t Cout) {
    std::vector<float> w = uniform(Cout * C, rng, -.5f, .5f), bias = uniform(Cout, rng, -1.f, 1.f);
    std::vector<float> x = uniform(rows * C, rng, -3.f, 3.f);
    std::fill(x.begin(), x.begin() + C, 0.f);
    if (rows > 1) x[(rows - 1) * C] = 4.f, x[rows * C - 1] = -4.f;
    if (rows > 2)
        for (int64_t c = 0; c < C; ++c) x[C + c] *= 1e-30f;
    if (rows > 3)
        for (int64_t c = 0; c < C; ++c) x[2 * C + c] *= 1e30f;
    if (rows > 4)  // largest 127: a step of exactly 1, so the halves are ties, rounded to even
        for (int64_t c = 0; c < C; ++c) x[3 * C + c] = c == 0 ? 127.f : (c % 2 ? -1.f : 1.f) * (float(c % 7) + .5f);
    const auto q = std::make_shared<Int8LinearWeights>(quantize_linear_int8(w.data(), bias.data(), Cout, C));
    cases.push_back(
        {"linear_int8 rows " + std::to_string(rows) + ", C " + std::to_string(C) + ", Cout " + std::to_string(Cout),
         [=] {
             std::vector<int64_t> levels(Cout * C);
             std::vector<float> ws(Cout);
             for (int64_t o = 0; o < Cout; ++o) {
                 double largest = 0;
                 for (int64_t c = 0; c < C; ++c) largest = std::max(largest, std::abs(double(w[o * C + c])));
                 ws[o] = static_cast<float>(largest / 127);
                 for (int64_t c = 0; c < C; ++c)
                     levels[o * C + c] = static_cast<int64_t>(std::nearbyint(double(w[o * C + c]) / double(ws[o])));
             }
             std::vector<float> y(rows * Cout);
             std::vector<int64_t> u(C);
             for (int64_t r = 0; r < rows; ++r) {
                 const float* xr = x.data() + r * C;
                 float m = 0.f;
                 for (int64_t c = 0; c < C; ++c) m = std::max(m, std::abs(xr[c]));
                 const float step = m / 127.f, inverse = m > 0.f ? 127.f / m : 0.f;
                 for (int64_t c = 0; c < C; ++c)
                     u[c] = 128 + static_cast<int64_t>(std::clamp(std::nearbyint(xr[c] * inverse), -127.f, 127.f));
                 for (int64_t o = 0; o < Cout; ++o) {
                     int64_t dot = 0, sum = 0;
                     for (int64_t c = 0; c < C; ++c) {
                         dot += u[c] * levels[o * C + c];
                         sum += levels[o * C + c];
                     }
                     y[r * Cout + o] = std::fma(static_cast<float>(dot - 128 * sum) * step, ws[o], bias[o]);
                 }
             }
             return Outputs{exact("y", y)};
         },
         [=](Isa isa, Variants& taken) {
             std::vector<float> y(rows * Cout, std::nanf(""));
             linear_int8_rows(x.data(), rows, *q, y.data(), isa);
             taken.push_back(has_avx512_vnni(isa) || has_avx_vnni(isa) ? "int8 linear: rows quantised to bytes for vpdpbusd"
                             : has_neon_dotprod(isa) ? "int8 linear: rows quantised to signed bytes for SDOT"
                                                     : "int8 linear: rows widened to int16 for the int16 tiles");
             if (avx2_is_widest(isa) && C % 8 != 0) taken.push_back("int8 linear: a row's last C % 8 values after its AVX2 vectors");
             if (has_avx512(isa) && C % 16 != 0) taken.push_back("int8 linear: a masked last vector of a row");
             if (rows > 32) taken.push_back("int8 linear: more rows than a chunk of 32");
             return Outputs{exact("y", y)};
         }});
}

void add_linear_int8_cases(std::vector<KernelCase>& cases) {
    Rng rng(53);
    // Rows around the 4-row tiles and 32-row chunks; C around runs of 4 bytes and 16-value
    // vectors; Cout around the 16-channel blocks and 4-block tiles; a shortcut's and the
    // classifier's sizes.
    add_linear_int8_case(cases, rng, 5, 3, 1);
    add_linear_int8_case(cases, rng, 7, 17, 17);
    add_linear_int8_case(cases, rng, 33, 64, 128);
    add_linear_int8_case(cases, rng, 70, 30, 65);
    add_linear_int8_case(cases, rng, 4, 256, 512);
    add_linear_int8_case(cases, rng, 1, 512, 1000);
}

// ---- float GEMM: within float rounding, or exactly as promised ------------------------------

/// One product C [M, N] (=/+=) op(A) op(B) with padded strides (ld = width + 3), so the kernels
/// cannot assume dense rows; the padding between rows of C must stay untouched.
void add_sgemm_case(std::vector<KernelCase>& cases, Rng& rng, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                    bool accumulate) {
    const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
    const int64_t lda = a_cols + 3, ldb = b_cols + 3, ldc = N + 3;
    const auto A = uniform(a_rows * lda, rng), B = uniform(b_rows * ldb, rng), C0 = uniform(M * ldc, rng);
    const double tol = sum_tolerance(K);
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
                     [=](Isa isa, Variants& taken) {
                         std::vector<float> c = C0;
                         sgemm(isa, ta, tb, M, N, K, A.data(), lda, B.data(), ldb, c.data(), ldc, accumulate);
#if BNN_X86
                         if (has_avx512(isa)) {
                             const kernels::detail::SgemmAvx512Tile tile = kernels::detail::sgemm_avx512_tile(M, N);
                             taken.push_back(tile == kernels::detail::SgemmAvx512Tile::wide     ? "sgemm 14x32 tile"
                                             : tile == kernels::detail::SgemmAvx512Tile::narrow ? "sgemm 28x16 tile"
                                                                                       : "sgemm 8x48 tile");
                         }
#endif
                         // sgemm_run's split: from 4 MFLOP, by rows or columns in whole grains.
                         const bool by_rows = M >= N;
                         if (has_packed_sgemm(isa) && num_threads() > 1 && 2.0 * M * N * K >= 4e6 &&
                             (by_rows ? M > 56 : N > 96))
                             taken.push_back(by_rows ? "sgemm over 2 threads by rows" : "sgemm over 2 threads by columns");
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
    // Around NEON's 12 x 8 tile: rows and columns one short of, at and one past one and two
    // tiles, for each transpose, then over two depth blocks (the second added to the first).
    const int64_t tile_rows[] = {11, 12, 13, 24, 25}, tile_cols[] = {7, 8, 9, 16, 17};
    for (int t = 0; t < 4; ++t) {
        for (int64_t M : tile_rows)
            for (int64_t N : tile_cols)
                add_sgemm_case(cases, rng, t & 1, t & 2, M, N, 5 + (M + N) % 7, (M + N + t) % 2 == 0);
        add_sgemm_case(cases, rng, t & 1, t & 2, 25, 17, kSgemmKC + 1, t % 2 == 0);
    }
}

/// gemm_nn / gemm_nt / gemm_tn, which choose their path from active_isa() (Eigen when scalar).
void add_gemm_case(std::vector<KernelCase>& cases, Rng& rng, int64_t M, int64_t N, int64_t K) {
    const auto a = uniform(M * K, rng), at = uniform(K * M, rng), b = uniform(K * N, rng), bt = uniform(N * K, rng);
    const auto c0 = uniform(M * N, rng);
    const double tol = sum_tolerance(K);
    cases.push_back({"gemm_nn / gemm_nt / gemm_tn" + shape_name({{"M", M}, {"N", N}, {"K", K}}),
                     [=] {
                         std::vector<float> nn(M * N), nt = c0, tn = c0;
                         sgemm_reference(false, false, M, N, K, a.data(), K, b.data(), N, nn.data(), N, false);
                         sgemm_reference(false, true, M, N, K, a.data(), K, bt.data(), K, nt.data(), N, true);
                         sgemm_reference(true, false, M, N, K, at.data(), M, b.data(), N, tn.data(), N, true);
                         return Outputs{within("A B", nn, tol), within("C + A B^T", nt, tol),
                                        within("C + A^T B", tn, tol)};
                     },
                     [=](Isa, Variants&) {  // the path is active_isa(), set by the table's IsaGuard
                         std::vector<float> nn(M * N, 7.f), nt = c0, tn = c0;
                         gemm_nn(M, N, K, a.data(), K, b.data(), N, nn.data(), N, false);
                         gemm_nt(M, N, K, a.data(), K, bt.data(), K, nt.data(), N, true);
                         gemm_tn(M, N, K, at.data(), M, b.data(), N, tn.data(), N, true);
                         return Outputs{within("A B", nn, tol), within("C + A B^T", nt, tol),
                                        within("C + A^T B", tn, tol)};
                     }});
}

void add_gemm_cases(std::vector<KernelCase>& cases) {
    Rng rng(15);
    add_gemm_case(cases, rng, 37, 45, 51);
    add_gemm_case(cases, rng, 1, 1, 1);
    add_gemm_case(cases, rng, 1, 65, 17);
    add_gemm_case(cases, rng, 129, 3, 400);
}

/// sgemm_few_rows against what it promises (sgemm_few_rows.hpp): each output's K cut into
/// sgemm's depth blocks, each block summed from zero by fused multiply-adds in k order, the first
/// block's sum written and each later one added; rows of C padded (ldc = N + 2), the padding
/// untouched.
void add_few_rows_case(std::vector<KernelCase>& cases, Rng& rng, int64_t M, int64_t N, int64_t K) {
    const int64_t lda = K + 3, ldb = N + 5, ldc = N + 2;
    const auto A = uniform(M * lda, rng), Bt = uniform(K * ldb, rng), C0 = uniform(M * ldc, rng);
    auto split = [=](const std::vector<float>& c) {
        std::vector<float> values, padding;
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < ldc; ++j) (j < N ? values : padding).push_back(c[i * ldc + j]);
        return Outputs{exact("C", values), exact("padding between rows", padding)};
    };
    cases.push_back({"sgemm_few_rows" + shape_name({{"M", M}, {"N", N}, {"K", K}}),
                     [=] {
                         std::vector<float> c = C0;
                         const int64_t KC = K > 0 ? kernels::detail::sgemm_depth_block(K) : 1;
                         for (int64_t i = 0; i < M; ++i)
                             for (int64_t j = 0; j < N; ++j) {
                                 float& out = c[i * ldc + j];
                                 out = 0.f;
                                 for (int64_t p0 = 0; p0 < K; p0 += KC) {
                                     float acc = 0.f;
                                     for (int64_t k = p0; k < std::min(K, p0 + KC); ++k)
                                         acc = std::fma(A[i * lda + k], Bt[k * ldb + j], acc);
                                     out = p0 == 0 ? acc : out + acc;
                                 }
                             }
                         return split(c);
                     },
                     [=](Isa isa, Variants& taken) {
                         std::vector<float> c = C0;
                         sgemm_few_rows(isa, M, N, K, A.data(), lda, Bt.data(), ldb, c.data(), ldc);
                         // sgemm_few_rows.hpp's split: whole 32-column groups, from 2^16 * 4 MACs.
                         if (num_threads() > 1 && worth_threading(M * N * K / 4) && N > 32)
                             taken.push_back("sgemm_few_rows over 2 threads");
                         return split(c);
                     }});
}

void add_few_rows_cases(std::vector<KernelCase>& cases) {
    Rng rng(31);
    // Columns around the 8-float vectors and the 32-column groups, depths around sgemm's depth
    // blocks (320: one block, 321: two of 161 and 160, 701: three).
    for (int64_t M : {1, 2, 4})
        for (int64_t N : {1, 7, 31, 32, 33, 100, 1000})
            for (int64_t K : {int64_t{1}, int64_t{5}, kSgemmKC, kSgemmKC + 1, 2 * kSgemmKC + 61}) add_few_rows_case(cases, rng, M, N, K);
    add_few_rows_case(cases, rng, 3, 40, 0);  // an empty sum writes zeros
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

/// The name of the direct convolution's tile (conv2d_forward_implicit's choice) for C inputs and
/// Cout outputs.
std::string direct_tile(Isa isa, int64_t c, int64_t cout) {
    if (avx2_is_widest(isa)) return "direct 6x16";
    if (cout > 16) return "direct 14x32";
    return c == 16 ? "direct 28x16, 16 channels" : "direct 28x16";
}

/// The variants conv2d_forward and conv2d_backward take for geometry g on the active path, by
/// conv2d.hpp's own predicates.
Variants conv2d_variants(const Conv2dGeometry& g, Isa isa) {
    const int threads = num_threads();
    const bool vector = has_avx2(isa);
    Variants v;
    if (g.pointwise()) v.push_back("conv2d forward: pointwise GEMM");
    if (kernels::detail::pointwise_in_pixel_shares(g, threads))
        v.push_back("conv2d forward: pointwise GEMM in pixel shares over 2 threads");
    else if (!vector) v.push_back("conv2d forward: im2col + GEMM");
    else if (kernels::detail::direct_conv_applies(isa, g, threads)) v.push_back("conv2d forward: " + direct_tile(isa, g.C, g.Cout));
    else v.push_back("conv2d forward: implicit GEMM");
    if (vector && kernels::detail::input_grad_is_convolution(g)) {
        const Conv2dGeometry gt = conv2d_geometry(g.N, g.OH, g.OW, g.Cout, g.C, g.KH, g.KW, 1, g.KH - 1 - g.pad);
        v.push_back(kernels::detail::direct_conv_applies(isa, gt, threads) ? "input gradient: direct convolution"
                                                                  : "input gradient: implicit-GEMM convolution");
    } else if (!g.pointwise()) {
        v.push_back("input gradient: GEMM and col2im");
    }
    if (kernels::detail::weight_grad_direct_applies(isa, g, threads))
        v.push_back(avx2_is_widest(isa)                        ? "weight gradient: direct 6x16"
                    : g.Cout % 64 == 0                         ? "weight gradient: direct 6x64"
                                                               : "weight gradient: direct 48x8");
    else if (vector && !g.pointwise()) v.push_back("weight gradient: implicit GEMM");
    else if (!g.pointwise()) v.push_back("weight gradient: im2col + GEMM");
    if (threads > 1 && kernels::detail::conv_blocking(g, threads).units >= threads) v.push_back("conv2d: threads over images");
    return v;
}

void add_conv2d_case(std::vector<KernelCase>& cases, Rng& rng, const ConvShape& s, const char* why) {
    const Conv2dGeometry g = s.geometry();
    const auto x = uniform(s.inputs(), rng), wt = uniform(s.weights(), rng), bias = uniform(s.co, rng);
    const auto dout = uniform(s.outputs(), rng);
    // Gradients accumulate onto a non-zero start.
    const auto dx0 = uniform(s.inputs(), rng), dw0 = uniform(s.weights(), rng), db0 = uniform(s.co, rng);
    // Each output's sum: K terms forward, Cout*KH*KW for dx, N*OH*OW for dw and db.
    const double fwd_tol = sum_tolerance(g.K()), dx_tol = sum_tolerance(s.co * s.kh * s.kw);
    const double dw_tol = sum_tolerance(s.n * g.OH * g.OW);
    cases.push_back(
        {"conv2d forward and backward" + s.str() + " (" + why + ")",
         [=] {
             std::vector<float> out(dout.size());
             conv2d_forward_reference(x.data(), wt.data(), bias.data(), out.data(), g);
             std::vector<float> dx = dx0, dw = dw0, db = db0;
             conv2d_backward_definition(x, wt, dout, g, dx, dw, db);
             return Outputs{within("out", out, fwd_tol),         within("dx", dx, dx_tol),
                            within("dw", dw, dw_tol),            within("db", db, dw_tol),
                            within("dx computed alone", dx, dx_tol), within("dw computed alone", dw, dw_tol)};
         },
         [=](Isa isa, Variants& taken) {  // the path is active_isa(), set by the table's IsaGuard
             std::vector<float> out(dout.size(), 7.f);
             conv2d_forward(x.data(), wt.data(), bias.data(), out.data(), g);
             std::vector<float> dx = dx0, dw = dw0, db = db0;
             conv2d_backward(x.data(), wt.data(), dout.data(), dx.data(), dw.data(), db.data(), g);
             // Each gradient alone (null others) takes other branches of the backward.
             std::vector<float> dx_only = dx0, dw_only = dw0;
             conv2d_backward(x.data(), wt.data(), dout.data(), dx_only.data(), nullptr, nullptr, g);
             conv2d_backward(x.data(), wt.data(), dout.data(), nullptr, dw_only.data(), nullptr, g);
             for (std::string& v : conv2d_variants(g, isa)) taken.push_back(std::move(v));
             return Outputs{within("out", out, fwd_tol),         within("dx", dx, dx_tol),
                            within("dw", dw, dw_tol),            within("db", db, dw_tol),
                            within("dx computed alone", dx_only, dx_tol), within("dw computed alone", dw_only, dw_tol)};
         }});
}

void add_conv2d_cases(std::vector<KernelCase>& cases) {
    Rng rng(21);
    add_conv2d_case(cases, rng, {2, 7, 6, 3, 17, 3, 3, 1, 1}, "stem-like: 3 channels, taps shorter than a transpose");
    add_conv2d_case(cases, rng, {3, 9, 8, 20, 33, 3, 3, 1, 1}, "channels across 16-row groups, Cout past a tile");
    add_conv2d_case(cases, rng, {2, 8, 7, 20, 15, 3, 3, 2, 1}, "stride 2: the input gradient takes the column path");
    add_conv2d_case(cases, rng, {2, 6, 6, 16, 40, 1, 1, 2, 0}, "1x1 stride 2, a ResNet shortcut");
    add_conv2d_case(cases, rng, {2, 6, 6, 16, 24, 1, 1, 1, 0}, "1x1 stride 1: x is the column matrix");
    add_conv2d_case(cases, rng, {1, 13, 15, 128, 150, 1, 1, 1, 0}, "1x1 stride 1, batch 1: pixel shares of 97 and 98");
    add_conv2d_case(cases, rng, {1, 9, 9, 5, 6, 5, 5, 1, 2}, "5x5, batch 1: products thread inside sgemm");
    add_conv2d_case(cases, rng, {2, 6, 7, 4, 9, 2, 3, 1, 0}, "non-square kernel, no padding");
    add_conv2d_case(cases, rng, {2, 4, 5, 6, 7, 3, 3, 1, 2}, "padding of kernel - 1");
    add_conv2d_case(cases, rng, {4, 6, 6, 70, 18, 3, 3, 1, 1}, "70 channels: taps cross depth blocks unevenly");
    add_conv2d_case(cases, rng, {10, 30, 30, 64, 8, 3, 3, 2, 1}, "10 images in units of 4 made 4 units of 2 or 3, 5 images a thread");
    // The direct convolution (conv2d_direct.hpp): stride 1, a whole image per thread, rows of at
    // least 16 * pad outputs; for the forward, and for the input gradient run as a convolution
    // with padding kernel - 1 - pad.
    add_conv2d_case(cases, rng, {2, 5, 17, 20, 33, 3, 3, 1, 1}, "direct: 14 x 32 tiles, a partial column panel");
    add_conv2d_case(cases, rng, {3, 4, 16, 6, 9, 3, 3, 1, 1}, "direct: Cout <= 16, 28 x 16 tiles");
    add_conv2d_case(cases, rng, {2, 5, 20, 16, 11, 3, 3, 1, 1}, "direct: Cout <= 16, 28 x 16 tiles with C = 16 known at compile time");
    add_conv2d_case(cases, rng, {2, 6, 18, 4, 40, 3, 3, 1, 0}, "direct: no padding, 2 dropped columns per row");
    add_conv2d_case(cases, rng, {2, 3, 20, 5, 7, 5, 5, 1, 1}, "direct: 5x5");
    add_conv2d_case(cases, rng, {2, 3, 16, 1, 1, 3, 3, 1, 1}, "direct: one channel in, one out");
    add_conv2d_case(cases, rng, {2, 3, 3, 2, 17, 3, 3, 1, 0}, "direct: one output per image, the tile's rows past it");
    add_conv2d_case(cases, rng, {2, 4, 32, 3, 33, 5, 5, 1, 2}, "direct: padding 2 at the narrowest rows it takes");
    add_conv2d_case(cases, rng, {2, 5, 16, 40, 20, 3, 3, 1, 1}, "direct: K = 360, past one depth block");
    add_conv2d_case(cases, rng, {2, 4, 48, 3, 8, 7, 7, 1, 3}, "direct: 7x7, padding 3");
    add_conv2d_case(cases, rng, {2, 6, 33, 6, 10, 3, 3, 1, 0}, "direct input gradient of an unpadded conv (padding 2)");
    add_conv2d_case(cases, rng, {1, 6, 20, 5, 7, 3, 3, 1, 1}, "batch of one: direct on one thread, implicit on two");
    // On AVX2 the weight gradient of rows of at least 8 outputs and receptive fields of at most
    // 576 reads x and dout in place, in chunks of about 64 output pixels
    // (conv2d_weight_grad_direct.hpp).
    add_conv2d_case(cases, rng, {3, 9, 17, 7, 19, 3, 3, 2, 1}, "direct weight gradient: stride 2");
    add_conv2d_case(cases, rng, {5, 3, 10, 9, 17, 3, 3, 1, 1}, "direct weight gradient: two images to a chunk, the last alone");
    add_conv2d_case(cases, rng, {2, 6, 9, 5, 32, 3, 3, 1, 1}, "direct weight gradient: Cout of whole tiles, dout read in place");
    add_conv2d_case(cases, rng, {2, 8, 8, 64, 16, 3, 3, 1, 1}, "direct weight gradient: K = 576, the largest it takes");
    add_conv2d_case(cases, rng, {2, 8, 8, 65, 16, 3, 3, 1, 1}, "K = 585: one channel past the direct weight gradient");
    add_conv2d_case(cases, rng, {2, 5, 21, 16, 9, 6, 6, 2, 2}, "direct weight gradient: K = 576 from a 6x6 kernel, stride 2");
    add_conv2d_case(cases, rng, {2, 3, 70, 2, 5, 3, 3, 1, 0}, "direct weight gradient: rows of 68 outputs, one to a chunk");
    add_conv2d_case(cases, rng, {2, 10, 26, 3, 6, 5, 5, 3, 2}, "direct weight gradient: stride 3");
    add_conv2d_case(cases, rng, {2, 6, 9, 4, 11, 3, 3, 1, 1}, "rows of 9 outputs");
    // On AVX-512 the direct weight gradient takes Cout of whole 64-column tiles.
    add_conv2d_case(cases, rng, {3, 9, 17, 7, 64, 3, 3, 2, 1}, "direct weight gradient 6x64: stride 2, K = 63 past whole tiles");
    add_conv2d_case(cases, rng, {5, 3, 10, 9, 128, 3, 3, 1, 1}, "direct weight gradient 6x64: two column tiles, two images to a chunk");
    add_conv2d_case(cases, rng, {2, 8, 8, 64, 64, 3, 3, 1, 1}, "direct weight gradient 6x64: K = 576, the largest it takes");
    add_conv2d_case(cases, rng, {2, 6, 9, 5, 96, 3, 3, 1, 1}, "Cout = 96, not whole 64-column tiles: implicit GEMM on AVX-512");
    add_conv2d_case(cases, rng, {3, 16, 17, 8, 64, 1, 1, 2, 0}, "direct weight gradient 6x64: 1x1 stride 2, unpadded images read in place");
    // On AVX-512, Cout below 64 with Cin a multiple of 16 takes the 48 x 8 tile (vectors of 16
    // channels of one tap by 8 output channels).
    add_conv2d_case(cases, rng, {3, 9, 17, 16, 16, 3, 3, 1, 1}, "direct weight gradient 48x8: Cout 16, K = 144 in whole tiles");
    add_conv2d_case(cases, rng, {3, 9, 17, 32, 32, 3, 3, 2, 1}, "direct weight gradient 48x8: Cout 32, stride 2");
    add_conv2d_case(cases, rng, {2, 6, 9, 16, 20, 3, 3, 1, 1}, "direct weight gradient 48x8: Cout 20, dout copied to 24 columns");
    add_conv2d_case(cases, rng, {5, 3, 10, 48, 8, 3, 3, 1, 1}, "direct weight gradient 48x8: two images to a chunk, K = 432");
    add_conv2d_case(cases, rng, {2, 5, 21, 16, 9, 2, 2, 1, 1}, "direct weight gradient 48x8: K = 64, rows past K in the last tile");
    add_conv2d_case(cases, rng, {3, 16, 17, 32, 16, 1, 1, 2, 0}, "direct weight gradient 48x8: 1x1 stride 2, unpadded images read in place");
}

// ---- the binary convolution's training pair (binary_conv2d_ste.hpp) -------------------------

/// binary_conv2d_ste_forward and _backward against the binary conv definition (forward, exact) and
/// the float convolution's gradients of the ±1 tensors written out (backward, within rounding):
/// g' = dout * alpha, the input padded with +1 explicitly for one-padding, dx masked by |x| <= 1.
/// The gradients accumulate onto non-zero starts; dx is also overwritten (dx_accumulate false)
/// over a buffer of 7s, every element of which the kernel must write.
void add_binary_conv2d_pair_case(std::vector<KernelCase>& cases, Rng& rng, const ConvShape& s, PadValue mode,
                                 bool with_alpha) {
    const auto x = uniform(s.inputs(), rng, -1.5f, 1.5f), wt = with_zeros(s.weights(), rng);
    const auto alpha = uniform(s.co, rng, 0.5f, 1.f), dout = uniform(s.outputs(), rng);
    const auto dx0 = uniform(s.inputs(), rng), dw0 = uniform(s.weights(), rng), da0 = uniform(s.co, rng);
    const BinaryConvGeometry g = binary_conv_geometry(s.n, s.h, s.w, s.c, s.co, s.kh, s.kw, s.stride, s.pad, mode);
    const int64_t pixels = s.n * s.oh() * s.ow();
    // dx sums Cout*KH*KW products of at most 1, dw N*OH*OW; dalpha N*OH*OW products of at most K.
    const double dx_tol = sum_tolerance(s.co * s.kh * s.kw), dw_tol = sum_tolerance(pixels);
    const double da_tol = sum_tolerance(pixels) * double(s.kh * s.kw * s.c);
    cases.push_back(
        {"binary_conv2d_ste_forward/_backward" + s.str() + pad_value_name(mode) + (with_alpha ? " alpha" : " no alpha"),
         [=] {
             const std::vector<float> dots = binary_conv_definition(x, wt, s, mode);
             std::vector<float> out(dots.size()), gs(dout.size()), da = da0;
             std::vector<double> da_sum(s.co, 0.0);
             for (size_t i = 0; i < dots.size(); ++i) {
                 const int64_t o = static_cast<int64_t>(i) % s.co;
                 out[i] = with_alpha ? dots[i] * alpha[o] : dots[i];
                 gs[i] = with_alpha ? dout[i] * alpha[o] : dout[i];
                 da_sum[o] += double(dout[i]) * double(dots[i]);
             }
             for (int64_t o = 0; o < s.co; ++o) da[o] = static_cast<float>(da[o] + da_sum[o]);
             // The ±1 input, explicitly padded with +1 for one-padding (then convolved unpadded).
             const int64_t p = mode == PadValue::One ? s.pad : 0, hp = s.h + 2 * p, wp = s.w + 2 * p;
             std::vector<float> xs(s.n * hp * wp * s.c, 1.f), ws(wt.size());
             for (int64_t n = 0; n < s.n; ++n)
                 for (int64_t i = 0; i < s.h; ++i)
                     for (int64_t j = 0; j < s.w * s.c; ++j)
                         xs[((n * hp + i + p) * wp + p) * s.c + j] = sign_of(x[((n * s.h + i) * s.w) * s.c + j]);
             for (size_t i = 0; i < wt.size(); ++i) ws[i] = sign_of(wt[i]);
             const Conv2dGeometry fg = conv2d_geometry(s.n, hp, wp, s.c, s.co, s.kh, s.kw, s.stride, s.pad - p);
             std::vector<float> dxs(xs.size(), 0.f), dw = dw0, db(s.co, 0.f);
             conv2d_backward_definition(xs, ws, gs, fg, dxs, dw, db);
             std::vector<float> dx = dx0, dx_alone(x.size());
             for (int64_t n = 0; n < s.n; ++n)
                 for (int64_t i = 0; i < s.h; ++i)
                     for (int64_t j = 0; j < s.w * s.c; ++j) {
                         const int64_t at = ((n * s.h + i) * s.w) * s.c + j;
                         const float d = std::abs(x[at]) <= 1.f ? dxs[((n * hp + i + p) * wp + p) * s.c + j] : 0.f;
                         dx[at] += d;
                         dx_alone[at] = d;
                     }
             return Outputs{exact("out", out),       exact("out, the scale fused", out), exact("dot", dots),
                            within("dx", dx, dx_tol), within("dx overwritten", dx_alone, dx_tol),
                            within("dw", dw, dw_tol), within("dalpha", da, da_tol)};
         },
         [=](Isa, Variants&) {  // the path is active_isa(), set by the table's IsaGuard
             const float* a = with_alpha ? alpha.data() : nullptr;
             std::vector<float> out(dout.size(), 7.f), dots(dout.size(), 7.f), out_alone(dout.size(), 7.f);
             binary_conv2d_ste_forward(x.data(), wt.data(), a, out.data(), dots.data(), g);
             binary_conv2d_ste_forward(x.data(), wt.data(), a, out_alone.data(), nullptr, g);
             std::vector<float> dx = dx0, dx_alone(x.size(), 7.f), dw = dw0, da = da0;
             binary_conv2d_ste_backward(x.data(), wt.data(), a, dots.data(), dout.data(), dx.data(), true, dw.data(),
                                    da.data(), g);
             binary_conv2d_ste_backward(x.data(), wt.data(), a, nullptr, dout.data(), dx_alone.data(), false, nullptr,
                                    nullptr, g);
             return Outputs{exact("out", out),       exact("out, the scale fused", out_alone), exact("dot", dots),
                            within("dx", dx, dx_tol), within("dx overwritten", dx_alone, dx_tol),
                            within("dw", dw, dw_tol), within("dalpha", da, da_tol)};
         }});
}

void add_binary_conv2d_pair_cases(std::vector<KernelCase>& cases) {
    Rng rng(57);
    // Channels around the 64-bit words, both strides, Cout around the tiles, each padding mode.
    const ConvShape shapes[] = {
        {2, 5, 6, 9, 4, 3, 3, 1, 1},    {1, 7, 5, 65, 33, 3, 3, 2, 1}, {2, 4, 4, 3, 5, 1, 1, 1, 0},
        {3, 6, 7, 20, 17, 3, 3, 1, 1},  {2, 8, 8, 64, 16, 3, 3, 1, 1},  {1, 5, 9, 7, 9, 2, 3, 2, 2},
    };
    for (const ConvShape& s : shapes)
        for (PadValue mode : {PadValue::Zero, PadValue::One}) {
            if (mode == PadValue::One && s.pad == 0) continue;
            add_binary_conv2d_pair_case(cases, rng, s, mode, true);
        }
    add_binary_conv2d_pair_case(cases, rng, {2, 5, 6, 9, 4, 3, 3, 1, 1}, PadValue::Zero, false);
    add_binary_conv2d_pair_case(cases, rng, {2, 5, 6, 9, 4, 3, 3, 1, 1}, PadValue::One, false);
}

/// conv2d_forward_few_channels (the gathered-field packing of conv2d_few_channels.hpp on the
/// vector paths, conv2d_forward otherwise) against the naive convolution.
void add_few_channels_case(std::vector<KernelCase>& cases, Rng& rng, const ConvShape& s) {
    const Conv2dGeometry g = s.geometry();
    const auto x = uniform(s.inputs(), rng), wt = uniform(s.weights(), rng), bias = uniform(s.co, rng);
    const double tol = sum_tolerance(g.K());
    cases.push_back({"conv2d_forward_few_channels" + s.str(),
                     [=] {
                         std::vector<float> out(s.outputs());
                         conv2d_forward_reference(x.data(), wt.data(), bias.data(), out.data(), g);
                         return Outputs{within("out", out, tol)};
                     },
                     [=](Isa isa, Variants& taken) {  // the path is active_isa(), set by the table's IsaGuard
                         std::vector<float> out(s.outputs(), 7.f);
                         conv2d_forward_few_channels(x.data(), wt.data(), bias.data(), out.data(), g);
                         if (has_avx2(isa) && !g.pointwise())
                             taken.push_back(kernels::detail::direct_conv_applies(isa, g, num_threads()) && g.K() > kSgemmKC
                                                 ? "few channels: conv2d_forward's direct convolution"
                                                 : "few channels: gathered fields");
                         return Outputs{within("out", out, tol)};
                     }});
}

void add_few_channels_cases(std::vector<KernelCase>& cases) {
    Rng rng(41);
    const ConvShape shapes[] = {
        {2, 9, 11, 3, 16, 7, 7, 2, 3},  // the ImageNet stem, small
        {2, 8, 8, 3, 17, 3, 3, 1, 1},   // the CIFAR stem, Cout past a tile
        {1, 7, 5, 1, 5, 3, 3, 1, 1},    // one channel, a batch of one
        {3, 6, 7, 2, 33, 5, 5, 2, 2},   // two channels
        {2, 5, 5, 4, 8, 1, 1, 1, 0},    // 1x1 stride 1: conv2d_forward itself
        {1, 20, 20, 3, 40, 7, 7, 2, 3}, // 100 output pixels, several row panels
        {2, 12, 12, 3, 64, 3, 3, 1, 1}, // 144 pixels per image
        {2, 6, 80, 4, 20, 9, 9, 1, 4},  // K = 324, rows wide enough for conv2d_forward's direct path
    };
    for (const ConvShape& s : shapes) add_few_channels_case(cases, rng, s);
}

/// max_pool2d_forward with the winners recorded (training) and without (inference, null taps)
/// against a window scan written here: padding never wins, the first maximum keeps its tap.
/// Values on a coarse grid, ±0 included, so that windows hold ties.
void add_max_pool_case(std::vector<KernelCase>& cases, Rng& rng, const PoolGeometry& g) {
    std::vector<float> x = uniform(g.N * g.H * g.W * g.C, rng, -2.f, 2.f);
    for (auto& v : x) v = std::nearbyint(v * 2.f) / 2.f;
    const int64_t outputs = g.N * g.OH * g.OW * g.C;
    cases.push_back(
        {"max_pool2d_forward" + shape_name({{"N", g.N}, {"H", g.H}, {"W", g.W}, {"C", g.C}, {"k", g.k},
                                             {"stride", g.stride}, {"pad", g.pad}}),
         [=] {
             std::vector<uint64_t> taps;
             const std::vector<float> y = max_pool_definition(x, g, &taps);
             return Outputs{exact("y", y), exact("taps", taps), exact("y without taps", y)};
         },
         [=](Isa, Variants& taken) {
             std::vector<float> y(outputs, 7.f), y_only(outputs, 7.f);
             std::vector<int32_t> t(outputs, -1);
             max_pool2d_forward(x.data(), y.data(), t.data(), g);
             max_pool2d_forward(x.data(), y_only.data(), nullptr, g);
             if (num_threads() > 1 && worth_threading(outputs)) taken.push_back("max pool over 2 threads");
             return Outputs{exact("y", y), exact("taps", std::vector<uint64_t>(t.begin(), t.end())),
                            exact("y without taps", y_only)};
         }});
}

void add_max_pool_cases(std::vector<KernelCase>& cases) {
    Rng rng(43);
    for (const PoolGeometry& g : {
             PoolGeometry::make(2, 7, 9, 17, 3, 2, 1),   // the ResNet stem's pool, odd sizes
             PoolGeometry::make(1, 5, 5, 1, 2, 2, 0),    // one channel, the last row and column unused
             PoolGeometry::make(3, 6, 11, 33, 3, 1, 1),  // stride 1: overlapping windows
             PoolGeometry::make(1, 4, 7, 5, 4, 3, 2),    // k 4, padding 2 on both sides
             PoolGeometry::make(2, 3, 3, 16, 3, 3, 1),   // one window per image, padded all round
             PoolGeometry::make(2, 34, 34, 64, 3, 1, 1), // large enough for threads
             PoolGeometry::make(1, 5, 6, 83, 3, 2, 1),   // 64 + 16 + 3 channels: every part of a row's channel loop
         })
        add_max_pool_case(cases, rng, g);
}

/// channel_gate_mlp (the Real-to-Bin gate's two products and sigmoid) against the same sums in
/// double. Its products keep 64 and then 16 outputs in registers and sum the rest in memory: the
/// widths below take each part. w1 is scaled by 1 / Cin so the hidden values stay in [-1, 1],
/// the range sum_tolerance assumes for the second product's terms.
void add_channel_gate_case(std::vector<KernelCase>& cases, Rng& rng, int64_t n, int64_t cin, int64_t hd,
                           int64_t cout) {
    const auto pooled = uniform(n * cin, rng), w2t = uniform(hd * cout, rng);
    auto w1t = uniform(cin * hd, rng);
    for (float& v : w1t) v /= static_cast<float>(cin);
    cases.push_back(
        {"channel_gate_mlp" + shape_name({{"N", n}, {"Cin", cin}, {"hidden", hd}, {"Cout", cout}}),
         [=] {
             std::vector<float> hidden(n * hd), gate(n * cout);
             for (int64_t s = 0; s < n; ++s) {
                 std::vector<double> h(hd, 0.0);
                 for (int64_t j = 0; j < hd; ++j) {
                     for (int64_t c = 0; c < cin; ++c) h[j] += double(w1t[c * hd + j]) * pooled[s * cin + c];
                     hidden[s * hd + j] = static_cast<float>(h[j]);
                 }
                 for (int64_t o = 0; o < cout; ++o) {
                     double z = 0.0;
                     for (int64_t j = 0; j < hd; ++j) z += double(w2t[j * cout + o]) * std::max(h[j], 0.0);
                     gate[s * cout + o] = static_cast<float>(1.0 / (1.0 + std::exp(-z)));
                 }
             }
             return Outputs{within("hidden", hidden, sum_tolerance(cin)), within("gate", gate, sum_tolerance(hd))};
         },
         [=](Isa, Variants&) {
             std::vector<float> hidden(n * hd, 7.f), gate(n * cout, 7.f);
             channel_gate_mlp(pooled.data(), w1t.data(), w2t.data(), hidden.data(), gate.data(), n, cin, hd, cout);
             return Outputs{within("hidden", hidden, sum_tolerance(cin)), within("gate", gate, sum_tolerance(hd))};
         }});
}

void add_channel_gate_cases(std::vector<KernelCase>& cases) {
    Rng rng(47);
    add_channel_gate_case(cases, rng, 2, 70, 80, 100);   // hidden 64 + 16; Cout 64 + 2 * 16 + 4
    add_channel_gate_case(cases, rng, 1, 512, 64, 512);  // the gate of a 512-channel ResNet-18 block
    add_channel_gate_case(cases, rng, 3, 9, 5, 17);      // under one vector; 16 + 1
}

}  // namespace

TEST_CASE("every kernel equals its reference on every ISA path, awkward shapes", "[kernels]") {
    const std::vector<Isa> paths = paths_to_test();
    std::vector<KernelCase> cases;
    add_bitpack_cases(cases);
    add_batch_norm_sign_cases(cases);
    add_binary_conv_cases(cases);
    add_planned_conv_cases(cases);
    add_bn_sign_pack_cases(cases);
    add_u8s16_cases(cases);
    add_linear_int8_cases(cases);
    add_sgemm_cases(cases);
    add_gemm_cases(cases);
    add_few_rows_cases(cases);
    add_conv2d_cases(cases);
    add_few_channels_cases(cases);
    add_binary_conv2d_pair_cases(cases);
    add_max_pool_cases(cases);
    add_channel_gate_cases(cases);
    const Reached reached = check_table(cases, paths);
    // Every shape-chosen variant was reached on every path that ran: the shapes above still do
    // what their comments say.
    require_variants_reached(reached, paths);
}

TEST_CASE("BNN_REQUIRE_ISA turns a path the CPU lacks from a warning into a failure", "[kernels][isa]") {
    auto no_avx512 = [](Isa isa) { return isa == Isa::scalar || isa == Isa::avx2; };  // an AVX2 CPU
    const std::vector<Isa> lacking = {Isa::avx2_vnni, Isa::avx512, Isa::avx512_vpopcntdq, Isa::neon, Isa::neon_dotprod};
    const PathPlan warned = plan_paths("", no_avx512);
    REQUIRE(warned.run == std::vector<Isa>{Isa::scalar, Isa::avx2});
    REQUIRE(warned.missing == lacking);
    REQUIRE(warned.missing_required.empty());
    for (const char* required : {"avx512", "avx2,avx512", " avx512 , scalar"}) {
        INFO("BNN_REQUIRE_ISA=" << required);
        const PathPlan failed = plan_paths(required, no_avx512);
        REQUIRE(failed.run == std::vector<Isa>{Isa::scalar, Isa::avx2});
        REQUIRE(failed.missing_required == std::vector<Isa>{Isa::avx512});
        REQUIRE(failed.missing == std::vector<Isa>{Isa::avx2_vnni, Isa::avx512_vpopcntdq, Isa::neon, Isa::neon_dotprod});
    }
    const PathPlan all = plan_paths("all", no_avx512);
    REQUIRE(all.missing_required == lacking);
    REQUIRE(all.missing.empty());
    // Requiring paths the CPU has changes nothing.
    REQUIRE(plan_paths("avx2", no_avx512).missing == lacking);
    REQUIRE(plan_paths("all", [](Isa) { return true; }).run == kAllIsas);
    REQUIRE_THROWS_AS(plan_paths("avx512,sse9", no_avx512), Error);
}

TEST_CASE("ISA dispatch lists the paths, parses names and forces a path", "[kernels][isa]") {
    auto isas = available_isas();
    REQUIRE(!isas.empty());
    REQUIRE(isas.front() == Isa::scalar);
    REQUIRE(isa_supported(active_isa()));
#if defined(__aarch64__)
    REQUIRE(isas.size() >= 2);
    REQUIRE(isas[1] == Isa::neon);  // NEON is every aarch64 CPU's
    for (Isa isa : isas) REQUIRE((isa == Isa::scalar || has_neon(isa)));
#elif BNN_X86
    REQUIRE(!isa_supported(Isa::neon));
    REQUIRE(!isa_supported(Isa::neon_dotprod));
    for (Isa isa : isas) REQUIRE((isa == Isa::scalar || has_avx2(isa)));
#endif
    REQUIRE(parse_isa("avx2") == Isa::avx2);
    for (Isa isa : kIsas) REQUIRE(parse_isa(isa_name(isa)) == isa);
    REQUIRE_THROWS_AS(parse_isa("sse9"), Error);
    for (Isa isa : isas) {
        IsaGuard guard(isa);
        REQUIRE(active_isa() == isa);
    }
}

TEST_CASE("kernels refuse a path the CPU lacks", "[kernels][isa]") {
    int refused = 0;
    for (Isa isa : kAllIsas) {
        if (isa_supported(isa)) continue;
        float x = 0;
        REQUIRE_THROWS_AS(sgemm(isa, false, false, 1, 1, 1, &x, 1, &x, 1, &x, 1, false), Error);
        REQUIRE_THROWS_AS(set_isa(isa), Error);
        ++refused;
    }
    if (refused == 0) BNN_SKIP("this CPU has every path, so none can be refused");
}

namespace {

/// The integer stem's dots and floats on one path.
struct U8S16Run {
    std::vector<int32_t> dots;
    std::vector<float> out;
};

/// The integer stem of shape s (ImageNet's mean and std, weights and image drawn from `seed`) on
/// each (path, threads) of `runs`.
std::vector<U8S16Run> u8s16_runs(const ConvShape& s, uint64_t seed, const std::vector<std::pair<Isa, int>>& runs,
                                 int32_t weight_max = u8s16_weight_max) {
    Rng rng(seed);
    const std::vector<float> w = uniform(s.weights(), rng, -.5f, .5f), bias = uniform(s.co, rng, -1.f, 1.f);
    const std::vector<float> mean = {.485f, .456f, .406f}, stdev = {.229f, .224f, .225f};
    std::vector<uint8_t> x(s.inputs());
    for (uint8_t& v : x) v = static_cast<uint8_t>(rng.below(256));
    const U8S16ConvWeights q =
        quantize_conv2d_u8s16(w.data(), bias.data(), s.co, s.kh, s.kw, s.c, mean.data(), stdev.data(), weight_max);
    U8S16ConvPlan plan;
    plan_conv2d_u8s16(q, s.geometry(), plan);
    ThreadCountGuard restore;
    std::vector<U8S16Run> out;
    for (const auto& [isa, threads] : runs) {
        IsaGuard guard(isa);
        set_num_threads(threads);
        U8S16Run& r = out.emplace_back();
        r.dots.assign(s.outputs(), -1);
        r.out.assign(s.outputs(), std::nanf(""));
        conv2d_u8s16_dots(x.data(), q, s.geometry(), r.dots.data());
        conv2d_u8s16_forward(x.data(), q, plan, r.out.data());
    }
    return out;
}

/// Dots and floats of `got` that differ from `want` in any bit.
int64_t u8s16_elements_off(const U8S16Run& want, const U8S16Run& got) {
    int64_t off = 0;
    for (size_t i = 0; i < want.dots.size(); ++i)
        off += got.dots[i] != want.dots[i] ||
               std::bit_cast<uint32_t>(got.out[i]) != std::bit_cast<uint32_t>(want.out[i]);
    return off;
}

}  // namespace

TEST_CASE("the integer stem's AVX-512 dot products agree bit for bit", "[kernels][isa]") {
    // The table runs both on their paths; this names the one a CPU cannot test.
    if (!isa_supported(Isa::avx512)) BNN_SKIP("this CPU lacks AVX-512: neither AVX-512 tile of the integer stem is tested");
    if (!isa_supported(Isa::avx512_vpopcntdq))
        BNN_SKIP("this CPU lacks AVX512_VNNI or VPOPCNTDQ: the integer stem's vpdpwssd tile is not tested");
    const ConvShape s{2, 19, 17, 3, 80, 7, 7, 2, 3};  // 5 channel blocks: a tile of 4 and one of 1
    const auto runs = u8s16_runs(s, 92, {{Isa::scalar, 1}, {Isa::avx512, 1}, {Isa::avx512_vpopcntdq, 1}});
    INFO(s.outputs() << " outputs");
    REQUIRE(u8s16_elements_off(runs[0], runs[1]) == 0);  // vpmaddwd + vpaddd
    REQUIRE(u8s16_elements_off(runs[0], runs[2]) == 0);  // vpdpwssd
}

TEST_CASE("the integer stems' AVX-VNNI tiles equal the scalar path bit for bit on the ImageNet stem", "[kernels][isa]") {
    // The table runs the avx2_vnni path on awkward shapes; this is the real stem at full size, int16
    // weights (vpdpwssd) and int8 weights (vpdpbusd on the image bytes).
    if (!isa_supported(Isa::avx2_vnni))
        BNN_SKIP("this CPU lacks AVX-VNNI: the integer stems' vpdpwssd and vpdpbusd tiles on ymm are not tested");
    const ConvShape s{1, 224, 224, 3, 64, 7, 7, 2, 3};  // 224x224x3 -> 112x112x64
    for (const int32_t weight_max : {u8s16_weight_max, u8s8_weight_max}) {
        INFO("weights quantised to +-" << weight_max);
        const auto runs = u8s16_runs(s, 94, {{Isa::scalar, 1}, {Isa::avx2_vnni, 1}, {Isa::avx2_vnni, 2}}, weight_max);
        REQUIRE(u8s16_elements_off(runs[0], runs[1]) == 0);
        REQUIRE(u8s16_elements_off(runs[0], runs[2]) == 0);
    }
}

TEST_CASE("the integer stem's NEON tile equals the scalar path bit for bit on the ImageNet stem", "[kernels][isa]") {
    // The table runs the NEON path on awkward shapes; this is the real stem at full size.
    if (!isa_supported(Isa::neon))
        BNN_SKIP("this CPU is not aarch64: the integer stem's NEON tile is tested under qemu (scripts/test_aarch64.sh)");
    const ConvShape s{1, 224, 224, 3, 64, 7, 7, 2, 3};  // 224x224x3 -> 112x112x64
    const auto runs = u8s16_runs(s, 93, {{Isa::scalar, 1}, {Isa::neon, 1}, {Isa::neon, 2}});
    INFO(s.outputs() << " outputs");
    REQUIRE(u8s16_elements_off(runs[0], runs[1]) == 0);
    REQUIRE(u8s16_elements_off(runs[0], runs[2]) == 0);
}

// ---- bit packing and the XNOR conv's checks ------------------------------------------------

namespace {
using bnn::test::random_with_zeros;
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

TEST_CASE("binary conv rejects bad shapes with bnn::Error", "[binary_conv]") {
    Rng rng(1);
    BitTensor xb = pack_signs(Tensor<float>::uniform(Shape{1, 4, 4, 10}, rng, -1.f, 1.f));
    auto packed = kernels::pack_conv_weights(Tensor<float>::uniform(Shape{6, 3, 3, 10}, rng, -1.f, 1.f));
    auto wrong_c = kernels::pack_conv_weights(Tensor<float>::uniform(Shape{6, 3, 3, 11}, rng, -1.f, 1.f));
    auto too_big = kernels::pack_conv_weights(Tensor<float>::uniform(Shape{6, 7, 7, 10}, rng, -1.f, 1.f));
    REQUIRE_THROWS_WITH(kernels::binary_conv2d(xb, wrong_c, {}, {}, 1, 1), Catch::Contains("11"));
    REQUIRE_THROWS_AS(kernels::binary_conv2d(xb, too_big, {}, {}, 1, 1), Error);
    REQUIRE_THROWS_AS(kernels::binary_conv2d(xb, packed, {}, {}, 0, 1), Error);
    REQUIRE_THROWS_AS(kernels::binary_conv2d(xb, packed, {}, {}, 1, -1), Error);
    REQUIRE_THROWS_AS(kernels::binary_conv2d(xb, packed, Tensor<float>(Shape{5}), {}, 1, 1), Error);
    REQUIRE_THROWS_AS(kernels::binary_conv2d(pack_signs(Tensor<float>(Shape{4, 4, 10})), packed, {}, {}, 1, 1), Error);
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


TEST_CASE("kernels that promise another kernel's floats give them", "[kernels][sgemm]") {
    ThreadCountGuard restore;
    const std::vector<Isa> paths = paths_to_test();
    Rng rng(31);
    // sgemm_few_rows gives sgemm's floats on the paths with packed micro-kernels
    // (sgemm_few_rows.hpp): an inference graph's classifier may take either. On NEON, where it
    // runs its plain code, this also checks that sgemm sums in sgemm.hpp's order.
    const int64_t depths[] = {1, 5, kSgemmKC, kSgemmKC + 1, 2 * kSgemmKC + 61};
    for (Isa isa : kPackedSgemmIsas) {
        if (!contains(paths, isa)) continue;
        for (int threads : {1, 2}) {
            set_num_threads(threads);
            for (int64_t M : {1, 2, 4})
                for (int64_t N : {1, 7, 31, 32, 33, 100, 1000})
                    for (int64_t K : depths) {
                        INFO(isa_name(isa) << ", " << threads << " thread(s): M " << M << " N " << N << " K " << K);
                        const int64_t lda = K + 3, ldb = N + 5, ldc = N + 2;
                        const auto A = uniform(M * lda, rng), Bt = uniform(K * ldb, rng);
                        std::vector<float> few(M * ldc, -7.f), full(M * ldc, -7.f);
                        sgemm_few_rows(isa, M, N, K, A.data(), lda, Bt.data(), ldb, few.data(), ldc);
                        sgemm(isa, false, false, M, N, K, A.data(), lda, Bt.data(), ldb, full.data(), ldc, false);
                        int64_t differing = 0;
                        for (int64_t i = 0; i < M * ldc; ++i)
                            differing += std::bit_cast<uint32_t>(few[i]) != std::bit_cast<uint32_t>(full[i]);
                        REQUIRE(differing == 0);
                    }
        }
    }
    // conv2d_forward_few_channels gives conv2d_forward's floats (conv2d_few_channels.hpp): the
    // integer-free stem of an inference graph equals the training op. The last two take
    // conv2d_forward's direct convolution over more than one depth block (K = 324 and 484).
    const ConvShape shapes[] = {
        {2, 9, 11, 3, 16, 7, 7, 2, 3}, {2, 8, 8, 3, 17, 3, 3, 1, 1},   {1, 7, 5, 1, 5, 3, 3, 1, 1},
        {3, 6, 7, 2, 33, 5, 5, 2, 2},  {2, 4, 48, 3, 8, 7, 7, 1, 3},   {1, 20, 20, 3, 40, 7, 7, 2, 3},
        {2, 6, 80, 4, 20, 9, 9, 1, 4}, {2, 3, 100, 4, 7, 11, 11, 1, 5},
    };
    for (Isa isa : paths)
        for (int threads : {1, 2})
            for (const ConvShape& s : shapes) {
                INFO(isa_name(isa) << ", " << threads << " thread(s):" << s.str());
                set_num_threads(threads);
                IsaGuard guard(isa);
                const Conv2dGeometry g = s.geometry();
                const auto x = uniform(s.inputs(), rng), wt = uniform(s.weights(), rng), bias = uniform(s.co, rng);
                std::vector<float> few(s.outputs(), 7.f), plain(s.outputs(), -7.f);
                conv2d_forward_few_channels(x.data(), wt.data(), bias.data(), few.data(), g);
                conv2d_forward(x.data(), wt.data(), bias.data(), plain.data(), g);
                int64_t differing = 0;
                for (int64_t i = 0; i < s.outputs(); ++i)
                    differing += std::bit_cast<uint32_t>(few[i]) != std::bit_cast<uint32_t>(plain[i]);
                REQUIRE(differing == 0);
            }
    // A batch-1 pointwise conv2d_forward gives one thread's floats on two on the packed-sgemm
    // paths: a pixel share sums as one thread does (conv2d.hpp, pointwise_in_pixel_shares). The
    // scalar path promises nothing of the kind: Eigen's threaded GEMM picks its blocking from the
    // thread count (on aarch64 the 7x7 shape differs between 1 and 2 threads).
    const ConvShape pointwise[] = {{1, 13, 15, 128, 150, 1, 1, 1, 0}, {1, 14, 14, 128, 256, 1, 1, 1, 0},
                                   {1, 7, 7, 256, 512, 1, 1, 1, 0}};
    for (Isa isa : kPackedSgemmIsas) {
        if (!contains(paths, isa)) continue;
        for (const ConvShape& s : pointwise) {
            INFO(isa_name(isa) << ":" << s.str());
            IsaGuard guard(isa);
            const Conv2dGeometry g = s.geometry();
            const auto x = uniform(s.inputs(), rng), wt = uniform(s.weights(), rng), bias = uniform(s.co, rng);
            std::vector<float> one(s.outputs(), 7.f), two(s.outputs(), -7.f);
            set_num_threads(1);
            conv2d_forward(x.data(), wt.data(), bias.data(), one.data(), g);
            set_num_threads(2);
            conv2d_forward(x.data(), wt.data(), bias.data(), two.data(), g);
            int64_t differing = 0;
            for (int64_t i = 0; i < s.outputs(); ++i)
                differing += std::bit_cast<uint32_t>(one[i]) != std::bit_cast<uint32_t>(two[i]);
            REQUIRE(differing == 0);
        }
    }
}
