// Fuzzes checkpoint loading into modules: the three ResNet-18 variants of examples/resnet18.hpp
// at width 1 and a small chain of layers, strictly (the trainer and classify) and non-strictly
// (a stage initialised from another), plus the caller's metadata. bnn::Error is the only
// acceptable failure.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "bnn/io/checkpoint.hpp"
#include "fuzz_models.hpp"

namespace {

struct Models {
    std::vector<std::shared_ptr<bnn::nn::Module>> strict;
    std::shared_ptr<bnn::nn::Module> lenient = bnn::fuzz::small_net();
    Models() {
        using bnn::examples::Variant;
        for (Variant v : {Variant::Real, Variant::StrongBaseline, Variant::RealToBin})
            strict.push_back(std::shared_ptr<bnn::nn::Module>(bnn::fuzz::small_resnet(v)));
        strict.push_back(bnn::fuzz::small_net());
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Models models;
    bnn::io::SafetensorsFile file;
    try {
        file = bnn::io::parse_safetensors(data, size, "fuzz checkpoint");
    } catch (const bnn::Error&) {
        return 0;
    }
    for (auto& m : models.strict) {
        try {
            const auto report = bnn::io::load_module(file, *m);
            if (!report.complete()) __builtin_trap();  // strict loading returns only complete loads
        } catch (const bnn::Error&) {
        }
    }
    try {
        (void)bnn::io::load_module(file, *models.lenient, {.strict = false});
    } catch (const bnn::Error&) {
    }
    try {
        (void)bnn::io::checkpoint_metadata(file);
    } catch (const bnn::Error&) {
    }
    return 0;
}
