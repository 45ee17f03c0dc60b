// A small, fast pseudo-random generator for offsets and mix decisions:
// xoshiro256** seeded through splitmix64 (both public-domain algorithms by
// Blackman and Vigna). Deterministic for a given seed, so randrepeat=1 gives
// the same offsets on every run.
#pragma once

#include <cstdint>

namespace coblk::bench {

// One step of splitmix64: advances `state` and returns the next value.
inline uint64_t splitmix64(uint64_t& state) noexcept
{
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

class Prng {
public:
    explicit Prng(uint64_t seed = 0) noexcept { reseed(seed); }

    void reseed(uint64_t seed) noexcept
    {
        for (auto& w : s_)
            w = splitmix64(seed);
    }

    uint64_t next() noexcept
    {
        uint64_t result = rotl(s_[1] * 5, 7) * 9;
        uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    // A value in [0, n) (n > 0) by multiply-high: no division, and a bias
    // below n / 2^64, far under anything a benchmark can see.
    uint64_t below(uint64_t n) noexcept
    {
        return uint64_t((unsigned __int128)next() * n >> 64);
    }

private:
    static uint64_t rotl(uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

} // namespace coblk::bench
