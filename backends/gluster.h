// The `gluster` backend: an image file on a GlusterFS volume through
// libgfapi, without FUSE. Reads, writes, flushes, discards and write-zeroes
// go through libgfapi's async calls; their callbacks arrive on libgfapi's
// threads (several at once) and only hand the result to the request's loop
// (ForeignCompletion), where the coroutine resumes. Calls that block
// (open, fstat, ftruncate, close) run on the worker pool. The connection
// (glfs_t) is shared per volume through backends/gluster_connection.h.
//
// An image keeps its size: requests past the end fail with -EINVAL (the
// Layer gate); truncate() resizes it.
#pragma once

#include <memory>
#include <string>

#include "backends/gluster_connection.h"
#include "engine/layer.h"
#include "engine/loop.h"
#include "engine/result.h"
#include "uri/uri.h"

struct glfs_fd;

namespace coblk {

class GlusterLayer : public Layer {
public:
    // Opens the image `spec.path` on `spec`'s volume with the gluster options
    // `opts` (log-level, log-file, ping-timeout, connect-timeout, debug,
    // gather-us, client-io-threads).
    // Errors name server, volume and path: ENOENT for a missing volume or
    // file, ENOTCONN when no glusterd answers, ETIMEDOUT when the connection
    // does not come up within connect-timeout. Loop thread.
    static Task<Result<std::unique_ptr<GlusterLayer>>> open(Loop& loop,
                                                            const uri::GlusterSpec& spec,
                                                            const uri::Options& opts,
                                                            bool read_only);

    // Creates (or truncates) the image `spec.path` with `size` bytes;
    // `falloc` preallocates it. Errors as open()'s. Loop thread.
    static Task<Result<void>> create(Loop& loop, const uri::GlusterSpec& spec,
                                     const uri::Options& opts, uint64_t size, bool falloc);

    ~GlusterLayer() override;
    const char* kind() const override { return "gluster"; }
    int64_t allocated_bytes() const override;

    // Largest request handed to libgfapi at once; larger ones are split.
    static constexpr uint64_t kMaxTransfer = 512ull << 20;

protected:
    Task<int> do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_flush() override;
    Task<int> do_discard(uint64_t off, uint64_t len) override;
    Task<int> do_write_zeroes(uint64_t off, uint64_t len, unsigned flags) override;
    Task<int> do_truncate(uint64_t size) override;
    Task<void> do_close() override;

private:
    GlusterLayer(Loop& loop, GlusterConnRef conn, glfs_fd* fd, std::string path);
    Task<int> rw(bool write, uint64_t off, const iovec* iov, int iovcnt);
    Task<int> write_zero_buffers(uint64_t off, uint64_t len);

    Loop& loop_;
    GlusterConnRef conn_;
    glfs_fd* fd_ = nullptr;
    std::string path_;
    bool discard_ok_ = true;   // cleared when the volume refuses discard
    bool zerofill_ok_ = true;  // cleared when the volume refuses zerofill
    uint32_t gather_us_ = 0;   // for reads and writes: the gather-us option
};

} // namespace coblk
