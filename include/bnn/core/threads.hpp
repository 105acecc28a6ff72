#pragma once
/// @file threads.hpp
/// One knob for the number of threads used by bnn kernels (OpenMP) and Eigen's GEMM, which
/// reads the same OpenMP setting.
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

}  // namespace bnn
