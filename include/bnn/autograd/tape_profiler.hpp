#pragma once
/// @file tape_profiler.hpp
/// TapeProfiler: where Variable::backward() spends its time, per tape node name ("conv2d",
/// "batch_norm", "relu", ...).
///
/// While a TapeProfiler is alive, backward() on the thread that created it times every node's
/// backward closure and adds one call and its seconds under the node's op name. Without one,
/// backward() pays a single branch per node. Profilers nest: the innermost records, and the
/// enclosing one records again once it ends.
///
///     TapeProfiler profiler(ProfileClock::ProcessCpu);
///     loss.backward();
///     for (const auto& [op, t] : profiler.backward_times())
///         std::printf("%s: %lld calls, %.3f s\n", op.c_str(), static_cast<long long>(t.calls), t.seconds);
///
/// Only the backward pass is broken down, because only there does the tape run the op: backward()
/// calls each closure, so a closure's time is exactly that op's backward. An op's forward runs in
/// the caller's code before make_result() sees its output, and the time between two make_result()
/// calls also holds whatever the caller did in between, so the tape cannot attribute it. Time the
/// forward of a whole model around the call instead, or use a sampling profiler (perf).
///
/// Clocks: ProfileClock::Wall is elapsed time. ProfileClock::ProcessCpu is the CPU time of every
/// thread of the process (std::clock): closures that run on the thread pool count all their
/// threads' work, including time spent spinning at a barrier, and other programs on the same
/// machine do not inflate it.
#include <chrono>
#include <cstdint>
#include <ctime>
#include <map>
#include <string>

namespace bnn {

/// Which clock a TapeProfiler reads.
enum class ProfileClock {
    Wall,        ///< elapsed time (std::chrono::steady_clock)
    ProcessCpu,  ///< CPU time of all the process's threads (std::clock)
};

/// The accumulated backward time of one op name.
struct NodeTime {
    int64_t calls = 0;     ///< closures run
    double seconds = 0.0;  ///< their total time on the profiler's clock
};

/// While alive, records the backward time of every tape node per op name (see the file comment).
/// Not copyable or movable: backward() finds it through a per-thread pointer to this object.
class TapeProfiler {
public:
    explicit TapeProfiler(ProfileClock clock = ProfileClock::Wall) : clock_(clock), enclosing_(active_slot()) {
        active_slot() = this;
    }
    ~TapeProfiler() { active_slot() = enclosing_; }
    TapeProfiler(const TapeProfiler&) = delete;
    TapeProfiler& operator=(const TapeProfiler&) = delete;

    /// The innermost profiler alive on this thread, or nullptr.
    static TapeProfiler* active() { return active_slot(); }

    /// Calls and seconds per op name, over every backward() since construction or clear().
    const std::map<std::string, NodeTime>& backward_times() const { return backward_; }
    /// Forgets what was recorded (e.g. after a warm-up step).
    void clear() { backward_.clear(); }

    ProfileClock clock() const { return clock_; }
    /// The current reading of this profiler's clock, in seconds from an arbitrary origin.
    double now() const {
        if (clock_ == ProfileClock::ProcessCpu) return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
        return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    }
    /// Adds one backward call of op `name` that took `seconds` (Variable::backward() calls it).
    void record(const char* name, double seconds) {
        NodeTime& t = backward_[name ? name : "(unnamed)"];
        ++t.calls;
        t.seconds += seconds;
    }

private:
    static TapeProfiler*& active_slot() {
        thread_local TapeProfiler* active = nullptr;
        return active;
    }

    ProfileClock clock_;
    TapeProfiler* enclosing_;
    std::map<std::string, NodeTime> backward_;
};

}  // namespace bnn
