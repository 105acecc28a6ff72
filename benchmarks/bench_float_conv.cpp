// Float 3x3 convolution (ops::conv2d) on the ResNet-18 CIFAR layer shapes, batch 64, stride 1,
// padding 1, Cin = Cout: width 64 (64@32x32 ... 512@4x4, the issue's shapes) and width 16
// (16@32x32 ... 128@4x4, the trainer's), forward alone (no tape) and forward + backward (input,
// weight and bias gradients), on 1 and 2 threads, on each kernel path: "avx512"/"avx2" run the
// packed implicit-GEMM convolution (kernels/sgemm.hpp), "scalar" the im2col + Eigen GEMM it
// replaced. GFLOP/s counts 2 flops per multiply-add: forward 2*N*OH*OW*Cout*K, forward +
// backward three times that (data and weight gradients).
//
// BM_FmaPeak measures one core's FMA peak (independent chains of fused multiply-adds on the
// widest float vectors the CPU has, operands in registers) and BM_FloatConvPass times each of a
// convolution's three products alone (forward, input gradient, weight gradient; kernels::conv2d_*,
// no autograd), with pct_of_fma_peak: GFLOP/s over threads x the best one-thread peak of the same
// run (the probe runs first when filtered out).
//
// BM_Sgemm times the bare products a convolution needs (forward [P, K] x [K, Cout], input
// gradient [P, Cout] x [Cout, K], weight gradient [Cout, P] x [P, K]) for one block of each
// layer, sgemm against Eigen, on one thread.
//
// benchmarks/torch_float_conv.py times the width-64 shapes in PyTorch for comparison.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "bnn/core/threads.hpp"
#include "bnn/kernels/conv2d.hpp"
#include "bnn/kernels/gemm.hpp"
#include "bnn/kernels/intrinsics.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/ops/conv2d.hpp"

namespace {

// ---- one core's FMA peak --------------------------------------------------------------------

constexpr int kFmaChains = 12;  // more independent chains than FMA latency x FMA pipes on current x86 cores

#if BNN_X86
/// `iters` rounds of kFmaChains independent acc = acc * m + a on 16-float vectors. The empty asm
/// makes m opaque each round, so the compiler cannot fold the rounds.
__attribute__((target("avx512f"), noinline)) float fma_probe_avx512(int64_t iters) {
    __m512 acc[kFmaChains];
    for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm512_set1_ps(1.f + 0.01f * c);
    __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
    for (int64_t i = 0; i < iters; ++i) {
        asm volatile("" : "+v"(m));
#pragma GCC unroll 12
        for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], m, a);
    }
    alignas(64) float lanes[16];
    __m512 s = acc[0];
    for (int c = 1; c < kFmaChains; ++c) s = _mm512_add_ps(s, acc[c]);
    _mm512_store_ps(lanes, s);
    float total = 0;
    for (float v : lanes) total += v;
    return total;
}

/// The same on 8-float vectors.
__attribute__((target("avx2,fma"), noinline)) float fma_probe_avx2(int64_t iters) {
    __m256 acc[kFmaChains];
    for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm256_set1_ps(1.f + 0.01f * c);
    __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
    for (int64_t i = 0; i < iters; ++i) {
        asm volatile("" : "+v"(m));
#pragma GCC unroll 12
        for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], m, a);
    }
    alignas(32) float lanes[8];
    __m256 s = acc[0];
    for (int c = 1; c < kFmaChains; ++c) s = _mm256_add_ps(s, acc[c]);
    _mm256_store_ps(lanes, s);
    float total = 0;
    for (float v : lanes) total += v;
    return total;
}
#endif

/// Flops of one probe call of `iters` rounds on the widest vectors of `isa`, and runs it; 0 flops
/// on paths without FMA vectors (no peak to compare with).
double run_fma_probe(bnn::kernels::Isa isa, int64_t iters) {
#if BNN_X86
    if (bnn::kernels::has_avx512(isa)) {
        benchmark::DoNotOptimize(fma_probe_avx512(iters));
        return 2.0 * 16 * kFmaChains * double(iters);
    }
    if (bnn::kernels::has_avx2(isa)) {
        benchmark::DoNotOptimize(fma_probe_avx2(iters));
        return 2.0 * 8 * kFmaChains * double(iters);
    }
#endif
    (void)isa;
    (void)iters;
    return 0;
}

/// Best one-thread FMA peak seen in this process (flop/s), measured on demand.
double& best_fma_peak() {
    static double peak = 0;
    return peak;
}

double probe_seconds_and_flops(int64_t iters, double& flops) {
    const auto t0 = std::chrono::steady_clock::now();
    flops = run_fma_probe(bnn::kernels::best_isa(), iters);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double fma_peak() {
    if (best_fma_peak() == 0)
        for (int r = 0; r < 50; ++r) {
            double flops = 0;
            const double s = probe_seconds_and_flops(200'000, flops);
            best_fma_peak() = std::max(best_fma_peak(), flops / s);
        }
    return best_fma_peak();
}

void BM_FmaPeak(benchmark::State& state) {
    double best = 1e30, flops = 0;
    for (auto _ : state) {
        const double s = probe_seconds_and_flops(200'000, flops);
        state.SetIterationTime(s);
        best = std::min(best, s);
    }
    if (flops == 0) {
        state.SkipWithError("no FMA vectors on this path");
        return;
    }
    best_fma_peak() = std::max(best_fma_peak(), flops / best);
    state.counters["GFLOP/s"] = flops / best * 1e-9;
    state.SetLabel(bnn::kernels::isa_name(bnn::kernels::best_isa()));
}

// ---- the convolution ------------------------------------------------------------------------

struct Layer {
    int64_t channels, size;
};
constexpr Layer kLayers[] = {{64, 32}, {128, 16}, {256, 8}, {512, 4}, {16, 32}, {32, 16}, {64, 8}, {128, 4}};
constexpr int64_t kBatch = 64;

double forward_flops(const Layer& l) { return 2.0 * kBatch * l.size * l.size * l.channels * 9.0 * l.channels; }

std::string layer_name(const Layer& l) {
    return std::to_string(l.channels) + "@" + std::to_string(l.size) + "x" + std::to_string(l.size);
}

void set_counters(benchmark::State& state, const Layer& l, double flops) {
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel(layer_name(l) + " threads " + std::to_string(state.range(1)) + " " +
                   bnn::kernels::isa_name(static_cast<bnn::kernels::Isa>(state.range(2))));
}

void BM_FloatConvForward(benchmark::State& state) {
    const Layer l = kLayers[state.range(0)];
    bnn::set_num_threads(static_cast<int>(state.range(1)));
    bnn::kernels::IsaGuard isa(static_cast<bnn::kernels::Isa>(state.range(2)));
    bnn::Rng rng(1);
    bnn::Variable x(bnn::Tensor<float>::randn({kBatch, l.size, l.size, l.channels}, rng));
    bnn::Variable w(bnn::Tensor<float>::randn({l.channels, 3, 3, l.channels}, rng, 0.f, 0.05f));
    bnn::NoGradGuard no_grad;
    for (auto _ : state) {
        bnn::Variable y = bnn::ops::conv2d(x, w, bnn::Variable(), 1, 1);
        benchmark::DoNotOptimize(y.value().data());
    }
    set_counters(state, l, forward_flops(l));
}

void BM_FloatConvForwardBackward(benchmark::State& state) {
    const Layer l = kLayers[state.range(0)];
    bnn::set_num_threads(static_cast<int>(state.range(1)));
    bnn::kernels::IsaGuard isa(static_cast<bnn::kernels::Isa>(state.range(2)));
    bnn::Rng rng(2);
    bnn::Variable x(bnn::Tensor<float>::randn({kBatch, l.size, l.size, l.channels}, rng), true);
    bnn::Variable w(bnn::Tensor<float>::randn({l.channels, 3, 3, l.channels}, rng, 0.f, 0.05f), true);
    bnn::Variable b(bnn::Tensor<float>({l.channels}), true);
    const auto seed = bnn::Tensor<float>::randn({kBatch, l.size, l.size, l.channels}, rng);
    for (auto _ : state) {
        bnn::Variable y = bnn::ops::conv2d(x, w, b, 1, 1);
        y.backward(seed);
        benchmark::DoNotOptimize(w.grad().data());
    }
    set_counters(state, l, 3.0 * forward_flops(l));
}

/// Every layer on 1 and 2 threads, on the fastest path and on the Eigen path.
void shapes_threads_paths(benchmark::internal::Benchmark* b) {
    const auto best = static_cast<int64_t>(bnn::kernels::best_isa());
    for (int64_t layer = 0; layer < 8; ++layer)
        for (int64_t threads : {1, 2})
            for (int64_t isa : {best, int64_t{0}}) b->Args({layer, threads, isa});
    b->ArgNames({"layer", "threads", "isa"})->UseRealTime()->Unit(benchmark::kMillisecond);
}

/// One of a convolution's products alone: pass 0 forward, 1 input gradient, 2 weight gradient
/// (each 2*N*OH*OW*Cout*K flops), on the best path.
void BM_FloatConvPass(benchmark::State& state) {
    const Layer l = kLayers[state.range(0)];
    const int pass = static_cast<int>(state.range(1));
    const int threads = static_cast<int>(state.range(2));
    const double peak = fma_peak();
    bnn::set_num_threads(threads);
    bnn::Rng rng(4);
    const auto g = bnn::kernels::conv2d_geometry(kBatch, l.size, l.size, l.channels, l.channels, 3, 3, 1, 1);
    const auto x = bnn::Tensor<float>::randn({kBatch, l.size, l.size, l.channels}, rng);
    const auto w = bnn::Tensor<float>::randn({l.channels, 3, 3, l.channels}, rng, 0.f, 0.05f);
    const auto dout = bnn::Tensor<float>::randn({kBatch, l.size, l.size, l.channels}, rng);
    auto out = bnn::Tensor<float>({kBatch, l.size, l.size, l.channels});
    auto dw = bnn::Tensor<float>({l.channels, 3, 3, l.channels});
    for (auto _ : state) {
        if (pass == 0) bnn::kernels::conv2d_forward(x.data(), w.data(), nullptr, out.data(), g);
        else if (pass == 1) bnn::kernels::conv2d_backward(x.data(), w.data(), dout.data(), out.data(), nullptr, nullptr, g);
        else bnn::kernels::conv2d_backward(x.data(), w.data(), dout.data(), nullptr, dw.data(), nullptr, g);
        benchmark::DoNotOptimize(out.data());
        benchmark::DoNotOptimize(dw.data());
    }
    const double flops = forward_flops(l);
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    if (peak > 0)
        state.counters["pct_of_fma_peak"] = benchmark::Counter(100.0 * flops / (peak * threads),
                                                               benchmark::Counter::kIsIterationInvariantRate);
    static const char* kPasses[] = {"forward", "input grad", "weight grad"};
    state.SetLabel(layer_name(l) + " " + kPasses[pass] + " threads " + std::to_string(threads));
}

void layers_passes_threads(benchmark::internal::Benchmark* b) {
    for (int64_t layer = 0; layer < 8; ++layer)
        for (int64_t pass = 0; pass < 3; ++pass)
            for (int64_t threads : {1, 2}) b->Args({layer, pass, threads});
    b->ArgNames({"layer", "pass", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
}

/// The three products of one convolution block: which = 0 forward, 1 input gradient, 2 weight
/// gradient; P = one image's pixels (at least 256, as the convolution's blocks), K = 9 * C.
void BM_Sgemm(benchmark::State& state) {
    const Layer l = kLayers[state.range(0)];
    const int which = static_cast<int>(state.range(1));
    const bool eigen = state.range(2) == 0;
    bnn::set_num_threads(1);
    const int64_t C = l.channels, K = 9 * C, P = std::max<int64_t>(256, l.size * l.size);
    bnn::Rng rng(3);
    auto x = bnn::Tensor<float>::randn({P, K}, rng), w = bnn::Tensor<float>::randn({C, K}, rng);
    auto dy = bnn::Tensor<float>::randn({P, C}, rng);
    auto out = bnn::Tensor<float>({P, std::max(K, C)}), dw = bnn::Tensor<float>({C, K});
    using namespace bnn::kernels;
    for (auto _ : state) {
        if (which == 0) {
            if (eigen) gemm_nt_eigen(P, C, K, x.data(), K, w.data(), K, out.data(), C, false);
            else sgemm(false, true, P, C, K, x.data(), K, w.data(), K, out.data(), C, false);
        } else if (which == 1) {
            if (eigen) gemm_nn_eigen(P, K, C, dy.data(), C, w.data(), K, out.data(), K, false);
            else sgemm(false, false, P, K, C, dy.data(), C, w.data(), K, out.data(), K, false);
        } else {
            if (eigen) gemm_tn_eigen(C, K, P, dy.data(), C, x.data(), K, dw.data(), K, true);
            else sgemm(true, false, C, K, P, dy.data(), C, x.data(), K, dw.data(), K, true);
        }
        benchmark::DoNotOptimize(out.data());
        benchmark::DoNotOptimize(dw.data());
    }
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * double(P) * double(C) * double(K) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    static const char* kProducts[] = {"forward", "input grad", "weight grad"};
    state.SetLabel(layer_name(l) + " " + kProducts[which] + (eigen ? " eigen" : " sgemm"));
}

void gemm_shapes(benchmark::internal::Benchmark* b) {
    for (int64_t layer = 0; layer < 8; ++layer)
        for (int64_t which = 0; which < 3; ++which)
            for (int64_t sgemm : {1, 0}) b->Args({layer, which, sgemm});
    b->ArgNames({"layer", "product", "sgemm"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(BM_FmaPeak)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FloatConvForward)->Apply(shapes_threads_paths);
BENCHMARK(BM_FloatConvForwardBackward)->Apply(shapes_threads_paths);
BENCHMARK(BM_FloatConvPass)->Apply(layers_passes_threads);
BENCHMARK(BM_Sgemm)->Apply(gemm_shapes);

BENCHMARK_MAIN();
