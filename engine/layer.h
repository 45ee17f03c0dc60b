// The one interface of every layer of a device stack: protocol backends
// (file, host_device, null, memory, ...) and image formats (raw, ...), which
// own their child layers. Data flows down through do_*; completions return
// up through the awaits.
//
// Threads: a layer is used from the coroutines of one loop at a time.
// I/O calls return 0 when the whole range was done, or -errno: -EBADF after
// close, -EROFS for a write to a read-only layer, -EINVAL for a range past
// the end of a layer that cannot grow.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/result.h"
#include "engine/sync.h"
#include "engine/task.h"

namespace coblk {

// Request flags.
enum : unsigned {
    kReqFua = 1u << 0,      // pwritev/write_zeroes: durable when it completes
    kReqNoUnmap = 1u << 1,  // write_zeroes: keep the range allocated
};

struct Limits {
    uint32_t request_alignment = 1;  // offsets/lengths at this alignment are not bounced
    uint32_t memory_alignment = 1;   // buffer addresses at this alignment are not bounced
    uint64_t max_transfer = 0;       // largest single request passed down; 0: no limit
    uint64_t optimal_transfer = 0;   // 0: no preference
    bool discard = false;            // discard frees space (otherwise it is a no-op)
    bool write_zeroes = false;       // write_zeroes is cheaper than writing zeros
    bool fua = false;                // kReqFua is native (otherwise emulated with flush)
};

// What block_status found at the start of a range.
struct Extent {
    uint64_t len = 0;     // bytes from the queried offset with this status
    bool data = true;     // allocated in this layer (or its children)
    bool zero = false;    // reads as zeros
};

// One snapshot of an image, as snapshot_list() reports it.
struct SnapshotInfo {
    std::string name;
    uint64_t id = 0;          // the backend's snapshot id
    uint64_t size = 0;        // the image's size when the snapshot was taken
    int64_t timestamp = 0;    // creation time, seconds since the epoch; 0 if unknown
};

class Layer {
public:
    virtual ~Layer() = default;
    Layer(const Layer&) = delete;
    Layer& operator=(const Layer&) = delete;

    // Reads/writes the bytes described by `iov` at `off`. 0 or -errno.
    Task<int> preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags = 0);
    Task<int> pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags = 0);
    Task<int> pread(uint64_t off, void* buf, size_t len);
    Task<int> pwrite(uint64_t off, const void* buf, size_t len, unsigned flags = 0);
    // Makes every completed write durable. 0 or -errno.
    Task<int> flush();
    // Tells the layer the range is unused (reads may then return anything
    // previously written or zeros). 0 or -errno.
    Task<int> discard(uint64_t off, uint64_t len);
    // Makes the range read as zeros. 0 or -errno.
    Task<int> write_zeroes(uint64_t off, uint64_t len, unsigned flags = 0);
    // Changes the size. 0 or -errno (-ENOTSUP where the layer cannot).
    Task<int> truncate(uint64_t size);
    // Status of the extent starting at `off`, looking at most `len` bytes
    // ahead. 0 or -errno.
    Task<int> block_status(uint64_t off, uint64_t len, Extent* out);
    // Snapshots (control path, as qemu-img snapshot): list them, create,
    // delete, or revert the image to one. A format layer that keeps no
    // snapshots of its own forwards these to its child. They fail with
    // EBADF after close, EROFS on a read-only layer (all but list) and
    // ENOTSUP where the stack has no snapshot support; the message names
    // the layer and the snapshot. Loop thread.
    Task<Result<std::vector<SnapshotInfo>>> snapshot_list();
    Task<Result<void>> snapshot_create(std::string_view name);
    Task<Result<void>> snapshot_delete(std::string_view name);
    Task<Result<void>> snapshot_revert(std::string_view name);

    // Waits for every request in flight, then releases the layer and its
    // children. Requests issued afterwards fail with -EBADF. Idempotent.
    Task<void> close();

    // The current size in bytes.
    uint64_t size() const { return size_; }
    const Limits& limits() const { return limits_; }
    bool read_only() const { return read_only_; }
    bool closed() const { return closed_; }
    // Requests started and not yet completed.
    size_t in_flight() const { return inflight_.count(); }
    bool growable() const { return growable_; }

    // "file", "host_device", "raw", ...
    virtual const char* kind() const = 0;
    // The protocol at the bottom of the stack ("file", "gluster", ...).
    virtual const char* protocol() const { return kind(); }
    // Bytes of storage used, or -errno when unknown.
    virtual int64_t allocated_bytes() const { return -ENOTSUP; }
    // The child this layer reads and writes through, or null for a backend.
    virtual Layer* child() const { return nullptr; }

protected:
    Layer() = default;

    virtual Task<int> do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) = 0;
    virtual Task<int> do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) = 0;
    virtual Task<int> do_flush() = 0;
    virtual Task<int> do_discard(uint64_t off, uint64_t len) = 0;
    virtual Task<int> do_write_zeroes(uint64_t off, uint64_t len, unsigned flags) = 0;
    virtual Task<int> do_truncate(uint64_t size);
    virtual Task<int> do_block_status(uint64_t off, uint64_t len, Extent* out);
    // Releases resources once nothing is in flight.
    virtual Task<void> do_close() = 0;
    // Snapshot operations; the defaults fail with ENOTSUP. `name` is never
    // empty and outlives the call (a reference, not a copy: g++ 12 and
    // temporaries in co_await expressions).
    virtual Task<Result<std::vector<SnapshotInfo>>> do_snapshot_list();
    virtual Task<Result<void>> do_snapshot_create(const std::string& name);
    virtual Task<Result<void>> do_snapshot_delete(const std::string& name);
    virtual Task<Result<void>> do_snapshot_revert(const std::string& name);

    uint64_t size_ = 0;
    Limits limits_;
    bool read_only_ = false;
    // A growable layer (a file) takes requests past size_: reads there give
    // zeros and writes extend size_. Others refuse them with -EINVAL.
    bool growable_ = false;

private:
    enum class SnapOp { Create, Delete, Revert };
    Task<Result<void>> snapshot_change(SnapOp op, std::string_view name);

    WaitGroup inflight_;
    bool closed_ = false;
};

// The total length of an iovec array.
size_t iov_length(const iovec* iov, int iovcnt);

// Copies `len` bytes from `src` starting `skip` bytes in into `dst`.
void iov_to_buf(const iovec* src, int iovcnt, size_t skip, void* dst, size_t len);
// Copies `len` bytes from `src` into `dst` starting `skip` bytes in.
void buf_to_iov(const void* src, size_t len, const iovec* dst, int iovcnt, size_t skip);
// Zeros `len` bytes of `dst` starting `skip` bytes in.
void iov_memset(const iovec* dst, int iovcnt, size_t skip, int c, size_t len);

} // namespace coblk
