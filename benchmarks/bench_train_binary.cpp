// Training throughput of the binary ResNet-18 recipes against the real ResNet-18 at the same
// width: one step = forward, loss, backward, Adam step, constraints (what the CIFAR-100 trainer
// does per batch). 32x32x3 inputs, 100 classes, 1 thread. Networks:
//
//   real          the real ResNet-18 (stage 0 of every recipe), cross-entropy
//   sb-binact     strong baseline, sign activations and real weights, cross-entropy
//   sb-binary     strong baseline, fully binary (XNOR forward), cross-entropy
//   r2b-step2     Real-to-Bin step 2: gated student with sign activations, plus the frozen
//                 teacher (step 1's network, tanh activations) run without a tape, attention
//                 matching at 8 transfer points (beta 30) and KD (weight 3)
//
// Width 16 uses batch 128 (the trainer's setting), width 64 batch 64. Each network reports
// images/s from the best step's CPU time (1 thread: CPU time is the work done, whatever else runs
// on the machine) and `vs_real`, its images/s over the real network's at the same width measured
// earlier in the same run (so run the real one too: the filter must keep it).
//
//   cmake -S . -B build -G Ninja -DBNN_BUILD_BENCHMARKS=ON -DBNN_NATIVE=ON
//   cmake --build build --target bench_train_binary
//   build/benchmarks/bench_train_binary --benchmark_filter='BM_TrainBinary/'
//   build/benchmarks/bench_train_binary --benchmark_filter='BM_TrainBinaryProfile/net:1/width:16'
//
// BM_TrainBinaryProfile reports the backward CPU time per op type ("<op>_bwd_ms", from a
// TapeProfiler: bnn/autograd/tape_profiler.hpp),
// the whole forward (teacher included), the whole backward and the optimiser step. For a
// forward breakdown by function, use perf on the plain benchmark:
//   perf record -g build/benchmarks/bench_train_binary --benchmark_filter='BM_TrainBinary/net:1/width:16'
#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../examples/resnet18.hpp"
#include "bnn/autograd/tape_profiler.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/train/distillation.hpp"
#include "bnn/train/param_groups.hpp"

namespace {

using namespace bnn;
namespace ex = bnn::examples;

enum Net { kReal = 0, kStrongBinAct = 1, kStrongBinary = 2, kRealToBinStep2 = 3 };
const char* net_name(int n) {
    static const char* names[] = {"real", "sb-binact", "sb-binary", "r2b-step2"};
    return names[n];
}

double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

long minor_faults() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_minflt;
}

/// Peak resident set of the process so far, in MiB (run one benchmark per process to read it
/// for one network).
double peak_rss_mib() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

/// Best images/s of the real network per width, for the ratio of the binary ones.
std::map<int64_t, double>& real_rate() {
    static std::map<int64_t, double> rate;
    return rate;
}

/// A student, its optimiser (two groups as the trainer: latent binary weights without decay),
/// the optional frozen teacher, the loss weights and one fixed batch.
struct Setup {
    Setup(int net, int64_t width, int64_t batch) {
        manual_seed(7);
        ex::ResNetOptions o{.width = width, .num_classes = 100};
        switch (net) {
            case kReal: o.variant = ex::Variant::Real; break;
            case kStrongBinAct: o.variant = ex::Variant::StrongBaseline; break;
            case kStrongBinary:
                o.variant = ex::Variant::StrongBaseline;
                o.mode = nn::BinaryMode::FullyBinary;
                break;
            case kRealToBinStep2: o.variant = ex::Variant::RealToBin; break;
        }
        student = std::make_unique<ex::ResNet18>(o);
        if (net == kRealToBinStep2) {
            ex::ResNetOptions t = o;
            t.mode = nn::BinaryMode::SoftActivations;  // step 1's network teaches step 2
            teacher = std::make_unique<ex::ResNet18>(t);
            train::freeze(*teacher);
            weights = train::real_to_binary_stage(2).weights;
        }
        const std::vector<optim::ParamGroup> groups = train::param_groups(*student, 1e-3f, 1e-5f);
        optimizer = std::make_unique<optim::Adam>(groups, optim::AdamOptions{.decoupled_weight_decay = true});

        Rng rng(3);
        data.images = Tensor<float>::randn({batch, 32, 32, 3}, rng);
        data.labels.resize(static_cast<size_t>(batch));
        for (auto& l : data.labels) l = static_cast<int32_t>(rng.below(100));
    }
    std::unique_ptr<ex::ResNet18> student, teacher;
    std::unique_ptr<optim::Adam> optimizer;
    train::LossWeights weights{};
    train::StepBatch data;
};

/// Accumulated CPU seconds per key in profile mode.
std::map<std::string, double>& totals() {
    static std::map<std::string, double> t;
    return t;
}

float train_step(Setup& s, bool profile) {
    s.student->train();
    s.optimizer->zero_grad();
    const double t0 = cpu_seconds();
    train::StepLoss loss = train::distillation_loss(s.teacher.get(), *s.student, s.data, s.weights);
    const double t1 = cpu_seconds();
    loss.total.backward();
    const double t2 = cpu_seconds();
    s.optimizer->step();
    s.student->apply_constraints();
    const double t3 = cpu_seconds();
    if (profile) {
        totals()["(forward+loss)"] += t1 - t0;
        totals()["(backward)"] += t2 - t1;
        totals()["(adam+constrain)"] += t3 - t2;
    }
    return loss.parts.total;
}

void run(benchmark::State& state, bool profile) {
    const int net = static_cast<int>(state.range(0));
    const int64_t width = state.range(1);
    const int64_t batch = width >= 64 ? 64 : 128;
    set_num_threads(1);
    Setup s(net, width, batch);
    train_step(s, false);  // warm-up: optimiser state, first touch of buffers
    totals().clear();
    std::optional<TapeProfiler> tape;  // times each op's backward while the steps run
    if (profile) tape.emplace(ProfileClock::ProcessCpu);
    double best = 1e30;
    float loss = 0;
    const long faults0 = minor_faults();
    for (auto _ : state) {
        const double c0 = cpu_seconds();
        loss = train_step(s, profile);
        best = std::min(best, cpu_seconds() - c0);
        benchmark::DoNotOptimize(loss);
    }
    const double iters = static_cast<double>(state.iterations());
    const double rate = static_cast<double>(batch) / best;
    state.SetLabel(std::string(net_name(net)) + " w" + std::to_string(width) + " b" + std::to_string(batch));
    state.counters["images_per_s"] = rate;  // from the best step's CPU time
    state.counters["best_cpu_ms"] = 1e3 * best;
    state.counters["page_faults_per_step"] = static_cast<double>(minor_faults() - faults0) / iters;
    state.counters["loss"] = loss;
    state.counters["peak_rss_MiB"] = peak_rss_mib();
    if (!profile) {
        if (net == kReal) real_rate()[width] = rate;
        if (real_rate().count(width)) state.counters["vs_real"] = rate / real_rate()[width];
    } else {
        for (const auto& [op, time] : tape->backward_times()) totals()[op + "_bwd"] = time.seconds;
        for (auto& [key, seconds] : totals()) state.counters[key + "_ms"] = 1e3 * seconds / iters;
    }
}

void BM_TrainBinary(benchmark::State& state) { run(state, false); }
void BM_TrainBinaryProfile(benchmark::State& state) { run(state, true); }

void widths_and_nets(benchmark::internal::Benchmark* b) {
    b->ArgNames({"net", "width"});
    for (int64_t w : {16, 64})
        for (int n = kReal; n <= kRealToBinStep2; ++n) b->Args({n, w});
}

}  // namespace

// CPU time: 1 thread, and the machine is shared.
BENCHMARK(BM_TrainBinary)->Apply(widths_and_nets)->Unit(benchmark::kMillisecond)->MinTime(3.0);
BENCHMARK(BM_TrainBinaryProfile)->Apply(widths_and_nets)->Unit(benchmark::kMillisecond)->Iterations(4);

BENCHMARK_MAIN();
