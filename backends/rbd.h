// The `rbd` backend: a Ceph RBD image through librbd. Reads, writes,
// flushes, discards and write-zeroes are librbd aio calls (rbd_aio_readv,
// rbd_aio_writev, ...); their callbacks arrive on librados' threads and
// only hand the result to the request's loop (ForeignCompletion), where the
// coroutine resumes, once. Calls that block (open, close, resize, snapshot
// operations) run on the worker pool. The cluster handle is shared per set
// of connection options through backends/rbd_connection.h.
//
// An image keeps its size: requests past the end fail with -EINVAL (the
// Layer gate); truncate() resizes it. An image opened at a snapshot
// (`rbd:pool/img@snap`) is read-only. A read that reaches past the end of an
// image shrunk by another client returns the data up to the end, then zeros.
#pragma once

#include <memory>
#include <string>

#include "backends/rbd_connection.h"
#include "engine/layer.h"
#include "engine/loop.h"
#include "engine/result.h"
#include "uri/uri.h"

typedef void* rados_ioctx_t;
typedef void* rbd_image_t;

namespace coblk {

class RbdLayer : public Layer {
public:
    // Opens `spec`'s image (at its snapshot, if any) with the connection
    // options `opts` (the rbd: name's options and -o). Errors name pool,
    // namespace, image, snapshot and cluster: ENOENT for a missing pool,
    // image or snapshot, ETIMEDOUT for a cluster that does not answer.
    // Loop thread.
    static Task<Result<std::unique_ptr<RbdLayer>>> open(Loop& loop, const uri::RbdSpec& spec,
                                                        const uri::Options& opts,
                                                        bool read_only);

    // Creates the image with `size` bytes (librbd's default format and
    // features). EEXIST when it exists, as qemu-img; other errors as
    // open()'s. Loop thread.
    static Task<Result<void>> create(Loop& loop, const uri::RbdSpec& spec,
                                     const uri::Options& opts, uint64_t size);

    ~RbdLayer() override;
    const char* kind() const override { return "rbd"; }
    // "pool/image" or "pool/namespace/image", with "@snap" when at a snapshot.
    const std::string& image_name() const { return name_; }

protected:
    Task<int> do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_flush() override;
    Task<int> do_discard(uint64_t off, uint64_t len) override;
    Task<int> do_write_zeroes(uint64_t off, uint64_t len, unsigned flags) override;
    Task<int> do_truncate(uint64_t size) override;
    Task<void> do_close() override;
    Task<Result<std::vector<SnapshotInfo>>> do_snapshot_list() override;
    Task<Result<void>> do_snapshot_create(const std::string& name) override;
    Task<Result<void>> do_snapshot_delete(const std::string& name) override;
    Task<Result<void>> do_snapshot_revert(const std::string& name) override;

private:
    RbdLayer(Loop& loop, RbdConnRef conn, rados_ioctx_t io, rbd_image_t image, std::string name);
    Task<int> write_zero_buffers(uint64_t off, uint64_t len);
    Task<Result<void>> snapshot_call(const char* what, const std::string& snap,
                                     int (*fn)(rbd_image_t, const char*));

    Loop& loop_;
    RbdConnRef conn_;
    rados_ioctx_t io_ = nullptr;
    rbd_image_t image_ = nullptr;
    std::string name_;
    bool zeroes_ok_ = true;  // cleared when the cluster refuses write_zeroes
};

} // namespace coblk
