// Data-parallel training throughput of ResNet-18 (issue 11): images/s of the whole job, and per
// step the forward, the backward (with the gradient all-reduce overlapping it), the time the
// backward's end waited for communication, the optimiser step, and the bytes all-reduced. Run it
// as one process or under mpirun with the same global batch:
//
//   dist_throughput --threads 2 --batch 128 --width 64 --json results.jsonl
//   mpirun -np 2 --bind-to core dist_throughput --threads 1 --batch 128 --width 64 --json results.jsonl
//   dist_throughput --bytes                      bytes all-reduced per step, every variant and width
//
// Synthetic CIFAR-sized data (32x32x3, 100 classes): the data loader is not what is measured.
// One step is what the trainer does per batch: zero_grad, forward and cross-entropy, backward,
// Adam step, constraints. Rank 0 prints one JSON line per run (and appends it to --json), the
// input of benchmarks/dist_scaling_model.py. Times are medians over the measured steps, in
// seconds; each rank's step ends in the same all-reduce, so rank 0's times are the job's.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../examples/resnet18.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/dist/dist.hpp"
#include "bnn/losses/cross_entropy.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/train/param_groups.hpp"

namespace {

using namespace bnn;
namespace ex = bnn::examples;
using Clock = std::chrono::steady_clock;

struct Options {
    std::string variant = "real-to-bin";
    std::string mode = "binary-activations";
    int64_t width = 64, batch = 128, bucket_mb = 4;
    int threads = 1, steps = 10, warmup = 2;
    std::string json;
    bool bytes = false;
};

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr,
                 "dist_throughput: %s\n"
                 "usage: dist_throughput [--variant real|strong-baseline|real-to-bin] [--mode binary-activations|"
                 "fully-binary] [--width W] [--batch GLOBAL] [--threads PER_RANK] [--steps N] [--warmup N] "
                 "[--bucket-mb MB] [--json FILE] | --bytes\n",
                 why.c_str());
    std::exit(2);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(a + " needs a value");
            return argv[++i];
        };
        auto number = [&]() -> int64_t {
            const std::string v = value();
            char* end = nullptr;
            const long long n = std::strtoll(v.c_str(), &end, 10);
            if (end == v.c_str() || *end != '\0' || n < 0) usage(a + " expects a non-negative integer, got '" + v + "'");
            return n;
        };
        if (a == "--variant") o.variant = value();
        else if (a == "--mode") o.mode = value();
        else if (a == "--width") o.width = number();
        else if (a == "--batch") o.batch = number();
        else if (a == "--threads") o.threads = static_cast<int>(number());
        else if (a == "--steps") o.steps = static_cast<int>(number());
        else if (a == "--warmup") o.warmup = static_cast<int>(number());
        else if (a == "--bucket-mb") o.bucket_mb = number();
        else if (a == "--json") o.json = value();
        else if (a == "--bytes") o.bytes = true;
        else usage("unknown argument '" + a + "'");
    }
    if (o.variant != "real" && o.variant != "strong-baseline" && o.variant != "real-to-bin")
        usage("unknown variant '" + o.variant + "'");
    if (o.mode != "binary-activations" && o.mode != "fully-binary") usage("unknown mode '" + o.mode + "'");
    if (o.width <= 0 || o.batch <= 0 || o.threads <= 0 || o.steps <= 0 || o.bucket_mb <= 0)
        usage("width, batch, threads, steps and bucket-mb must be positive");
    return o;
}

ex::Variant variant_of(const std::string& name) {
    if (name == "real") return ex::Variant::Real;
    if (name == "strong-baseline") return ex::Variant::StrongBaseline;
    return ex::Variant::RealToBin;
}

std::unique_ptr<ex::ResNet18> make_net(const std::string& variant, const std::string& mode, int64_t width) {
    manual_seed(1);
    return std::make_unique<ex::ResNet18>(ex::ResNetOptions{
        .variant = variant_of(variant),
        .stem = ex::Stem::Cifar,
        .width = width,
        .num_classes = 100,
        .mode = mode == "fully-binary" ? nn::BinaryMode::FullyBinary : nn::BinaryMode::BinaryActivations});
}

int64_t trainable_bytes(const nn::Module& net) {
    int64_t n = 0;
    for (const auto& p : net.parameters())
        if (p.requires_grad()) n += p.numel();
    return n * static_cast<int64_t>(sizeof(float));
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    if (o.bytes) {
        // What GradientSync sends per step: every trainable parameter's gradient, in float.
        for (const char* variant : {"real", "strong-baseline", "real-to-bin"})
            for (int64_t width : {16, 32, 64}) {
                auto net = make_net(variant, "binary-activations", width);
                std::printf("%s\n", nlohmann::json{{"kind", "bytes"},
                                                   {"variant", variant},
                                                   {"width", width},
                                                   {"bytes_per_step", trainable_bytes(*net)}}
                                        .dump()
                                        .c_str());
            }
        return 0;
    }

    dist::ProcessGroup& group = dist::ProcessGroup::world();
    try {
        set_num_threads(o.threads);
        const int64_t local = dist::per_rank_batch(o.batch, group.size());
        auto net = make_net(o.variant, o.mode, o.width);
        dist::broadcast_module(group, *net);
        optim::Adam opt(train::param_groups(*net, 1e-3f, 1e-5f), {.decoupled_weight_decay = true});
        dist::GradientSync sync(group, net->parameters(), {.bucket_bytes = o.bucket_mb << 20});

        Rng rng(1000 + static_cast<uint64_t>(group.rank()));
        Tensor<float> images(Shape{local, 32, 32, 3});
        for (int64_t i = 0; i < images.numel(); ++i) images[i] = rng.uniform() * 2.f - 1.f;
        std::vector<int32_t> labels(static_cast<size_t>(local));
        for (auto& l : labels) l = static_cast<int32_t>(rng.uniform() * 100) % 100;

        std::vector<double> step_s, forward_s, backward_s, wait_s, optimizer_s;
        int64_t started_in_backward = 0;
        net->train();
        for (int s = 0; s < o.warmup + o.steps; ++s) {
            group.barrier("the start of a step");
            const auto t0 = Clock::now();
            opt.zero_grad();
            Variable loss = losses::cross_entropy(net->forward(Variable(images)), labels);
            const double forward = since(t0);
            const auto t1 = Clock::now();
            loss.backward();  // ends waiting for the last gradient bucket
            const double backward = since(t1);
            const auto t2 = Clock::now();
            opt.step();
            net->apply_constraints();
            const double optimizer = since(t2), step = since(t0);
            if (s < o.warmup) continue;
            step_s.push_back(step);
            forward_s.push_back(forward);
            backward_s.push_back(backward);
            wait_s.push_back(sync.stats().wait_seconds);
            optimizer_s.push_back(optimizer);
            started_in_backward = sync.stats().buckets_started_in_backward;
        }
        if (!group.is_root()) return 0;
        const double step = median(step_s);
        nlohmann::json line{{"kind", "run"},
                            {"variant", o.variant},
                            {"mode", o.mode},
                            {"width", o.width},
                            {"global_batch", o.batch},
                            {"ranks", group.size()},
                            {"threads_per_rank", o.threads},
                            {"steps", o.steps},
                            {"images_per_s", static_cast<double>(o.batch) / step},
                            {"step_s", step},
                            {"forward_s", median(forward_s)},
                            {"backward_s", median(backward_s)},
                            {"comm_wait_s", median(wait_s)},
                            {"optimizer_s", median(optimizer_s)},
                            {"bytes_per_step", group.size() > 1 ? sync.stats().bytes_per_step : trainable_bytes(*net)},
                            {"buckets", static_cast<int64_t>(sync.num_buckets())},
                            {"last_bucket_bytes", sync.num_buckets() ? sync.bucket_bytes(sync.num_buckets() - 1) : 0},
                            {"buckets_started_in_backward", group.size() > 1 ? started_in_backward : 0}};
        std::printf("%s\n", line.dump().c_str());
        if (!o.json.empty()) std::ofstream(o.json, std::ios::app) << line.dump() << '\n';
    } catch (const std::exception& e) {
        std::fprintf(stderr, "dist_throughput: rank %d: %s\n", group.rank(), e.what());
        group.abort(1);
    }
    return 0;
}
