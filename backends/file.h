// The `file` backend: a regular file through io_uring, and `host_device`: a
// Linux block device. Both take cache=none (O_DIRECT) or cache=writeback
// (buffered, the default).
#pragma once

#include <memory>
#include <string>

#include "backends/fd_layer.h"
#include "engine/result.h"
#include "uri/uri.h"

namespace coblk {

enum class CacheMode { Writeback, None };

struct FileOpenOptions {
    bool read_only = false;
    CacheMode cache = CacheMode::Writeback;
    bool locking = true;      // whole-file OFD lock: exclusive for writers
};

// Opens `path` for a backend (`what` names it in errors), with O_DIRECT for
// cache=none and the OFD lock when asked. Returns the fd or an error naming
// the path. Any thread.
Result<int> open_backing_fd(const std::string& path, const FileOpenOptions& o, const char* what);

// Parses "none" | "writeback" (and "directsync"/"writethrough" as their
// nearest mode). Fails naming the value.
Result<CacheMode> parse_cache_mode(std::string_view text);

class FileLayer : public FdLayer {
public:
    // Opens the regular file `path`. Fails with a message naming the path
    // and the reason (missing, a directory, O_DIRECT refused, locked, ...).
    // Loop thread.
    static Result<std::unique_ptr<FileLayer>> open(Loop& loop, const std::string& path,
                                                   const FileOpenOptions& o);
    const char* kind() const override { return "file"; }
    int64_t allocated_bytes() const override;

protected:
    using FdLayer::FdLayer;
    Task<int> do_discard(uint64_t off, uint64_t len) override;
    Task<int> do_write_zeroes(uint64_t off, uint64_t len, unsigned flags) override;
    Task<int> do_truncate(uint64_t size) override;
    Task<int> do_block_status(uint64_t off, uint64_t len, Extent* out) override;

private:
    bool punch_ok_ = true;      // cleared when the file system refuses punch-hole
    bool zero_range_ok_ = true; // cleared when it refuses FALLOC_FL_ZERO_RANGE
};

class HostDeviceLayer : public FdLayer {
public:
    // Opens the block device `path` (fails if it is not one). Loop thread.
    static Result<std::unique_ptr<HostDeviceLayer>> open(Loop& loop, const std::string& path,
                                                         const FileOpenOptions& o);
    const char* kind() const override { return "host_device"; }
    int64_t allocated_bytes() const override { return int64_t(size_); }
    uint32_t logical_block_size() const { return lbs_; }

protected:
    using FdLayer::FdLayer;
    Task<int> do_discard(uint64_t off, uint64_t len) override;
    Task<int> do_write_zeroes(uint64_t off, uint64_t len, unsigned flags) override;

private:
    uint32_t lbs_ = 512;
};

} // namespace coblk
