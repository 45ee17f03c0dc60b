// A pseudo-random permutation of the block indexes [0, n), computed on the
// fly with no memory: a 4-round Feistel network on the smallest even number
// of bits that holds n - 1, with cycle walking to stay below n. It gives
// fio's default random-map behaviour (every block exactly once per pass
// over the region, in random order) without fio's bitmap. A different key
// gives a different order; the same key, the same order (randrepeat).
#pragma once

#include <cstdint>

#include "bench/prng.h"

namespace coblk::bench {

class BlockPermutation {
public:
    BlockPermutation() = default;

    // A permutation of [0, n) (n >= 1) chosen by `key`.
    void reset(uint64_t n, uint64_t key) noexcept
    {
        n_ = n;
        unsigned bits = n > 1 ? 64u - unsigned(__builtin_clzll(n - 1)) : 1u;
        half_ = (bits + 1) / 2;
        mask_ = half_ >= 32 ? 0xFFFFFFFFull : (uint64_t(1) << half_) - 1;
        for (auto& k : keys_)
            k = splitmix64(key);
    }

    // The block at position `i` (< n) of the permutation.
    uint64_t at(uint64_t i) const noexcept
    {
        uint64_t x = encrypt(i);
        while (x >= n_)  // walk the cycle back into [0, n): fewer than 4 steps on average
            x = encrypt(x);
        return x;
    }

    uint64_t size() const noexcept { return n_; }

private:
    uint64_t encrypt(uint64_t x) const noexcept
    {
        uint64_t l = x >> half_, r = x & mask_;
        for (uint64_t k : keys_) {
            uint64_t f = (r ^ k) * 0x9E3779B97F4A7C15ull;
            f ^= f >> 29;
            uint64_t nl = r;
            r = (l ^ f) & mask_;
            l = nl;
        }
        return (l << half_) | r;
    }

    uint64_t n_ = 1;
    unsigned half_ = 1;
    uint64_t mask_ = 1;
    uint64_t keys_[4] = {};
};

} // namespace coblk::bench
