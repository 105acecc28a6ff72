#pragma once
/// @file rng.hpp
/// A small seeded generator (xoshiro256**) whose streams are identical on every platform and
/// standard library, so a seed reproduces a run exactly (std::normal_distribution would not).
#include <cmath>
#include <cstdint>
#include <numbers>
#include <utility>

namespace bnn {

class Rng {
public:
    explicit Rng(uint64_t seed = 0x5eed) { reseed(seed); }

    void reseed(uint64_t seed) {
        // splitmix64 spreads any seed (even 0) over the 256-bit state.
        for (auto& w : s_) {
            seed += 0x9e3779b97f4a7c15ull;
            uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            w = z ^ (z >> 31);
        }
        has_spare_ = false;
    }

    uint64_t next_u64() {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    /// Uniform in [0, 1) with 24 random bits (exactly representable as float).
    float uniform() { return static_cast<float>(next_u64() >> 40) * 0x1.0p-24f; }
    float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
    /// Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias below 2^-32 for n < 2^32).
    uint64_t below(uint64_t n) {
        return static_cast<uint64_t>((static_cast<unsigned __int128>(next_u64()) * n) >> 64);
    }
    /// Standard normal by Box-Muller, one pair at a time.
    float normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        double u1 = (static_cast<double>(next_u64() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
        double u2 = static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
        double r = std::sqrt(-2.0 * std::log(u1));
        double a = 2.0 * std::numbers::pi * u2;
        spare_ = static_cast<float>(r * std::sin(a));
        has_spare_ = true;
        return static_cast<float>(r * std::cos(a));
    }
    float normal(float mean, float stddev) { return mean + stddev * normal(); }

    /// Fisher-Yates shuffle of a random-access range.
    template <class It>
    void shuffle(It first, It last) {
        for (auto n = last - first; n > 1; --n) std::swap(first[n - 1], first[below(n)]);
    }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
    float spare_ = 0;
    bool has_spare_ = false;
};

/// The process-wide generator that layers draw their initial weights from (like PyTorch's
/// default generator). Seed it with manual_seed() for reproducible initialisation.
inline Rng& default_rng() {
    static Rng rng(0x5eed);
    return rng;
}
inline void manual_seed(uint64_t seed) { default_rng().reseed(seed); }

}  // namespace bnn
