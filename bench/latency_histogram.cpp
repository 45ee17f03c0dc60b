#include "bench/latency_histogram.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace coblk::bench {

uint64_t LatencyHistogram::bucket_low(unsigned i) noexcept
{
    if (i < 2 * kSub)
        return i;
    unsigned shift = (i >> kSubBits) - 1;
    return (uint64_t(kSub) + (i & (kSub - 1))) << shift;
}

uint64_t LatencyHistogram::bucket_high(unsigned i) noexcept
{
    if (i < 2 * kSub)
        return i;
    unsigned shift = (i >> kSubBits) - 1;
    return bucket_low(i) + ((uint64_t(1) << shift) - 1);
}

uint64_t LatencyHistogram::bucket_value(unsigned i) noexcept
{
    uint64_t lo = bucket_low(i);
    return lo + (bucket_high(i) - lo) / 2;
}

void LatencyHistogram::merge(const LatencyHistogram& o) noexcept
{
    for (unsigned i = 0; i < kBuckets; i++)
        counts_[i] += o.counts_[i];
    n_ += o.n_;
    sum_ += o.sum_;
    sumsq_ += o.sumsq_;
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
}

double LatencyHistogram::mean() const noexcept
{
    return n_ ? double(sum_) / double(n_) : 0.0;
}

double LatencyHistogram::stddev() const noexcept
{
    if (n_ < 2)
        return 0.0;
    // n*sumsq - sum^2 in long double: exact inputs, and 64 mantissa bits
    // keep the cancellation harmless at any latency a benchmark sees.
    long double n = n_, s = sum_, q = (long double)sumsq_;
    long double var = (q - s * s / n) / (n - 1);
    return var > 0 ? double(std::sqrt(var)) : 0.0;
}

uint64_t LatencyHistogram::percentile(double p) const noexcept
{
    return percentiles({p})[0];
}

std::vector<uint64_t> LatencyHistogram::percentiles(const std::vector<double>& ps) const
{
    std::vector<uint64_t> out(ps.size(), 0);
    if (n_ == 0)
        return out;
    // Visit the requested percentiles in increasing order during one scan.
    std::vector<size_t> order(ps.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ps[a] < ps[b]; });
    uint64_t seen = 0;
    unsigned i = 0;
    for (size_t k : order) {
        // The rank (1-based) of the value at percentile p among n sorted values.
        double want = std::ceil(ps[k] / 100.0 * double(n_) - 1e-9);
        uint64_t rank = want < 1 ? 1 : want > double(n_) ? n_ : uint64_t(want);
        while (seen + counts_[i] < rank)
            seen += counts_[i++];
        out[k] = std::clamp(bucket_value(i), min_, max_);
    }
    return out;
}

} // namespace coblk::bench
