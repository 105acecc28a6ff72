#pragma once
/// @file lr_schedule.hpp
/// Learning-rate schedules: each maps a (fractional) epoch to a factor that multiplies the base
/// learning rates, for Optimizer::set_lr_factor. Call with epoch + batch / batches_per_epoch to
/// change the rate every step.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numbers>
#include <utility>
#include <vector>

#include "bnn/core/error.hpp"

namespace bnn::optim {

class LrSchedule {
public:
    virtual ~LrSchedule() = default;
    /// The factor at `epoch` (>= 0, fractional allowed).
    virtual float factor(double epoch) const = 0;
    float operator()(double epoch) const { return factor(epoch); }
};

/// Multiplies by `gamma` at each milestone passed: factor = gamma^(number of milestones <= epoch).
class StepSchedule : public LrSchedule {
public:
    StepSchedule(std::vector<double> milestones, float gamma) : milestones_(std::move(milestones)), gamma_(gamma) {
        BNN_CHECK(std::is_sorted(milestones_.begin(), milestones_.end()),
                  "StepSchedule: milestones must be in increasing order");
        BNN_CHECK(gamma_ >= 0.f, "StepSchedule: expected gamma >= 0, got ", gamma_);
    }
    float factor(double epoch) const override {
        auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin();
        return static_cast<float>(std::pow(static_cast<double>(gamma_), static_cast<double>(passed)));
    }

private:
    std::vector<double> milestones_;
    float gamma_;
};

/// Half a cosine from 1 at epoch 0 down to `min_factor` at `total` epochs, constant after.
class CosineSchedule : public LrSchedule {
public:
    explicit CosineSchedule(double total, float min_factor = 0.f) : total_(total), min_factor_(min_factor) {
        BNN_CHECK(total_ > 0, "CosineSchedule: expected total epochs > 0, got ", total_);
        BNN_CHECK(min_factor_ >= 0.f && min_factor_ <= 1.f, "CosineSchedule: expected 0 <= min_factor <= 1, got ",
                  min_factor_);
    }
    float factor(double epoch) const override {
        const double progress = std::clamp(epoch / total_, 0.0, 1.0);
        return static_cast<float>(min_factor_ + (1.0 - min_factor_) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
    }

private:
    double total_;
    float min_factor_;
};

/// Linear warm-up composed with another schedule: for epoch < warmup_epochs the inner factor is
/// scaled by a ramp from `start_factor` (epoch 0) to 1 (epoch warmup_epochs); after that the inner
/// schedule alone. The inner schedule sees the same epoch (it is not shifted by the warm-up).
class WarmupSchedule : public LrSchedule {
public:
    WarmupSchedule(double warmup_epochs, std::shared_ptr<const LrSchedule> inner, float start_factor = 0.f)
        : warmup_(warmup_epochs), inner_(std::move(inner)), start_(start_factor) {
        BNN_CHECK(warmup_ >= 0, "WarmupSchedule: expected warmup_epochs >= 0, got ", warmup_);
        BNN_CHECK(inner_ != nullptr, "WarmupSchedule: the inner schedule is null");
        BNN_CHECK(start_ >= 0.f && start_ <= 1.f, "WarmupSchedule: expected 0 <= start_factor <= 1, got ", start_);
    }
    float factor(double epoch) const override {
        const float inner = inner_->factor(epoch);
        if (epoch >= warmup_) return inner;
        const double ramp = start_ + (1.0 - start_) * std::max(epoch, 0.0) / warmup_;
        return static_cast<float>(ramp * inner);
    }

private:
    double warmup_;
    std::shared_ptr<const LrSchedule> inner_;
    float start_;
};

/// A constant factor of 1 (no schedule), e.g. as the inner schedule of a plain warm-up.
class ConstantSchedule : public LrSchedule {
public:
    float factor(double) const override { return 1.f; }
};

}  // namespace bnn::optim
