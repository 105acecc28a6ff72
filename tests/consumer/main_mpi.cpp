// Uses bnn::mpi the way a data-parallel application would: include/bnn/dist compiled with MPI
// (BNN_WITH_MPI from the target), MPI's library linked. Run without mpirun: a group of one.
#include <bnn/dist/dist.hpp>
#include <mpi.h>

#include <cstdio>
#include <vector>

int main() {
    if (!bnn::dist::built_with_mpi()) {
        std::printf("consumer_mpi: bnn::mpi did not define BNN_WITH_MPI\n");
        return 1;
    }
    char library[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(library, &length);  // links against MPI (callable before MPI_Init)
    bnn::dist::ProcessGroup& world = bnn::dist::ProcessGroup::world();
    std::vector<float> g{1.f, 2.f};
    world.all_reduce_sum(g.data(), 2);
    const bool ok = world.size() == 1 && g[0] == 1.f && g[1] == 2.f && length > 0;
    std::printf("consumer_mpi: a group of %d, all-reduce %s, MPI library of %d characters\n", world.size(),
                ok ? "as expected" : "wrong", length);
    return ok ? 0 : 1;
}
