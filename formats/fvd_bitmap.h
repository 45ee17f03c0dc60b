// An in-memory bitmap of FVD blocks, stored as the on-disk bytes are (bit i
// in byte i/8, least significant bit first), so loading and writing back
// are plain copies. One loop thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace coblk::fvd {

class Bitmap {
public:
    Bitmap() = default;
    explicit Bitmap(uint64_t bits) : bits_(bits), bytes_((bits + 7) / 8, 0) {}

    uint64_t size() const { return bits_; }
    bool test(uint64_t i) const { return bytes_[i >> 3] & (1u << (i & 7)); }
    void set(uint64_t i) { bytes_[i >> 3] |= uint8_t(1u << (i & 7)); }
    void set_range(uint64_t first, uint64_t n)
    {
        for (uint64_t i = first; i < first + n; i++)
            set(i);
    }
    // True when bits [first, first + n) are all set.
    bool all(uint64_t first, uint64_t n) const
    {
        for (uint64_t i = first; i < first + n; i++)
            if (!test(i))
                return false;
        return true;
    }
    // The number of bits from `first` (at most `max`) equal to test(first).
    uint64_t run(uint64_t first, uint64_t max) const
    {
        bool v = test(first);
        uint64_t n = 1;
        while (n < max && test(first + n) == v)
            n++;
        return n;
    }
    uint64_t count() const
    {
        uint64_t c = 0;
        for (uint64_t i = 0; i < bits_; i++)
            c += test(i);
        return c;
    }
    // Bits set past size() in the last byte (a damaged bitmap).
    bool tail_clean() const
    {
        return bits_ % 8 == 0 || (bytes_.back() >> (bits_ % 8)) == 0;
    }
    void clear_tail()
    {
        if (bits_ % 8)
            bytes_.back() &= uint8_t((1u << (bits_ % 8)) - 1);
    }
    // Sets every bit set in `o` (same size).
    void merge(const Bitmap& o)
    {
        for (size_t i = 0; i < bytes_.size(); i++)
            bytes_[i] |= o.bytes_[i];
    }
    std::vector<uint8_t>& bytes() { return bytes_; }
    const std::vector<uint8_t>& bytes() const { return bytes_; }

private:
    uint64_t bits_ = 0;
    std::vector<uint8_t> bytes_;
};

} // namespace coblk::fvd
