// Latency histogram with log-linear buckets: values below 128 ns have a
// bucket each; above, every power-of-two range [2^k, 2^(k+1)) is split into
// 64 equal buckets, so a bucket is at most 1/64 (1.6%) of its lower bound
// wide and any uint64 fits in 3776 buckets (30 KiB). Recording is a few
// instructions with no allocation; histograms of several jobs merge by
// adding counts. Count, min, max, sum and sum of squares are kept exactly,
// so min/max/mean/stddev are exact and only percentiles are bucketed.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace coblk::bench {

class LatencyHistogram {
public:
    static constexpr unsigned kSubBits = 6;
    static constexpr unsigned kSub = 1u << kSubBits;                  // 64
    static constexpr unsigned kBuckets = (64 - kSubBits + 1) * kSub;  // 3776

    // The bucket of value `v`.
    static unsigned index(uint64_t v) noexcept
    {
        if (v < 2 * kSub)
            return unsigned(v);
        unsigned k = 63u - unsigned(__builtin_clzll(v));  // 2^k <= v
        unsigned shift = k - kSubBits;
        return ((shift + 1) << kSubBits) | unsigned((v >> shift) & (kSub - 1));
    }
    // Smallest value of bucket `i`.
    static uint64_t bucket_low(unsigned i) noexcept;
    // Largest value of bucket `i`.
    static uint64_t bucket_high(unsigned i) noexcept;
    // The value a percentile falling in bucket `i` reports: its middle.
    static uint64_t bucket_value(unsigned i) noexcept;

    // Records one value. Owning thread only (no locking).
    void add(uint64_t v) noexcept
    {
        counts_[index(v)]++;
        n_++;
        sum_ += v;
        sumsq_ += (unsigned __int128)v * v;
        if (v < min_)
            min_ = v;
        if (v > max_)
            max_ = v;
    }

    // Adds every value recorded in `o`.
    void merge(const LatencyHistogram& o) noexcept;
    void clear() noexcept { *this = LatencyHistogram(); }

    uint64_t count() const noexcept { return n_; }
    uint64_t min() const noexcept { return n_ ? min_ : 0; }
    uint64_t max() const noexcept { return max_; }
    double mean() const noexcept;
    // The sample standard deviation (n - 1 in the denominator, as fio); 0
    // for fewer than two values.
    double stddev() const noexcept;
    uint64_t bucket_count(unsigned i) const noexcept { return counts_[i]; }

    // The value at percentile `p` (0 < p <= 100): the smallest recorded
    // value v such that at least p% of the values are <= v, approximated by
    // its bucket's middle and clamped to [min, max]. 0 when empty.
    uint64_t percentile(double p) const noexcept;
    // percentile() for each of `ps` (any order), in one pass.
    std::vector<uint64_t> percentiles(const std::vector<double>& ps) const;

private:
    std::array<uint64_t, kBuckets> counts_{};
    uint64_t n_ = 0;
    uint64_t sum_ = 0;
    unsigned __int128 sumsq_ = 0;
    uint64_t min_ = UINT64_MAX;
    uint64_t max_ = 0;
};

} // namespace coblk::bench
