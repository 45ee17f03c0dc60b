#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "backends/file.h"
#include "engine/blocking.h"

namespace coblk {

Result<std::unique_ptr<HostDeviceLayer>> HostDeviceLayer::open(Loop& loop, const std::string& path,
                                                               const FileOpenOptions& o)
{
    auto fd = open_backing_fd(path, o, "host device");
    if (!fd)
        return fd.error();
    auto fail = [&](int e, std::string msg) -> Result<std::unique_ptr<HostDeviceLayer>> {
        ::close(*fd);
        return Error{e, std::move(msg)};
    };
    struct stat st {};
    if (fstat(*fd, &st) < 0)
        return fail(errno, fmt::format("cannot stat host device '{}': {}", path,
                                       std::strerror(errno)));
    if (!S_ISBLK(st.st_mode))
        return fail(ENOTBLK, fmt::format("'{}' is not a block device (open a regular file "
                                         "with the file protocol)", path));
    uint64_t bytes = 0;
    int lbs = 512;
    if (ioctl(*fd, BLKGETSIZE64, &bytes) < 0)
        return fail(errno, fmt::format("cannot read the size of host device '{}' "
                                       "(BLKGETSIZE64): {}", path, std::strerror(errno)));
    if (ioctl(*fd, BLKSSZGET, &lbs) < 0 || lbs <= 0)
        lbs = 512;
    bool direct = o.cache == CacheMode::None;
    uint32_t align = direct ? uint32_t(lbs) : 1;
    std::unique_ptr<HostDeviceLayer> d(
        new HostDeviceLayer(loop, *fd, path, direct, align, direct ? uint32_t(lbs) : 1));
    d->lbs_ = uint32_t(lbs);
    d->size_ = bytes;
    d->read_only_ = o.read_only;
    d->limits_.discard = true;
    d->limits_.write_zeroes = true;
    return d;
}

namespace {

// Runs a BLKDISCARD/BLKZEROOUT-style ioctl on [off, off+len) on a worker
// thread (they can take long and would stall the loop). 0 or -errno.
Task<int> range_ioctl(Loop& loop, int fd, unsigned long req, uint64_t off, uint64_t len)
{
    co_return int(co_await run_blocking(loop, [fd, req, off, len]() -> int64_t {
        uint64_t range[2] = {off, len};
        return ioctl(fd, req, range) < 0 ? -errno : 0;
    }));
}

} // namespace

Task<int> HostDeviceLayer::do_discard(uint64_t off, uint64_t len)
{
    // Only whole logical blocks can be discarded; discard is advisory, so the
    // partial blocks at the ends are left as they are.
    uint64_t lo = (off + lbs_ - 1) / lbs_ * lbs_, hi = (off + len) / lbs_ * lbs_;
    if (hi <= lo)
        co_return 0;
    int r = co_await range_ioctl(loop_, fd_, BLKDISCARD, lo, hi - lo);
    co_return r == -EOPNOTSUPP ? 0 : r;
}

// BLKZEROOUT for the whole logical blocks; partial blocks at the ends, and
// everything when the device refuses, go through the ordinary write path.
Task<int> HostDeviceLayer::do_write_zeroes(uint64_t off, uint64_t len, unsigned)
{
    uint64_t lo = (off + lbs_ - 1) / lbs_ * lbs_, hi = (off + len) / lbs_ * lbs_;
    if (hi <= lo)
        co_return co_await write_zero_buffers(off, len);
    if (lo > off)
        if (int r = co_await write_zero_buffers(off, lo - off); r < 0)
            co_return r;
    int r;
    {
        std::optional<RangeLock::Guard> guard;
        if (direct_)
            guard.emplace(co_await write_lock_.lock(lo, hi - lo));
        r = co_await range_ioctl(loop_, fd_, BLKZEROOUT, lo, hi - lo);
    }
    if (r == -EOPNOTSUPP || r == -ENOTTY)
        r = co_await write_zero_buffers(lo, hi - lo);
    if (r < 0)
        co_return r;
    if (off + len > hi)
        co_return co_await write_zero_buffers(hi, off + len - hi);
    co_return 0;
}

} // namespace coblk
