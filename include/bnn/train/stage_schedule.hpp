#pragma once
/// @file stage_schedule.hpp
/// The learning-rate schedule of one training stage (a StageConfig), as a factor on the
/// optimiser's base rates over the stage's fractional epoch:
///
///     optimizer.set_lr_factor(schedule->factor(epoch - 1 + batch / batches_per_epoch));
///
/// Two shapes, both after the stage's linear warm-up from 0:
///  - StepDecay: the paper's schedule, the rate multiplied by `decay` at each of the stage's
///    milestones (150/250/320 of 350 epochs for CIFAR-100);
///  - Cosine: half a cosine from 1 to 0 over the epochs actually run, for runs shorter than the
///    paper's. Its warm-up is scaled down to the same fraction of the run as the paper's
///    (warmup_epochs of the stage's `epochs`), so a short run keeps the schedule's shape.
#include <memory>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/optim/lr_schedule.hpp"
#include "bnn/train/stages.hpp"

namespace bnn::train {

enum class ScheduleShape {
    StepDecay,  ///< the paper's milestones and decay factor, over the stage's own epochs
    Cosine,     ///< cosine decay over the epochs run
};

/// The schedule of stage `c` when it runs `epochs` epochs. With StepDecay the milestones are
/// the stage's own, whatever `epochs` is; with Cosine the curve ends at `epochs`.
inline std::shared_ptr<const optim::LrSchedule> stage_schedule(const StageConfig& c, ScheduleShape shape,
                                                               int epochs) {
    BNN_CHECK(epochs > 0, "stage_schedule: expected epochs > 0, got ", epochs);
    BNN_CHECK(c.warmup_epochs >= 0 && c.epochs > 0, "stage_schedule: stage '", c.name,
              "' needs warmup_epochs >= 0 and epochs > 0, got ", c.warmup_epochs, " and ", c.epochs);
    std::shared_ptr<const optim::LrSchedule> inner;
    double warmup = c.warmup_epochs;
    if (shape == ScheduleShape::StepDecay) {
        inner = std::make_shared<optim::StepSchedule>(std::vector<double>(c.milestones.begin(), c.milestones.end()),
                                                      c.decay);
    } else {
        inner = std::make_shared<optim::CosineSchedule>(epochs);
        warmup = static_cast<double>(c.warmup_epochs) * epochs / c.epochs;
    }
    if (warmup <= 0) return inner;
    return std::make_shared<optim::WarmupSchedule>(warmup, inner);
}

}  // namespace bnn::train
