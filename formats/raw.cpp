#include "formats/raw.h"

#include <cstring>

#include "formats/probe.h"
#include "uri/options.h"

namespace coblk {

Result<RawOptions> parse_raw_options(const uri::Options& opts)
{
    RawOptions o;
    if (auto v = uri::find_option(opts, "offset")) {
        auto s = uri::parse_size(*v, "raw offset");
        if (!s)
            return s.error();
        o.offset = *s;
    }
    if (auto v = uri::find_option(opts, "size")) {
        auto s = uri::parse_size(*v, "raw size");
        if (!s)
            return s.error();
        o.size = *s;
    }
    return o;
}

Result<std::unique_ptr<RawLayer>> RawLayer::open(std::unique_ptr<Layer> child, const RawOptions& o)
{
    uint64_t csize = child->size();
    if (o.offset > csize)
        return make_error(EINVAL, "raw offset {} is past the end of the {}-byte image", o.offset,
                          csize);
    if (o.size && *o.size > csize - o.offset)
        return make_error(EINVAL, "raw window offset {} + size {} does not fit in the "
                          "{}-byte image", o.offset, *o.size, csize);
    std::unique_ptr<RawLayer> r(new RawLayer(std::move(child)));
    r->offset_ = o.offset;
    r->window_ = o.size.has_value() || o.offset > 0;
    r->size_ = o.size.value_or(csize - o.offset);
    r->probed_ = o.probed;
    r->read_only_ = r->child_->read_only();
    r->limits_ = r->child_->limits();
    return r;
}

Task<int> RawLayer::check_probe_guard(uint64_t off, const iovec* iov, int iovcnt)
{
    unsigned char sector[kProbeBytes];
    uint64_t len = iov_length(iov, iovcnt);
    if (off > 0 || len < kProbeBytes) {
        std::memset(sector, 0, sizeof sector);
        uint64_t have = std::min<uint64_t>(kProbeBytes, child_->size() - std::min(
                                                            child_->size(), offset_));
        if (int r = co_await child_->pread(offset_, sector, have); r < 0)
            co_return r;
    }
    uint64_t n = std::min<uint64_t>(len, kProbeBytes - off);
    iov_to_buf(iov, iovcnt, 0, sector + off, n);
    const char* fmt = probe_format(sector, sizeof sector);
    co_return std::strcmp(fmt, "raw") == 0 ? 0 : -EPERM;
}

Task<int> RawLayer::do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    co_return co_await child_->preadv(offset_ + off, iov, iovcnt, flags);
}

Task<int> RawLayer::do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    if (probed_ && off < kProbeBytes) {
        // Check and write under one lock, so two writes to sector 0 cannot
        // each pass the check on the other's old contents.
        auto guard = co_await sector0_.lock(0, kProbeBytes);
        if (int r = co_await check_probe_guard(off, iov, iovcnt); r < 0)
            co_return r;
        co_return co_await child_->pwritev(offset_ + off, iov, iovcnt, flags);
    }
    co_return co_await child_->pwritev(offset_ + off, iov, iovcnt, flags);
}

Task<int> RawLayer::do_flush() { co_return co_await child_->flush(); }

Task<int> RawLayer::do_discard(uint64_t off, uint64_t len)
{
    co_return co_await child_->discard(offset_ + off, len);
}

Task<int> RawLayer::do_write_zeroes(uint64_t off, uint64_t len, unsigned flags)
{
    co_return co_await child_->write_zeroes(offset_ + off, len, flags);
}

Task<int> RawLayer::do_truncate(uint64_t size)
{
    if (window_)
        co_return -ENOTSUP;
    int r = co_await child_->truncate(size);
    if (r == 0)
        size_ = size;
    co_return r;
}

Task<int> RawLayer::do_block_status(uint64_t off, uint64_t len, Extent* out)
{
    len = std::min(len, size_ - off);
    co_return co_await child_->block_status(offset_ + off, len, out);
}

Task<void> RawLayer::do_close() { co_await child_->close(); }

// raw keeps no snapshots of its own: these are the child's.
Task<Result<std::vector<SnapshotInfo>>> RawLayer::do_snapshot_list()
{
    co_return co_await child_->snapshot_list();
}

Task<Result<void>> RawLayer::do_snapshot_create(const std::string& name)
{
    co_return co_await child_->snapshot_create(name);
}

Task<Result<void>> RawLayer::do_snapshot_delete(const std::string& name)
{
    co_return co_await child_->snapshot_delete(name);
}

// Reverting may change the child's size: a raw layer without a window
// follows it.
Task<Result<void>> RawLayer::do_snapshot_revert(const std::string& name)
{
    auto r = co_await child_->snapshot_revert(name);
    if (r && !window_)
        size_ = child_->size() - std::min(child_->size(), offset_);
    co_return r;
}

} // namespace coblk
