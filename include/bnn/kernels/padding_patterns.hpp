#pragma once
/// @file padding_patterns.hpp
/// Which kernel taps of an output position fall in the padding, and the distinct such sets along
/// one axis. Convolutions that correct their padded taps exactly (the binary conv's zero padding,
/// the integer stem's folded normalization) tabulate one correction per (row pattern, column
/// pattern) pair, a handful, instead of one per output pixel.
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

}  // namespace bnn::kernels
