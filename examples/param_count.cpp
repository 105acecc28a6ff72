// Prints the parameter counts of the ResNet-18 variants (real teacher, strong baseline,
// Real-to-Bin) for CIFAR-100 and ImageNet, split into binary conv weights and real-valued
// parameters, with the size of a float checkpoint and of a bit-packed deployment.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <tuple>

#include "cli_checks.hpp"
#include "resnet18.hpp"

namespace {

struct Counts {
    int64_t total = 0;
    int64_t binary = 0;  // latent weights of the binary convs (1 bit each once deployed)
};

Counts count(const bnn::examples::ResNetOptions& o) {
    bnn::examples::ResNet18 net(o);
    Counts c;
    c.total = net.num_parameters();
    for (const auto& conv : net.binary_convs()) c.binary += conv->weight.numel();
    return c;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Parameter counts of the ResNet-18 variants of Real-to-Binary"};
    bnn::examples::one_line_errors(app, "param_count");
    int64_t width = 64;
    app.add_option("--width", width, "channels of the first stage")->check(bnn::examples::positive_integer());
    CLI11_PARSE(app, argc, argv);

    using namespace bnn::examples;
    std::printf("%-10s %-16s %14s %14s %14s %12s %12s\n", "dataset", "variant", "parameters", "binary weights",
                "real params", "float MB", "packed MB");
    for (auto [stem, classes, dataset] : {std::tuple{Stem::Cifar, 100, "CIFAR-100"},
                                          std::tuple{Stem::ImageNet, 1000, "ImageNet"}}) {
        for (Variant v : {Variant::Real, Variant::StrongBaseline, Variant::RealToBin}) {
            ResNetOptions o;
            o.variant = v;
            o.stem = stem;
            o.width = width;
            o.num_classes = classes;
            Counts c = count(o);
            const double float_mb = 4.0 * static_cast<double>(c.total) / 1e6;
            const double packed_mb = (4.0 * static_cast<double>(c.total - c.binary) + c.binary / 8.0) / 1e6;
            std::printf("%-10s %-16s %14lld %14lld %14lld %12.2f %12.2f\n", dataset, variant_name(v),
                        static_cast<long long>(c.total), static_cast<long long>(c.binary),
                        static_cast<long long>(c.total - c.binary), float_mb, packed_mb);
        }
    }
    std::printf("(float MB: every parameter as fp32; packed MB: binary conv weights at 1 bit, the rest fp32;\n"
                " BN running statistics not included)\n");
    return 0;
}
