#pragma once
/// @file threads.hpp
/// The threading helpers every kernel shares, so each question has one answer:
/// - how many threads: num_threads() (OpenMP's setting, which Eigen's GEMM reads too), set by
///   set_num_threads();
/// - whether a pass is worth a parallel region: worth_threading(elements);
/// - how to split work items evenly: parallel_ranges();
/// - where a thread keeps its temporary buffer between calls: thread_scratch<Tag, T>(count).
#include <cstddef>
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

/// Splits [0, items) into `threads` contiguous, even shares and runs fn(thread, begin, end) for
/// each on its own OpenMP thread (inline when threads <= 1). A share may be empty.
template <class F>
void parallel_ranges(int64_t items, int threads, F&& fn) {
    if (threads <= 1) {
        fn(0, int64_t{0}, items);
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
