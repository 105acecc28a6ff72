#pragma once
/// @file channel_shift.hpp
/// A learned shift per channel, y = x + b[c] (ReActNet's RSign and RPReLU move their input and
/// output by one). x and y are [rows, C], channels innermost.
#include <cstdint>

#include "bnn/core/threads.hpp"
#include "bnn/kernels/accumulate.hpp"

namespace bnn::kernels {

/// x, y: [rows, C]; b: [C]. y = x + b[c]. y may be x.
inline void channel_shift_forward(const float* x, const float* b, float* y, int64_t rows, int64_t C) {
    parallel_pass(rows, rows * C, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r)
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) y[r * C + c] = x[r * C + c] + b[c];
    });
}

namespace detail {
template <bool Accumulate>
inline void channel_shift_backward(const float* dy, float* dx, float* db, int64_t rows, int64_t C) {
    if (dx) {
#pragma omp parallel for simd schedule(static) if (worth_threading(rows * C))
        for (int64_t i = 0; i < rows * C; ++i) put<Accumulate>(dx[i], dy[i]);
    }
    if (db)  // summed in row order, so the result does not depend on the thread count
        for (int64_t r = 0; r < rows; ++r)
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) db[c] += dy[r * C + c];
}
}  // namespace detail

/// dy: [rows, C]; dx: [rows, C] or null; db: [C] or null.
/// dx = dy (added when accumulate, else overwritten); db[c] += sum over rows of dy.
inline void channel_shift_backward(const float* dy, float* dx, float* db, int64_t rows, int64_t C,
                                   bool accumulate = true) {
    if (accumulate)
        detail::channel_shift_backward<true>(dy, dx, db, rows, C);
    else
        detail::channel_shift_backward<false>(dy, dx, db, rows, C);
}

}  // namespace bnn::kernels
