// FdLayer: the io_uring read/write path shared by the `file` and
// `host_device` backends. It owns one file descriptor, resubmits short
// reads and writes, reads zeros past the end of the file, retries -EAGAIN and
// -EINTR, and bounces requests that O_DIRECT cannot take as they are
// (unaligned offset, length or buffer) through an aligned buffer, with a
// read-modify-write under a range lock for unaligned writes.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>

#include "engine/layer.h"
#include "engine/loop.h"
#include "engine/sync.h"

namespace coblk {

class FdLayer : public Layer {
public:
    ~FdLayer() override;
    int fd() const { return fd_; }
    bool direct() const { return direct_; }
    const std::string& path() const { return path_; }

protected:
    // Takes ownership of `fd`. `align` is the O_DIRECT request alignment (1
    // when buffered), `mem_align` the buffer alignment.
    FdLayer(Loop& loop, int fd, std::string path, bool direct, uint32_t align, uint32_t mem_align);

    Task<int> do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_flush() override;
    Task<void> do_close() override;

    // Reads/writes exactly iov's length at `off` with no alignment fix-ups,
    // resubmitting short transfers. Reads past EOF give zeros. 0 or -errno.
    Task<int> rw_full(bool write, uint64_t off, const iovec* iov, int iovcnt);
    // Writes `len` zero bytes at `off` through the ordinary write path.
    Task<int> write_zero_buffers(uint64_t off, uint64_t len);

    Loop& loop_;
    int fd_ = -1;
    std::string path_;
    bool direct_ = false;
    // In O_DIRECT mode every write holds its aligned extent, so that a
    // read-modify-write of a partial block never races another write.
    RangeLock write_lock_;

private:
    struct FreeDeleter {
        void operator()(void* p) const { std::free(p); }
    };
    using BounceBuffer = std::unique_ptr<char, FreeDeleter>;
    struct Bounce {
        uint32_t align;
        uint64_t lo, hi;
        BounceBuffer buf;
    };
    Bounce bounce_for(uint64_t off, uint64_t len) const;
    bool needs_bounce(uint64_t off, const iovec* iov, int iovcnt) const;
    Task<int> bounced_read(uint64_t off, const iovec* iov, int iovcnt);
    Task<int> bounced_write(uint64_t off, const iovec* iov, int iovcnt);
    Task<int> write_direct_or_bounced(uint64_t off, const iovec* iov, int iovcnt);
};

// Buffer with the given alignment, freed with std::free. Null on ENOMEM.
void* aligned_buffer(size_t align, size_t len);

} // namespace coblk
