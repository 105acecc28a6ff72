// Fuzzes what the CIFAR trainer reads back on --resume (examples/trainer/): the stage's
// checkpoint through trainer::read_resume_point into a width-1 Real-to-Bin ResNet-18 and its
// Adam optimiser, and metrics.jsonl through trainer::MetricsLog, rewound to the resumed epoch as
// the trainer does. Input: [m: 2 bytes, little-endian][m bytes of metrics.jsonl][the checkpoint].
// bnn::Error is the only acceptable failure.
#include <cstddef>
#include <cstdint>
#include <string>

#include "bnn/optim/adam.hpp"
#include "bnn/train/param_groups.hpp"
#include "fuzz_models.hpp"
#include "scratch_file.hpp"
#include "trainer/metrics_log.hpp"
#include "trainer/resume_point.hpp"

namespace {

constexpr int kEpochs = 4;
const std::string kStage = "real-to-bin/step2";

struct Stage {
    std::unique_ptr<bnn::examples::ResNet18> model = bnn::fuzz::small_resnet(bnn::examples::Variant::RealToBin);
    bnn::optim::Adam optimizer{bnn::train::param_groups(*model, 1e-3f, 1e-5f), {.decoupled_weight_decay = true}};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Stage stage;
    if (size < 2) return 0;
    const size_t metrics_size = std::min<size_t>(data[0] | (size_t{data[1]} << 8), size - 2);
    const std::string metrics = bnn::fuzz::write_scratch("metrics.jsonl", data + 2, metrics_size);
    const std::string checkpoint =
        bnn::fuzz::write_scratch("stage.safetensors", data + 2 + metrics_size, size - 2 - metrics_size);
    int first_epoch = 1;
    try {
        const trainer::ResumePoint point = trainer::read_resume_point(checkpoint, *stage.model, stage.optimizer, kEpochs);
        if (point.epoch < 1 || (!point.complete && point.epoch > kEpochs)) __builtin_trap();
        first_epoch = point.epoch + 1;
    } catch (const bnn::Error&) {
    }
    try {
        trainer::MetricsLog log(metrics, /*resume=*/true);
        log.rewind(kStage, first_epoch);
        for (const auto& r : log.epochs())
            if (r.stage == kStage && r.epoch >= first_epoch) __builtin_trap();  // rewound records are gone
    } catch (const bnn::Error&) {
    }
    return 0;
}
