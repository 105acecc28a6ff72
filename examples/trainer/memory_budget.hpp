#pragma once
// Whether a training run fits in memory, checked before it starts: a --width too large for the
// machine was killed by the kernel's OOM killer part way through (Linux overcommits, so the
// allocations succeed and the process dies when their pages are touched). The estimate is an
// upper bound, compared with the memory this process may still take: the machine's
// MemAvailable, the address-space limit (ulimit -v) and the cgroup's memory limit, whichever is
// tightest. docs/reliability.md, "Memory estimate" has the measurements behind the constants.
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>

#include "bnn/core/error.hpp"

namespace trainer {

/// Bytes a training run of ResNet-18 (CIFAR stem) takes at most, by what holds them.
struct MemoryEstimate {
    double state = 0;        ///< parameters and everything of their size
    double activations = 0;  ///< tensors kept for the backward (or an evaluation batch's, if larger)
    double program = 0;      ///< code, libraries, thread stacks, the loaders' batches
    double total() const { return state + activations + program; }
};

/// Parameters of ResNet-18 at `width`, at most, from `at_8`, the count at width 8: every layer's
/// count is a*w^2 + b*w + c with a, b, c >= 0, so (w/8)^2 times the count at 8 bounds it for
/// w >= 8 (and the count at 8 bounds it below).
inline double parameter_bound(int64_t width, int64_t at_8) {
    const double r = static_cast<double>(width) / 8.0;
    return static_cast<double>(at_8) * std::max(1.0, r * r);
}

/// The upper-bound model. `parameters`: parameter_bound of the largest network of the run;
/// `batch` and `eval_batch`: images per step on this process; `image_size`: the square input.
///  - state: 8 floats per parameter: weights, gradients and Adam's two moments of the student,
///    the frozen teacher's weights, and a checkpoint's copy of weights and moments being saved;
///  - activations: 8 floats per element of every conv output per image (a conv's output, batch
///    norm, sign or tanh, gate, PReLU, the sum: measured, at most 5.5 in all), 2 in evaluation,
///    where nothing is kept; ResNet-18's conv outputs per image are 9.375 x image_size^2 x width
///    (the stem, 4 convs in each stage at 1, 1/2, 1/4, 1/8 of the elements, 3 downsamples);
///  - program: 64 MiB.
inline MemoryEstimate estimate_training_memory(double parameters, int64_t width, int64_t batch, int64_t eval_batch,
                                               int64_t image_size) {
    const double conv_outputs = 9.375 * static_cast<double>(image_size * image_size) * static_cast<double>(width);
    MemoryEstimate e;
    e.state = 8 * 4 * parameters;
    e.activations = std::max(8.0 * static_cast<double>(batch), 2.0 * static_cast<double>(eval_batch)) * 4 * conv_outputs;
    e.program = 64.0 * (1 << 20);
    return e;
}

/// Memory this process may still take, and what limits it.
struct MemoryLimit {
    double bytes = std::numeric_limits<double>::infinity();
    std::string source = "no limit found";
};

namespace detail {
/// The number after `key` in a "key value" file such as /proc/meminfo (-1 when absent).
inline double field_of(const std::string& path, const std::string& key) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);)
        if (line.compare(0, key.size(), key) == 0) {
            std::istringstream rest(line.substr(key.size()));
            double v = -1;
            rest >> v;
            return v;
        }
    return -1;
}
/// The first number in a file, or -1 (also for "max", cgroup v2's no limit).
inline double number_in(const std::string& path) {
    std::ifstream in(path);
    double v = -1;
    return in >> v ? v : -1;
}
/// This process's cgroup directory for `controller` ("" for cgroup v2) from /proc/self/cgroup.
inline std::string cgroup_path(const std::string& controller) {
    std::ifstream in("/proc/self/cgroup");
    for (std::string line; std::getline(in, line);) {
        const size_t a = line.find(':'), b = line.find(':', a + 1);
        if (a == std::string::npos || b == std::string::npos) continue;
        const std::string controllers = "," + line.substr(a + 1, b - a - 1) + ",";
        if (controller.empty() ? controllers == ",," : controllers.find("," + controller + ",") != std::string::npos)
            return line.substr(b + 1);
    }
    return "";
}
inline void tighten(MemoryLimit& limit, double bytes, const char* source) {
    if (bytes >= 0 && bytes < limit.bytes) limit = {bytes, source};
}
}  // namespace detail

/// The tightest of: MemAvailable; the address-space limit less this process's size; the cgroup's
/// limit less its working set (usage without the page cache the kernel would reclaim first).
inline MemoryLimit memory_available() {
    MemoryLimit limit;
    detail::tighten(limit, detail::field_of("/proc/meminfo", "MemAvailable:") * 1024, "MemAvailable in /proc/meminfo");
    rlimit as{};
    if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
        const double size = detail::field_of("/proc/self/status", "VmSize:") * 1024;
        detail::tighten(limit, static_cast<double>(as.rlim_cur) - std::max(size, 0.0), "the address-space limit, ulimit -v");
    }
    // cgroup v2, then v1 (its "no limit" is a huge number).
    const std::string v2 = "/sys/fs/cgroup" + detail::cgroup_path("");
    const std::string v1 = "/sys/fs/cgroup/memory" + detail::cgroup_path("memory");
    for (const auto& [dir, max, current, cache] :
         {std::tuple{v2, "/memory.max", "/memory.current", "inactive_file "},
          std::tuple{v1, "/memory.limit_in_bytes", "/memory.usage_in_bytes", "total_inactive_file "}}) {
        const double cap = detail::number_in(dir + max), used = detail::number_in(dir + current);
        if (cap <= 0 || cap >= 0x1p60 || used < 0) continue;
        const double reclaimable = std::max(detail::field_of(dir + "/memory.stat", cache), 0.0);
        detail::tighten(limit, std::max(cap - std::max(used - reclaimable, 0.0), 0.0), "the cgroup's memory limit");
    }
    return limit;
}

/// "2.93 GiB", "2.85e+05 GiB".
inline std::string gib(double bytes) {
    char s[32];
    std::snprintf(s, sizeof s, "%.3g GiB", bytes / (1 << 30));
    return s;
}

/// Refuses a run whose estimate exceeds the limit, naming both. `ranks_here` processes of the
/// run share this machine, each needing `per_rank`.
inline void require_memory(const MemoryEstimate& per_rank, int ranks_here, const MemoryLimit& limit, int64_t width,
                           int64_t batch) {
    const double need = per_rank.total() * ranks_here;
    if (need <= limit.bytes) return;
    bnn::fail("trainer: --width ", width, " with --batch ", batch, " needs about ", gib(need), " of memory",
              ranks_here > 1 ? " for the " + std::to_string(ranks_here) + " ranks on this machine" : std::string(),
              " (parameters and optimiser state ", gib(per_rank.state * ranks_here), ", activations ",
              gib(per_rank.activations * ranks_here), "), more than the ", gib(limit.bytes), " available (",
              limit.source, "); use a smaller --width or --batch");
}

}  // namespace trainer
