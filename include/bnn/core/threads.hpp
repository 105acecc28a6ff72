#pragma once
/// @file threads.hpp
/// The threading helpers every kernel shares, so each question has one answer:
/// - how many threads: num_threads() (OpenMP's setting, which Eigen's GEMM reads too), set by
///   set_num_threads();
/// - whether a pass is worth a parallel region: worth_threading(elements);
/// - how to split work items evenly: parallel_ranges(), and an element-wise pass: parallel_pass();
/// - how to keep the threads of many short passes in one parallel region: with_thread_team();
/// - where a thread keeps its temporary buffer between calls: thread_scratch<Tag, T>(count).
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <thread>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace bnn {

/// Sets the threads used by every later kernel call on this thread of the program.
inline void set_num_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n < 1 ? 1 : n);
#else
    (void)n;
#endif
}

/// The threads a kernel called now may use (1 without OpenMP).
inline int num_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/// True when a pass over `elements` values is long enough that a parallel region costs less
/// than it saves (opening one costs about as much as a pass over 64 Ki floats).
inline bool worth_threading(int64_t elements) { return elements > (int64_t{1} << 16); }

namespace detail {

/// A team of threads kept in one OpenMP parallel region for a whole sequence of passes (an
/// inference graph's call, with_thread_team): its member threads wait between passes and the
/// leader hands each pass out through two cache lines, which costs a fraction of opening a
/// parallel region per pass. A wait spins for tens of microseconds (the gaps between a graph's
/// passes), then sleeps until woken, so that teams on a machine with more threads than cores
/// let each other run. A team's passes must not throw.
class ThreadTeam {
public:
    int size() const { return size_; }

    /// The leader: fn(t, begin, end) for the `threads` even shares of [0, items), share 0 on the
    /// calling thread; returns when every share is done (and only then rethrows an exception
    /// from share 0: the others still use fn).
    template <class F>
    void run(int64_t items, int threads, F& fn) {
        job_ = {&call<F>, &fn, items, threads};
        done_.store(0, std::memory_order_relaxed);
        sequence_.fetch_add(1, std::memory_order_release);
        sequence_.notify_all();
        std::exception_ptr error;
        try {
            run_share(0);
        } catch (...) {
            error = std::current_exception();
        }
        for (uint32_t done; (done = done_.load(std::memory_order_acquire)) != uint32_t(size_ - 1);)
            wait_for_change(done_, done);
        if (error) std::rethrow_exception(error);
    }

    /// A member (t >= 1): runs its share of each pass until the leader stops the team.
    void serve(int t) {
        uint32_t seen = 0;
        for (;;) {
            seen = wait_for_change(sequence_, seen);
            if (stopping_) return;
            run_share(t);
            done_.fetch_add(1, std::memory_order_release);
            done_.notify_one();
        }
    }

    /// The leader, inside the region: start (size = the region's threads) and stop.
    void start(int size) { size_ = size; }
    void stop() {
        stopping_ = true;
        sequence_.fetch_add(1, std::memory_order_release);
        sequence_.notify_all();
    }

private:
    struct Job {
        void (*call)(void* fn, int t, int64_t begin, int64_t end) = nullptr;
        void* fn = nullptr;
        int64_t items = 0;
        int threads = 0;
    };
    template <class F>
    static void call(void* fn, int t, int64_t begin, int64_t end) {
        (*static_cast<F*>(fn))(t, begin, end);
    }
    void run_share(int t) {
        if (t >= job_.threads) return;
        job_.call(job_.fn, t, job_.items * t / job_.threads, job_.items * (t + 1) / job_.threads);
    }
    /// The value of `a` once it is no longer `old`: a thousand pause instructions (about 20 us on
    /// Zen 5), then sleeps (a futex: notify costs a load while nobody sleeps). While the teams of
    /// the process have more threads than the machine has cores it sleeps at once: a spinning
    /// thread would hold the core a descheduled team mate needs.
    static uint32_t wait_for_change(const std::atomic<uint32_t>& a, uint32_t old) {
        const int spin_limit = team_threads().load(std::memory_order_relaxed) > cores() ? 0 : 1024;
        for (int spins = 0; spins < spin_limit; ++spins) {
            const uint32_t now = a.load(std::memory_order_acquire);
            if (now != old) return now;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            asm volatile("yield");
#endif
        }
        for (;;) {
            a.wait(old, std::memory_order_acquire);
            const uint32_t now = a.load(std::memory_order_acquire);
            if (now != old) return now;
        }
    }

public:
    /// The threads of every team of the process now, and the cores they share.
    static std::atomic<int>& team_threads() {
        static std::atomic<int> count{0};
        return count;
    }
    static int cores() {
        static const int n = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
        return n;
    }

private:
    alignas(64) std::atomic<uint32_t> sequence_{0};
    alignas(64) std::atomic<uint32_t> done_{0};
    alignas(64) Job job_;
    bool stopping_ = false;
    int size_ = 1;
};

/// The team whose leader is this thread, outside the team's passes (null elsewhere).
inline thread_local ThreadTeam* leading_team = nullptr;

}  // namespace detail

/// True inside a parallel region's pass, where a kernel runs on the calling thread alone; false
/// on a team's leader between passes (with_thread_team), which may hand out passes.
inline bool in_parallel_pass() {
#ifdef _OPENMP
    return omp_in_parallel() && detail::leading_team == nullptr;
#else
    return false;
#endif
}

/// Splits [0, items) into `threads` contiguous, even shares and runs fn(thread, begin, end) for
/// each on its own thread (inline when threads <= 1): through the calling thread's team when it
/// leads one (with_thread_team), else in an OpenMP parallel region. A share may be empty.
template <class F>
void parallel_ranges(int64_t items, int threads, F&& fn) {
    if (threads <= 1) {
        fn(0, int64_t{0}, items);
        return;
    }
    if (detail::ThreadTeam* team = detail::leading_team) {
        // Nested parallel_ranges inside a share run as nested regions do: on their own thread.
        auto share = [&](int t, int64_t begin, int64_t end) {
            struct Lead {  // the leader leads again after its share, however it ends
                detail::ThreadTeam* team;
                ~Lead() { detail::leading_team = team; }
            } lead{t == 0 ? team : nullptr};
            detail::leading_team = nullptr;
            fn(t, begin, end);
        };
        team->run(items, std::min(threads, team->size()), share);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const int64_t t = 0, nt = 1;
#endif
        fn(static_cast<int>(t), items * t / nt, items * (t + 1) / nt);
    }
}

/// fn(begin, end) over contiguous shares of [0, items) on the threads when a pass over
/// `elements` values is worth threading, else inline: the split of an element-wise kernel.
template <class F>
void parallel_pass(int64_t items, int64_t elements, F&& fn) {
    parallel_ranges(items, worth_threading(elements) ? num_threads() : 1,
                    [&](int, int64_t begin, int64_t end) { fn(begin, end); });
}

/// Runs body() on the calling thread with `threads` threads kept in one parallel region: every
/// parallel_ranges() in it (and in what it calls) hands out its shares to the waiting threads
/// instead of opening a region of its own. An exception from body() is rethrown here. Inline,
/// without a team, for one thread or inside a parallel region.
template <class Body>
void with_thread_team(int threads, Body&& body) {
#ifdef _OPENMP
    if (threads <= 1 || omp_in_parallel() || detail::leading_team) {
        body();
        return;
    }
    detail::ThreadTeam team;
    std::exception_ptr error;
#pragma omp parallel num_threads(threads)
    {
        if (omp_get_thread_num() == 0) {
            team.start(omp_get_num_threads());
            detail::ThreadTeam::team_threads().fetch_add(team.size(), std::memory_order_relaxed);
            detail::leading_team = &team;
            try {
                body();
            } catch (...) {
                error = std::current_exception();
            }
            detail::leading_team = nullptr;
            team.stop();
            detail::ThreadTeam::team_threads().fetch_sub(team.size(), std::memory_order_relaxed);
        } else {
            team.serve(omp_get_thread_num());
        }
    }
    if (error) std::rethrow_exception(error);
#else
    (void)threads;
    body();
#endif
}

namespace detail {
/// A 64-byte aligned block that only grows, freed when its thread ends.
struct ScratchBlock {
    void* data = nullptr;
    size_t bytes = 0;
    ScratchBlock() = default;
    ScratchBlock(const ScratchBlock&) = delete;
    ScratchBlock& operator=(const ScratchBlock&) = delete;
    ~ScratchBlock() { std::free(data); }
};
}  // namespace detail

/// A per-thread, 64-byte aligned buffer of at least `count` values of T, UNINITIALISED, that
/// only grows: no allocation (and no page fault) once a call of that size has run. Each Tag (any
/// type, usually an empty struct named after the user) owns its own buffer on each thread, so
/// a caller holding one buffer can call code that takes another: the packed GEMM keeps its
/// panels while a packer fills a gather buffer. The pointer stays valid until the next call
/// with the same Tag on the same thread; growing does not keep the old contents.
template <class Tag, class T = float>
T* thread_scratch(int64_t count) {
    static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>,
                  "thread_scratch holds plain values only");
    thread_local detail::ScratchBlock block;
    const size_t want = static_cast<size_t>(count > 0 ? count : 1) * sizeof(T);
    const size_t bytes = (want + 63) / 64 * 64;
    if (block.bytes < bytes) {
        std::free(block.data);
        block.data = std::aligned_alloc(64, bytes);
        block.bytes = block.data ? bytes : 0;
        if (!block.data) throw std::bad_alloc();
    }
    return static_cast<T*>(block.data);
}

}  // namespace bnn
