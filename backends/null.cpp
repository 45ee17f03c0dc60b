#include "backends/null.h"

#include <chrono>

#include "uri/options.h"

namespace coblk {

Result<std::unique_ptr<NullLayer>> NullLayer::open(Loop& loop, const uri::Options& opts,
                                                   bool read_only)
{
    if (auto r = uri::check_known_options(opts, {"size", "latency-ns", "read-zeroes"}, "null");
        !r)
        return r.error();
    std::unique_ptr<NullLayer> n(new NullLayer(loop));
    n->size_ = uint64_t(1) << 30;
    n->read_only_ = read_only;
    if (auto v = uri::find_option(opts, "size")) {
        auto s = uri::parse_size(*v, "null size");
        if (!s)
            return s.error();
        n->size_ = *s;
    }
    if (auto v = uri::find_option(opts, "latency-ns")) {
        auto s = uri::parse_size(*v, "null latency-ns");
        if (!s)
            return s.error();
        n->latency_ns_ = *s;
    }
    if (auto v = uri::find_option(opts, "read-zeroes")) {
        auto b = uri::parse_bool(*v, "null read-zeroes");
        if (!b)
            return b.error();
        n->read_zeroes_ = *b;
    }
    n->limits_.discard = true;
    n->limits_.write_zeroes = true;
    n->limits_.fua = true;
    return n;
}

Task<int> NullLayer::delay()
{
    if (latency_ns_)
        co_await loop_.sleep_for(std::chrono::nanoseconds(latency_ns_));
    co_return 0;
}

Task<int> NullLayer::do_preadv(uint64_t, const iovec* iov, int iovcnt, unsigned)
{
    if (latency_ns_)
        co_await delay();
    if (read_zeroes_)
        iov_memset(iov, iovcnt, 0, 0, iov_length(iov, iovcnt));
    co_return 0;
}

// Every request but a read just waits out the configured latency.
Task<int> NullLayer::do_pwritev(uint64_t, const iovec*, int, unsigned)
{
    co_return latency_ns_ ? co_await delay() : 0;
}

Task<int> NullLayer::do_flush() { co_return latency_ns_ ? co_await delay() : 0; }

Task<int> NullLayer::do_discard(uint64_t, uint64_t) { co_return latency_ns_ ? co_await delay() : 0; }

Task<int> NullLayer::do_write_zeroes(uint64_t, uint64_t, unsigned)
{
    co_return latency_ns_ ? co_await delay() : 0;
}

Task<int> NullLayer::do_truncate(uint64_t size)
{
    size_ = size;
    co_return 0;
}

Task<int> NullLayer::do_block_status(uint64_t off, uint64_t len, Extent* out)
{
    out->len = std::min(len, size_ - off);
    out->data = false;
    out->zero = read_zeroes_;
    co_return 0;
}

} // namespace coblk
