// Failure cases of data-parallel training, each run under `mpirun -np 2` by expect_failure.sh,
// which requires the job to end with an error within a bounded time, its message printed as
// often as expected:
//   dist_failure die         rank 1 is killed mid-training; mpirun must end rank 0 too
//   dist_failure stall       rank 1 stops answering (alive, asleep); rank 0's wait times out
//                            (BNN_DIST_TIMEOUT) and aborts the job
//   dist_failure same-error  every rank fails alike in a step run by on_every_rank: printed once
//   dist_failure rank-error  rank 1 alone fails in such a step: printed once, naming rank 1
//   dist_failure lone-error  rank 1 fails mid-training while rank 0 is in an all-reduce: printed
//                            by rank 1, naming it, and the job is aborted
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bnn/dist/dist.hpp"

namespace {

using bnn::dist::ProcessGroup;

/// All-reduces a gradient-sized buffer forever; rank 1 does `what_rank1_does` at step 3.
template <class F>
void train(ProcessGroup& world, F what_rank1_does) {
    std::vector<float> gradient(1 << 16, 1.f);
    for (int step = 0;; ++step) {
        if (world.rank() == 1 && step == 3) what_rank1_does();
        world.all_reduce_sum(gradient.data(), static_cast<int64_t>(gradient.size()), "a gradient all-reduce");
        std::fill(gradient.begin(), gradient.end(), 1.f);
    }
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc == 2 ? argv[1] : "";
    ProcessGroup& world = ProcessGroup::world();
    try {
        if (mode == "die") train(world, [] { std::raise(SIGKILL); });
        if (mode == "stall") train(world, [] { std::this_thread::sleep_for(std::chrono::hours(1)); });
        if (mode == "lone-error") train(world, [] { bnn::fail("rank 1 fails alone mid-training"); });
        if (mode == "same-error")
            bnn::dist::on_every_rank(world, "a test step", [] { bnn::fail("every rank fails alike"); });
        if (mode == "rank-error")
            bnn::dist::on_every_rank(world, "a test step", [&] {
                if (world.rank() == 1) bnn::fail("only rank 1 fails");
            });
    } catch (const std::exception& e) {
        return bnn::dist::report_error(world, e);
    }
    std::fprintf(stderr, "usage: dist_failure die|stall|same-error|rank-error|lone-error\n");
    return 2;
}
