// The fused inference graph of a frozen binary ResNet-18 (examples/resnet18_infer.hpp): its
// logits against the training model's eval-mode logits, and no allocation in steady state.
#include <catch2/catch.hpp>

#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>

#include "../examples/resnet18_infer.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/infer/fused_steps.hpp"
#include "bnn/kernels/batch_norm.hpp"

// ---- a counting allocator: every operator new and every aligned_alloc (Tensor storage) -------
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
void note_allocation() {
    if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
}
void* checked(void* p) {
    if (!p) throw std::bad_alloc();
    return p;
}
}  // namespace

void* operator new(std::size_t n) {
    note_allocation();
    return checked(std::malloc(n ? n : 1));
}
void* operator new[](std::size_t n) {
    note_allocation();
    return checked(std::malloc(n ? n : 1));
}
void* operator new(std::size_t n, std::align_val_t a) {
    note_allocation();
    return checked(memalign(static_cast<std::size_t>(a), n ? n : 1));
}
void* operator new[](std::size_t n, std::align_val_t a) {
    note_allocation();
    return checked(memalign(static_cast<std::size_t>(a), n ? n : 1));
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
#pragma GCC diagnostic pop
// Tensor storage comes from std::aligned_alloc: this definition takes the program's calls.
extern "C" void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept {
    note_allocation();
    return memalign(alignment, size);
}

using namespace bnn;
using bnn::examples::InferResNet18;
using bnn::examples::ResNet18;
using bnn::examples::ResNetOptions;
using bnn::examples::Stem;
using bnn::examples::Variant;

namespace {

ResNetOptions binary_options(Variant v, Stem s, int64_t width, int64_t classes) {
    ResNetOptions o;
    o.variant = v;
    o.stem = s;
    o.width = width;
    o.num_classes = classes;
    o.mode = nn::BinaryMode::FullyBinary;
    return o;
}

// Moves every per-channel quantity away from its initial value, as training would: BN running
// statistics, gammas of both signs (a few exactly zero), betas, PReLU slopes, learned scales,
// the classifier bias. Latent binary weights and the gates keep their (random) initialisation.
void randomise(ResNet18& net, uint64_t seed) {
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

Tensor<float> training_logits(ResNet18& net, const Tensor<float>& x) {
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

}  // namespace

TEST_CASE("the counting allocator sees operator new and Tensor storage", "[inference][alloc]") {
    g_allocations = 0;
    g_counting = true;
    { Tensor<float> t(Shape{16}); }
    const long after_tensor = g_allocations.load();
    { std::vector<int> v(3); }
    g_counting = false;
    REQUIRE(after_tensor >= 1);
    REQUIRE(g_allocations.load() >= after_tensor + 1);
}

TEST_CASE("bn_sign_pack packs sign(BN(x)) as the training ops and sums the gate's means", "[inference]") {
    Rng rng(5);
    const int64_t N = 2, H = 3, W = 5, C = 70;  // two words per pixel, the second partial
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
    kernels::batch_norm_eval_forward(x.data(), gamma.data(), beta.data(), mean.data(), var.data(), h.data(), N * H * W,
                                     C, 1e-5f);
    Tensor<float> wf = Tensor<float>::randn({4, 3, 3, C}, rng);
    kernels::PackedConvWeights w = kernels::pack_conv_weights(wf);
    for (kernels::Isa isa : kernels::available_isas()) {
        INFO(kernels::isa_name(isa));
        infer::BinaryConvStep step(w, 1, 1, N, H, W, isa);
        Tensor<float> pooled(Shape{N, C});
        infer::bn_sign_pack(x.data(), N, H, W, C, bn, step, pooled.data(), isa);
        for (int64_t n = 0; n < N; ++n)
            for (int64_t i = 0; i < H; ++i)
                for (int64_t j = 0; j < W; ++j) {
                    const uint64_t* bits = step.input_pixel(n, i, j);
                    for (int64_t c = 0; c < C; ++c) {
                        const bool plus = h[((n * H + i) * W + j) * C + c] >= 0.f;
                        REQUIRE(((bits[c / 64] >> (c % 64)) & 1) == uint64_t(plus));
                    }
                    REQUIRE((bits[1] >> (C - 64)) == 0);  // bits past C stay zero
                }
        for (int64_t n = 0; n < N; ++n)
            for (int64_t c = 0; c < C; ++c) {
                float s = 0.f;
                for (int64_t p = 0; p < H * W; ++p) s += h[(n * H * W + p) * C + c];
                REQUIRE(pooled[n * C + c] == s / float(H * W));
            }
    }
}

TEST_CASE("BinaryConvStep equals xnor_conv2d followed by the unfused transform", "[inference]") {
    Rng rng(9);
    for (auto [H, W, C, Cout, stride] : {std::tuple{5, 7, 3, 5, 1}, std::tuple{6, 6, 64, 40, 2},
                                         std::tuple{4, 9, 130, 33, 1}}) {
        const int64_t N = 2;
        kernels::PackedConvWeights w = kernels::pack_conv_weights(Tensor<float>::randn({Cout, 3, 3, C}, rng));
        Tensor<float> x = Tensor<float>::randn({N, H, W, C}, rng);
        Tensor<float> alpha = Tensor<float>::randn({Cout}, rng), slope = Tensor<float>::randn({Cout}, rng);
        for (kernels::Isa isa : kernels::available_isas()) {
            INFO(kernels::isa_name(isa) << " H=" << H << " W=" << W << " C=" << C << " Cout=" << Cout);
            infer::BinaryConvStep step(w, stride, 1, N, H, W, isa);
            const auto& g = step.geometry();
            Tensor<float> gate = Tensor<float>::uniform({N, Cout}, rng);
            Tensor<float> residual = Tensor<float>::randn({N, g.OH, g.OW, Cout}, rng);
            Tensor<float> ref = kernels::xnor_conv2d(pack_signs(x), w, alpha, {}, stride, 1, kernels::PadMode::zero, isa);
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

TEST_CASE("small binary ResNet-18: the inference graph's logits equal the training model's", "[inference]") {
    for (Variant v : {Variant::RealToBin, Variant::StrongBaseline}) {
        for (int threads : {1, 2}) {
            INFO(bnn::examples::variant_name(v) << ", threads " << threads);
            set_num_threads(threads);
            manual_seed(11);
            ResNet18 net(binary_options(v, Stem::Cifar, 8, 5));
            randomise(net, 12);
            InferResNet18 graph(net);
            Rng rng(13);
            for (int64_t batch : {1, 4}) {
                Tensor<float> x = Tensor<float>::randn({batch, 8, 8, 3}, rng);
                require_same_logits(graph.forward(x), training_logits(net, x));
            }
            for (kernels::Isa isa : kernels::available_isas()) {
                INFO(kernels::isa_name(isa));
                kernels::IsaGuard guard(isa);
                InferResNet18 on_path(net);
                Tensor<float> x = Tensor<float>::randn({3, 8, 8, 3}, rng);
                require_same_logits(on_path.forward(x), training_logits(net, x));
            }
        }
    }
    set_num_threads(2);
}

TEST_CASE("ResNet-18 (width 64): inference logits equal the training model's, CIFAR and ImageNet stems",
          "[inference][resnet18]") {
    struct Case {
        Stem stem;
        int64_t batch, size;
    };
    for (const Case& c : {Case{Stem::Cifar, 2, 32}, Case{Stem::ImageNet, 1, 224}}) {
        INFO((c.stem == Stem::Cifar ? "cifar" : "imagenet"));
        manual_seed(21);
        ResNet18 net(binary_options(Variant::RealToBin, c.stem, 64, 10));
        randomise(net, 22);
        InferResNet18 graph(net);
        Rng rng(23);
        Tensor<float> x = Tensor<float>::randn({c.batch, c.size, c.size, 3}, rng);
        require_same_logits(graph.forward(x), training_logits(net, x));
        if (c.stem == Stem::ImageNet) {  // a batch: the stem then runs image by image
            Tensor<float> xb = Tensor<float>::randn({2, c.size, c.size, 3}, rng);
            require_same_logits(graph.forward(xb), training_logits(net, xb));
        }
    }
}

TEST_CASE("the graph built from a deployment file equals the training model", "[inference][deploy]") {
    manual_seed(31);
    ResNet18 net(binary_options(Variant::RealToBin, Stem::Cifar, 16, 7));
    randomise(net, 32);
    const std::string path =
        (std::filesystem::temp_directory_path() / "bnn_inference_test.safetensors").string();
    bnn::examples::export_resnet18(path, net);
    InferResNet18 graph(path);
    std::filesystem::remove(path);
    Rng rng(33);
    Tensor<float> x = Tensor<float>::randn({3, 16, 16, 3}, rng);
    require_same_logits(graph.forward(x), training_logits(net, x));
}

TEST_CASE("a steady-state inference call allocates nothing", "[inference][alloc]") {
    manual_seed(41);
    ResNet18 net(binary_options(Variant::RealToBin, Stem::ImageNet, 16, 10));
    randomise(net, 42);
    InferResNet18 graph(net);
    Rng rng(43);
    for (int64_t batch : {1, 3}) {
        INFO("batch " << batch);
        Tensor<float> x = Tensor<float>::randn({batch, 64, 64, 3}, rng);
        g_allocations = 0;
        g_counting = true;
        graph.forward(x);  // plans the buffers for this shape
        g_counting = false;
        const long first = g_allocations.exchange(0);
        Tensor<float> expected = graph.forward(x).clone();
        g_counting = true;
        const Tensor<float>& again = graph.forward(x);
        g_counting = false;
        const long second = g_allocations.load();
        REQUIRE(first > 0);  // the hook works: planning does allocate
        REQUIRE(second == 0);
        for (int64_t i = 0; i < again.numel(); ++i) REQUIRE(again[i] == expected[i]);
        require_same_logits(again, training_logits(net, x));
    }
}

TEST_CASE("the inference graph rejects what it cannot run", "[inference]") {
    manual_seed(51);
    ResNetOptions real = binary_options(Variant::Real, Stem::Cifar, 8, 5);
    ResNet18 teacher(real);
    REQUIRE_THROWS_AS(InferResNet18(teacher), Error);
    ResNet18 soft(binary_options(Variant::RealToBin, Stem::Cifar, 8, 5));
    soft.set_mode(nn::BinaryMode::SoftActivations);
    REQUIRE_THROWS_WITH(InferResNet18(soft), Catch::Contains("FullyBinary"));
    ResNet18 net(binary_options(Variant::RealToBin, Stem::Cifar, 8, 5));
    InferResNet18 graph(net);
    REQUIRE_THROWS_WITH(graph.forward(Tensor<float>({1, 8, 8, 4})), Catch::Contains("[N, H, W, 3]"));
    REQUIRE_THROWS_WITH(graph.forward(Tensor<float>({1, 6, 6, 3})), Catch::Contains("even"));
}
