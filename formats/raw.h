// The `raw` format: the child's bytes as they are, optionally through an
// offset/size window. A raw layer that was chosen by probing (no explicit
// format) refuses writes that would make the first sector probe as another
// format, so a guest cannot turn its raw disk into, say, a qcow2 image that
// points at host files. The size is fixed at open (a guest cannot grow its
// disk by writing past the end); truncate() resizes a raw layer without a
// window.
#pragma once

#include <memory>

#include "engine/layer.h"
#include "engine/result.h"
#include "engine/sync.h"
#include "uri/uri.h"

namespace coblk {

struct RawOptions {
    uint64_t offset = 0;
    std::optional<uint64_t> size;   // default: the child's size less offset
    bool probed = false;            // format was probed, not given
};

// Parses raw's options (offset, size) from `opts`. Fails naming a bad one.
Result<RawOptions> parse_raw_options(const uri::Options& opts);

class RawLayer : public Layer {
public:
    // Wraps `child`. Fails when the window does not fit in the child.
    static Result<std::unique_ptr<RawLayer>> open(std::unique_ptr<Layer> child,
                                                  const RawOptions& o);
    const char* kind() const override { return "raw"; }
    const char* protocol() const override { return child_->protocol(); }
    int64_t allocated_bytes() const override { return child_->allocated_bytes(); }
    Layer* child() const override { return child_.get(); }
    uint64_t offset() const { return offset_; }

protected:
    Task<int> do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_flush() override;
    Task<int> do_discard(uint64_t off, uint64_t len) override;
    Task<int> do_write_zeroes(uint64_t off, uint64_t len, unsigned flags) override;
    Task<int> do_truncate(uint64_t size) override;
    Task<int> do_block_status(uint64_t off, uint64_t len, Extent* out) override;
    Task<void> do_close() override;
    Task<Result<std::vector<SnapshotInfo>>> do_snapshot_list() override;
    Task<Result<void>> do_snapshot_create(const std::string& name) override;
    Task<Result<void>> do_snapshot_delete(const std::string& name) override;
    Task<Result<void>> do_snapshot_revert(const std::string& name) override;

private:
    explicit RawLayer(std::unique_ptr<Layer> child) : child_(std::move(child)) {}
    // -EPERM when writing `iov` at `off` (< 512) would make sector 0 probe as
    // another format; 0 otherwise.
    Task<int> check_probe_guard(uint64_t off, const iovec* iov, int iovcnt);

    std::unique_ptr<Layer> child_;
    uint64_t offset_ = 0;
    bool probed_ = false;
    bool window_ = false;     // an explicit size: the layer cannot grow
    RangeLock sector0_;
};

} // namespace coblk
