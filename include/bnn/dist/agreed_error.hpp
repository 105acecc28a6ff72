#pragma once
/// @file agreed_error.hpp
/// Errors under mpirun, each printed once. An error every rank hits at the same point (a bad
/// --data path, a checkpoint they all read) used to be printed by every rank, and an error one
/// rank hits alone must end the job, or the others wait for it in their next collective.
///
/// on_every_rank runs a step that calls no collective (reading files, checking options) and then
/// exchanges the ranks' errors at a point every rank reaches: if any rank failed, every rank
/// throws an AgreedError. Each distinct message is reported once, by the lowest rank that has
/// it, naming the ranks unless all have it, and every rank can end normally. An error raised
/// anywhere else is one rank's own: report_error prints it with the rank and aborts the job.
#include <cstdio>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/dist/process_group.hpp"

namespace bnn::dist {

/// An error the ranks agreed on, raised on every rank at the same point of the program.
class AgreedError : public Error {
public:
    /// `where`: "" when every rank has the error, else e.g. "on rank 1 of 2" or "on ranks 0, 2 of 4".
    AgreedError(const std::string& message, std::string where, bool reported_here)
        : Error(message), where_(std::move(where)), reported_here_(reported_here) {}
    const std::string& where() const { return where_; }
    /// True on the one rank that prints this message.
    bool reported_here() const { return reported_here_; }

private:
    std::string where_;
    bool reported_here_;
};

/// An error every rank raises alike by construction (same message, same point: it follows from
/// values all ranks share, such as a loss summed over them), reported by rank 0.
inline AgreedError alike_on_every_rank(const ProcessGroup& group, const std::string& message) {
    return AgreedError(message, "", group.is_root());
}

/// "on rank 1 of 2", "on ranks 0, 2 of 4".
inline std::string on_ranks(const std::vector<int>& ranks, int size) {
    std::string s = ranks.size() == 1 ? "on rank " : "on ranks ";
    for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
    return s + " of " + std::to_string(size);
}

/// Collective: every rank passes its error at the same point of the program ("" for none).
/// Returns when no rank has one; otherwise every rank throws an AgreedError: its own message,
/// or, on a rank without one, a note of the first rank that failed, reported by no one.
inline void agree_on_errors(ProcessGroup& group, const std::string& mine, const char* what) {
    if (group.size() == 1) {
        if (!mine.empty()) throw AgreedError(mine, "", true);
        return;
    }
    const std::vector<std::string> all = group.all_gather(mine, what);
    std::vector<int> failed, same;
    for (int r = 0; r < group.size(); ++r) {
        if (all[static_cast<size_t>(r)].empty()) continue;
        failed.push_back(r);
        if (all[static_cast<size_t>(r)] == mine) same.push_back(r);
    }
    if (failed.empty()) return;
    if (mine.empty())
        throw AgreedError(std::string(what) + " failed " + on_ranks(failed, group.size()), "", false);
    throw AgreedError(mine, static_cast<int>(same.size()) == group.size() ? "" : on_ranks(same, group.size()),
                      same.front() == group.rank());
}

/// Runs `step` on every rank, then agree_on_errors with what it threw (any std::exception).
/// `step` must call no collective: a rank that fails skips the rest of it.
template <class Step>
void on_every_rank(ProcessGroup& group, const char* what, Step&& step) {
    if (group.size() == 1) {
        step();
        return;
    }
    std::string error;
    try {
        step();
    } catch (const std::exception& e) {
        error = *e.what() ? e.what() : "an error without a message";
    }
    agree_on_errors(group, error, what);
}

/// Prints `e` for the user and returns the exit code, 1: "error: message", or with an
/// AgreedError of some ranks "error on rank 1 of 2: message", printed by the rank that reports
/// it; the ranks then wait for one another, so that none ends (and mpirun stops the job) before
/// the message is out. Any other error is this rank's alone: printed with the rank, and the job
/// is aborted (the other ranks would wait for this one in their next collective).
[[nodiscard]] inline int report_error(ProcessGroup& group, const std::exception& e) {
    if (const auto* agreed = dynamic_cast<const AgreedError*>(&e)) {
        if (agreed->reported_here()) {
            const std::string& where = agreed->where();
            std::fprintf(stderr, "error%s%s: %s\n", where.empty() ? "" : " ", where.c_str(), e.what());
            std::fflush(stderr);
        }
        group.barrier("the report of an error");
        return 1;
    }
    if (group.size() == 1) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "error on rank %d of %d: %s\n", group.rank(), group.size(), e.what());
    group.abort(1);
}

}  // namespace bnn::dist
