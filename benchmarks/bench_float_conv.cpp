// Float 3x3 convolution (ops::conv2d: blocked im2col + Eigen GEMM) on the ResNet-18 CIFAR layer
// shapes, batch 64, stride 1, padding 1, Cin = Cout: forward alone (no tape) and forward +
// backward (input, weight and bias gradients), on 1 and 2 threads. GFLOP/s counts 2 flops per
// multiply-add: forward 2*N*OH*OW*Cout*K, backward twice that (data and weight gradients).
// benchmarks/torch_float_conv.py times the same shapes in PyTorch for comparison.
#include <benchmark/benchmark.h>

#include "bnn/core/threads.hpp"
#include "bnn/ops/conv2d.hpp"

namespace {

struct Layer {
    int64_t channels, size;
};
constexpr Layer kLayers[] = {{64, 32}, {128, 16}, {256, 8}, {512, 4}};
constexpr int64_t kBatch = 64;

double forward_flops(const Layer& l) { return 2.0 * kBatch * l.size * l.size * l.channels * 9.0 * l.channels; }

void set_counters(benchmark::State& state, const Layer& l, double flops) {
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel(std::to_string(l.channels) + "@" + std::to_string(l.size) + "x" + std::to_string(l.size) +
                   " threads " + std::to_string(state.range(1)));
}

void BM_FloatConvForward(benchmark::State& state) {
    const Layer l = kLayers[state.range(0)];
    bnn::set_num_threads(static_cast<int>(state.range(1)));
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

void shapes_and_threads(benchmark::internal::Benchmark* b) {
    for (int64_t layer = 0; layer < 4; ++layer)
        for (int64_t threads : {1, 2}) b->Args({layer, threads});
    b->ArgNames({"layer", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_FloatConvForward)->Apply(shapes_and_threads);
BENCHMARK(BM_FloatConvForwardBackward)->Apply(shapes_and_threads);

BENCHMARK_MAIN();
