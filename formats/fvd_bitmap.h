// An in-memory bitmap of FVD blocks, stored as the on-disk bytes are (bit i
// in byte i/8, least significant bit first), so loading and writing back
// are plain copies. One loop thread.
#pragma once

#include <bit>
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
    // Sets bits [first, first + n): whole bytes at once, the ends bit by bit.
    void set_range(uint64_t first, uint64_t n)
    {
        uint64_t i = first, end = first + n;
        for (; i < end && i % 8; i++)
            set(i);
        if (end - i >= 8) {
            std::memset(bytes_.data() + i / 8, 0xFF, (end - i) / 8);
            i += (end - i) / 8 * 8;
        }
        for (; i < end; i++)
            set(i);
    }
    // True when bits [first, first + n) are all set.
    bool all(uint64_t first, uint64_t n) const { return n == 0 || run_of(first, n, true) == n; }
    // True when any of bits [first, first + n) is set.
    bool any(uint64_t first, uint64_t n) const { return n > 0 && run_of(first, n, false) < n; }
    // The number of bits from `first` (at most `max`, at least 1) equal to
    // test(first).
    uint64_t run(uint64_t first, uint64_t max) const { return run_of(first, max, test(first)); }
    uint64_t count() const
    {
        uint64_t c = 0, whole = bits_ / 8, i = 0;
        for (; i + 8 <= whole; i += 8) {
            uint64_t w;
            std::memcpy(&w, bytes_.data() + i, 8);
            if (w)
                c += unsigned(std::popcount(w));
        }
        for (; i < whole; i++)
            c += unsigned(std::popcount(bytes_[i]));
        for (uint64_t b = whole * 8; b < bits_; b++)
            c += test(b);
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
    // The number of bits from `first` (at most `max`) equal to `v`; whole
    // bytes of 0x00 or 0xFF are skipped at once (metadata checks and
    // prefetch walk millions of blocks).
    uint64_t run_of(uint64_t first, uint64_t max, bool v) const
    {
        const uint8_t same = v ? 0xFF : 0x00;
        uint64_t n = 0;
        while (n < max) {
            uint64_t i = first + n;
            if (i % 64 == 0 && max - n >= 64) {
                uint64_t w;
                std::memcpy(&w, bytes_.data() + i / 8, 8);
                if (w == (v ? ~uint64_t(0) : 0)) {
                    n += 64;
                    continue;
                }
            }
            if (i % 8 == 0 && max - n >= 8) {
                if (bytes_[i / 8] == same) {
                    n += 8;
                    continue;
                }
            }
            if (test(i) != v)
                break;
            n++;
        }
        return n;
    }

    uint64_t bits_ = 0;
    std::vector<uint8_t> bytes_;
};

} // namespace coblk::fvd
