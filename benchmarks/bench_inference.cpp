// End-to-end ResNet-18 inference, all in one run:
//   BM_FloatResNet18    the real ResNet-18 through the training ops in eval mode (NoGradGuard)
//   BM_BinaryOps        the Real-to-Bin ResNet-18 through the training ops (FullyBinary, eval)
//   BM_BinaryGraph      the same network compiled by infer::compile (include/bnn/infer/compile.hpp)
//   BM_BinaryGraphIntStem  the same graph with the integer stem, on raw uint8 images
//   BM_BinaryGraphInt8Stem  with the int8 stem
//   BM_BinaryGraphInt8     with the int8 stem and the dense layers (shortcut 1x1 convs, classifier)
//                          in int8 (CompileOptions::dense)
//   BM_ModelSizes       bytes of the float checkpoints and of the deployment file
//   BM_CrossCoreRead    how fast one thread reads 3 MB that the other thread has just written,
//                       against reading its own writes: what a graph step pays when its split
//                       of the pixels differs from the step before (the 2-thread figures
//                       depend on it, and on a virtual machine it changes with the host)
// for ImageNet (224x224, 1000 classes) and CIFAR (32x32, 100 classes) inputs, batch 1 and 16,
// 1 and 2 threads. Counters: best_ms (the fastest call: on a shared machine the closest to an
// idle one), img/s (from best_ms); BM_BinaryGraph adds the per-kind breakdown of its fastest call
// in ms (binary conv = BN + sign pack, gate and XNOR conv with its fused outputs; float conv =
// stem and shortcut 1x1 convs; batch norm; pool; linear) and speedup_vs_float (best float time
// over best binary time, same input, batch and threads; BM_FloatResNet18 runs first).
//
//   bench_inference --benchmark_out=inference.json --benchmark_out_format=json
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <vector>
#include <memory>
#include <string>
#include <tuple>

#include "../examples/resnet18.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/infer/compile.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/io/deploy.hpp"

namespace {

using namespace bnn;
using examples::ResNet18;
using examples::ResNetOptions;
using examples::Stem;
using examples::Variant;
using Clock = std::chrono::steady_clock;

ResNetOptions net_options(Variant v, bool imagenet) {
    ResNetOptions o;
    o.variant = v;
    o.stem = imagenet ? Stem::ImageNet : Stem::Cifar;
    o.width = 64;
    o.num_classes = imagenet ? 1000 : 100;
    if (v != Variant::Real) o.mode = nn::BinaryMode::FullyBinary;
    return o;
}

// One network per configuration, built once per process (weights are random: timing does not
// depend on their values).
ResNet18& network(Variant v, bool imagenet) {
    static std::map<std::pair<int, bool>, std::unique_ptr<ResNet18>> nets;
    auto& p = nets[{int(v), imagenet}];
    if (!p) {
        manual_seed(7);
        p = std::make_unique<ResNet18>(net_options(v, imagenet));
        p->eval();
    }
    return *p;
}

std::map<std::tuple<int64_t, int64_t, int64_t>, double>& best_float_ms() {
    static std::map<std::tuple<int64_t, int64_t, int64_t>, double> m;
    return m;
}

// Args: input side (224 ImageNet, 32 CIFAR), batch, threads.
template <class Run>
double time_calls(benchmark::State& state, Run&& run) {
    double best = 1e30;
    for (auto _ : state) {
        const auto t0 = Clock::now();
        run();
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        state.SetIterationTime(s);
        best = std::min(best, s);
    }
    state.counters["best_ms"] = best * 1e3;
    state.counters["img/s"] = double(state.range(1)) / best;
    state.SetItemsProcessed(state.iterations() * state.range(1));
    return best;
}

void BM_FloatResNet18(benchmark::State& state) {
    const int64_t side = state.range(0), batch = state.range(1);
    set_num_threads(int(state.range(2)));
    ResNet18& net = network(Variant::Real, side == 224);
    Rng rng(1);
    const Tensor<float> x = Tensor<float>::randn({batch, side, side, 3}, rng);
    NoGradGuard no_tape;
    net.forward(Variable(x));  // warm-up: first-touch of buffers, thread pool
    const double best = time_calls(state, [&] { benchmark::DoNotOptimize(net.forward(Variable(x)).value().data()); });
    best_float_ms()[{side, batch, state.range(2)}] = best * 1e3;
}

void BM_BinaryOps(benchmark::State& state) {
    const int64_t side = state.range(0), batch = state.range(1);
    set_num_threads(int(state.range(2)));
    ResNet18& net = network(Variant::RealToBin, side == 224);
    Rng rng(1);
    const Tensor<float> x = Tensor<float>::randn({batch, side, side, 3}, rng);
    NoGradGuard no_tape;
    net.forward(Variable(x));
    time_calls(state, [&] { benchmark::DoNotOptimize(net.forward(Variable(x)).value().data()); });
}

// Times graph.run(x) with the per-kind breakdown of the fastest call (the parts of a slow call
// include other users' load); returns the best call in seconds.
template <class Input>
double time_graph(benchmark::State& state, infer::Graph& graph, const Input& x) {
    graph.run(x);  // first touch of the buffers
    graph.set_profiling(true);
    std::map<std::string, double> best_parts;
    double best_total = 1e30;
    const double best = time_calls(state, [&] {
        graph.reset_profile();
        benchmark::DoNotOptimize(graph.run(x).data());
        double total = 0;
        for (const auto& [kind, t] : graph.profile()) total += t;
        if (total < best_total) {
            best_total = total;
            best_parts = graph.profile();
        }
    });
    for (const auto& [kind, t] : best_parts) state.counters[kind + "_ms"] = t * 1e3;
    return best;
}

void BM_BinaryGraph(benchmark::State& state) {
    const int64_t side = state.range(0), batch = state.range(1);
    set_num_threads(int(state.range(2)));
    Rng rng(1);
    const Tensor<float> x = Tensor<float>::randn({batch, side, side, 3}, rng);
    infer::Graph graph = infer::compile(network(Variant::RealToBin, side == 224), x.shape());
    const double best = time_graph(state, graph, x);
    auto it = best_float_ms().find({side, batch, state.range(2)});
    if (it != best_float_ms().end()) state.counters["speedup_vs_float"] = it->second / (best * 1e3);
}

// The same network compiled with an integer stem (CompileOptions::stem = int16 or int8), run on
// raw uint8 images: the stem's time is under "int stem"; with the dense layers in `dense`.
void time_integer_stem(benchmark::State& state, infer::StemPrecision precision,
                       infer::DensePrecision dense = infer::DensePrecision::fp32) {
    const int64_t side = state.range(0), batch = state.range(1);
    set_num_threads(int(state.range(2)));
    Rng rng(1);
    Tensor<uint8_t> x = Tensor<uint8_t>::zeros(Shape{batch, side, side, 3});
    for (uint8_t& v : x) v = static_cast<uint8_t>(rng.below(256));
    infer::CompileOptions options;
    options.stem = precision;
    options.dense = dense;
    options.mean = {0.485f, 0.456f, 0.406f};
    options.std = {0.229f, 0.224f, 0.225f};
    infer::Graph graph = infer::compile(network(Variant::RealToBin, side == 224), x.shape(), options);
    time_graph(state, graph, x);
}

void BM_BinaryGraphIntStem(benchmark::State& state) { time_integer_stem(state, infer::StemPrecision::int16); }
void BM_BinaryGraphInt8Stem(benchmark::State& state) { time_integer_stem(state, infer::StemPrecision::int8); }
void BM_BinaryGraphInt8(benchmark::State& state) {
    time_integer_stem(state, infer::StemPrecision::int8, infer::DensePrecision::int8);
}

void BM_ModelSizes(benchmark::State& state) {
    const auto dir = std::filesystem::temp_directory_path();
    const std::string f_real = (dir / "bnn_bench_real.safetensors").string();
    const std::string f_bin = (dir / "bnn_bench_r2b.safetensors").string();
    const std::string f_dep = (dir / "bnn_bench_r2b_deploy.safetensors").string();
    for (auto _ : state) {
        io::save_checkpoint(f_real, network(Variant::Real, true));
        io::save_checkpoint(f_bin, network(Variant::RealToBin, true));
        io::save_deployed(f_dep, network(Variant::RealToBin, true));
    }
    const double real = double(std::filesystem::file_size(f_real)), dep = double(std::filesystem::file_size(f_dep));
    state.counters["float_resnet18_bytes"] = real;
    state.counters["r2b_float_checkpoint_bytes"] = double(std::filesystem::file_size(f_bin));
    state.counters["r2b_deploy_bytes"] = dep;
    state.counters["float_over_deploy"] = real / dep;
    for (const auto& f : {f_real, f_bin, f_dep}) std::filesystem::remove(f);
}

void configs(benchmark::internal::Benchmark* b) {
    for (int64_t threads : {1, 2})
        for (int64_t side : {224, 32})
            for (int64_t batch : {1, 16}) b->Args({side, batch, threads});
    b->ArgNames({"side", "batch", "threads"})->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);
}

}  // namespace

// Thread 0 writes the buffer; then thread `reader` reads one float per cache line.
void BM_CrossCoreRead(benchmark::State& state) {
    const int reader = static_cast<int>(state.range(0));
    std::vector<float> buf(3 << 18);  // 3 MiB
    double best = 1e30;
    int round = 0;
    for (auto _ : state) {
        double dt = 0;
        float sum = 0.f;
        ++round;
#pragma omp parallel num_threads(2) reduction(+ : sum)
        {
#ifdef _OPENMP
            const int t = omp_get_thread_num();
#else
            const int t = 0;
#endif
            if (t == 0)
                for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<float>(i + round);
#pragma omp barrier
            if (t == reader) {
                const auto t0 = Clock::now();
                for (size_t i = 0; i < buf.size(); i += 16) sum += buf[i];
                dt = std::chrono::duration<double>(Clock::now() - t0).count();
            }
        }
        benchmark::DoNotOptimize(sum);
        state.SetIterationTime(dt);
        best = std::min(best, dt);
    }
    state.counters["best_GB/s"] = static_cast<double>(buf.size() * sizeof(float)) / best / 1e9;
    state.SetLabel(reader == 0 ? "read by the writer" : "read by the other thread");
}

BENCHMARK(BM_FloatResNet18)->Apply(configs);
BENCHMARK(BM_BinaryOps)->Apply(configs);
BENCHMARK(BM_BinaryGraph)->Apply(configs);
BENCHMARK(BM_BinaryGraphIntStem)->Apply(configs);
BENCHMARK(BM_BinaryGraphInt8Stem)->Apply(configs);
BENCHMARK(BM_BinaryGraphInt8)->Apply(configs);
BENCHMARK(BM_ModelSizes)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CrossCoreRead)->Arg(0)->Arg(1)->ArgName("reader")->UseManualTime()->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
