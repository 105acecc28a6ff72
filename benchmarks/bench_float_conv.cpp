// Float 3x3 convolution (ops::conv2d) on the ResNet-18 CIFAR layer shapes, batch 64, stride 1,
// padding 1, Cin = Cout: width 64 (64@32x32 ... 512@4x4, the issue's shapes) and width 16
// (16@32x32 ... 128@4x4, the trainer's), forward alone (no tape) and forward + backward (input,
// weight and bias gradients), on 1 and 2 threads, on each kernel path: "avx512"/"avx2" run the
// packed implicit-GEMM convolution (kernels/sgemm.hpp), "scalar" the im2col + Eigen GEMM it
// replaced. GFLOP/s counts 2 flops per multiply-add: forward 2*N*OH*OW*Cout*K, forward +
// backward three times that (data and weight gradients).
//
// BM_Sgemm times the bare products a convolution needs (forward [P, K] x [K, Cout], input
// gradient [P, Cout] x [Cout, K], weight gradient [Cout, P] x [P, K]) for one block of each
// layer, sgemm against Eigen, on one thread.
//
// benchmarks/torch_float_conv.py times the width-64 shapes in PyTorch for comparison.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bnn/core/threads.hpp"
#include "bnn/kernels/gemm.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/ops/conv2d.hpp"

namespace {

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

BENCHMARK(BM_FloatConvForward)->Apply(shapes_threads_paths);
BENCHMARK(BM_FloatConvForwardBackward)->Apply(shapes_threads_paths);
BENCHMARK(BM_Sgemm)->Apply(gemm_shapes);

BENCHMARK_MAIN();
