// Failure cases of data-parallel training, each run under `mpirun -np 2` by expect_failure.sh,
// which requires the job to end with an error within a bounded time:
//   dist_failure die     rank 1 is killed mid-training; mpirun must end rank 0 too
//   dist_failure stall   rank 1 stops answering (alive, asleep); rank 0's wait times out
//                        (BNN_DIST_TIMEOUT) and aborts the job
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "bnn/dist/dist.hpp"

int main(int argc, char** argv) {
    using bnn::dist::ProcessGroup;
    if (argc != 2 || (std::strcmp(argv[1], "die") != 0 && std::strcmp(argv[1], "stall") != 0)) {
        std::fprintf(stderr, "usage: dist_failure die|stall\n");
        return 2;
    }
    const bool die = std::strcmp(argv[1], "die") == 0;
    ProcessGroup& world = ProcessGroup::world();
    std::vector<float> gradient(1 << 16, 1.f);
    for (int step = 0;; ++step) {
        if (world.rank() == 1 && step == 3) {
            if (die) std::raise(SIGKILL);
            std::this_thread::sleep_for(std::chrono::hours(1));
        }
        world.all_reduce_sum(gradient.data(), static_cast<int64_t>(gradient.size()), "a gradient all-reduce");
        std::fill(gradient.begin(), gradient.end(), 1.f);
    }
}
