#pragma once
/// @file process_group.hpp
/// ProcessGroup: the processes training one model together, and the collectives they use.
///
/// ProcessGroup::world() is the group mpirun started: MPI is initialised on first use (one
/// thread calls MPI, MPI_THREAD_FUNNELED) and finalised at exit. A program started without
/// mpirun is a group of one process and never touches MPI, so it behaves exactly as before.
/// MPI is compiled in only for targets linking bnn::mpi (which defines BNN_WITH_MPI); a build
/// without it refuses to run under mpirun rather than run N unrelated copies.
///
/// Every collective waits by polling, at most timeout_seconds() (BNN_DIST_TIMEOUT, default 300):
/// a rank whose peer stopped answering prints why and aborts the job (MPI_Abort) instead of
/// hanging. A peer that dies is normally noticed sooner by mpirun, which ends the job.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#ifdef BNN_WITH_MPI
#include <mpi.h>
#endif

#include "bnn/core/error.hpp"

namespace bnn::dist {

/// True when this process was started by an MPI launcher (Open MPI, MPICH/Hydra, PMIx, Slurm).
inline bool launched_by_mpirun() {
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
        if (std::getenv(var) != nullptr) return true;
    return false;
}

/// True when this build can talk MPI (the target links bnn::mpi).
constexpr bool built_with_mpi() {
#ifdef BNN_WITH_MPI
    return true;
#else
    return false;
#endif
}

/// A non-blocking collective in flight (empty in a group of one).
struct Request {
#ifdef BNN_WITH_MPI
    MPI_Request handle = MPI_REQUEST_NULL;
#endif
};

class ProcessGroup {
public:
    /// The processes mpirun started (one process without mpirun).
    static ProcessGroup& world() {
        static ProcessGroup group = make_world();
        return group;
    }
    /// This process alone, as a group: the single-process reference of a computation, with
    /// the same code path (over MPI_COMM_SELF when MPI is running).
    static ProcessGroup self() {
        ProcessGroup g;
#ifdef BNN_WITH_MPI
        if (mpi_running()) g.comm_ = MPI_COMM_SELF;
#endif
        return g;
    }

    int rank() const { return rank_; }
    int size() const { return size_; }
    /// Rank among the processes on this machine, and their number.
    int local_rank() const { return local_rank_; }
    int local_size() const { return local_size_; }
    bool is_root() const { return rank_ == 0; }

    /// Seconds a collective may wait before the job is aborted.
    double timeout_seconds() const { return timeout_; }
    void set_timeout_seconds(double s) {
        BNN_CHECK(s > 0, "ProcessGroup::set_timeout_seconds: expected a positive time, got ", s);
        timeout_ = s;
    }

    /// Starts data[i] = sum over ranks of data[i], in place; finish it with wait().
    template <class T>
    Request start_all_reduce_sum(T* data, int64_t n) {
        Request r;
#ifdef BNN_WITH_MPI
        if (size_ > 1) check(MPI_Iallreduce(MPI_IN_PLACE, data, count(n), mpi_type<T>(), MPI_SUM, comm_, &r.handle),
                             "MPI_Iallreduce");
#else
        (void)data, (void)n;
#endif
        return r;
    }
    /// data[i] = sum over ranks of data[i], in place.
    template <class T>
    void all_reduce_sum(T* data, int64_t n, const char* what = "an all-reduce") {
        Request r = start_all_reduce_sum(data, n);
        wait(r, what);
    }
    /// Copies root's `bytes` bytes at data into every rank's data.
    void broadcast(void* data, int64_t bytes, int root = 0, const char* what = "a broadcast") {
        BNN_CHECK(root >= 0 && root < size_, "ProcessGroup::broadcast: root ", root, " is not a rank of a group of ",
                  size_);
#ifdef BNN_WITH_MPI
        if (size_ > 1) {
            Request r;
            check(MPI_Ibcast(data, count(bytes), MPI_BYTE, root, comm_, &r.handle), "MPI_Ibcast");
            wait(r, what);
        }
#else
        (void)data, (void)bytes, (void)what;
#endif
    }
    /// Every rank's string, in rank order, on every rank.
    std::vector<std::string> all_gather(const std::string& mine, const char* what = "an all-gather") {
        (void)what;  // unused without MPI
        if (size_ == 1) return {mine};
        std::vector<std::string> out(static_cast<size_t>(size_));
#ifdef BNN_WITH_MPI
        std::vector<int> lengths(out.size()), offsets(out.size());
        int length = count(static_cast<int64_t>(mine.size()));
        Request r;
        check(MPI_Iallgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm_, &r.handle), "MPI_Iallgather");
        wait(r, what);
        int64_t total = 0;
        for (size_t i = 0; i < out.size(); ++i) offsets[i] = count(total), total += lengths[i];
        std::string all(static_cast<size_t>(total), '\0');
        check(MPI_Iallgatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
                              comm_, &r.handle),
              "MPI_Iallgatherv");
        wait(r, what);
        for (size_t i = 0; i < out.size(); ++i) out[i] = all.substr(offsets[i], lengths[i]);
#endif
        return out;
    }
    /// Returns once every rank called it.
    void barrier(const char* what = "a barrier") {
#ifdef BNN_WITH_MPI
        if (size_ > 1) {
            Request r;
            check(MPI_Ibarrier(comm_, &r.handle), "MPI_Ibarrier");
            wait(r, what);
        }
#else
        (void)what;
#endif
    }

    /// True when r has completed (drives the transfer forward: MPI progresses only in calls).
    bool test(Request& r) {
#ifdef BNN_WITH_MPI
        if (r.handle == MPI_REQUEST_NULL) return true;
        int done = 0;
        check(MPI_Test(&r.handle, &done, MPI_STATUS_IGNORE), "MPI_Test");
        return done != 0;
#else
        (void)r;
        return true;
#endif
    }
    /// Waits for r, at most timeout_seconds(); past that the job is aborted, naming `what`.
    void wait(Request& r, const char* what) {
        if (test(r)) return;
        const auto start = std::chrono::steady_clock::now();
        for (int spins = 0; !test(r); ++spins) {
            if (spins % 1024 != 1023) continue;
            const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (waited > timeout_) {
                std::fprintf(stderr,
                             "bnn::dist: rank %d waited %.0f s for %s; another rank has stopped or hangs, "
                             "aborting the job (BNN_DIST_TIMEOUT sets the limit)\n",
                             rank_, waited, what);
                abort(3);
            }
            std::this_thread::yield();
        }
    }

    /// Ends every process of the job with `code` (use after an error that only this rank saw:
    /// the others would otherwise wait for it in their next collective).
    [[noreturn]] void abort(int code) {
        std::fflush(stdout);
        std::fflush(stderr);
#ifdef BNN_WITH_MPI
        if (size_ > 1) MPI_Abort(comm_, code);
#endif
        std::_Exit(code);
    }

private:
    ProcessGroup() = default;

    static double timeout_from_environment() {
        const char* s = std::getenv("BNN_DIST_TIMEOUT");
        if (s == nullptr || *s == '\0') return 300.0;
        char* end = nullptr;
        const double v = std::strtod(s, &end);
        BNN_CHECK(end != s && *end == '\0' && v > 0, "BNN_DIST_TIMEOUT: expected a positive number of seconds, got '",
                  s, "'");
        return v;
    }

    static ProcessGroup make_world() {
        ProcessGroup g;
        g.timeout_ = timeout_from_environment();
        if (!launched_by_mpirun()) return g;
#ifdef BNN_WITH_MPI
        runtime();
        g.comm_ = MPI_COMM_WORLD;
        MPI_Comm_rank(g.comm_, &g.rank_);
        MPI_Comm_size(g.comm_, &g.size_);
        MPI_Comm node;
        check(MPI_Comm_split_type(g.comm_, MPI_COMM_TYPE_SHARED, g.rank_, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
        MPI_Comm_rank(node, &g.local_rank_);
        MPI_Comm_size(node, &g.local_size_);
        MPI_Comm_free(&node);
        // Errors come back as codes, so check() can raise them as bnn::Error.
        MPI_Comm_set_errhandler(g.comm_, MPI_ERRORS_RETURN);
        return g;
#else
        ::bnn::fail("bnn::dist: this program was started by mpirun but built without MPI; configure with MPI found ",
                    "(libopenmpi-dev) and link bnn::mpi, or run it without mpirun");
#endif
    }

#ifdef BNN_WITH_MPI
    /// Initialises MPI once and finalises it at exit (unless someone else initialised it).
    struct Runtime {
        bool owned = false;
        Runtime() {
            int initialised = 0;
            MPI_Initialized(&initialised);
            if (initialised) return;
            int provided = 0;
            MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
            owned = true;
            BNN_CHECK(provided >= MPI_THREAD_FUNNELED, "bnn::dist: MPI provides thread level ", provided,
                      ", expected at least MPI_THREAD_FUNNELED");
        }
        ~Runtime() {
            int finalised = 0;
            MPI_Finalized(&finalised);
            if (owned && !finalised) MPI_Finalize();
        }
    };
    static Runtime& runtime() {
        static Runtime r;
        return r;
    }
    static bool mpi_running() {
        int initialised = 0, finalised = 0;
        MPI_Initialized(&initialised);
        MPI_Finalized(&finalised);
        return initialised && !finalised;
    }
    static void check(int code, const char* call) {
        if (code == MPI_SUCCESS) return;
        char text[MPI_MAX_ERROR_STRING];
        int length = 0;
        MPI_Error_string(code, text, &length);
        ::bnn::fail("bnn::dist: ", call, " failed: ", std::string(text, static_cast<size_t>(length)));
    }
    static int count(int64_t n) {
        BNN_CHECK(n >= 0 && n <= INT32_MAX, "bnn::dist: a message of ", n, " elements exceeds MPI's int count");
        return static_cast<int>(n);
    }
    template <class T>
    static MPI_Datatype mpi_type() {
        if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
        else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
        else if constexpr (std::is_same_v<T, int64_t>) return MPI_INT64_T;
        else static_assert(sizeof(T) == 0, "ProcessGroup: all-reduce supports float, double and int64_t");
    }
    MPI_Comm comm_ = MPI_COMM_SELF;
#endif

    int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
    double timeout_ = 300.0;
};

}  // namespace bnn::dist
