#include "engine/layer.h"

#include <algorithm>
#include <cstring>
#include <new>

namespace coblk {

// Every request passes the same gate: refused after close, refused when it
// would write to a read-only layer or reach past the end of a layer that
// cannot grow, and counted while in flight so that close() can wait for it.
// A growable layer's size follows its completed writes. Memory that runs
// out below the gate (a callee's frame, a vector, a buffer allocated with
// new) fails the request with -ENOMEM, and the in-flight count stays right.
#define COBLK_GATED(write, off, len, call)                                   \
    do {                                                                     \
        if (closed_)                                                         \
            co_return -EBADF;                                                \
        if ((write) && read_only_)                                           \
            co_return -EROFS;                                                \
        uint64_t off_ = (off), end_ = off_ + (len);                          \
        if (end_ < off_ || (!growable_ && end_ > size_))                     \
            co_return -EINVAL;                                               \
        inflight_.add();                                                     \
        int r_;                                                              \
        try {                                                                \
            r_ = co_await call;                                              \
        } catch (const std::bad_alloc&) {                                    \
            r_ = -ENOMEM; /* a frame or buffer below could not be had */     \
        }                                                                    \
        inflight_.done();                                                    \
        if ((write) && r_ == 0 && growable_ && end_ > size_)                 \
            size_ = end_;                                                    \
        co_return r_;                                                        \
    } while (0)

Task<int> Layer::preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    COBLK_GATED(false, off, iov_length(iov, iovcnt), do_preadv(off, iov, iovcnt, flags));
}

Task<int> Layer::pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    COBLK_GATED(true, off, iov_length(iov, iovcnt), do_pwritev(off, iov, iovcnt, flags));
}

Task<int> Layer::pread(uint64_t off, void* buf, size_t len)
{
    iovec v{buf, len};
    co_return co_await preadv(off, &v, 1);
}

Task<int> Layer::pwrite(uint64_t off, const void* buf, size_t len, unsigned flags)
{
    iovec v{const_cast<void*>(buf), len};
    co_return co_await pwritev(off, &v, 1, flags);
}

Task<int> Layer::flush()
{
    COBLK_GATED(false, 0, 0, do_flush());
}

Task<int> Layer::discard(uint64_t off, uint64_t len)
{
    COBLK_GATED(true, off, len, do_discard(off, len));
}

Task<int> Layer::write_zeroes(uint64_t off, uint64_t len, unsigned flags)
{
    COBLK_GATED(true, off, len, do_write_zeroes(off, len, flags));
}

Task<int> Layer::truncate(uint64_t size)
{
    COBLK_GATED(true, 0, 0, do_truncate(size));
}

Task<int> Layer::block_status(uint64_t off, uint64_t len, Extent* out)
{
    COBLK_GATED(false, off, 0, do_block_status(off, len, out));
}

#undef COBLK_GATED

Task<void> Layer::close()
{
    if (closed_)
        co_return;
    closed_ = true;
    co_await inflight_.wait();
    co_await do_close();
}

Task<int> Layer::do_truncate(uint64_t) { co_return -ENOTSUP; }

Task<Result<std::vector<SnapshotInfo>>> Layer::snapshot_list()
{
    if (closed_)
        co_return make_error(EBADF, "cannot list the snapshots of a closed {} layer", kind());
    inflight_.add();
    auto r = co_await do_snapshot_list();
    inflight_.done();
    co_return r;
}

// The gate of create, delete and revert: refused after close, on a
// read-only layer and for an empty name; counted in flight like a request.
Task<Result<void>> Layer::snapshot_change(SnapOp op, std::string_view name)
{
    const char* what = op == SnapOp::Create ? "create" : op == SnapOp::Delete ? "delete"
                                                                               : "revert to";
    if (closed_)
        co_return make_error(EBADF, "cannot {} snapshot '{}': the {} layer is closed", what,
                             name, kind());
    if (read_only_)
        co_return make_error(EROFS, "cannot {} snapshot '{}': the {} layer is read-only", what,
                             name, kind());
    if (name.empty())
        co_return make_error(EINVAL, "cannot {} a snapshot with an empty name", what);
    std::string n(name);
    inflight_.add();
    Result<void> r;
    switch (op) {
    case SnapOp::Create: r = co_await do_snapshot_create(n); break;
    case SnapOp::Delete: r = co_await do_snapshot_delete(n); break;
    case SnapOp::Revert: r = co_await do_snapshot_revert(n); break;
    }
    inflight_.done();
    co_return r;
}

Task<Result<void>> Layer::snapshot_create(std::string_view name)
{
    co_return co_await snapshot_change(SnapOp::Create, name);
}

Task<Result<void>> Layer::snapshot_delete(std::string_view name)
{
    co_return co_await snapshot_change(SnapOp::Delete, name);
}

Task<Result<void>> Layer::snapshot_revert(std::string_view name)
{
    co_return co_await snapshot_change(SnapOp::Revert, name);
}

Task<Result<std::vector<SnapshotInfo>>> Layer::do_snapshot_list()
{
    co_return make_error(ENOTSUP, "the {} layer has no snapshots", protocol());
}

Task<Result<void>> Layer::do_snapshot_create(const std::string& name)
{
    co_return make_error(ENOTSUP, "cannot create snapshot '{}': the {} layer has no snapshots",
                         name, protocol());
}

Task<Result<void>> Layer::do_snapshot_delete(const std::string& name)
{
    co_return make_error(ENOTSUP, "cannot delete snapshot '{}': the {} layer has no snapshots",
                         name, protocol());
}

Task<Result<void>> Layer::do_snapshot_revert(const std::string& name)
{
    co_return make_error(ENOTSUP, "cannot revert to snapshot '{}': the {} layer has no "
                         "snapshots", name, protocol());
}

Task<int> Layer::do_block_status(uint64_t off, uint64_t len, Extent* out)
{
    out->len = off < size_ ? std::min(len, size_ - off) : len;
    out->data = true;
    out->zero = false;
    co_return 0;
}

size_t iov_length(const iovec* iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++)
        n += iov[i].iov_len;
    return n;
}

// Walks `iov` from byte `skip`, calling fn(segment pointer, segment length)
// for `len` bytes.
template <typename Fn>
static void iov_walk(const iovec* iov, int iovcnt, size_t skip, size_t len, Fn fn)
{
    for (int i = 0; i < iovcnt && len > 0; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t n = std::min(iov[i].iov_len - skip, len);
        fn(static_cast<char*>(iov[i].iov_base) + skip, n);
        len -= n;
        skip = 0;
    }
}

void iov_to_buf(const iovec* src, int iovcnt, size_t skip, void* dst, size_t len)
{
    auto* d = static_cast<char*>(dst);
    iov_walk(src, iovcnt, skip, len, [&](char* p, size_t n) {
        std::memcpy(d, p, n);
        d += n;
    });
}

void buf_to_iov(const void* src, size_t len, const iovec* dst, int iovcnt, size_t skip)
{
    auto* s = static_cast<const char*>(src);
    iov_walk(dst, iovcnt, skip, len, [&](char* p, size_t n) {
        std::memcpy(p, s, n);
        s += n;
    });
}

void iov_memset(const iovec* dst, int iovcnt, size_t skip, int c, size_t len)
{
    iov_walk(dst, iovcnt, skip, len, [&](char* p, size_t n) { std::memset(p, c, n); });
}

} // namespace coblk
