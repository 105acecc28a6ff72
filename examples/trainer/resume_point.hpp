#pragma once
// What --resume reads back of a stage: its checkpoint, holding the model, the optimiser and the
// metadata saying where the stage stopped. The file may be anything (a crash, a disk, a user),
// so every field is checked and a bad one is a bnn::Error, never a crash or a wrong restart.
#include <algorithm>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "bnn/core/error.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/nn/module.hpp"

namespace trainer {

struct ResumePoint {
    bool complete = false;    ///< the stage had finished: the optimiser was not read
    int epoch = 0;            ///< the last epoch the checkpoint holds (in [1, epochs] unless complete)
    double test_top1 = 0, test_top5 = 0;  ///< the test accuracy after that epoch
};

/// Loads the checkpoint at `path` into `model` (strictly) and, unless the stage is complete,
/// into `optimizer`. `epochs` is the stage's length in this run.
template <bnn::io::OptimizerState O>
ResumePoint read_resume_point(const std::string& path, bnn::nn::Module& model, O& optimizer, int epochs) {
    const bnn::io::SafetensorsFile file = bnn::io::load_safetensors(path);
    const nlohmann::json meta = bnn::io::checkpoint_metadata(file);
    BNN_CHECK(meta.is_object(), "resume: '", path, "' has metadata that is not a JSON object: ", meta.dump().substr(0, 80));
    auto shown = [&](const char* key) {
        return meta.contains(key) ? meta[key].dump().substr(0, 80) : std::string("(absent)");
    };
    ResumePoint r;
    BNN_CHECK(!meta.contains("complete") || meta["complete"].is_boolean(), "resume: '", path,
              "' has metadata 'complete' = ", shown("complete"), ", expected true or false");
    r.complete = meta.value("complete", false);
    const int64_t last = meta.contains("epoch") && meta["epoch"].is_number_integer() ? meta["epoch"].get<int64_t>() : 0;
    BNN_CHECK(last >= 1 && (r.complete || last <= epochs), "resume: '", path, "' has metadata 'epoch' = ",
              shown("epoch"), ", expected an epoch in [1, ", epochs, "] of this stage");
    r.epoch = static_cast<int>(std::min<int64_t>(last, INT32_MAX));
    for (const char* key : {"test_top1", "test_top5"})
        BNN_CHECK(!meta.contains(key) || meta[key].is_number(), "resume: '", path, "' has metadata '", key,
                  "' = ", shown(key), ", expected a number");
    r.test_top1 = meta.value("test_top1", 0.0);
    r.test_top5 = meta.value("test_top5", 0.0);
    bnn::io::load_module(file, model);
    if (!r.complete) bnn::io::load_optimizer(file, optimizer);
    return r;
}

}  // namespace trainer
