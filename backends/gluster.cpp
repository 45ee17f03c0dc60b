#include "backends/gluster.h"

#include <glusterfs/api/glfs.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/blocking.h"

namespace coblk {
namespace {

// libgfapi's completion callback, on one of its threads (several may run at
// once). It reads errno before anything can change it, hands the result to
// the waiting request's loop and touches nothing else: the request's frame
// may be resumed (and freed) as soon as complete() has pushed it.
extern "C" void gfapi_io_done(glfs_fd_t*, ssize_t ret, struct glfs_stat*, struct glfs_stat*,
                              void* data)
{
    int64_t r = ret;
    if (ret < 0) {
        int e = errno;
        r = -(e ? e : EIO);
    }
    static_cast<ForeignCompletion*>(data)->complete(r);
}

// Starts one async libgfapi call with `submit(completion)` (which passes
// gfapi_io_done and the completion to libgfapi) and awaits its result: the
// byte count or 0, or -errno. A submission refused at once completes with
// its errno. `gather_us`: see await_foreign. Loop thread.
template <typename Submit>
Task<int64_t> gfapi_call(Loop& loop, Submit submit, uint32_t gather_us = 0)
{
    co_return co_await await_foreign(loop, [&submit](ForeignCompletion* c) {
        errno = 0;
        if (submit(c) < 0) {
            int e = errno;
            c->complete(-(e ? e : EIO));
        }
    }, gather_us);
}

// Describes bytes [skip, skip+len) of `iov` in `out`.
void iov_slice(const iovec* iov, int iovcnt, size_t skip, size_t len, std::vector<iovec>& out)
{
    out.clear();
    for (int i = 0; i < iovcnt && len > 0; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t n = std::min(iov[i].iov_len - skip, len);
        out.push_back(iovec{static_cast<char*>(iov[i].iov_base) + skip, n});
        skip = 0;
        len -= n;
    }
}

std::string image_name(const GlusterConnRef& conn, const std::string& path)
{
    return fmt::format("'{}' on gluster {}", path, conn.describe());
}

} // namespace

GlusterLayer::GlusterLayer(Loop& loop, GlusterConnRef conn, glfs_fd* fd, std::string path)
    : loop_(loop), conn_(std::move(conn)), fd_(fd), path_(std::move(path))
{
    limits_.request_alignment = 1;
    limits_.memory_alignment = 1;
    limits_.max_transfer = kMaxTransfer;
    limits_.discard = true;
    limits_.write_zeroes = true;
    limits_.fua = false;
}

// A layer destroyed without close() still closes its fd, on a worker (it
// blocks for a round trip), and drops its connection reference after it.
GlusterLayer::~GlusterLayer()
{
    if (!fd_)
        return;
    auto conn = std::make_shared<GlusterConnRef>(std::move(conn_));
    glfs_fd_t* fd = fd_;
    submit_blocking([fd, conn] { glfs_close(fd); });
}

Task<Result<std::unique_ptr<GlusterLayer>>> GlusterLayer::open(Loop& loop,
                                                               const uri::GlusterSpec& spec,
                                                               const uri::Options& opts,
                                                               bool read_only)
{
    auto o = parse_gluster_options(opts);
    if (!o)
        co_return o.error();
    auto connected = co_await gluster_connect(loop, spec, *o);
    if (!connected)
        co_return connected.error();
    GlusterConnRef conn = std::move(connected).value();
    glfs_t* fs = conn.fs();
    std::string path = spec.path;
    glfs_fd_t* fd = nullptr;
    struct stat st {};
    int64_t r = co_await run_blocking(loop, [&]() -> int64_t {
        errno = 0;
        fd = glfs_open(fs, path.c_str(), read_only ? O_RDONLY : O_RDWR);
        if (!fd)
            return -(errno ? errno : EIO);
        if (glfs_fstat(fd, &st) < 0) {
            int e = errno ? errno : EIO;
            glfs_close(fd);
            fd = nullptr;
            return -e;
        }
        return 0;
    });
    if (r < 0)
        co_return make_error(int(-r), "cannot open {}: {}", image_name(conn, path),
                             std::strerror(int(-r)));
    if (!S_ISREG(st.st_mode)) {
        submit_blocking([fd] { glfs_close(fd); });
        co_return make_error(S_ISDIR(st.st_mode) ? EISDIR : EINVAL,
                             "cannot open {}: not a regular file", image_name(conn, path));
    }
    std::unique_ptr<GlusterLayer> l(new GlusterLayer(loop, std::move(conn), fd, path));
    l->size_ = uint64_t(st.st_size);
    l->read_only_ = read_only;
    l->gather_us_ = o->gather_us;
    l->growable_ = false;
    co_return l;
}

Task<Result<void>> GlusterLayer::create(Loop& loop, const uri::GlusterSpec& spec,
                                        const uri::Options& opts, uint64_t size, bool falloc)
{
    auto o = parse_gluster_options(opts);
    if (!o)
        co_return o.error();
    auto connected = co_await gluster_connect(loop, spec, *o);
    if (!connected)
        co_return connected.error();
    GlusterConnRef conn = std::move(connected).value();
    glfs_t* fs = conn.fs();
    std::string path = spec.path;
    const char* step = "create";
    int64_t r = co_await run_blocking(loop, [&]() -> int64_t {
        errno = 0;
        glfs_fd_t* fd = glfs_creat(fs, path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (!fd)
            return -(errno ? errno : EIO);
        int e = 0;
        if (glfs_ftruncate(fd, off_t(size), nullptr, nullptr) < 0) {
            e = errno ? errno : EIO;
            step = "size";
        } else if (falloc && size > 0 && glfs_fallocate(fd, 0, 0, size_t(size)) < 0) {
            e = errno ? errno : EIO;
            step = "preallocate";
        }
        if (glfs_close(fd) < 0 && e == 0) {
            e = errno ? errno : EIO;
            step = "close";
        }
        return -e;
    });
    if (r < 0)
        co_return make_error(int(-r), "cannot {} {} ({} bytes): {}", step,
                             image_name(conn, path), size, std::strerror(int(-r)));
    co_return Result<void>{};
}

int64_t GlusterLayer::allocated_bytes() const
{
    // One round trip to the brick, on the caller's thread: for tools (info),
    // not for the I/O path.
    struct stat st {};
    if (!fd_)
        return -EBADF;
    if (glfs_fstat(fd_, &st) < 0)
        return -(errno ? errno : EIO);
    return int64_t(st.st_blocks) * 512;
}

// Reads or writes all of `iov` at `off`, at most kMaxTransfer per call. A
// short transfer is resubmitted for the rest; a read that reaches EOF
// zero-fills the rest; a write that makes no progress fails with -EIO;
// -EAGAIN/-EINTR are retried. Returns 0 or -errno. Loop thread.
Task<int> GlusterLayer::rw(bool write, uint64_t off, const iovec* iov, int iovcnt)
{
    size_t total = iov_length(iov, iovcnt);
    size_t done = 0;
    std::vector<iovec> part;  // allocated only for split or resubmitted requests
    glfs_fd_t* fd = fd_;
    while (done < total) {
        size_t n = std::min<uint64_t>(total - done, kMaxTransfer);
        const iovec* v = iov;
        int vc = iovcnt;
        if (done != 0 || n != total) {
            iov_slice(iov, iovcnt, done, n, part);
            v = part.data();
            vc = int(part.size());
        }
        off_t pos = off_t(off + done);
        int64_t r;
        if (write)
            r = co_await gfapi_call(loop_, [&](ForeignCompletion* c) {
                return glfs_pwritev_async(fd, v, vc, pos, 0, gfapi_io_done, c);
            }, gather_us_);
        else
            r = co_await gfapi_call(loop_, [&](ForeignCompletion* c) {
                return glfs_preadv_async(fd, v, vc, pos, 0, gfapi_io_done, c);
            }, gather_us_);
        if (r == -EAGAIN || r == -EINTR)
            continue;
        if (r < 0)
            co_return int(r);
        if (r == 0) {
            if (write)
                co_return -EIO;
            iov_memset(iov, iovcnt, done, 0, total - done);  // EOF: the rest reads as zeros
            co_return 0;
        }
        done += std::min<uint64_t>(uint64_t(r), n);
    }
    co_return 0;
}

Task<int> GlusterLayer::do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned)
{
    co_return co_await rw(false, off, iov, iovcnt);
}

Task<int> GlusterLayer::do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    int r = co_await rw(true, off, iov, iovcnt);
    if (r == 0 && (flags & kReqFua))
        r = co_await do_flush();
    co_return r;
}

Task<int> GlusterLayer::do_flush()
{
    glfs_fd_t* fd = fd_;
    int64_t r = co_await gfapi_call(loop_, [fd](ForeignCompletion* c) {
        return glfs_fsync_async(fd, gfapi_io_done, c);
    });
    co_return r < 0 ? int(r) : 0;
}

// Runs `call(completion, off, n)` (one async libgfapi call over [off,
// off+n)) over [*off, *off + *len) in pieces of at most kMaxTransfer,
// advancing *off and *len past each piece done. A volume that refuses the
// call (EOPNOTSUPP, ENOSYS) clears *supported and ends the loop with 0,
// leaving the rest in *off and *len for the caller's fallback. Returns 0 or
// the first other -errno. Loop thread.
namespace {
template <typename Call>
Task<int> gfapi_chunked(Loop& loop, bool* supported, uint64_t* off, uint64_t* len, Call call)
{
    while (*supported && *len > 0) {
        uint64_t n = std::min(*len, GlusterLayer::kMaxTransfer);
        off_t pos = off_t(*off);
        int64_t r = co_await gfapi_call(loop, [&](ForeignCompletion* c) {
            return call(c, pos, n);
        });
        if (r == -EOPNOTSUPP || r == -ENOSYS) {
            *supported = false;
            break;
        }
        if (r < 0)
            co_return int(r);
        *off += n;
        *len -= n;
    }
    co_return 0;
}
} // namespace

// Discards through glfs_discard_async; a volume that refuses it makes
// discard a no-op from then on (discard is advisory). 0 or -errno.
Task<int> GlusterLayer::do_discard(uint64_t off, uint64_t len)
{
    glfs_fd_t* fd = fd_;
    co_return co_await gfapi_chunked(loop_, &discard_ok_, &off, &len,
                                     [fd](ForeignCompletion* c, off_t pos, uint64_t n) {
        return glfs_discard_async(fd, pos, size_t(n), gfapi_io_done, c);
    });
}

// Zeroes through glfs_zerofill_async, or by writing zero buffers when the
// volume refuses zerofill. 0 or -errno.
Task<int> GlusterLayer::do_write_zeroes(uint64_t off, uint64_t len, unsigned flags)
{
    glfs_fd_t* fd = fd_;
    int r = co_await gfapi_chunked(loop_, &zerofill_ok_, &off, &len,
                                   [fd](ForeignCompletion* c, off_t pos, uint64_t n) {
        return glfs_zerofill_async(fd, pos, off_t(n), gfapi_io_done, c);
    });
    if (r == 0 && len > 0)
        r = co_await write_zero_buffers(off, len);
    if (r == 0 && (flags & kReqFua))
        r = co_await do_flush();
    co_return r;
}

// Writes zeros over [off, off+len) from one 1 MiB zero buffer. 0 or -errno.
Task<int> GlusterLayer::write_zero_buffers(uint64_t off, uint64_t len)
{
    constexpr size_t kChunk = 1 << 20;
    std::unique_ptr<char, decltype(&std::free)> zeros(
        static_cast<char*>(std::calloc(1, kChunk)), &std::free);
    if (!zeros)
        co_return -ENOMEM;
    while (len > 0) {
        size_t n = size_t(std::min<uint64_t>(len, kChunk));
        iovec v{zeros.get(), n};
        int r = co_await rw(true, off, &v, 1);
        if (r < 0)
            co_return r;
        off += n;
        len -= n;
    }
    co_return 0;
}

Task<int> GlusterLayer::do_truncate(uint64_t size)
{
    glfs_fd_t* fd = fd_;
    int r = int(co_await run_blocking(loop_, [fd, size]() -> int64_t {
        errno = 0;
        return glfs_ftruncate(fd, off_t(size), nullptr, nullptr) < 0 ? -(errno ? errno : EIO)
                                                                      : 0;
    }));
    if (r == 0)
        size_ = size;
    co_return r;
}

// Runs after the gate has drained every request: closes the fd on a worker,
// then drops the connection reference (the last one finishes the glfs_t on
// a detached thread).
Task<void> GlusterLayer::do_close()
{
    glfs_fd_t* fd = fd_;
    fd_ = nullptr;
    if (fd)
        co_await run_blocking(loop_, [fd]() -> int64_t { return glfs_close(fd) < 0 ? -errno : 0; });
    conn_.reset();
}

} // namespace coblk
