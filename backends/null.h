// The `null` backend: every request completes at once (or after
// latency-ns), reads give zeros (unless read-zeroes=off), writes are dropped.
// It measures the engine's own cost per request, as QEMU's null-co does.
#pragma once

#include <memory>

#include "engine/layer.h"
#include "engine/loop.h"
#include "engine/result.h"
#include "uri/uri.h"

namespace coblk {

class NullLayer : public Layer {
public:
    // Options: size (default 1 GiB), latency-ns (default 0), read-zeroes
    // (default on). Fails naming a bad option.
    static Result<std::unique_ptr<NullLayer>> open(Loop& loop, const uri::Options& opts,
                                                   bool read_only);
    const char* kind() const override { return "null"; }
    int64_t allocated_bytes() const override { return 0; }

protected:
    Task<int> do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_flush() override;
    Task<int> do_discard(uint64_t off, uint64_t len) override;
    Task<int> do_write_zeroes(uint64_t off, uint64_t len, unsigned flags) override;
    Task<int> do_truncate(uint64_t size) override;
    Task<int> do_block_status(uint64_t off, uint64_t len, Extent* out) override;
    Task<void> do_close() override { co_return; }

private:
    explicit NullLayer(Loop& loop) : loop_(loop) {}
    Task<int> delay();

    Loop& loop_;
    uint64_t latency_ns_ = 0;
    bool read_zeroes_ = true;
};

} // namespace coblk
