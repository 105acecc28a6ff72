// Training throughput of every stage of the trainer's recipes (examples/trainer/recipes.hpp):
// one step = forward (the frozen teacher's too, where the stage has one), loss, backward, AdamW
// step with the trainer's two parameter groups and the stage's rate and decay, constraints (what
// the CIFAR-100 trainer does per batch: bnn::train::distillation_step). 32x32x3 inputs, 100
// classes, CIFAR stem. Networks (the `net` argument; numbers 0-3 kept from earlier runs):
//
//   net  name       trainer stage       student                          teacher (frozen)   loss
//   0    real       real                real ResNet-18                   -                  CE
//   4    r2b-step1  real-to-bin/step1   Real-to-Bin, tanh activations    real               CE + att + KD 3
//   3    r2b-step2  real-to-bin/step2   Real-to-Bin, sign activations    step 1 (tanh)      CE + att + KD 3
//   5    r2b-step3  real-to-bin/step3   Real-to-Bin, fully binary        step 2 (sign)      CE + KD 0.8
//   1    sb-binact  baseline/stage1     strong baseline, sign activ.     -                  CE
//   2    sb-binary  baseline/stage2     strong baseline, fully binary    -                  CE
//
// (att: attention matching at the 8 block outputs, beta 30.) The stage's loss weights, learning
// rate and weight decay come from the trainer's plan itself, so the benchmark follows the recipe.
// Width 16 uses batch 128 (the trainer's setting), width 64 batch 64; `threads` is 1 or 2.
//
// images_per_s is the batch over the best step's time: process CPU time at 1 thread (the work
// done, whatever else runs on the shared machine) and wall time at 2 threads (CPU time would
// count both threads' work, not the step's latency); the label names which ("cpu" or "wall").
// median_images_per_s is the same from the median step. best_wall_ms and best_cpu_ms give both
// clocks at every thread count. `vs_real` is the ratio to the real network at the same width and
// threads measured earlier in the same process (run the real one too, or compute it from separate
// runs as benchmarks/peer_tables.py does).
//
//   cmake -S . -B build -G Ninja -DBNN_BUILD_BENCHMARKS=ON -DBNN_NATIVE=ON
//   cmake --build build --target bench_train_binary
//   build/benchmarks/bench_train_binary --benchmark_filter='BM_TrainBinary/'
//   build/benchmarks/bench_train_binary --benchmark_filter='BM_TrainBinary/net:3/width:16/threads:2'
//   build/benchmarks/bench_train_binary --benchmark_filter='BM_TrainBinaryProfile/net:1/width:16'
//   build/benchmarks/bench_train_binary --steps=2 ...   (exactly 2 timed steps per case: a smoke run)
//
// Every case runs at least 3 s unless --steps=N (this program's own flag) fixes the number of
// timed steps. BM_TrainBinaryProfile (1 thread) reports the backward CPU time per op type
// ("<op>_bwd_ms", from a TapeProfiler: bnn/autograd/tape_profiler.hpp), the whole forward (teacher
// included), the whole backward and the optimiser step. For a forward breakdown by function, use
// perf on the plain benchmark:
//   perf record -g build/benchmarks/bench_train_binary --benchmark_filter='BM_TrainBinary/net:1/width:16/threads:1'
#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bnn/autograd/tape_profiler.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/train/distillation.hpp"
#include "bnn/train/param_groups.hpp"
#include "resnet18.hpp"
#include "trainer/recipes.hpp"

namespace {

using namespace bnn;
namespace ex = bnn::examples;

enum Net { kReal = 0, kStrongBinAct = 1, kStrongBinary = 2, kRealToBinStep2 = 3, kRealToBinStep1 = 4, kRealToBinStep3 = 5 };
constexpr int kNets = 6;

struct NetInfo {
    const char* name;   ///< short name in labels and tables
    const char* stage;  ///< the trainer's stage id (trainer::StagePlan::id)
};
const NetInfo& net_info(int n) {
    static const NetInfo info[kNets] = {{"real", "real"},
                                        {"sb-binact", "baseline/stage1"},
                                        {"sb-binary", "baseline/stage2"},
                                        {"r2b-step2", "real-to-bin/step2"},
                                        {"r2b-step1", "real-to-bin/step1"},
                                        {"r2b-step3", "real-to-bin/step3"}};
    return info[n];
}
/// The recipes' order: real, Real-to-Bin steps 1-3, strong baseline stages 1-2.
constexpr int kRecipeOrder[kNets] = {kReal, kRealToBinStep1, kRealToBinStep2, kRealToBinStep3, kStrongBinAct,
                                     kStrongBinary};

double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double wall_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
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

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Best images/s of the real network per (width, threads), for the ratio of the others.
std::map<std::pair<int64_t, int>, double>& real_rate() {
    static std::map<std::pair<int64_t, int>, double> rate;
    return rate;
}

const trainer::StagePlan& find_stage(const std::vector<trainer::StagePlan>& plan, const std::string& id) {
    for (const auto& s : plan)
        if (s.id == id) return s;
    bnn::fail("bench_train_binary: the trainer's plan has no stage '", id, "'");
}

/// The network of a trainer stage at this width (CIFAR stem, 100 classes).
std::unique_ptr<ex::ResNet18> make_network(const trainer::StagePlan& s, int64_t width) {
    return std::make_unique<ex::ResNet18>(
        ex::ResNetOptions{.variant = s.variant, .stem = ex::Stem::Cifar, .width = width, .num_classes = 100,
                          .mode = s.mode()});
}

/// A stage as the trainer runs it: the student, its optimiser (the trainer's two groups, the
/// stage's rate and decay), the frozen teacher where the stage has one, the stage's loss weights
/// and one fixed batch. Weights are freshly initialised: a step costs the same whatever they are.
struct Setup {
    Setup(int net, int64_t width, int64_t batch) {
        const std::vector<trainer::StagePlan> plan = trainer::plan_recipes({"real", "real-to-bin", "baseline"});
        const trainer::StagePlan& stage = find_stage(plan, net_info(net).stage);
        manual_seed(7);
        student = make_network(stage, width);
        if (!stage.teacher.empty()) {
            teacher = make_network(find_stage(plan, stage.teacher), width);
            train::freeze(*teacher);
        }
        weights = stage.config.weights;
        const std::vector<optim::ParamGroup> groups =
            train::param_groups(*student, stage.config.lr, stage.config.weight_decay);
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

/// train::distillation_step, written out so that profile mode can time its parts.
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
    const int threads = profile ? 1 : static_cast<int>(state.range(2));
    const int64_t batch = width >= 64 ? 64 : 128;
    // At 1 thread CPU time is the step's work; at 2 it would add both threads' work, so the
    // step's wall time is the measure there.
    const bool by_wall = threads > 1;
    set_num_threads(threads);
    Setup s(net, width, batch);
    train_step(s, false);  // warm-up: optimiser state, first touch of buffers
    totals().clear();
    std::optional<TapeProfiler> tape;  // times each op's backward while the steps run
    if (profile) tape.emplace(ProfileClock::ProcessCpu);
    std::vector<double> wall, cpu;
    float loss = 0;
    const long faults0 = minor_faults();
    for (auto _ : state) {
        const double w0 = wall_seconds(), c0 = cpu_seconds();
        loss = train_step(s, profile);
        cpu.push_back(cpu_seconds() - c0);
        wall.push_back(wall_seconds() - w0);
        benchmark::DoNotOptimize(loss);
    }
    const std::vector<double>& measure = by_wall ? wall : cpu;
    const double best = *std::min_element(measure.begin(), measure.end());
    const double iters = static_cast<double>(state.iterations());
    const double rate = static_cast<double>(batch) / best;
    state.SetLabel(std::string(net_info(net).name) + " w" + std::to_string(width) + " b" + std::to_string(batch) +
                   " t" + std::to_string(threads) + (by_wall ? " wall" : " cpu"));
    state.counters["images_per_s"] = rate;  // from the best step, CPU time at 1 thread, wall time at 2
    state.counters["median_images_per_s"] = static_cast<double>(batch) / median(measure);
    state.counters["best_cpu_ms"] = 1e3 * *std::min_element(cpu.begin(), cpu.end());
    state.counters["best_wall_ms"] = 1e3 * *std::min_element(wall.begin(), wall.end());
    state.counters["batch"] = static_cast<double>(batch);
    state.counters["threads"] = threads;
    state.counters["by_wall_time"] = by_wall ? 1 : 0;
    state.counters["page_faults_per_step"] = static_cast<double>(minor_faults() - faults0) / iters;
    state.counters["loss"] = loss;
    state.counters["peak_rss_MiB"] = peak_rss_mib();
    if (!profile) {
        if (net == kReal) real_rate()[{width, threads}] = rate;
        if (real_rate().count({width, threads})) state.counters["vs_real"] = rate / real_rate()[{width, threads}];
    } else {
        for (const auto& [op, time] : tape->backward_times()) totals()[op + "_bwd"] = time.seconds;
        for (auto& [key, seconds] : totals()) state.counters[key + "_ms"] = 1e3 * seconds / iters;
    }
}

void BM_TrainBinary(benchmark::State& state) { run(state, false); }
void BM_TrainBinaryProfile(benchmark::State& state) { run(state, true); }

void nets_widths_threads(benchmark::internal::Benchmark* b) {
    b->ArgNames({"net", "width", "threads"});
    for (int threads : {1, 2})
        for (int64_t w : {16, 64})
            for (int n : kRecipeOrder) b->Args({n, w, threads});
}

void nets_and_widths(benchmark::internal::Benchmark* b) {
    b->ArgNames({"net", "width"});
    for (int64_t w : {16, 64})
        for (int n : kRecipeOrder) b->Args({n, w});
}

/// Removes this program's own flag --steps=N from argv (Google Benchmark rejects flags it does
/// not know); 0 when absent.
int take_steps_flag(int& argc, char** argv) {
    int steps = 0, kept = 1;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "--steps=", 8) == 0) {
            char* end = nullptr;
            const long n = std::strtol(argv[i] + 8, &end, 10);
            if (end == argv[i] + 8 || *end != '\0' || n < 1 || n > 1000000) {
                std::fprintf(stderr, "bench_train_binary: --steps expects a whole number of steps >= 1, got '%s'\n",
                             argv[i] + 8);
                std::exit(2);
            }
            steps = static_cast<int>(n);
        } else {
            argv[kept++] = argv[i];
        }
    }
    argc = kept;
    return steps;
}

}  // namespace

int main(int argc, char** argv) {
    const int steps = take_steps_flag(argc, argv);
    auto* plain = benchmark::RegisterBenchmark("BM_TrainBinary", BM_TrainBinary)
                      ->Apply(nets_widths_threads)
                      ->Unit(benchmark::kMillisecond);
    if (steps > 0)
        plain->Iterations(steps);
    else
        plain->MinTime(3.0);
    benchmark::RegisterBenchmark("BM_TrainBinaryProfile", BM_TrainBinaryProfile)
        ->Apply(nets_and_widths)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(steps > 0 ? steps : 4);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
