// What a deployed network holds in memory (docs/performance.md, "Deployment memory"): classify's
// path in a fresh process, a deployment file loaded (examples::load_network), compiled and run on
// one image (examples::logits_of), with the resident memory after each step and the peak.
//
//   deploy_resnet18 --stem imagenet --width 64 --classes 1000 --out DIR
//   deployment_memory --checkpoint DIR/resnet18_deploy.safetensors --size 224
//
// Prints, in MB: the program and its libraries (resident at start), the network loaded, the
// graph compiled (with the bytes of its planned activation buffers, allocated but not yet
// touched), after the image, and the peak resident set (getrusage ru_maxrss), which is what
// `/usr/bin/time -f %M classify ...` reports. Linux: the resident sizes come from /proc/self/status.
#include <CLI/CLI.hpp>
#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "../examples/trained_model.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/threads.hpp"

namespace {

using namespace bnn;

/// The resident set now, in MB (0 where /proc is absent).
double resident_mb() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
    return 0;
}

double peak_mb() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_maxrss) / 1024.0;  // kB on Linux
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Resident memory of a deployment file loaded, compiled and run on one image, as classify does"};
    std::string checkpoint;
    int64_t size = 0;
    int threads = 0;
    app.add_option("--checkpoint", checkpoint, "a .deploy.safetensors file (or a trainer checkpoint)")->required();
    app.add_option("--size", size, "input side for a file without the trainer's metadata")->check(CLI::Range(1, 4096));
    app.add_option("--threads", threads, "threads (default: OpenMP's)")->check(CLI::Range(1, 256));
    CLI11_PARSE(app, argc, argv);
    try {
        if (threads > 0) set_num_threads(threads);
        const double start = resident_mb();
        examples::Network net = examples::load_network(checkpoint);
        const double loaded = resident_mb();
        examples::Preprocessing p;
        if (net.preprocessing) {
            p = *net.preprocessing;
        } else {
            BNN_CHECK(size > 0, "'", checkpoint, "' has no trainer metadata: give --size");
            p = examples::plain_preprocessing(size, 3, 0);
        }
        // A random image of the input's size in place of a decoded file (a few hundred KB at most).
        Rng rng(1);
        Tensor<uint8_t> image(Shape{1, p.input_size, p.input_size, p.channels});
        for (uint8_t& v : image) v = static_cast<uint8_t>(rng.uniform(0.f, 256.f));
        const Tensor<float> x = data::normalize(image, examples::input_normalization(p));
        infer::Graph graph = infer::compile(*net.model, x.shape());
        const double compiled = resident_mb();
        const double activations = static_cast<double>(graph.buffer_bytes()) / (1 << 20);
        graph.run(x);
        const double ran = resident_mb();
        std::printf("deployment memory of '%s' (input %lldx%lld, %d threads), resident MB:\n", checkpoint.c_str(),
                    static_cast<long long>(p.input_size), static_cast<long long>(p.input_size), num_threads());
        std::printf("  program and libraries  %7.1f\n", start);
        std::printf("  network loaded         %7.1f  (+%.1f)\n", loaded, loaded - start);
        std::printf("  graph compiled         %7.1f  (+%.1f; planned activations %.1f, not yet touched)\n", compiled,
                    compiled - loaded, activations);
        std::printf("  after one image        %7.1f  (+%.1f)\n", ran, ran - compiled);
        std::printf("  peak                   %7.1f\n", peak_mb());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "deployment_memory: %s\n", e.what());
        return 1;
    }
    return 0;
}
