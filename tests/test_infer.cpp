// infer/: the fused steps against the training kernels, and infer::compile on a ResNet-18 built
// from the library's blocks and on three other architectures (each trained a few steps): logits
// against the training model's eval mode, through deployment files too, and no allocation in
// steady state.
#include <catch2/catch.hpp>

#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <string>
#include <vector>

#include "bnn/autograd/grad_mode.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/infer/compile.hpp"
#include "bnn/infer/fused_steps.hpp"
#include "bnn/infer/module_registry.hpp"
#include "bnn/io/deploy.hpp"
#include "bnn/kernels/batch_norm.hpp"
#include "bnn/losses/cross_entropy.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/channel_shift.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/pool.hpp"
#include "bnn/nn/sequential.hpp"
#include "bnn/nn/activation.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/ops/elementwise.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/train/train_step.hpp"
#include "same_bits.hpp"
#include "temp_dir.hpp"

// ---- a counting allocator: every operator new and every aligned_alloc (Tensor storage) -------
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
std::atomic<long> g_allocated_bytes{0};
void note_allocation(std::size_t bytes = 0) {
    if (!g_counting.load(std::memory_order_relaxed)) return;
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    g_allocated_bytes.fetch_add(static_cast<long>(bytes), std::memory_order_relaxed);
}
void* checked(void* p) {
    if (!p) throw std::bad_alloc();
    return p;
}
}  // namespace

void* operator new(std::size_t n) {
    note_allocation(n);
    return checked(std::malloc(n ? n : 1));
}
void* operator new[](std::size_t n) {
    note_allocation(n);
    return checked(std::malloc(n ? n : 1));
}
void* operator new(std::size_t n, std::align_val_t a) {
    note_allocation(n);
    return checked(memalign(static_cast<std::size_t>(a), n ? n : 1));
}
void* operator new[](std::size_t n, std::align_val_t a) {
    note_allocation(n);
    return checked(memalign(static_cast<std::size_t>(a), n ? n : 1));
}
// The nothrow forms too, so that every operator new of the program pairs with the free below
// (AddressSanitizer reports a sanitizer-runtime new freed by free as a mismatch).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    note_allocation(n);
    return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    note_allocation(n);
    return std::malloc(n ? n : 1);
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    note_allocation(n);
    return memalign(static_cast<std::size_t>(a), n ? n : 1);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    note_allocation(n);
    return memalign(static_cast<std::size_t>(a), n ? n : 1);
}
// GCC cannot see that these operator new replacements call malloc, and warns on the free.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop
// Tensor storage comes from std::aligned_alloc: this definition takes the program's calls.
extern "C" void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept {
    note_allocation(size);
    return memalign(alignment, size);
}

using namespace bnn;

namespace {

enum class BinaryVariant { StrongBaseline, RealToBin };

// ResNet-18 (binary variants) from the library's blocks, with the example's layout and names:
// stem (conv, BN, ReLU [, max pool]), block1..block8, pool, fc.
std::shared_ptr<nn::Sequential> resnet18(BinaryVariant v, bool imagenet, int64_t width, int64_t classes) {
    auto net = std::make_shared<nn::Sequential>();
    auto stem = net->push_back("stem", std::make_shared<nn::Sequential>());
    if (imagenet)
        stem->add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = width, .kernel_size = 7, .stride = 2, .padding = 3});
    else
        stem->add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = width, .padding = 1});
    stem->add<nn::BatchNorm2d>(width);
    stem->add<nn::ReLU>();
    if (imagenet) stem->add<nn::MaxPool2d>(3, 2, 1);
    int64_t in = width;
    for (int b = 0; b < 8; ++b) {
        const int64_t out = width << (b / 2);
        net->push_back("block" + std::to_string(b + 1),
                       std::make_shared<nn::BinaryBasicBlock>(nn::BinaryHalfBlockOptions{
                           .in_channels = in,
                           .out_channels = out,
                           .stride = (b > 0 && b % 2 == 0) ? 2 : 1,
                           .scale = v == BinaryVariant::RealToBin ? nn::BlockScale::Gate : nn::BlockScale::Learned,
                           .mode = nn::BinaryMode::FullyBinary}));
        in = out;
    }
    net->push_back("pool", std::make_shared<nn::GlobalAvgPool>());
    net->push_back("fc", std::make_shared<nn::Linear>(in, classes));
    return net;
}

// Moves every per-channel quantity away from its initial value, as training would: BN running
// statistics, gammas of both signs (a few exactly zero), betas, PReLU slopes, learned scales,
// the classifier bias. Latent binary weights and the gates keep their (random) initialisation.
void randomise_statistics_and_scales(nn::Module& net, uint64_t seed) {
    Rng rng(seed);
    for (auto& [name, b] : net.named_buffers()) {
        if (name.ends_with("running_mean"))
            for (float& v : b) v = rng.normal(0.f, 0.5f);
        if (name.ends_with("running_var"))
            for (float& v : b) v = rng.uniform(0.3f, 2.f);
    }
    for (auto& [name, p] : net.named_parameters()) {
        Tensor<float> t = p.value();
        if (t.rank() != 1) continue;
        for (float& v : t) v = rng.normal(0.3f, 0.7f);
        if (name.ends_with("bn.weight")) t[0] = 0.f;  // gamma = 0: the sign is the sign of beta alone
    }
    net.eval();
}

Tensor<float> eval_logits(nn::Module& net, const Tensor<float>& x) {
    NoGradGuard no_tape;
    return net.forward(Variable(x)).value().clone();
}

int64_t argmax_row(const Tensor<float>& t, int64_t n) {
    const int64_t k = t.dim(1);
    int64_t best = 0;
    for (int64_t j = 1; j < k; ++j)
        if (t[n * k + j] > t[n * k + best]) best = j;
    return best;
}

// The tolerance is zero: every fused step performs the training ops' float operations in the
// same order (the BN output is computed, not folded into a threshold; the conv epilogue applies
// alpha, G, PReLU and the add one IEEE operation at a time), so the logits are the same floats.
// Zero matters: a single rounding difference in the residual stream could flip a sign at the
// next binarisation and change the logits by far more than an ulp.
void require_same_logits(const Tensor<float>& got, const Tensor<float>& expected) {
    REQUIRE(got.shape() == expected.shape());
    int64_t differing = 0;
    for (int64_t i = 0; i < got.numel(); ++i) differing += got[i] != expected[i];
    INFO("logits differing: " << differing << " of " << got.numel());
    REQUIRE(differing == 0);
    for (int64_t n = 0; n < got.dim(0); ++n) REQUIRE(argmax_row(got, n) == argmax_row(expected, n));
}

// Allocations of one graph.run(x) after a first one (float images, or bytes for an integer stem).
template <class Pixel>
long steady_state_allocations(infer::Graph& graph, const Tensor<Pixel>& x) {
    graph.run(x);
    g_allocations = 0;
    g_counting = true;
    graph.run(x);
    g_counting = false;
    return g_allocations.load();
}

}  // namespace

namespace {
// AddressSanitizer keeps freed blocks in quarantine and serves new ones from fresh pages, so under
// it page faults say nothing about the library's reuse of memory (g++ defines the macro; clang
// answers __has_feature).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
constexpr bool kAddressSanitizer = __has_feature(address_sanitizer);
#else
constexpr bool kAddressSanitizer = false;
#endif

long minor_faults() {
    rusage r{};
    getrusage(RUSAGE_SELF, &r);
    return r.ru_minflt;
}
}  // namespace

TEST_CASE("the binary conv op and layer in a loop allocate nothing that grows with the data and fault no page in",
          "[inference]") {
    // Activations of MBs: before the kernel kept its padded bits and pixel plan between calls,
    // each call allocated ~400 KB afresh and page-faulted ~34 times.
    Rng rng(8);
    const int64_t C = GENERATE(64, 256), HW = C == 64 ? 32 : 8, N = 16;
    const auto pad = GENERATE(nn::PadValue::Zero, nn::PadValue::One);
    nn::BinaryConv2d conv({.in_channels = C, .out_channels = C, .pad_value = pad, .mode = nn::BinaryMode::FullyBinary});
    conv.eval();
    const Tensor<float> x = Tensor<float>::randn({N, HW, HW, C}, rng);
    const Variable w(conv.weight.value(), false);
    NoGradGuard no_tape;
    for (int i = 0; i < 3; ++i) conv.forward(Variable(x));
    for (bool layer : {true, false}) {
        const int calls = 10;
        g_allocated_bytes = 0;
        const long faults_before = minor_faults();
        g_counting = true;
        for (int i = 0; i < calls; ++i) {
            if (layer)
                conv.forward(Variable(x));
            else
                ops::binary_conv2d(Variable(x), w, Variable(), 1, 1);
        }
        g_counting = false;
        const long faults = minor_faults() - faults_before;
        INFO((layer ? "layer" : "op") << ", C = " << C << ": " << g_allocated_bytes / calls << " bytes allocated and "
                                      << faults << " minor faults in " << calls << " calls");
        // What is left are small blocks: shapes, the Variable, the packed weights (C = 64).
        REQUIRE(g_allocated_bytes / calls < 16 * 1024);
        if (!kAddressSanitizer) REQUIRE(faults < calls);
    }
}

TEST_CASE("bn_sign_pack packs sign(BN(x)) as the training ops and sums the gate's means", "[inference]") {
    // Each split: rows (the conv walks pixels outermost), whole words and half words (it shares
    // out channel blocks); serial and threaded; the second word of a pixel partial.
    struct Case {
        int64_t N, H, W, C, Cout;
        bool pixel_major;
    };
    const int threads_before = num_threads();
    for (Case k : {Case{2, 3, 5, 70, 4, true}, Case{2, 17, 29, 70, 4, true}, Case{2, 17, 29, 70, 256, false},
                   Case{1, 33, 33, 64, 480, false}}) {
        const int64_t N = k.N, H = k.H, W = k.W, C = k.C;
        Rng rng(5);
        Tensor<float> gamma = Tensor<float>::randn({C}, rng), beta = Tensor<float>::randn({C}, rng, 0.f, 0.5f);
        Tensor<float> mean = Tensor<float>::randn({C}, rng), var = Tensor<float>::uniform({C}, rng, 0.2f, 3.f);
        gamma[3] = 0.f;
        gamma[4] = -0.f;
        Tensor<float> x = Tensor<float>::randn({N, H, W, C}, rng);
        // Inputs sitting on (or next to) each channel's zero crossing x = -beta'/gamma'.
        infer::FrozenBatchNorm bn(gamma.data(), beta.data(), mean.data(), var.data(), C, 1e-5f);
        for (int64_t c = 0; c < C; ++c)
            if (bn.scale[c] != 0.f) {
                const float t = -bn.shift[c] / bn.scale[c];
                x[c] = t;
                x[C + c] = std::nextafter(t, 1e30f);
                x[2 * C + c] = std::nextafter(t, -1e30f);
            }
        Tensor<float> h(Shape{N, H, W, C});
        kernels::batch_norm_eval_forward(x.data(), gamma.data(), beta.data(), mean.data(), var.data(), h.data(),
                                         N * H * W, C, 1e-5f);
        // The gate's order: each image row from its first pixel, then the rows.
        Tensor<float> expected(Shape{N, C});
        for (int64_t n = 0; n < N; ++n)
            for (int64_t c = 0; c < C; ++c) {
                float s = 0.f;
                for (int64_t i = 0; i < H; ++i) {
                    float row = 0.f;
                    for (int64_t j = 0; j < W; ++j) row += h[((n * H + i) * W + j) * C + c];
                    s += row;
                }
                expected[n * C + c] = s / float(H * W);
            }
        kernels::PackedConvWeights w = kernels::pack_conv_weights(Tensor<float>::randn({k.Cout, 3, 3, C}, rng));
        for (kernels::Isa isa : kernels::available_isas())
            for (int threads : {1, 2}) {
                INFO(kernels::isa_name(isa) << ", " << threads << " threads, N=" << N << " H=" << H << " W=" << W
                                            << " C=" << C << " Cout=" << k.Cout);
                set_num_threads(threads);
                kernels::PlannedBinaryConv step(w, 1, 1, N, H, W, isa);
                REQUIRE(step.pixel_major() == k.pixel_major);
                Tensor<float> pooled(Shape{N, C});
                infer::bn_sign_pack(x.data(), N, H, W, C, bn, step, pooled.data(), isa);
                bool bits_ok = true;
                for (int64_t n = 0; n < N; ++n)
                    for (int64_t i = 0; i < H; ++i)
                        for (int64_t j = 0; j < W; ++j) {
                            const uint64_t* bits = step.input_pixel(n, i, j);
                            for (int64_t c = 0; c < C; ++c) {
                                const bool plus = h[((n * H + i) * W + j) * C + c] >= 0.f;
                                bits_ok = bits_ok && ((bits[c / 64] >> (c % 64)) & 1) == uint64_t(plus);
                            }
                            if (C % 64) bits_ok = bits_ok && (bits[C / 64] >> (C % 64)) == 0;  // bits past C stay zero
                        }
                REQUIRE(bits_ok);
                for (int64_t i = 0; i < N * C; ++i) REQUIRE(pooled[i] == expected[i]);
            }
    }
    set_num_threads(threads_before);
}

TEST_CASE("kernels::PlannedBinaryConv equals binary_conv2d followed by the unfused transform", "[inference]") {
    Rng rng(9);
    for (auto [H, W, C, Cout, stride] : {std::tuple{5, 7, 3, 5, 1}, std::tuple{6, 6, 64, 40, 2},
                                         std::tuple{4, 9, 130, 33, 1}}) {
        const int64_t N = 2;
        kernels::PackedConvWeights w = kernels::pack_conv_weights(Tensor<float>::randn({Cout, 3, 3, C}, rng));
        Tensor<float> x = Tensor<float>::randn({N, H, W, C}, rng);
        Tensor<float> alpha = Tensor<float>::randn({Cout}, rng), slope = Tensor<float>::randn({Cout}, rng);
        for (kernels::Isa isa : kernels::available_isas()) {
            INFO(kernels::isa_name(isa) << " H=" << H << " W=" << W << " C=" << C << " Cout=" << Cout);
            kernels::PlannedBinaryConv step(w, stride, 1, N, H, W, isa);
            const auto& g = step.geometry();
            Tensor<float> gate = Tensor<float>::uniform({N, Cout}, rng);
            Tensor<float> residual = Tensor<float>::randn({N, g.OH, g.OW, Cout}, rng);
            Tensor<float> ref = kernels::binary_conv2d(pack_signs(x), w, alpha, {}, stride, 1, kernels::PadValue::Zero, isa);
            const int64_t per_image = g.OH * g.OW * Cout;
            for (int64_t i = 0; i < ref.numel(); ++i) {
                float y = ref[i] * gate[(i / per_image) * Cout + i % Cout];
                y = y > 0.f ? y : slope[i % Cout] * y;
                ref[i] = y + residual[i];
            }
            for (int64_t n = 0; n < N; ++n)
                for (int64_t i = 0; i < H; ++i)
                    for (int64_t j = 0; j < W; ++j)
                        kernels::pack_signs(x.data() + ((n * H + i) * W + j) * C, 1, C, nullptr, nullptr,
                                            step.input_pixel(n, i, j), isa);
            Tensor<float> out = residual.clone();  // in place over the residual, as identity shortcuts do
            step.run({alpha.data(), gate.data(), slope.data(), out.data()}, out.data());
            for (int64_t i = 0; i < ref.numel(); ++i) REQUIRE(out[i] == ref[i]);
        }
    }
}

TEST_CASE("ResNet-18 from the library's blocks: compiled logits equal eval mode on every path", "[infer]") {
    for (BinaryVariant v : {BinaryVariant::RealToBin, BinaryVariant::StrongBaseline}) {
        for (int threads : {1, 2}) {
            INFO((v == BinaryVariant::RealToBin ? "real-to-bin" : "strong baseline") << ", threads " << threads);
            set_num_threads(threads);
            manual_seed(11);
            auto net = resnet18(v, false, 8, 5);
            randomise_statistics_and_scales(*net, 12);
            infer::Graph graph = infer::compile(*net, Shape{1, 8, 8, 3});
            Rng rng(13);
            for (int64_t batch : {1, 4}) {
                Tensor<float> x = Tensor<float>::randn({batch, 8, 8, 3}, rng);
                require_same_logits(graph.run(x), eval_logits(*net, x));
            }
            for (kernels::Isa isa : kernels::available_isas()) {
                INFO(kernels::isa_name(isa));
                kernels::IsaGuard guard(isa);
                infer::Graph on_path = infer::compile(*net, Shape{3, 8, 8, 3});
                Tensor<float> x = Tensor<float>::randn({3, 8, 8, 3}, rng);
                require_same_logits(on_path.run(x), eval_logits(*net, x));
            }
        }
    }
    set_num_threads(2);
}

TEST_CASE("ResNet-18 (width 64): compiled logits equal eval mode, CIFAR and ImageNet stems", "[infer][resnet18]") {
    for (bool imagenet : {false, true}) {
        INFO((imagenet ? "imagenet" : "cifar"));
        manual_seed(21);
        auto net = resnet18(BinaryVariant::RealToBin, imagenet, 64, 10);
        randomise_statistics_and_scales(*net, 22);
        const int64_t side = imagenet ? 224 : 32;
        Rng rng(23);
        Tensor<float> x = Tensor<float>::randn({imagenet ? 1 : 2, side, side, 3}, rng);
        infer::Graph graph = infer::compile(*net, x.shape());
        require_same_logits(graph.run(x), eval_logits(*net, x));
        // The fused half-blocks: 16 binary conv steps, no batch norm left of them; the three
        // shortcuts' pool, 1x1 conv and batch norm one step each.
        INFO(graph.summary());
        REQUIRE(graph.summary().find("BN+sign pack, gate, alpha, PReLU, residual") != std::string::npos);
        REQUIRE(graph.summary().find("shortcut.0") == std::string::npos);  // the pool
        REQUIRE(graph.summary().find("shortcut.2") == std::string::npos);  // the batch norm
        REQUIRE(graph.summary().find("block7.half1.shortcut.1  float conv [avg pool, BN]") != std::string::npos);
    }
}

TEST_CASE("a 1x1 conv with the average pool before it and the batch norm after it fused equals eval mode",
          "[infer]") {
    // Large enough to share its pixels over two threads (and to take more than one pooled chunk
    // per thread), and small with odd sizes, a batch, a bias and every activation.
    struct Case {
        int64_t n, h, w, c, co;
        int pool;  // window and stride; 0: no pool
        bool bias;
    };
    const Case cases[] = {{1, 112, 112, 64, 128, 2, false}, {3, 15, 13, 5, 7, 2, true}, {2, 9, 9, 6, 11, 3, true},
                          {1, 10, 12, 16, 24, 0, true}};
    const int threads_before = num_threads();
    for (const Case& c : cases)
        for (int act = 0; act < 3; ++act) {  // none, ReLU, PReLU
            manual_seed(91);
            nn::Sequential net;
            if (c.pool) net.add<nn::AvgPool2d>(c.pool);
            net.add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = c.c, .out_channels = c.co, .kernel_size = 1,
                                                  .stride = 1, .padding = 0, .bias = c.bias});
            net.add<nn::BatchNorm2d>(c.co);
            if (act == 1) net.add<nn::ReLU>();
            if (act == 2) net.add<nn::PReLU>(c.co);
            randomise_statistics_and_scales(net, 92);
            net.eval();
            Rng rng(93);
            const Tensor<float> x = Tensor<float>::randn({c.n, c.h, c.w, c.c}, rng);
            for (int threads : {1, 2})
                for (kernels::Isa isa : kernels::available_isas()) {
                    set_num_threads(threads);
                    kernels::IsaGuard guard(isa);
                    const Tensor<float> expected = eval_logits(net, x);
                    infer::Graph graph = infer::compile(net, x.shape());
                    INFO(kernels::isa_name(isa) << ", " << threads << " thread(s)\n" << graph.summary());
                    REQUIRE(graph.num_steps() == 1);
                    const std::string fused = c.pool ? "[avg pool, BN" : "[BN";
                    REQUIRE(graph.summary().find(fused + (act == 0 ? "]" : act == 1 ? ", ReLU]" : ", PReLU]")) !=
                            std::string::npos);
                    REQUIRE(test::bits_equal(graph.run(x), expected));
                }
        }
    set_num_threads(threads_before);
    // A padded average pool counts its zeros and a max pool is another op: both stay steps of their own.
    for (bool max : {false, true}) {
        nn::Sequential net;
        if (max) net.add<nn::MaxPool2d>(2);
        else net.add<nn::AvgPool2d>(3, 2, 1);
        net.add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 4, .out_channels = 4, .kernel_size = 1, .stride = 1,
                                              .padding = 0, .bias = false});
        net.eval();
        Rng rng(94);
        const Tensor<float> x = Tensor<float>::randn({1, 6, 6, 4}, rng);
        infer::Graph graph = infer::compile(net, x.shape());
        INFO(graph.summary());
        REQUIRE(graph.num_steps() == 2);
        const Tensor<float> expected = eval_logits(net, x);
        const Tensor<float>& got = graph.run(x);
        for (int64_t i = 0; i < got.numel(); ++i) REQUIRE(got[i] == expected[i]);
    }
}

TEST_CASE("int8 dense layers: a fused 1x1 conv and a Linear equal linear_int8_rows between the float ops",
          "[infer][int8]") {
    // The kernel's own definition is the kernel table's (test_kernels.cpp); here the graph must
    // give its floats whatever the pool fusion, the pixel shares, the path and the threads.
    struct Case {
        int64_t n, h, w, c, co;
        int pool;  // window and stride; 0: no pool
        bool bias;
    };
    const Case cases[] = {{1, 56, 56, 64, 128, 2, false}, {3, 15, 13, 5, 7, 2, true}, {1, 10, 12, 16, 24, 0, true}};
    const int threads_before = num_threads();
    const infer::CompileOptions int8{.dense = infer::DensePrecision::int8};
    for (const Case& c : cases)
        for (int act = 0; act < 3; ++act) {  // none, ReLU, PReLU
            manual_seed(95);
            nn::Sequential before, after, net;
            if (c.pool) net.push_back(before.push_back(std::make_shared<nn::AvgPool2d>(c.pool)));
            auto conv = net.add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = c.c, .out_channels = c.co,
                                                              .kernel_size = 1, .stride = 1, .padding = 0,
                                                              .bias = c.bias});
            net.push_back(after.push_back(std::make_shared<nn::BatchNorm2d>(c.co)));
            if (act == 1) net.push_back(after.push_back(std::make_shared<nn::ReLU>()));
            if (act == 2) net.push_back(after.push_back(std::make_shared<nn::PReLU>(c.co)));
            randomise_statistics_and_scales(net, 96);
            net.eval();
            before.eval();
            after.eval();
            Rng rng(97);
            const Tensor<float> x = Tensor<float>::randn({c.n, c.h, c.w, c.c}, rng);
            const Tensor<float> pooled = c.pool ? eval_logits(before, x) : x;
            const int64_t pixels = pooled.numel() / c.c;
            const kernels::Int8LinearWeights q = kernels::quantize_linear_int8(
                conv->weight.value().data(), c.bias ? conv->bias.value().data() : nullptr, c.co, c.c);
            Tensor<float> y = Tensor<float>::empty(Shape{pooled.dim(0), pooled.dim(1), pooled.dim(2), c.co});
            kernels::linear_int8_rows(pooled.data(), pixels, q, y.data(), kernels::Isa::scalar);
            const Tensor<float> expected = eval_logits(after, y);
            for (int threads : {1, 2})
                for (kernels::Isa isa : kernels::available_isas()) {
                    set_num_threads(threads);
                    kernels::IsaGuard guard(isa);
                    infer::Graph graph = infer::compile(net, x.shape(), int8);
                    INFO(kernels::isa_name(isa) << ", " << threads << " thread(s)\n" << graph.summary());
                    REQUIRE(graph.num_steps() == 1);
                    REQUIRE(graph.summary().find("int8 conv [" + std::string(c.pool ? "avg pool, " : "") +
                                                 "int8 weights and rows") != std::string::npos);
                    REQUIRE(test::bits_equal(graph.run(x), expected));
                }
        }
    set_num_threads(threads_before);
    // A Linear (the classifier), batch 1 and 5.
    manual_seed(98);
    nn::Sequential net;
    auto fc = net.add<nn::Linear>(300, 70, true);
    net.eval();
    Rng rng(99);
    for (int64_t batch : {1, 5}) {
        const Tensor<float> x = Tensor<float>::randn({batch, 300}, rng);
        const kernels::Int8LinearWeights q =
            kernels::quantize_linear_int8(fc->weight.value().data(), fc->bias.value().data(), 70, 300);
        Tensor<float> expected = Tensor<float>::empty(Shape{batch, 70});
        kernels::linear_int8_rows(x.data(), batch, q, expected.data(), kernels::Isa::scalar);
        for (kernels::Isa isa : kernels::available_isas()) {
            kernels::IsaGuard guard(isa);
            infer::Graph graph = infer::compile(net, x.shape(), int8);
            INFO(kernels::isa_name(isa) << ", batch " << batch << "\n" << graph.summary());
            REQUIRE(graph.summary().find("int8 linear") != std::string::npos);
            REQUIRE(test::bits_equal(graph.run(x), expected));
        }
    }
}

TEST_CASE("ResNet-18 through a deployment file: rebuilt without its code, same logits", "[infer][deploy]") {
    manual_seed(31);
    auto net = resnet18(BinaryVariant::RealToBin, false, 16, 7);
    randomise_statistics_and_scales(*net, 32);
    bnn::test::TempDir dir;
    const std::string path = dir.file("r2b.deploy.safetensors");
    io::save_deployed(path, *net, {{"classes", "7"}});
    io::Deployed d = io::load_deployed(path);
    REQUIRE(d.metadata.at("classes") == "7");
    Rng rng(33);
    Tensor<float> x = Tensor<float>::randn({3, 16, 16, 3}, rng);
    infer::Graph graph = infer::compile(*d.model, x.shape());
    require_same_logits(graph.run(x), eval_logits(*net, x));
    require_same_logits(eval_logits(*d.model, x), eval_logits(*net, x));
}

TEST_CASE("a deployment file loads and compiles without its binary weights as floats", "[infer][deploy][alloc]") {
    // A float per binary weight is what the file saved 32x on: loading rebuilt them as ±1 floats
    // (after latent weights of the same size) until the graph packed them again. Now the file's
    // bits go straight into the packed layout, so everything the load and compile allocate
    // together (the file read and parsed, the float layers, the packed weights, the plan) stays
    // below half of what the binary weights alone took as floats. (The strong baseline: no gates,
    // whose float weights would count against the bound too.)
    manual_seed(35);
    auto net = resnet18(BinaryVariant::StrongBaseline, false, 64, 5);
    randomise_statistics_and_scales(*net, 36);
    int64_t binary_weights = 0;
    for (const auto& [path, m] : net->named_modules())
        if (const auto* conv = dynamic_cast<const nn::BinaryConv2d*>(m)) binary_weights += conv->weight.value().numel();
    bnn::test::TempDir dir;
    const std::string path = dir.file("r2b64.deploy.safetensors");
    io::save_deployed(path, *net);
    const Shape input{1, 8, 8, 3};
    const size_t cache_limit = bnn::detail::BlockCache::instance().limit();
    bnn::detail::BlockCache::instance().set_limit(0);  // every Tensor block from the allocator, so counted
    g_allocated_bytes = 0;
    g_counting = true;
    io::Deployed d = io::load_deployed(path);
    infer::Graph graph = infer::compile(*d.model, input);
    g_counting = false;
    bnn::detail::BlockCache::instance().set_limit(cache_limit);
    INFO(binary_weights << " binary weights; the load and compile allocated " << g_allocated_bytes.load() << " bytes");
    REQUIRE(g_allocated_bytes.load() < binary_weights * static_cast<int64_t>(sizeof(float)) / 2);
    // The same logits as the trained model (and so as the load that rebuilt the floats).
    Rng rng(37);
    const Tensor<float> x = Tensor<float>::randn(input, rng);
    require_same_logits(graph.run(x), eval_logits(*net, x));
    // Saved again from its packed signs, the loaded network writes the same file.
    const std::string again = dir.file("again.deploy.safetensors");
    io::save_deployed(again, *d.model);
    REQUIRE(read_file(again) == read_file(path));
}

TEST_CASE("packing a conv's weights from their sign bits equals packing the floats", "[infer][deploy]") {
    Rng rng(38);
    for (const auto& [cout, k, cin] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {5, 3, 63}, {33, 3, 64}, {40, 1, 65}, {7, 5, 130}}) {
        INFO("Cout " << cout << ", k " << k << ", Cin " << cin);
        Tensor<float> w = Tensor<float>::randn({cout, k, k, cin}, rng);
        w[0] = 0.f;
        w[1 % w.numel()] = -0.f;
        const kernels::PackedConvWeights from_floats = kernels::pack_conv_weights(w);
        const kernels::PackedConvWeights from_bits = kernels::pack_conv_weights(pack_signs(w));
        REQUIRE(from_bits.words.shape() == from_floats.words.shape());
        REQUIRE(std::equal(from_bits.words.begin(), from_bits.words.end(), from_floats.words.begin()));
        REQUIRE(std::equal(from_bits.tap_sums.begin(), from_bits.tap_sums.end(), from_floats.tap_sums.begin()));
        REQUIRE((from_bits.cout == cout && from_bits.kh == k && from_bits.kw == k && from_bits.cin == cin));
        const BitTensor back = kernels::conv_weight_signs(from_bits);  // and back
        REQUIRE(back.shape() == w.shape());
        REQUIRE(std::equal(back.words().begin(), back.words().end(), pack_signs(w).words().begin()));
    }
}

TEST_CASE("a deployed binary conv: signs only, refused in real-weight modes, its file's stray bits an error",
          "[infer][deploy]") {
    nn::BinaryConv2dOptions o{.in_channels = 70, .out_channels = 3, .mode = nn::BinaryMode::FullyBinary,
                              .scale = nn::WeightScale::Folded, .deployed = true};
    nn::BinaryConv2d conv(o);
    REQUIRE_FALSE(conv.weight.defined());
    REQUIRE(conv.named_parameters().size() == 1);  // alpha
    REQUIRE_THROWS_WITH(conv.set_mode(nn::BinaryMode::BinaryActivations), Catch::Contains("no real weights"));
    REQUIRE_THROWS_WITH(conv.weight_signs(), Catch::Contains("never set"));
    o.scale = nn::WeightScale::MeanAbs;
    REQUIRE_THROWS_WITH(nn::BinaryConv2d(o), Catch::Contains("WeightScale::Folded"));
    Tensor<uint64_t> words(Shape{3 * 9, 2});
    words[1] = uint64_t{1} << 6;  // channel 70: past the 70 channels (0..69)
    REQUIRE_THROWS_WITH(BitTensor(Shape{3, 3, 3, 70}, words), Catch::Contains("bits set past its 70 channels"));
    words[1] = uint64_t{1} << 5;  // channel 69
    conv.set_weight_signs(BitTensor(Shape{3, 3, 3, 70}, words));
    REQUIRE(conv.packed_weights().words.data() == conv.packed_weights().words.data());  // shared with graphs
    REQUIRE(std::equal(words.begin(), words.end(), conv.weight_signs().words().begin()));
    REQUIRE(conv.weight_signs().sign_at(0, 69) == 1);
    REQUIRE(conv.weight_signs().sign_at(0, 68) == -1);
}

TEST_CASE("a steady-state compiled call allocates nothing", "[infer][alloc]") {
    manual_seed(41);
    auto net = resnet18(BinaryVariant::RealToBin, true, 16, 10);
    randomise_statistics_and_scales(*net, 42);
    infer::Graph graph = infer::compile(*net, Shape{2, 64, 64, 3});  // then re-planned for each batch
    Rng rng(43);
    for (int64_t batch : {1, 3}) {
        INFO("batch " << batch);
        Tensor<float> x = Tensor<float>::randn({batch, 64, 64, 3}, rng);
        g_allocations = 0;
        g_counting = true;
        graph.run(x);  // re-plans for this shape
        g_counting = false;
        REQUIRE(g_allocations.load() > 0);  // the hook works: planning does allocate
        Tensor<float> expected = graph.run(x).clone();
        REQUIRE(steady_state_allocations(graph, x) == 0);
        const Tensor<float>& again = graph.run(x);
        for (int64_t i = 0; i < again.numel(); ++i) REQUIRE(again[i] == expected[i]);
        require_same_logits(again, eval_logits(*net, x));
    }
}

TEST_CASE("a steady-state compiled call of real 3x3 convs allocates nothing", "[infer][alloc]") {
    // Wide rows and a batch of at least the thread count: on AVX-512 the direct convolution.
    manual_seed(45);
    nn::Sequential net;
    net.add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 16, .padding = 1});
    net.add<nn::BatchNorm2d>(16);
    net.add<nn::ReLU>();
    net.add<nn::BasicBlock>(nn::BasicBlockOptions{.in_channels = 16, .out_channels = 16});
    net.add<nn::GlobalAvgPool>();
    net.add<nn::Linear>(16, 3);
    randomise_statistics_and_scales(net, 46);
    Rng rng(47);
    Tensor<float> x = Tensor<float>::randn({2, 32, 32, 3}, rng);
    infer::Graph graph = infer::compile(net, x.shape());
    REQUIRE(steady_state_allocations(graph, x) == 0);
    require_same_logits(graph.run(x), eval_logits(net, x));
}

TEST_CASE("infer::compile names the module path of what does not fit", "[infer]") {
    manual_seed(51);
    auto net = resnet18(BinaryVariant::RealToBin, false, 8, 5);
    net->eval();
    REQUIRE_THROWS_WITH(infer::compile(*net, Shape{1, 8, 8, 4}), Catch::Contains("stem.0") && Catch::Contains("[N, H, W, 3]"));
    REQUIRE_THROWS_WITH(infer::compile(*net, Shape{1, 6, 6, 3}), Catch::Contains("block5.half1"));
    // Input channels that do not match inside the network.
    nn::Sequential bad;
    bad.add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 8, .padding = 1});
    bad.add<nn::BinaryConv2d>(nn::BinaryConv2dOptions{.in_channels = 16, .out_channels = 8, .mode = nn::BinaryMode::FullyBinary});
    bad.eval();
    REQUIRE_THROWS_WITH(infer::compile(bad, Shape{1, 8, 8, 3}), Catch::Contains("'1'") && Catch::Contains("16"));
    // A module whose forward the compiler cannot see.
    struct Opaque : nn::Module {
        Variable forward(const Variable& x) override { return x; }
        std::string type_name() const override { return "Opaque"; }
    };
    nn::Sequential opaque;
    opaque.add<Opaque>();
    opaque.eval();
    REQUIRE_THROWS_WITH(infer::compile(opaque, Shape{1, 8, 8, 3}), Catch::Contains("'0' is a Opaque"));
    nn::Sequential training;
    training.add<nn::ReLU>();
    REQUIRE_THROWS_WITH(infer::compile(training, Shape{1, 2, 2, 1}), Catch::Contains("eval()"));
}

// ---- three architectures that are not ResNet-18, each trained a few steps ---------------------

namespace {

// A VGG-style stack: float stem, then BN -> binary conv -> PReLU blocks with max pooling, a
// Flatten and a Linear head; Learned, MeanAbs and None scales and one-padding mixed in.
std::shared_ptr<nn::Module> vgg_style() {
    auto net = std::make_shared<nn::Sequential>();
    net->add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 16, .padding = 1, .bias = true});
    net->add<nn::BatchNorm2d>(16);
    net->add<nn::ReLU>();
    auto binary = [&](int64_t in, int64_t out, nn::WeightScale scale, nn::PadValue pad) {
        net->add<nn::BatchNorm2d>(in);
        net->add<nn::BinaryConv2d>(nn::BinaryConv2dOptions{
            .in_channels = in, .out_channels = out, .pad_value = pad, .mode = nn::BinaryMode::FullyBinary, .scale = scale});
        net->add<nn::PReLU>(out);
    };
    binary(16, 32, nn::WeightScale::Learned, nn::PadValue::Zero);
    net->add<nn::MaxPool2d>(2);
    binary(32, 32, nn::WeightScale::MeanAbs, nn::PadValue::One);
    net->add<nn::MaxPool2d>(2);
    binary(32, 64, nn::WeightScale::None, nn::PadValue::Zero);
    net->add<nn::AvgPool2d>(4);
    net->add<nn::Flatten>();
    net->add<nn::Linear>(64, 4);
    return net;
}

// Bi-Real-style: single skips around each BN -> binary conv, no gate, no PReLU: a Residual whose
// body ends in the binary conv (the add fuses into its epilogue), and one ending in a BN.
std::shared_ptr<nn::Module> bireal_style() {
    auto net = std::make_shared<nn::Sequential>();
    net->add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 32, .padding = 1});
    net->add<nn::BatchNorm2d>(32);
    for (int i = 0; i < 3; ++i) {
        auto body = std::make_shared<nn::Sequential>();
        body->add<nn::BatchNorm2d>(32);
        body->add<nn::BinaryConv2d>(nn::BinaryConv2dOptions{.in_channels = 32, .out_channels = 32,
                                                            .mode = nn::BinaryMode::FullyBinary});
        if (i == 2) body->add<nn::BatchNorm2d>(32);
        net->add<nn::Residual>(body);
    }
    net->add<nn::Hardtanh>();
    net->add<nn::GlobalAvgPool>();
    net->add<nn::Linear>(32, 4);
    return net;
}

// Gates and a stride-2 binary conv: half-blocks with explicit gate widths, a strided one with its
// Downsample shortcut, a real BasicBlock, and a standalone stride-2 binary conv.
std::shared_ptr<nn::Module> gated_strided() {
    auto net = std::make_shared<nn::Sequential>();
    net->add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 16, .padding = 1});
    net->add<nn::BatchNorm2d>(16);
    net->add<nn::PReLU>(16);
    net->add<nn::BinaryHalfBlock>(nn::BinaryHalfBlockOptions{
        .in_channels = 16, .out_channels = 16, .scale = nn::BlockScale::Gate, .gate_hidden = 4, .mode = nn::BinaryMode::FullyBinary});
    net->add<nn::BinaryHalfBlock>(nn::BinaryHalfBlockOptions{
        .in_channels = 16, .out_channels = 32, .stride = 2, .scale = nn::BlockScale::Gate, .gate_hidden = 3,
        .mode = nn::BinaryMode::FullyBinary});
    net->add<nn::BasicBlock>(nn::BasicBlockOptions{.in_channels = 32, .out_channels = 32});
    net->add<nn::BatchNorm2d>(32);
    net->add<nn::BinaryConv2d>(nn::BinaryConv2dOptions{.in_channels = 32, .out_channels = 48, .stride = 2,
                                                       .mode = nn::BinaryMode::FullyBinary, .scale = nn::WeightScale::Learned});
    net->add<nn::GlobalAvgPool>();
    net->add<nn::Linear>(48, 4);
    return net;
}

// Within float rounding, and the same top-1.
void require_close_logits(const Tensor<float>& got, const Tensor<float>& expected) {
    REQUIRE(got.shape() == expected.shape());
    for (int64_t i = 0; i < got.numel(); ++i)
        REQUIRE(std::abs(got[i] - expected[i]) <= 1e-5f * std::max(1.f, std::abs(expected[i])));
    for (int64_t n = 0; n < got.dim(0); ++n) REQUIRE(argmax_row(got, n) == argmax_row(expected, n));
}

}  // namespace

TEST_CASE("infer::compile takes networks that are not ResNet-18, trained, and their deployment files", "[infer][deploy]") {
    struct Arch {
        const char* name;
        std::shared_ptr<nn::Module> (*make)();
    };
    bnn::test::TempDir dir;
    for (const Arch& a : {Arch{"vgg-style", vgg_style}, Arch{"bi-real-style", bireal_style},
                          Arch{"gated, stride 2", gated_strided}}) {
        INFO(a.name);
        manual_seed(61);
        auto net = a.make();
        // A few training steps, so BN statistics, scales and slopes move off their initial values.
        optim::Adam opt(net->parameters(), {.lr = 0.01f});
        Rng rng(62);
        for (int step = 0; step < 4; ++step) {
            train::StepBatch batch{Tensor<float>::randn({8, 16, 16, 3}, rng), {0, 1, 2, 3, 3, 2, 1, 0}, {}};
            train::train_step(*net, opt, batch);
        }
        net->eval();
        Tensor<float> x = Tensor<float>::randn({5, 16, 16, 3}, rng);
        const Tensor<float> expected = eval_logits(*net, x);
        infer::Graph graph = infer::compile(*net, x.shape());
        INFO(graph.summary());
        require_close_logits(graph.run(x), expected);
        REQUIRE(steady_state_allocations(graph, x) == 0);

        const std::string path = dir.file(std::string(a.name) + ".deploy.safetensors");
        io::save_deployed(path, *net);
        io::Deployed d = io::load_deployed(path);
        infer::Graph from_file = infer::compile(*d.model, x.shape());
        require_close_logits(from_file.run(x), expected);
    }
}

TEST_CASE("infer::compile runs binary convs in their real-weight modes as eval mode does", "[infer]") {
    for (nn::BinaryMode mode : {nn::BinaryMode::SoftActivations, nn::BinaryMode::BinaryActivations}) {
        manual_seed(71);
        auto net = gated_strided();
        nn::set_binary_mode(*net, mode);
        randomise_statistics_and_scales(*net, 72);
        Rng rng(73);
        Tensor<float> x = Tensor<float>::randn({2, 12, 12, 3}, rng);
        infer::Graph graph = infer::compile(*net, x.shape());
        require_close_logits(graph.run(x), eval_logits(*net, x));
        // Half-blocks with the learned scale (PReLU of x * alpha per channel) in the same mode.
        auto baseline = resnet18(BinaryVariant::StrongBaseline, false, 8, 5);
        nn::set_binary_mode(*baseline, mode);
        randomise_statistics_and_scales(*baseline, 74);
        Tensor<float> xb = Tensor<float>::randn({2, 8, 8, 3}, rng);
        require_close_logits(infer::compile(*baseline, xb.shape()).run(xb), eval_logits(*baseline, xb));
    }
}

TEST_CASE("deployment files: unknown types or options and tensors that do not fit are errors naming the path",
          "[infer][deploy]") {
    manual_seed(81);
    auto net = gated_strided();
    net->eval();
    bnn::test::TempDir dir;
    const std::string good = dir.file("good.safetensors");
    io::save_deployed(good, *net);
    io::SafetensorsFile f = io::load_safetensors(good);
    auto rewrite = [&](const std::string& name, const std::string& from, const std::string& to) {
        io::Metadata m = f.metadata;
        const auto at = m["module_tree"].find(from);
        REQUIRE(at != std::string::npos);
        m["module_tree"].replace(at, from.size(), to);
        const std::string p = dir.file(name);
        io::save_safetensors(p, f.tensors, m);
        return p;
    };
    REQUIRE_THROWS_WITH(io::load_deployed(rewrite("type.st", "\"BasicBlock\"", "\"FancyBlock\"")),
                        Catch::Contains("'5'") && Catch::Contains("unknown module type"));
    REQUIRE_THROWS_WITH(io::load_deployed(rewrite("option.st", "\"gate_hidden\"", "\"gate_width\"")),
                        Catch::Contains("'3'") && Catch::Contains("gate_hidden"));
    REQUIRE_THROWS_WITH(io::load_deployed(rewrite("shape.st", "\"out_channels\":48", "\"out_channels\":40")),
                        Catch::Contains("'7.sign_bits'"));
    REQUIRE_THROWS_WITH(io::load_deployed(rewrite("json.st", "{", "[")), Catch::Contains("module_tree"));
    io::NamedTensors fewer(f.tensors.begin() + 1, f.tensors.end());
    const std::string missing = dir.file("missing.st");
    io::save_safetensors(missing, fewer, f.metadata);
    REQUIRE_THROWS_WITH(io::load_deployed(missing), Catch::Contains("missing tensor '" + f.tensors.front().first + "'"));
    io::NamedTensors more = f.tensors;
    more.emplace_back("extra.weight", Tensor<float>(Shape{2}));
    const std::string extra = dir.file("extra.st");
    io::save_safetensors(extra, more, f.metadata);
    REQUIRE_THROWS_WITH(io::load_deployed(extra), Catch::Contains("'extra.weight' belongs to no module"));
    // Not fully binary: refused at export.
    nn::set_binary_mode(*net, nn::BinaryMode::BinaryActivations);
    REQUIRE_THROWS_WITH(io::save_deployed(dir.file("soft.st"), *net), Catch::Contains("FullyBinary"));
}

// ---- the integer stem (kernels/conv2d_u8s16.hpp, infer/int_stem_step.hpp) ----------------------

namespace {

Tensor<uint8_t> random_u8_image(const Shape& shape, Rng& rng) {
    Tensor<uint8_t> x = Tensor<uint8_t>::zeros(shape);
    for (uint8_t& v : x) v = static_cast<uint8_t>(std::min(255.f, std::floor(rng.uniform(0.f, 256.f))));
    x[0] = 0;  // both ends of the range
    x[1] = 255;
    return x;
}

// (x / 255 - mean[c]) / std[c] in float, as a user normalizes an image for the fp32 graph.
Tensor<float> normalize_u8_image(const Tensor<uint8_t>& x, const std::vector<float>& mean, const std::vector<float>& std) {
    Tensor<float> out = Tensor<float>::empty(x.shape());
    const int64_t C = x.dim(3);
    for (int64_t i = 0; i < x.numel(); ++i) out[i] = (x[i] / 255.f - mean[i % C]) / std[i % C];
    return out;
}

struct StemCase {
    int64_t N, H, W, C, Cout, K, stride, pad;
};

// What conv2d_u8s16 must compute, from the quantised weights and the image alone: the int64 sums
// of x * q over the in-bounds taps, and (double) the float convolution of the normalized image
// with the dequantised weights scale * q * 255 * std[c], whose padded taps add nothing.
struct StemReference {
    std::vector<int64_t> dots;
    std::vector<double> dequantised, magnitude;  // the output, and the sum of |terms| for a rounding bound
    std::vector<double> float_weights;           // the output with the unquantised float weights
    std::vector<double> quantisation_bound;      // |dequantised - float_weights| <= this
};

StemReference stem_reference(const StemCase& c, const Tensor<uint8_t>& x, const kernels::U8S16ConvWeights& q,
                             const Tensor<float>& w, const Tensor<float>& bias, const std::vector<float>& mean,
                             const std::vector<float>& std) {
    const auto g = kernels::conv2d_geometry(c.N, c.H, c.W, c.C, c.Cout, c.K, c.K, c.stride, c.pad);
    const int64_t outputs = g.N * g.OH * g.OW * g.Cout, K = g.K();
    StemReference r{std::vector<int64_t>(outputs), std::vector<double>(outputs), std::vector<double>(outputs),
                    std::vector<double>(outputs), std::vector<double>(outputs)};
    for (int64_t n = 0, i = 0; n < g.N; ++n)
        for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow)
                for (int64_t o = 0; o < g.Cout; ++o, ++i) {
                    int64_t dot = 0;
                    double deq = bias[o], mag = std::abs(bias[o]), fw = bias[o], qb = 0;
                    for (int64_t kh = 0; kh < g.KH; ++kh)
                        for (int64_t kw = 0; kw < g.KW; ++kw) {
                            const int64_t ih = oh * g.stride - g.pad + kh, iw = ow * g.stride - g.pad + kw;
                            if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                            for (int64_t ch = 0; ch < g.C; ++ch) {
                                const int64_t k = (kh * g.KW + kw) * g.C + ch;
                                const uint8_t v = x[((n * g.H + ih) * g.W + iw) * g.C + ch];
                                const double xn = (v / 255.0 - mean[ch]) / std[ch];
                                const double wq = double(q.scale[o]) * q.q[o * K + k] * 255.0 * std[ch];
                                dot += int64_t{v} * q.q[o * K + k];
                                deq += wq * xn;
                                mag += std::abs(wq * xn);
                                fw += double(w[o * K + k]) * xn;
                                qb += 0.5 * q.scale[o] * std::abs(v - 255.0 * mean[ch]);
                            }
                        }
                    r.dots[i] = dot;
                    r.dequantised[i] = deq;
                    r.magnitude[i] = mag;
                    r.float_weights[i] = fw;
                    r.quantisation_bound[i] = qb;
                }
    return r;
}

}  // namespace

TEST_CASE("conv2d_u8s16: exact int32 sums, the same floats on every path, the folding and padding exact",
          "[infer][int_stem]") {
    const std::vector<StemCase> cases = {
        {1, 7, 9, 3, 5, 3, 1, 1},    {2, 11, 13, 1, 17, 5, 2, 2},  {3, 9, 8, 3, 33, 7, 2, 3},
        {1, 15, 15, 3, 64, 7, 2, 3}, {2, 5, 6, 3, 16, 3, 1, 0},    {1, 4, 5, 1, 1, 2, 1, 1},
        {2, 12, 7, 3, 20, 4, 3, 2},  {2, 40, 37, 3, 40, 7, 2, 3},  {1, 11, 11, 3, 300, 7, 2, 3},
        {3, 3, 5, 1, 7, 3, 1, 3},
    };
    const int threads_before = num_threads();
    Rng rng(91);
    for (const StemCase& c : cases) {
        INFO("N " << c.N << " H " << c.H << " W " << c.W << " C " << c.C << " Cout " << c.Cout << " kernel " << c.K
                  << " stride " << c.stride << " pad " << c.pad);
        const Tensor<float> w = Tensor<float>::randn({c.Cout, c.K, c.K, c.C}, rng, 0.f, 0.2f);
        const Tensor<float> bias = Tensor<float>::randn({c.Cout}, rng);
        std::vector<float> mean(c.C), std(c.C);
        for (int64_t ch = 0; ch < c.C; ++ch) {
            mean[ch] = rng.uniform(0.3f, 0.6f);
            std[ch] = rng.uniform(0.15f, 0.35f);
        }
        const auto q = kernels::quantize_conv2d_u8s16(w.data(), bias.data(), c.Cout, c.K, c.K, c.C, mean.data(), std.data());
        const auto g = kernels::conv2d_geometry(c.N, c.H, c.W, c.C, c.Cout, c.K, c.K, c.stride, c.pad);
        kernels::U8S16ConvPlan plan;
        kernels::plan_conv2d_u8s16(q, g, plan);
        const Tensor<uint8_t> x = random_u8_image(Shape{c.N, c.H, c.W, c.C}, rng);
        const StemReference ref = stem_reference(c, x, q, w, bias, mean, std);
        const int64_t outputs = static_cast<int64_t>(ref.dots.size());
        std::vector<float> first;  // the scalar path's floats with one thread
        for (kernels::Isa isa : kernels::available_isas())
            for (int threads : {1, 2}) {
                INFO(kernels::isa_name(isa) << ", " << threads << " threads");
                kernels::IsaGuard guard(isa);
                set_num_threads(threads);
                std::vector<int32_t> dots(outputs, -1);
                kernels::conv2d_u8s16_dots(x.data(), q, g, dots.data());
                int64_t wrong = 0;
                for (int64_t i = 0; i < outputs; ++i) wrong += dots[i] != ref.dots[i];
                REQUIRE(wrong == 0);
                std::vector<float> out(outputs, std::nanf(""));
                kernels::conv2d_u8s16_forward(x.data(), q, plan, out.data());
                if (first.empty()) first = out;
                int64_t differing = 0, off_folding = 0, off_quantisation = 0;
                for (int64_t i = 0; i < outputs; ++i) {
                    differing += std::memcmp(&out[i], &first[i], sizeof(float)) != 0;
                    // Float rounding only: of the int32 sum, the bias row, the fma.
                    off_folding += std::abs(out[i] - ref.dequantised[i]) > 1e-6 * (ref.magnitude[i] + 1.0) + 1e-6;
                    off_quantisation += std::abs(out[i] - ref.float_weights[i]) >
                                        ref.quantisation_bound[i] + 1e-6 * (ref.magnitude[i] + 1.0) + 1e-6;
                }
                REQUIRE(differing == 0);
                REQUIRE(off_folding == 0);
                REQUIRE(off_quantisation == 0);
            }
    }
    set_num_threads(threads_before);
}

TEST_CASE("conv2d_u8s16: int32 sums exact at the largest K, a larger K refused", "[infer][int_stem]") {
    // Every folded weight +-1 (mean 0, std 1/255): q = +-32767; every pixel 255.
    const int64_t Cout = 3, KH = 7, KW = 7, C = 3, K = KH * KW * C;
    Tensor<float> w = Tensor<float>::full({Cout, KH, KW, C}, 1.f);
    for (int64_t k = 0; k < K; ++k) w[2 * K + k] = k % 2 ? 1.f : -1.f;  // channel 2 alternates
    for (int64_t k = 0; k < K; ++k) w[1 * K + k] = -1.f;
    const std::vector<float> mean(C, 0.f), std(C, 1.f / 255.f);
    const auto q = kernels::quantize_conv2d_u8s16(w.data(), nullptr, Cout, KH, KW, C, mean.data(), std.data());
    REQUIRE(q.q[0] == 32767);
    REQUIRE(q.q[K] == -32767);
    const auto g = kernels::conv2d_geometry(1, 9, 9, C, Cout, KH, KW, 1, 0);
    const Tensor<uint8_t> x = Tensor<uint8_t>::full({1, 9, 9, C}, 255);
    const int64_t extreme = int64_t{255} * 32767 * K;  // 1,228,270,995: within int32, as the bound says
    for (kernels::Isa isa : kernels::available_isas()) {
        INFO(kernels::isa_name(isa));
        kernels::IsaGuard guard(isa);
        std::vector<int32_t> dots(g.OH * g.OW * Cout);
        kernels::conv2d_u8s16_dots(x.data(), q, g, dots.data());
        for (int64_t p = 0; p < g.OH * g.OW; ++p) {
            REQUIRE(dots[p * Cout + 0] == extreme);
            REQUIRE(dots[p * Cout + 1] == -extreme);
            REQUIRE(dots[p * Cout + 2] == -255 * 32767);  // 74 of -1, 73 of +1
        }
    }
    // 255 * 32767 * K fits in int32 for K <= 257.
    REQUIRE(kernels::u8s16_max_taps == 257);
    const std::vector<float> one_mean(1, 0.f), one_std(1, 1.f);
    std::vector<float> wide(258, 0.5f);
    REQUIRE_NOTHROW(kernels::quantize_conv2d_u8s16(wide.data(), nullptr, 1, 1, 257, 1, one_mean.data(), one_std.data()));
    REQUIRE_THROWS_WITH(kernels::quantize_conv2d_u8s16(wide.data(), nullptr, 1, 1, 258, 1, one_mean.data(), one_std.data()),
                        Catch::Contains("258") && Catch::Contains("257"));
    std::vector<float> bad_std(1, 0.f);
    REQUIRE_THROWS_WITH(kernels::quantize_conv2d_u8s16(wide.data(), nullptr, 1, 1, 3, 1, one_mean.data(), bad_std.data()),
                        Catch::Contains("positive std"));
}

namespace {

// A small real network: stem conv (ImageNet 7x7/2 padding 3 and max pool, or CIFAR 3x3/1
// padding 1), BN, ReLU, a 3x3 conv, BN, ReLU, global pool, classifier. Real-valued throughout,
// so the drift of the logits has a bound (below).
struct StemTestNet {
    std::shared_ptr<nn::Sequential> net = std::make_shared<nn::Sequential>();
    std::shared_ptr<nn::Conv2d> stem, conv;
    std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
    std::shared_ptr<nn::Linear> fc;

    explicit StemTestNet(bool imagenet) {
        const int64_t width = 24, inner = 20, classes = 10;
        stem = net->push_back("stem", std::make_shared<nn::Conv2d>(nn::Conv2dOptions{
                                          .in_channels = 3,
                                          .out_channels = width,
                                          .kernel_size = imagenet ? 7 : 3,
                                          .stride = imagenet ? 2 : 1,
                                          .padding = imagenet ? 3 : 1,
                                          .bias = true}));
        bn1 = net->push_back("bn1", std::make_shared<nn::BatchNorm2d>(width));
        net->push_back("relu1", std::make_shared<nn::ReLU>());
        if (imagenet) net->push_back("maxpool", std::make_shared<nn::MaxPool2d>(3, 2, 1));
        conv = net->push_back("conv", std::make_shared<nn::Conv2d>(
                                          nn::Conv2dOptions{.in_channels = width, .out_channels = inner, .padding = 1}));
        bn2 = net->push_back("bn2", std::make_shared<nn::BatchNorm2d>(inner));
        net->push_back("relu2", std::make_shared<nn::ReLU>());
        net->push_back("pool", std::make_shared<nn::GlobalAvgPool>());
        fc = net->push_back("fc", std::make_shared<nn::Linear>(inner, classes));
    }

    // A bound on |logit(integer stem) - logit(fp32 stem)| per class, carried through the network
    // in the max norm per channel. The stem's outputs differ by at most
    //   e0[o] = sum over in-bounds taps of |scale[o] q - w / (255 std[c])| * |x - 255 mean[c]|
    //        <= scale[o] / 2 * K * 255 * max_c max(mean[c], 1 - mean[c])
    // (rounding to the nearest step), plus float rounding of either convolution. BN multiplies
    // a channel's bound by |its scale|, ReLU and the pools do not increase it, a conv or linear
    // layer sums |weight| times the bounds of its inputs.
    std::vector<double> logit_bound(const std::vector<float>& mean, const std::vector<float>& std,
                                    int32_t weight_max) const {
        const Tensor<float>& w = stem->weight.value();
        const int64_t Cout = w.dim(0), K = w.numel() / Cout;
        const auto q = kernels::quantize_conv2d_u8s16(w.data(), stem->bias.value().data(), Cout, w.dim(1), w.dim(2),
                                                      w.dim(3), mean.data(), std.data(), weight_max);
        double far = 0, std_min = 1e9;
        for (size_t c = 0; c < mean.size(); ++c) {
            far = std::max({far, double(mean[c]), 1.0 - mean[c]});
            std_min = std::min(std_min, double(std[c]));
        }
        std::vector<double> e(Cout);
        for (int64_t o = 0; o < Cout; ++o) {
            double weights = 0;
            for (int64_t k = 0; k < K; ++k) weights += std::abs(w[o * K + k]);
            e[o] = 0.5 * q.scale[o] * K * 255.0 * far + 1e-5 * (weights / std_min + std::abs(stem->bias.value()[o]));
        }
        auto through_bn = [](std::vector<double>& v, const nn::BatchNorm2d& bn) {
            const infer::FrozenBatchNorm f = infer::fold_batch_norm(bn);
            for (size_t c = 0; c < v.size(); ++c) v[c] *= std::abs(f.scale[c]);
        };
        auto through_weights = [](const std::vector<double>& v, const Tensor<float>& weight) {
            const int64_t out = weight.dim(0), per = weight.numel() / out, in = static_cast<int64_t>(v.size());
            std::vector<double> r(out, 0.0);
            for (int64_t o = 0; o < out; ++o)
                for (int64_t k = 0; k < per; ++k) r[o] += std::abs(weight[o * per + k]) * v[k % in];
            return r;
        };
        through_bn(e, *bn1);
        e = through_weights(e, conv->weight.value());
        through_bn(e, *bn2);
        return through_weights(e, fc->weight.value());
    }
};

const std::vector<float> kImageNetMean{0.485f, 0.456f, 0.406f}, kImageNetStd{0.229f, 0.224f, 0.225f};

}  // namespace

TEST_CASE("the integer stems: logits within the quantisation bound of the fp32 graph, for int16 the same top-1",
          "[infer][int_stem]") {
    const bool imagenet = GENERATE(false, true);
    const bool int8 = GENERATE(false, true);
    INFO((imagenet ? "ImageNet" : "CIFAR") << " stem, " << (int8 ? "int8" : "int16") << " weights");
    manual_seed(93);
    StemTestNet t(imagenet);
    randomise_statistics_and_scales(*t.net, 94);
    const int64_t N = 32, H = imagenet ? 33 : 17, W = imagenet ? 30 : 15;
    Rng rng(95);
    const Tensor<uint8_t> x = random_u8_image(Shape{N, H, W, 3}, rng);
    const Tensor<float> xn = normalize_u8_image(x, kImageNetMean, kImageNetStd);
    infer::Graph fp32 = infer::compile(*t.net, xn.shape());
    infer::Graph int16 = infer::compile(
        *t.net, x.shape(),
        {.stem = int8 ? infer::StemPrecision::int8 : infer::StemPrecision::int16, .mean = kImageNetMean, .std = kImageNetStd});
    REQUIRE(int16.takes_raw_images());
    REQUIRE(int16.summary().find("stem  int stem") != std::string::npos);
    REQUIRE(int16.summary().find(int8 ? "int8 weights" : "int16 weights") != std::string::npos);
    const Tensor<float> reference = fp32.run(xn).clone();
    require_same_logits(reference, eval_logits(*t.net, xn));
    for (kernels::Isa isa : kernels::available_isas()) {
        INFO(kernels::isa_name(isa));
        kernels::IsaGuard guard(isa);
        const Tensor<float>& got = int16.run(x);
        REQUIRE(got.shape() == reference.shape());
        const std::vector<double> bound =
            t.logit_bound(kImageNetMean, kImageNetStd, int8 ? kernels::u8s8_weight_max : kernels::u8s16_weight_max);
        const int64_t classes = got.dim(1);
        double drift = 0, widest = 0, spread = 0;
        int64_t beyond = 0, decided = 0, agree = 0;
        for (int64_t n = 0; n < N; ++n) {
            float lo = reference[n * classes], hi = lo;
            for (int64_t j = 0; j < classes; ++j) {
                const float r = reference[n * classes + j], d = std::abs(got[n * classes + j] - r);
                lo = std::min(lo, r);
                hi = std::max(hi, r);
                drift = std::max<double>(drift, d);
                beyond += d > 1.01 * bound[j] + 1e-4 * (1.0 + std::abs(r));
            }
            spread = std::max<double>(spread, hi - lo);
        }
        for (double b : bound) widest = std::max(widest, b);
        for (int64_t n = 0; n < N; ++n) {
            // Where the fp32 winner leads by more than twice the bound, the int16 graph cannot differ.
            const int64_t best = argmax_row(reference, n);
            float second = -INFINITY;
            for (int64_t j = 0; j < classes; ++j)
                if (j != best) second = std::max(second, reference[n * classes + j]);
            const bool sure = reference[n * classes + best] - second > 2 * widest + 1e-3;
            decided += sure;
            const bool same = argmax_row(got, n) == best;
            agree += same;
            if (sure) REQUIRE(same);
        }
        INFO("largest drift " << drift << ", largest bound " << widest << ", logit spread " << spread << ", top-1 agrees on "
                              << agree << " of " << N << ", " << decided << " decided by the bound");
        REQUIRE(beyond == 0);
        REQUIRE(drift > 0);  // the integer path ran: integer weights are not the float weights
        if (int8) continue;  // 255 levels: the bound is too wide to decide the top-1
        REQUIRE(widest < 0.05 * spread);  // the bound is tight enough to say something
        REQUIRE(decided >= N / 2);
        REQUIRE(agree >= N - 1);
    }
}

TEST_CASE("the int16 stem: bad input and networks it cannot take are errors", "[infer][int_stem]") {
    manual_seed(96);
    StemTestNet t(false);
    randomise_statistics_and_scales(*t.net, 97);
    const infer::CompileOptions int16{.stem = infer::StemPrecision::int16, .mean = kImageNetMean, .std = kImageNetStd};
    infer::Graph graph = infer::compile(*t.net, Shape{1, 8, 8, 3}, int16);
    Rng rng(98);
    REQUIRE_THROWS_WITH(graph.run(Tensor<float>::randn({1, 8, 8, 3}, rng)),
                        Catch::Contains("integer stem") && Catch::Contains("Tensor<uint8_t>"));
    REQUIRE_THROWS_WITH(graph.run(random_u8_image(Shape{1, 8, 8, 4}, rng)),
                        Catch::Contains("'stem'") && Catch::Contains("[N, H, W, 3]"));
    REQUIRE_THROWS_WITH(graph.run(Tensor<uint8_t>()), Catch::Contains("undefined"));
    infer::Graph fp32 = infer::compile(*t.net, Shape{1, 8, 8, 3});
    REQUIRE_THROWS_WITH(fp32.run(random_u8_image(Shape{1, 8, 8, 3}, rng)),
                        Catch::Contains("normalized float") && Catch::Contains("uint8"));
    // The normalization is part of the integer stem.
    REQUIRE_THROWS_WITH(infer::compile(*t.net, Shape{1, 8, 8, 3}, {.stem = infer::StemPrecision::int16, .mean = {}, .std = {}}),
                        Catch::Contains("'stem'") && Catch::Contains("mean and std"));
    infer::CompileOptions zero_std = int16;
    zero_std.std[1] = 0.f;
    REQUIRE_THROWS_WITH(infer::compile(*t.net, Shape{1, 8, 8, 3}, zero_std), Catch::Contains("positive std"));
    // A stem whose int32 sums could overflow: 11 x 11 x 3 = 363 taps.
    nn::Sequential wide;
    wide.push_back("big", std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 4, .kernel_size = 11}));
    wide.eval();
    REQUIRE_THROWS_WITH(infer::compile(wide, Shape{1, 16, 16, 3}, int16), Catch::Contains("'big'") && Catch::Contains("363"));
    // The raw bytes read by something else than a convolution.
    nn::Sequential bn_first;
    bn_first.push_back("norm", std::make_shared<nn::BatchNorm2d>(3));
    bn_first.push_back("conv", std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 4}));
    bn_first.eval();
    REQUIRE_THROWS_WITH(infer::compile(bn_first, Shape{1, 8, 8, 3}, int16),
                        Catch::Contains("'norm'") && Catch::Contains("reads it too"));
}

TEST_CASE("the integer stems: ResNet-18's graph allocates nothing in steady state and agrees with fp32",
          "[infer][int_stem][alloc]") {
    // The int16 and int8 stems, and the int8 stem with the int8 dense layers.
    const auto [precision, dense] = GENERATE(std::pair{infer::StemPrecision::int16, infer::DensePrecision::fp32},
                                             std::pair{infer::StemPrecision::int8, infer::DensePrecision::fp32},
                                             std::pair{infer::StemPrecision::int8, infer::DensePrecision::int8});
    INFO((precision == infer::StemPrecision::int8 ? "int8" : "int16")
         << " stem, " << (dense == infer::DensePrecision::int8 ? "int8" : "fp32") << " dense layers");
    manual_seed(99);
    auto net = resnet18(BinaryVariant::RealToBin, true, 16, 10);
    randomise_statistics_and_scales(*net, 100);
    const infer::CompileOptions int16{.stem = precision, .dense = dense, .mean = kImageNetMean, .std = kImageNetStd};
    infer::Graph graph = infer::compile(*net, Shape{2, 64, 64, 3}, int16);
    infer::Graph fp32 = infer::compile(*net, Shape{2, 64, 64, 3});
    REQUIRE(graph.summary().find("stem.0  int stem") != std::string::npos);
    if (dense == infer::DensePrecision::int8) {  // the three shortcuts' projections and the classifier
        const std::string summary = graph.summary();
        auto count = [&](const std::string& kind) {
            int64_t n = 0;
            for (size_t at = summary.find(kind); at != std::string::npos; at = summary.find(kind, at + 1)) ++n;
            return n;
        };
        INFO(summary);
        REQUIRE(count("  int8 conv [") == 3);
        REQUIRE(count("  int8 linear") == 1);
        REQUIRE(count("float conv") == 0);
    }
    Rng rng(101);
    for (int64_t batch : {1, 3}) {
        INFO("batch " << batch);
        const Tensor<uint8_t> x = random_u8_image(Shape{batch, 64, 64, 3}, rng);
        g_allocations = 0;
        g_counting = true;
        graph.run(x);  // re-plans for this shape
        g_counting = false;
        REQUIRE(g_allocations.load() > 0);
        const Tensor<float> first = graph.run(x).clone();
        REQUIRE(steady_state_allocations(graph, x) == 0);
        const Tensor<float>& again = graph.run(x);
        for (int64_t i = 0; i < again.numel(); ++i) REQUIRE(again[i] == first[i]);
        // Binary layers amplify the stem's drift where a sign flips, so no bound here: the
        // logits are close, which a wrong folding or padding would not give.
        const Tensor<float>& reference = fp32.run(normalize_u8_image(x, kImageNetMean, kImageNetStd));
        double drift = 0, size = 0;
        for (int64_t i = 0; i < again.numel(); ++i) {
            drift = std::max<double>(drift, std::abs(again[i] - reference[i]));
            size = std::max<double>(size, std::abs(reference[i]));
        }
        INFO("largest logit drift " << drift << " of logits up to " << size);
        REQUIRE(drift < 0.1 * size);
    }
}

// ---- module types registered by a user, and ChannelShift added through the registry -----------

namespace user_module_test {

// A user's own layer: y = gain[c] * x. Its forward is C++ the library has never seen.
class ChannelGain : public nn::Module {
public:
    explicit ChannelGain(int64_t channels) {
        gain = register_parameter("gain", Tensor<float>::full(Shape{channels}, 1.f));
    }
    Variable forward(const Variable& x) override { return ops::mul(x, gain); }
    std::string type_name() const override { return "ChannelGain"; }
    int64_t channels() const { return gain.numel(); }
    Variable gain;
};

// The user's inference step for it: the same float product per element as ops::mul.
class ChannelGainStep : public infer::Step {
public:
    ChannelGainStep(std::string path, Tensor<float> gain) : Step(std::move(path), "gain"), gain_(std::move(gain)) {}
    Shape plan(const std::vector<Shape>& in) override {
        check(in.at(0)[-1] == gain_.numel(), "expects ", gain_.numel(), " channels, got ", in.at(0).str());
        n_ = in.at(0).numel();
        return in.at(0);
    }
    void run(const float* const* in, float* out) override {
        for (int64_t i = 0; i < n_; ++i) out[i] = in[0][i] * gain_[i % gain_.numel()];
    }

private:
    Tensor<float> gain_;
    int64_t n_ = 0;
};

// Registered once per process (the test binary may run every case in one process).
void register_channel_gain() {
    static const bool once = [] {
        infer::register_module(infer::module_type<ChannelGain>(
            "ChannelGain", [](const ChannelGain& m, infer::TreeWriter&) { return infer::Json{{"channels", m.channels()}}; },
            [](infer::TreeReader& r) { return std::make_shared<ChannelGain>(r.integer("channels", 1, infer::kMaxSize)); },
            [](infer::Lowering& l, const ChannelGain& m, const std::string& path, int x) {
                return l.add(std::make_unique<ChannelGainStep>(path, m.gain.value().clone()), {x});
            }));
        return true;
    }();
    (void)once;
}

// Conv, BN, `inner` inside a residual, pooled to logits; random parameters, in eval mode.
std::shared_ptr<nn::Sequential> net_with(std::shared_ptr<nn::Module> inner, uint64_t seed) {
    auto net = std::make_shared<nn::Sequential>();
    net->add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 8, .padding = 1});
    net->add<nn::BatchNorm2d>(8);
    net->push_back(std::make_shared<nn::Residual>(inner));
    net->add<nn::ReLU>();
    net->add<nn::GlobalAvgPool>();
    net->add<nn::Flatten>();
    net->add<nn::Linear>(8, 5);
    Rng rng(seed);
    for (auto& [name, p] : net->named_parameters()) p.value().copy_from(Tensor<float>::uniform(p.shape(), rng, -1.f, 1.f));
    net->eval();
    return net;
}

}  // namespace user_module_test

TEST_CASE("a user's module type, registered, is deployed, loaded and compiled like bnn's own", "[infer][deploy][registry]") {
    using namespace user_module_test;
    register_channel_gain();
    auto inner = std::make_shared<nn::Sequential>();
    inner->add<nn::PReLU>(8);
    inner->push_back(std::make_shared<ChannelGain>(8));
    inner->add<nn::ChannelShift>(8);
    auto net = net_with(inner, 71);
    Rng rng(72);
    const Tensor<float> x = Tensor<float>::randn({3, 6, 5, 3}, rng);
    const Tensor<float> expected = eval_logits(*net, x);

    const infer::Json tree = io::describe_module(*net, true);
    REQUIRE(tree["children"][2][1]["body"]["children"][1][1] ==
            infer::Json{{"type", "ChannelGain"}, {"options", {{"channels", 8}}}});
    REQUIRE(tree["children"][2][1]["body"]["children"][2][1]["type"] == "ChannelShift");

    bnn::test::TempDir dir;
    const std::string path = dir.file("user.deploy.safetensors");
    io::save_deployed(path, *net);
    io::Deployed d = io::load_deployed(path);
    const auto& modules = d.model->named_modules();
    const auto gain = std::find_if(modules.begin(), modules.end(), [](const auto& m) { return m.first == "2.body.1"; });
    REQUIRE(gain != modules.end());
    REQUIRE(dynamic_cast<ChannelGain*>(gain->second) != nullptr);
    require_same_logits(eval_logits(*d.model, x), expected);

    infer::Graph graph = infer::compile(*d.model, x.shape());
    INFO(graph.summary());
    require_same_logits(graph.run(x), expected);
    require_same_logits(infer::compile(*net, x.shape()).run(x), expected);
}

TEST_CASE("module types: a name or class registered twice and an unknown type are errors naming what is known",
          "[infer][registry]") {
    using namespace user_module_test;
    register_channel_gain();
    auto again = [](const char* name) {
        return infer::module_type<ChannelGain>(
            name, [](const ChannelGain&, infer::TreeWriter&) { return infer::Json::object(); },
            [](infer::TreeReader&) { return std::make_shared<ChannelGain>(1); },
            [](infer::Lowering&, const ChannelGain&, const std::string&, int x) { return x; });
    };
    REQUIRE_THROWS_WITH(infer::register_module(again("ChannelGain")), Catch::Contains("'ChannelGain' is already registered"));
    REQUIRE_THROWS_WITH(infer::register_module(again("Gain2")), Catch::Contains("already registered as 'ChannelGain'"));
    const infer::Json node = infer::Json::parse(R"({"type": "Sequential", "children": [["a", {"type": "Mystery"}]]})");
    REQUIRE_THROWS_WITH(io::build_module(node), Catch::Contains("'a' (Mystery): unknown module type") &&
                                                    Catch::Contains("ChannelShift") && Catch::Contains("ChannelGain"));
    REQUIRE_THROWS_WITH(io::build_module(infer::Json{{"type", "ChannelShift"}, {"options", {{"channels", 0}}}}),
                        Catch::Contains("'channels' must be in [1, "));
}

TEST_CASE("ChannelShift compiles to a step of its own and deploys, equal to eval mode", "[infer][deploy]") {
    using namespace user_module_test;
    auto inner = std::make_shared<nn::Sequential>();
    inner->add<nn::ChannelShift>(8);
    inner->add<nn::PReLU>(8);
    inner->add<nn::ChannelShift>(8);
    auto net = net_with(inner, 73);
    Rng rng(74);
    const Tensor<float> x = Tensor<float>::randn({2, 7, 4, 3}, rng);
    const Tensor<float> expected = eval_logits(*net, x);
    infer::Graph graph = infer::compile(*net, x.shape());
    INFO(graph.summary());
    const std::string steps = graph.summary();
    size_t shifts = 0;
    for (size_t at = steps.find("  shift"); at != std::string::npos; at = steps.find("  shift", at + 1)) ++shifts;
    REQUIRE(shifts == 2);
    require_same_logits(graph.run(x), expected);
    REQUIRE(steady_state_allocations(graph, x) == 0);

    bnn::test::TempDir dir;
    const std::string path = dir.file("shift.deploy.safetensors");
    io::save_deployed(path, *net);
    io::Deployed d = io::load_deployed(path);
    require_same_logits(infer::compile(*d.model, x.shape()).run(x), expected);
}

TEST_CASE("Sign before a float conv compiles to a sign step and deploys, equal to eval mode", "[infer][deploy]") {
    using namespace user_module_test;
    auto inner = std::make_shared<nn::Sequential>();
    inner->add<nn::Sign>();
    inner->add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 8, .out_channels = 8, .kernel_size = 3, .stride = 1,
                                             .padding = 1, .bias = false});
    auto net = net_with(inner, 75);
    Rng rng(76);
    Tensor<float> x = Tensor<float>::randn({2, 7, 4, 3}, rng);
    const Tensor<float> expected = eval_logits(*net, x);
    infer::Graph graph = infer::compile(*net, x.shape());
    INFO(graph.summary());
    REQUIRE(graph.summary().find("activation") != std::string::npos);
    require_same_logits(graph.run(x), expected);

    bnn::test::TempDir dir;
    const std::string path = dir.file("sign.deploy.safetensors");
    io::save_deployed(path, *net);
    io::Deployed d = io::load_deployed(path);
    REQUIRE(io::describe_module(*d.model, true).dump().find("\"Sign\"") != std::string::npos);
    require_same_logits(infer::compile(*d.model, x.shape()).run(x), expected);
}
