#include "backends/fd_layer.h"

#include <fcntl.h>

#include "engine/blocking.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace coblk {
namespace {

constexpr int kMaxIov = 1024;  // IOV_MAX on Linux

uint64_t align_down(uint64_t v, uint64_t a) { return v / a * a; }
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Advances a copy of the iovec array past `done` bytes; returns the count of
// remaining elements at `out`.
int iov_advance(const iovec* iov, int iovcnt, size_t done, std::vector<iovec>& out)
{
    out.clear();
    for (int i = 0; i < iovcnt; i++) {
        if (done >= iov[i].iov_len) {
            done -= iov[i].iov_len;
            continue;
        }
        out.push_back({static_cast<char*>(iov[i].iov_base) + done, iov[i].iov_len - done});
        done = 0;
    }
    return int(out.size());
}

} // namespace

void* aligned_buffer(size_t align, size_t len)
{
    void* p = nullptr;
    if (posix_memalign(&p, std::max<size_t>(align, sizeof(void*)), std::max<size_t>(len, 1)) != 0)
        return nullptr;
    return p;
}

FdLayer::FdLayer(Loop& loop, int fd, std::string path, bool direct, uint32_t align,
                 uint32_t mem_align)
    : loop_(loop), fd_(fd), path_(std::move(path)), direct_(direct)
{
    limits_.request_alignment = align;
    limits_.memory_alignment = mem_align;
    limits_.max_transfer = 0;
}

namespace {

// Drops the whole-file lock before the fd goes: io_uring may hold a
// reference to the open file a little longer (until the ring frees its last
// request on that file, with DEFER_TASKRUN at the next io_uring_enter), and
// an OFD lock lives as long as the open file does. Without this, reopening
// an image right after closing it could find it "locked by another user".
void unlock_and_close(int fd)
{
    struct flock fl {};
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    fcntl(fd, F_OFD_SETLK, &fl);   // harmless when no lock was taken
    ::close(fd);
}

} // namespace

FdLayer::~FdLayer()
{
    if (fd_ >= 0)
        unlock_and_close(fd_);
}

Task<void> FdLayer::do_close()
{
    if (fd_ >= 0)
        unlock_and_close(fd_);
    fd_ = -1;
    co_return;
}

bool FdLayer::needs_bounce(uint64_t off, const iovec* iov, int iovcnt) const
{
    if (!direct_)
        return iovcnt > kMaxIov;
    uint32_t a = limits_.request_alignment, m = limits_.memory_alignment;
    if (off % a || iovcnt > kMaxIov)
        return true;
    for (int i = 0; i < iovcnt; i++)
        if (reinterpret_cast<uintptr_t>(iov[i].iov_base) % m || iov[i].iov_len % a)
            return true;
    return false;
}

// The common loop of every transfer: submits the rest of the request until
// it is done, resubmitting after a short transfer and retrying -EAGAIN and
// -EINTR. A read that reaches EOF zero-fills the rest; a write that makes no
// progress fails with -ENOSPC. Returns 0 or -errno.
Task<int> FdLayer::rw_full(bool write, uint64_t off, const iovec* iov, int iovcnt)
{
    size_t total = iov_length(iov, iovcnt);
    size_t done = 0;
    std::vector<iovec> rest;  // only used after a short transfer
    const iovec* cur = iov;
    int curcnt = iovcnt;
    while (done < total) {
        int r = write ? co_await loop_.writev(fd_, cur, unsigned(curcnt), off + done)
                      : co_await loop_.readv(fd_, cur, unsigned(curcnt), off + done);
        if (r == -EAGAIN || r == -EINTR)
            continue;
        if (r < 0)
            co_return r;
        if (r == 0) {
            if (write)
                co_return -ENOSPC;
            iov_memset(iov, iovcnt, done, 0, total - done);  // EOF reads as zeros
            co_return 0;
        }
        done += size_t(r);
        if (done < total) {
            curcnt = iov_advance(iov, iovcnt, done, rest);
            cur = rest.data();
        }
    }
    co_return 0;
}

Task<int> FdLayer::do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned)
{
    if (needs_bounce(off, iov, iovcnt))
        co_return co_await bounced_read(off, iov, iovcnt);
    co_return co_await rw_full(false, off, iov, iovcnt);
}

// Under O_DIRECT a write holds its aligned extent in write_lock_. A write
// whose aligned extent passes EOF holds everything from its aligned start
// on, so such writes are serialised, and when the aligned write went past
// the request's end it trims the file back: the bounce put a partial block
// of zeros beyond the true end.
// Writes through the bounce buffer when the request is misaligned for the
// file, straight otherwise. 0 or -errno. One choice between two awaits, as
// if/else (g++ 12 miscompiled such a choice written with `?:`; see
// docs/architecture.md). Loop thread.
Task<int> FdLayer::write_direct_or_bounced(uint64_t off, const iovec* iov, int iovcnt)
{
    int r;
    if (needs_bounce(off, iov, iovcnt))
        r = co_await bounced_write(off, iov, iovcnt);
    else
        r = co_await rw_full(true, off, iov, iovcnt);
    co_return r;
}

Task<int> FdLayer::do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    int r;
    if (!direct_) {
        r = co_await write_direct_or_bounced(off, iov, iovcnt);
    } else {
        uint32_t a = limits_.request_alignment;
        uint64_t end = off + iov_length(iov, iovcnt);
        uint64_t lo = align_down(off, a), hi = align_up(end, a);
        bool past_eof = growable_ && hi > size_;
        auto guard = co_await write_lock_.lock(lo, past_eof ? UINT64_MAX - lo : hi - lo);
        if (!past_eof && growable_ && hi > size_) {  // the file shrank while we waited
            guard.release();
            past_eof = true;
            guard = co_await write_lock_.lock(lo, UINT64_MAX - lo);
        }
        uint64_t new_end = std::max(size_, end);
        r = co_await write_direct_or_bounced(off, iov, iovcnt);
        if (r == 0 && past_eof && hi > new_end)
            r = int(co_await run_blocking(loop_, [fd = fd_, new_end]() -> int64_t {
                return ftruncate(fd, off_t(new_end)) < 0 ? -errno : 0;
            }));
    }
    if (r == 0 && (flags & kReqFua))
        r = co_await do_flush();
    co_return r;
}

// The aligned extent around [off, off+len) and a buffer for it (null when
// memory is short).
FdLayer::Bounce FdLayer::bounce_for(uint64_t off, uint64_t len) const
{
    uint32_t a = direct_ ? limits_.request_alignment : 1;
    uint64_t lo = align_down(off, a), hi = align_up(off + len, a);
    void* p = aligned_buffer(std::max(a, limits_.memory_alignment), hi - lo);
    return Bounce{a, lo, hi, BounceBuffer(static_cast<char*>(p))};
}

// Reads the aligned extent around the request into an aligned buffer and
// copies the requested bytes out. Returns 0, -ENOMEM or the read's -errno.
Task<int> FdLayer::bounced_read(uint64_t off, const iovec* iov, int iovcnt)
{
    uint64_t len = iov_length(iov, iovcnt);
    Bounce b = bounce_for(off, len);
    if (!b.buf)
        co_return -ENOMEM;
    auto& [a, lo, hi, buf] = b;
    iovec v{buf.get(), hi - lo};
    int r = co_await rw_full(false, lo, &v, 1);
    if (r == 0)
        buf_to_iov(buf.get() + (off - lo), len, iov, iovcnt, 0);
    co_return r;
}

// Writes through an aligned buffer: the partial blocks at either end are
// read first (read-modify-write); the caller holds the extent's range lock.
// Returns 0, -ENOMEM or the first -errno.
Task<int> FdLayer::bounced_write(uint64_t off, const iovec* iov, int iovcnt)
{
    uint64_t len = iov_length(iov, iovcnt);
    Bounce b = bounce_for(off, len);
    if (!b.buf)
        co_return -ENOMEM;
    auto& [a, lo, hi, buf] = b;
    if (lo < off) {
        iovec head{buf.get(), a};
        if (int r = co_await rw_full(false, lo, &head, 1); r < 0)
            co_return r;
    }
    if (hi > off + len && !(hi - lo == a && lo < off)) {  // unless the head read it
        iovec tail{buf.get() + (hi - lo - a), a};
        if (int r = co_await rw_full(false, hi - a, &tail, 1); r < 0)
            co_return r;
    }
    iov_to_buf(iov, iovcnt, 0, buf.get() + (off - lo), len);
    iovec v{buf.get(), hi - lo};
    co_return co_await rw_full(true, lo, &v, 1);
}

Task<int> FdLayer::do_flush()
{
    for (;;) {
        int r = co_await loop_.fsync(fd_, true);
        if (r != -EINTR && r != -EAGAIN)
            co_return r;
    }
}

Task<int> FdLayer::write_zero_buffers(uint64_t off, uint64_t len)
{
    constexpr uint64_t kChunk = 1 << 20;
    uint32_t a = std::max<uint32_t>(limits_.memory_alignment, 4096);
    BounceBuffer zeros(static_cast<char*>(aligned_buffer(a, std::min(len, kChunk))));
    if (!zeros)
        co_return -ENOMEM;
    std::memset(zeros.get(), 0, std::min(len, kChunk));
    while (len > 0) {
        uint64_t n = std::min(len, kChunk);
        iovec v{zeros.get(), n};
        if (int r = co_await FdLayer::do_pwritev(off, &v, 1, 0); r < 0)
            co_return r;
        off += n;
        len -= n;
    }
    co_return 0;
}

} // namespace coblk
