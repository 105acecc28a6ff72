// Binary convolution micro-benchmarks, all in one run:
//   (a) BM_PopcountPeak: the xor + popcount + add throughput of this CPU (AVX-512 VPOPCNTDQ,
//       12 independent accumulator chains, operands in registers), as binary MAC/s per thread
//       count; the figure the conv is measured against.
//   (b) BM_BinaryConv: the XNOR conv (packed input and weights, fused output transform) on every
//       ResNet-18 3x3 layer shape, CIFAR (64@32, 128@16, 256@8, 512@4) and ImageNet (64@56,
//       128@28, 256@14, 512@7), batch 1 and 16, 1 and 2 threads, for every ISA path this CPU has.
//   (c) BM_FloatConv: bnn's float conv (im2col + Eigen GEMM) on the same shapes.
// Counters: MACs/s (binary or float multiply-accumulates per second, from the mean time),
// best_MACs/s (from the fastest iteration: on a shared, noisy machine the fastest call is the
// closest to what the code does on a quiet one), pct_of_peak (best binary MAC/s over threads x
// the best single-thread probe; CPUs with AVX-512 only) and speedup_vs_float (best float conv
// time over best binary conv time for the same shape, batch and threads; BM_FloatConv runs first
// in the same process).
//
//   bench_binary_conv --benchmark_out=binary_conv.json --benchmark_out_format=json
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "bnn/core/rng.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/kernels/conv2d.hpp"
#include "bnn/kernels/intrinsics.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/binary_conv2d.hpp"

namespace {

using namespace bnn;
using kernels::Isa;
using Clock = std::chrono::steady_clock;

struct LayerShape {
    const char* net;
    int64_t channels, side;
};
// Every 3x3 conv shape of ResNet-18 (stride 1, padding 1, Cin = Cout).
const LayerShape kShapes[] = {{"cifar", 64, 32},    {"cifar", 128, 16},   {"cifar", 256, 8},
                              {"cifar", 512, 4},    {"imagenet", 64, 56}, {"imagenet", 128, 28},
                              {"imagenet", 256, 14}, {"imagenet", 512, 7}};

// ---- (a) the popcount peak -------------------------------------------------------------------

constexpr int kChains = 12;

#if BNN_X86
/// `iters` rounds of kChains independent acc += popcount(x ^ w) on 512-bit vectors. The empty
/// asm makes w opaque each round, so the compiler cannot hoist the xor and popcount out.
__attribute__((target("avx512f,avx512vpopcntdq"), noinline)) uint64_t popcount_probe(uint64_t iters, uint64_t seed) {
    __m512i x[kChains], acc[kChains];
    for (int c = 0; c < kChains; ++c) {
        x[c] = _mm512_set1_epi64(static_cast<long long>(seed * (c + 1) + 0x9e3779b97f4a7c15ull));
        acc[c] = _mm512_setzero_si512();
    }
    __m512i w = _mm512_set1_epi64(static_cast<long long>(seed ^ 0x5555));
    for (uint64_t i = 0; i < iters; ++i) {
        asm volatile("" : "+v"(w));
#pragma GCC unroll 12
        for (int c = 0; c < kChains; ++c)
            acc[c] = _mm512_add_epi64(acc[c], _mm512_popcnt_epi64(_mm512_xor_si512(x[c], w)));
    }
    __m512i s = acc[0];
    for (int c = 1; c < kChains; ++c) s = _mm512_add_epi64(s, acc[c]);
    alignas(64) uint64_t lanes[8];
    _mm512_store_si512(lanes, s);
    uint64_t total = 0;
    for (uint64_t v : lanes) total += v;
    return total;
}
#else
uint64_t popcount_probe(uint64_t, uint64_t) { return 0; }  // not called: peak_per_thread() needs VPOPCNTDQ
#endif

/// Best single-thread peak seen so far (binary MAC/s); measured on demand if the probe
/// benchmark was filtered out.
double& best_peak() {
    static double peak = 0;
    return peak;
}

/// Runs the probe on `threads` threads for `iters` rounds each; returns seconds.
double run_probe(int threads, uint64_t iters) {
    uint64_t sink = 0;
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    { sink += popcount_probe(iters, 7 + static_cast<uint64_t>(threads)); }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    benchmark::DoNotOptimize(sink);
    return s;
}

/// 0 on CPUs without AVX-512 VPOPCNTDQ: the probe is AVX-512 code and would fault there.
double peak_per_thread() {
    if (!kernels::isa_supported(Isa::avx512_vpopcntdq)) return 0;
    if (best_peak() == 0) {
        for (int r = 0; r < 50; ++r) {
            const uint64_t iters = 200'000;
            best_peak() = std::max(best_peak(), iters * kChains * 512.0 / run_probe(1, iters));
        }
    }
    return best_peak();
}

void BM_PopcountPeak(benchmark::State& state) {
    if (!kernels::isa_supported(Isa::avx512_vpopcntdq)) {
        state.SkipWithError("no AVX-512 VPOPCNTDQ on this CPU");
        return;
    }
    const int threads = static_cast<int>(state.range(0));
    const uint64_t iters = 200'000;
    double best = 1e30;
    for (auto _ : state) {
        const double s = run_probe(threads, iters);
        state.SetIterationTime(s);
        best = std::min(best, s);
    }
    const double macs = static_cast<double>(iters) * kChains * 512.0 * threads;
    if (threads == 1) best_peak() = std::max(best_peak(), macs / best);
    state.counters["MACs/s"] = benchmark::Counter(macs * state.iterations(), benchmark::Counter::kIsRate);
    state.counters["best_MACs/s"] = macs / best;
}

// ---- (c) the float conv, then (b) the binary conv --------------------------------------------

/// Float conv seconds per call, by (shape index, batch, threads), for the speedup counter.
std::map<std::tuple<int, int, int>, double>& float_seconds() {
    static std::map<std::tuple<int, int, int>, double> m;
    return m;
}

std::string shape_label(const LayerShape& s, int64_t batch, int threads) {
    return std::string(s.net) + " " + std::to_string(s.channels) + "@" + std::to_string(s.side) + " N=" +
           std::to_string(batch) + " T=" + std::to_string(threads);
}

void BM_FloatConv(benchmark::State& state) {
    const int si = static_cast<int>(state.range(0));
    const int64_t batch = state.range(1);
    const int threads = static_cast<int>(state.range(2));
    const LayerShape& s = kShapes[si];
    Rng rng(1);
    const int64_t C = s.channels, H = s.side;
    Tensor<float> x = Tensor<float>::uniform(Shape{batch, H, H, C}, rng, -1.f, 1.f);
    Tensor<float> w = Tensor<float>::uniform(Shape{C, 3, 3, C}, rng, -1.f, 1.f);
    Tensor<float> out = Tensor<float>::empty(Shape{batch, H, H, C});
    const auto g = kernels::conv2d_geometry(batch, H, H, C, C, 3, 3, 1, 1);
    set_num_threads(threads);
    double best = 1e30;
    for (auto _ : state) {
        const auto t0 = Clock::now();
        kernels::conv2d_forward(x.data(), w.data(), nullptr, out.data(), g);
        const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
        state.SetIterationTime(dt);
        best = std::min(best, dt);
        benchmark::DoNotOptimize(out.data());
    }
    float_seconds()[{si, static_cast<int>(batch), threads}] = best;
    const double macs = static_cast<double>(batch * H * H * C * 9 * C);
    state.counters["MACs/s"] = benchmark::Counter(macs * state.iterations(), benchmark::Counter::kIsRate);
    state.counters["best_MACs/s"] = macs / best;
    state.SetLabel(shape_label(s, batch, threads));
}

void BM_BinaryConv(benchmark::State& state) {
    const int si = static_cast<int>(state.range(0));
    const int64_t batch = state.range(1);
    const int threads = static_cast<int>(state.range(2));
    const Isa isa = static_cast<Isa>(state.range(3));
    if (!kernels::isa_supported(isa)) {
        state.SkipWithError("ISA not available on this CPU");
        return;
    }
    const LayerShape& s = kShapes[si];
    Rng rng(1);
    const int64_t C = s.channels, H = s.side;
    BitTensor x = pack_signs(Tensor<float>::uniform(Shape{batch, H, H, C}, rng, -1.f, 1.f));
    auto w = kernels::pack_conv_weights(Tensor<float>::uniform(Shape{C, 3, 3, C}, rng, -1.f, 1.f));
    Tensor<float> scale = Tensor<float>::uniform(Shape{C}, rng, 0.5f, 1.f);
    Tensor<float> bias = Tensor<float>::uniform(Shape{C}, rng, -1.f, 1.f);
    Tensor<float> out = Tensor<float>::empty(Shape{batch, H, H, C});
    const auto g = kernels::binary_conv_geometry(batch, H, H, C, C, 3, 3, 1, 1);
    const double peak = peak_per_thread();
    set_num_threads(threads);
    double best = 1e30;
    for (auto _ : state) {
        const auto t0 = Clock::now();
        kernels::binary_conv2d_forward(x.data(), w.words.data(), w.tap_sums.data(), scale.data(), bias.data(),
                                     out.data(), g, isa);
        const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
        state.SetIterationTime(dt);
        best = std::min(best, dt);
        benchmark::DoNotOptimize(out.data());
    }
    const double macs = static_cast<double>(g.macs());
    state.counters["MACs/s"] = benchmark::Counter(macs * state.iterations(), benchmark::Counter::kIsRate);
    state.counters["best_MACs/s"] = macs / best;
    if (peak > 0) state.counters["pct_of_peak"] = 100.0 * macs / best / (peak * threads);
    auto f = float_seconds().find({si, static_cast<int>(batch), threads});
    if (f != float_seconds().end()) state.counters["speedup_vs_float"] = f->second / best;
    state.SetLabel(shape_label(s, batch, threads) + " " + kernels::isa_name(isa));
}

void shape_args(benchmark::internal::Benchmark* b, bool with_isa) {
    for (int si = 0; si < static_cast<int>(std::size(kShapes)); ++si)
        for (int64_t batch : {1, 16})
            for (int threads : {1, 2}) {
                if (!with_isa) {
                    b->Args({si, batch, threads});
                    continue;
                }
                for (Isa isa : {Isa::avx512_vpopcntdq, Isa::avx2, Isa::scalar}) b->Args({si, batch, threads, static_cast<int>(isa)});
            }
}

BENCHMARK(BM_PopcountPeak)->Arg(1)->Arg(2)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FloatConv)
    ->Apply([](benchmark::internal::Benchmark* b) { shape_args(b, false); })
    ->ArgNames({"shape", "batch", "threads"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_BinaryConv)
    ->Apply([](benchmark::internal::Benchmark* b) { shape_args(b, true); })
    ->ArgNames({"shape", "batch", "threads", "isa"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
