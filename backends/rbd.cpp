#include "backends/rbd.h"

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/blocking.h"

namespace coblk {
namespace {

// librbd's completion callback, on a librados thread. It takes the result,
// releases the completion, hands the result to the waiting request's loop
// and touches nothing else: the request's frame may be resumed (and freed)
// as soon as complete() has pushed it.
extern "C" void rbd_io_done(rbd_completion_t c, void* arg)
{
    int64_t r = rbd_aio_get_return_value(c);
    rbd_aio_release(c);
    static_cast<ForeignCompletion*>(arg)->complete(r);
}

// Starts one librbd aio call with `submit(completion)` and awaits its
// result: a byte count or 0, or -errno. A submission refused at once
// completes with its error. Loop thread.
template <typename Submit>
Task<int64_t> rbd_call(Loop& loop, Submit submit)
{
    co_return co_await await_foreign(loop, [&submit](ForeignCompletion* fc) {
        rbd_completion_t c = nullptr;
        int r = rbd_aio_create_completion(fc, rbd_io_done, &c);
        if (r < 0) {
            fc->complete(r);
            return;
        }
        r = submit(c);
        if (r < 0) {
            rbd_aio_release(c);
            fc->complete(r);
        }
    });
}

// How many times a request that failed with -EAGAIN or -EINTR is resubmitted.
constexpr int kRetries = 100;

// "pool/image", "pool/ns/image", with "@snap" when given.
std::string spec_name(const uri::RbdSpec& s)
{
    std::string n = s.pool + "/";
    if (!s.ns.empty())
        n += s.ns + "/";
    n += s.image;
    if (!s.snap.empty())
        n += "@" + s.snap;
    return n;
}

// The options of the rbd: name followed by those of -o.
Result<RbdConnectOptions> connect_options(const uri::RbdSpec& spec, const uri::Options& extra)
{
    uri::Options all = spec.options;
    all.insert(all.end(), extra.begin(), extra.end());
    return parse_rbd_options(all);
}

// Opens the pool's io context and sets its namespace. On failure sets
// `stage` and returns -errno. Worker thread.
int open_ioctx(rados_t cluster, const uri::RbdSpec& s, rados_ioctx_t& io, std::string& stage)
{
    int r = rados_ioctx_create(cluster, s.pool.c_str(), &io);
    if (r < 0) {
        stage = fmt::format("pool '{}'", s.pool);
        io = nullptr;
        return r;
    }
    rados_ioctx_set_namespace(io, s.ns.c_str());
    return 0;
}

// A message for a failed open or create of `what` on `conn`'s cluster.
Error open_error(int e, const std::string& verb, const std::string& what,
                 const std::string& stage, const RbdConnRef& conn)
{
    const char* hint = "";
    if (e == ENOENT)
        hint = stage.starts_with("pool") ? " (no such pool)"
               : stage.starts_with("snapshot") ? " (no such snapshot)"
               : stage.starts_with("namespace") ? " (no such namespace)"
                                                : " (no such image)";
    return make_error(e, "cannot {} rbd image '{}' on {}: {}: {}{}", verb, what, conn.describe(),
                      stage, std::strerror(e), hint);
}

} // namespace

RbdLayer::RbdLayer(Loop& loop, RbdConnRef conn, rados_ioctx_t io, rbd_image_t image,
                   std::string name)
    : loop_(loop), conn_(std::move(conn)), io_(io), image_(image), name_(std::move(name))
{
    limits_.request_alignment = 1;
    limits_.memory_alignment = 1;
    limits_.max_transfer = 0;
    limits_.discard = true;
    limits_.write_zeroes = true;
    limits_.fua = false;
}

// A layer destroyed without close() still closes its image and io context,
// on a worker (rbd_close waits for the cluster), and drops its connection
// reference after them.
RbdLayer::~RbdLayer()
{
    if (!image_ && !io_)
        return;
    auto conn = std::make_shared<RbdConnRef>(std::move(conn_));
    rbd_image_t image = image_;
    rados_ioctx_t io = io_;
    submit_blocking([image, io, conn] {
        if (image)
            rbd_close(image);
        if (io)
            rados_ioctx_destroy(io);
    });
}

Task<Result<std::unique_ptr<RbdLayer>>> RbdLayer::open(Loop& loop, const uri::RbdSpec& spec,
                                                       const uri::Options& opts, bool read_only)
{
    auto o = connect_options(spec, opts);
    if (!o)
        co_return o.error();
    auto connected = co_await rbd_connect(loop, *o);
    if (!connected)
        co_return connected.error();
    RbdConnRef conn = std::move(connected).value();
    rados_t cluster = conn.cluster();
    uri::RbdSpec s = spec;
    rados_ioctx_t io = nullptr;
    rbd_image_t image = nullptr;
    uint64_t size = 0;
    std::string stage;
    bool ro = read_only || !s.snap.empty();
    int64_t r = co_await run_blocking(loop, [&]() -> int64_t {
        int e = open_ioctx(cluster, s, io, stage);
        if (e < 0)
            return e;
        const char* snap = s.snap.empty() ? nullptr : s.snap.c_str();
        e = ro ? rbd_open_read_only(io, s.image.c_str(), &image, snap)
               : rbd_open(io, s.image.c_str(), &image, snap);
        if (e == -ENOENT && snap) {
            // Which is missing, the image or its snapshot?
            rbd_image_t head = nullptr;
            if (rbd_open_read_only(io, s.image.c_str(), &head, nullptr) == 0) {
                rbd_close(head);
                stage = fmt::format("snapshot '{}'", s.snap);
            }
        }
        if (e < 0) {
            if (stage.empty())
                stage = s.ns.empty() ? fmt::format("image '{}'", s.image)
                                     : fmt::format("image '{}' in namespace '{}'", s.image, s.ns);
            image = nullptr;
        } else if ((e = rbd_get_size(image, &size)) < 0) {
            stage = "rbd_get_size";
            rbd_close(image);
            image = nullptr;
        }
        if (e < 0) {
            rados_ioctx_destroy(io);
            io = nullptr;
        }
        return e;
    });
    if (r < 0)
        co_return open_error(int(-r), "open", spec_name(s), stage, conn);
    std::unique_ptr<RbdLayer> l(new RbdLayer(loop, std::move(conn), io, image, spec_name(s)));
    l->size_ = size;
    l->read_only_ = ro;
    l->growable_ = false;
    co_return l;
}

Task<Result<void>> RbdLayer::create(Loop& loop, const uri::RbdSpec& spec,
                                    const uri::Options& opts, uint64_t size)
{
    if (!spec.snap.empty())
        co_return make_error(EINVAL, "cannot create rbd image '{}': a snapshot is created "
                             "with 'coblk-img snapshot -c', not by name", spec_name(spec));
    auto o = connect_options(spec, opts);
    if (!o)
        co_return o.error();
    auto connected = co_await rbd_connect(loop, *o);
    if (!connected)
        co_return connected.error();
    RbdConnRef conn = std::move(connected).value();
    rados_t cluster = conn.cluster();
    uri::RbdSpec s = spec;
    std::string stage;
    int64_t r = co_await run_blocking(loop, [&]() -> int64_t {
        rados_ioctx_t io = nullptr;
        int e = open_ioctx(cluster, s, io, stage);
        if (e < 0)
            return e;
        int order = 0;  // librbd's default object size
        e = rbd_create(io, s.image.c_str(), size, &order);
        if (e < 0)
            stage = e == -EEXIST ? "it exists" : fmt::format("rbd_create({} bytes)", size);
        rados_ioctx_destroy(io);
        return e;
    });
    if (r < 0)
        co_return open_error(int(-r), "create", spec_name(s), stage, conn);
    co_return Result<void>{};
}

Task<int> RbdLayer::do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned)
{
    size_t total = iov_length(iov, iovcnt);
    if (total == 0)
        co_return 0;
    rbd_image_t img = image_;
    int64_t r = -EAGAIN;
    for (int i = 0; i < kRetries && (r == -EAGAIN || r == -EINTR); i++)
        r = co_await rbd_call(loop_, [&](rbd_completion_t c) {
            return rbd_aio_readv(img, iov, iovcnt, off, c);
        });
    if (r == -EINVAL) {
        // librbd refuses a read wholly past its end: the image shrank under
        // us (another client resized it). That range reads as zeros.
        uint64_t now = 0;
        int64_t g = co_await run_blocking(loop_, [img, &now]() -> int64_t {
            return rbd_get_size(img, &now);
        });
        if (g == 0 && off >= now) {
            iov_memset(iov, iovcnt, 0, 0, total);
            co_return 0;
        }
        co_return -EINVAL;
    }
    if (r < 0)
        co_return int(r);
    // A short read stops at the image's end: the rest reads as zeros.
    if (uint64_t(r) < total)
        iov_memset(iov, iovcnt, size_t(r), 0, total - size_t(r));
    co_return 0;
}

// librbd writes all of a request or fails it: its result is the length (or
// 0); anything else is reported as -EIO.
Task<int> RbdLayer::do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    size_t total = iov_length(iov, iovcnt);
    if (total == 0)
        co_return 0;
    rbd_image_t img = image_;
    int64_t r = -EAGAIN;
    for (int i = 0; i < kRetries && (r == -EAGAIN || r == -EINTR); i++)
        r = co_await rbd_call(loop_, [&](rbd_completion_t c) {
            return rbd_aio_writev(img, iov, iovcnt, off, c);
        });
    if (r < 0)
        co_return int(r);
    if (r != 0 && uint64_t(r) != total)
        co_return -EIO;
    if (flags & kReqFua)
        co_return co_await do_flush();
    co_return 0;
}

Task<int> RbdLayer::do_flush()
{
    rbd_image_t img = image_;
    int64_t r = co_await rbd_call(loop_, [img](rbd_completion_t c) {
        return rbd_aio_flush(img, c);
    });
    co_return r < 0 ? int(r) : 0;
}

// Discards through rbd_aio_discard; a cluster that refuses it makes discard
// a no-op (discard is advisory). 0 or -errno.
Task<int> RbdLayer::do_discard(uint64_t off, uint64_t len)
{
    rbd_image_t img = image_;
    int64_t r = co_await rbd_call(loop_, [&](rbd_completion_t c) {
        return rbd_aio_discard(img, off, len, c);
    });
    if (r == -EOPNOTSUPP || r == -ENOSYS)
        co_return 0;
    co_return r < 0 ? int(r) : 0;
}

// Zeroes through rbd_aio_write_zeroes (thick, with kReqNoUnmap), or by
// writing zero buffers when the cluster refuses it. 0 or -errno.
Task<int> RbdLayer::do_write_zeroes(uint64_t off, uint64_t len, unsigned flags)
{
    rbd_image_t img = image_;
    int zflags = (flags & kReqNoUnmap) ? RBD_WRITE_ZEROES_FLAG_THICK_PROVISION : 0;
    int r = 0;
    if (zeroes_ok_) {
        int64_t z = co_await rbd_call(loop_, [&](rbd_completion_t c) {
            return rbd_aio_write_zeroes(img, off, size_t(len), c, zflags, 0);
        });
        if (z == -EOPNOTSUPP || z == -ENOSYS)
            zeroes_ok_ = false;
        else
            r = z < 0 ? int(z) : 0;
    }
    if (!zeroes_ok_)
        r = co_await write_zero_buffers(off, len);
    if (r == 0 && (flags & kReqFua))
        r = co_await do_flush();
    co_return r;
}

// Writes zeros over [off, off+len) from one 1 MiB zero buffer. 0 or -errno.
Task<int> RbdLayer::write_zero_buffers(uint64_t off, uint64_t len)
{
    constexpr size_t kChunk = 1 << 20;
    std::unique_ptr<char, decltype(&std::free)> zeros(
        static_cast<char*>(std::calloc(1, kChunk)), &std::free);
    if (!zeros)
        co_return -ENOMEM;
    while (len > 0) {
        size_t n = size_t(std::min<uint64_t>(len, kChunk));
        iovec v{zeros.get(), n};
        int r = co_await do_pwritev(off, &v, 1, 0);
        if (r < 0)
            co_return r;
        off += n;
        len -= n;
    }
    co_return 0;
}

Task<int> RbdLayer::do_truncate(uint64_t size)
{
    rbd_image_t img = image_;
    int r = int(co_await run_blocking(loop_, [img, size]() -> int64_t {
        return rbd_resize(img, size);
    }));
    if (r == 0)
        size_ = size;
    co_return r;
}

// Runs after the gate has drained every request: closes the image and the
// io context on a worker, then drops the connection reference (the last one
// shuts the cluster handle down on a detached thread).
Task<void> RbdLayer::do_close()
{
    rbd_image_t image = image_;
    rados_ioctx_t io = io_;
    image_ = nullptr;
    io_ = nullptr;
    co_await run_blocking(loop_, [image, io]() -> int64_t {
        int r = image ? rbd_close(image) : 0;
        if (io)
            rados_ioctx_destroy(io);
        return r;
    });
    conn_.reset();
}

Task<Result<std::vector<SnapshotInfo>>> RbdLayer::do_snapshot_list()
{
    rbd_image_t img = image_;
    std::vector<SnapshotInfo> out;
    int64_t r = co_await run_blocking(loop_, [img, &out]() -> int64_t {
        std::vector<rbd_snap_info_t> snaps(16);
        int max = int(snaps.size());
        int n;
        // -ERANGE: the array is too small and `max` now says how big.
        while ((n = rbd_snap_list(img, snaps.data(), &max)) == -ERANGE)
            snaps.resize(size_t(max) + 1);
        if (n < 0)
            return n;
        for (int i = 0; i < n; i++) {
            SnapshotInfo s{snaps[size_t(i)].name, snaps[size_t(i)].id, snaps[size_t(i)].size, 0};
            timespec ts{};
            if (rbd_snap_get_timestamp(img, s.id, &ts) == 0)
                s.timestamp = ts.tv_sec;
            out.push_back(std::move(s));
        }
        if (n > 0)
            rbd_snap_list_end(snaps.data());
        return 0;
    });
    if (r < 0)
        co_return make_error(int(-r), "cannot list the snapshots of rbd image '{}' on {}: {}",
                             name_, conn_.describe(), std::strerror(int(-r)));
    co_return out;
}

// Runs `fn(image, snap)` (a blocking librbd snapshot call) on a worker and
// words its error. Loop thread.
Task<Result<void>> RbdLayer::snapshot_call(const char* what, const std::string& snap,
                                           int (*fn)(rbd_image_t, const char*))
{
    rbd_image_t img = image_;
    const char* name = snap.c_str();
    int64_t r = co_await run_blocking(loop_, [img, name, fn]() -> int64_t {
        return fn(img, name);
    });
    if (r < 0) {
        int e = int(-r);
        const char* hint = e == ENOENT   ? " (no such snapshot)"
                           : e == EEXIST ? " (a snapshot of that name exists)"
                           : e == EBUSY  ? " (protected, or has clones)"
                                         : "";
        co_return make_error(e, "cannot {} snapshot '{}' of rbd image '{}' on {}: {}{}", what,
                             snap, name_, conn_.describe(), std::strerror(e), hint);
    }
    co_return Result<void>{};
}

Task<Result<void>> RbdLayer::do_snapshot_create(const std::string& name)
{
    co_return co_await snapshot_call("create", name, rbd_snap_create);
}

Task<Result<void>> RbdLayer::do_snapshot_delete(const std::string& name)
{
    co_return co_await snapshot_call("delete", name, rbd_snap_remove);
}

// Rolls the image back to the snapshot; its size becomes the snapshot's.
Task<Result<void>> RbdLayer::do_snapshot_revert(const std::string& name)
{
    auto r = co_await snapshot_call("revert to", name, rbd_snap_rollback);
    if (!r)
        co_return r;
    rbd_image_t img = image_;
    uint64_t size = size_;
    int64_t g = co_await run_blocking(loop_, [img, &size]() -> int64_t {
        return rbd_get_size(img, &size);
    });
    if (g < 0)
        co_return make_error(int(-g), "reverted rbd image '{}' to snapshot '{}' but cannot read "
                             "its size: {}", name_, name, std::strerror(int(-g)));
    size_ = size;
    co_return Result<void>{};
}

} // namespace coblk
