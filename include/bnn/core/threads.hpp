#pragma once
/// @file threads.hpp
/// One knob for the number of threads used by bnn kernels (OpenMP) and Eigen's GEMM, which
/// reads the same OpenMP setting.
#include <cstdint>

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

inline int num_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

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

}  // namespace bnn
