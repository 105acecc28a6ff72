#pragma once
/// @file grad_mode.hpp
/// Whether operations record themselves on the tape. Per thread, so a data-loading thread and
/// the training thread do not interfere.

namespace bnn {

namespace detail {
inline bool& grad_mode_flag() {
    thread_local bool enabled = true;
    return enabled;
}
}  // namespace detail

/// True when operations record tape nodes (the default).
inline bool grad_enabled() { return detail::grad_mode_flag(); }

/// While alive, operations record nothing: inference, teachers, evaluation.
class NoGradGuard {
public:
    NoGradGuard() : previous_(detail::grad_mode_flag()) { detail::grad_mode_flag() = false; }
    ~NoGradGuard() { detail::grad_mode_flag() = previous_; }
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    bool previous_;
};

}  // namespace bnn
