#pragma once
/// @file padding_patterns.hpp
/// Which kernel taps of an output position fall in the padding, and the distinct such sets along
/// one axis. Convolutions that correct their padded taps exactly (the binary conv's zero padding,
/// the integer stem's folded normalization) tabulate one correction per (row pattern, column
/// pattern) pair, a handful, instead of one per output pixel (padded_tap_sums).
#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

namespace bnn::kernels {

/// Bit k set when kernel offset k (0 <= k < taps <= 64) of output position o lands outside
/// [0, extent_in) of the input.
inline uint64_t padded_taps_mask(int64_t o, int64_t stride, int64_t pad, int64_t taps, int64_t extent_in) {
    uint64_t mask = 0;
    for (int64_t k = 0; k < taps; ++k) {
        const int64_t i = o * stride - pad + k;
        if (i < 0 || i >= extent_in) mask |= uint64_t{1} << k;
    }
    return mask;
}

/// The distinct padded-tap masks of output positions [0, extent_out), the empty mask first (index
/// 0, whether or not a position has it); ids[o] = the index of position o's mask.
inline std::vector<uint64_t> padding_patterns(int64_t extent_out, int64_t stride, int64_t pad, int64_t taps,
                                              int64_t extent_in, std::vector<int>& ids) {
    std::vector<uint64_t> masks{0};
    std::map<uint64_t, int> seen{{0, 0}};
    ids.resize(static_cast<size_t>(extent_out));
    for (int64_t o = 0; o < extent_out; ++o) {
        const uint64_t m = padded_taps_mask(o, stride, pad, taps, extent_in);
        auto [it, fresh] = seen.emplace(m, static_cast<int>(masks.size()));
        if (fresh) masks.push_back(m);
        ids[o] = it->second;
    }
    return masks;
}

/// The border-correction table of a KH x KW kernel over the row patterns `rows` and column patterns
/// `cols` (padding_patterns of each axis): row r * cols.size() + c holds the sum, tap by tap in
/// (kh, kw) order, of per_tap's rows for the taps that fall in the padding under row pattern r or
/// column pattern c (all zeros for the interior pair (0, 0)).
///   per_tap [KH*KW, width] -> table [rows.size() * cols.size(), width]
template <class T>
void padded_tap_sums(const std::vector<uint64_t>& rows, const std::vector<uint64_t>& cols, int64_t KH, int64_t KW,
                     const T* per_tap, int64_t width, std::vector<T>& table) {
    const int64_t ncols = static_cast<int64_t>(cols.size());
    table.resize(rows.size() * cols.size() * width);  // in place when the size is the same
    std::fill(table.begin(), table.end(), T{0});
    for (size_t r = 0; r < rows.size(); ++r)
        for (int64_t c = 0; c < ncols; ++c) {
            T* dst = table.data() + (r * ncols + c) * width;
            for (int64_t kh = 0; kh < KH; ++kh)
                for (int64_t kw = 0; kw < KW; ++kw) {
                    if (!((rows[r] >> kh) & 1) && !((cols[c] >> kw) & 1)) continue;
                    const T* s = per_tap + (kh * KW + kw) * width;
                    for (int64_t o = 0; o < width; ++o) dst[o] += s[o];
                }
        }
}

}  // namespace bnn::kernels
