// The `memory` backend: a sparse RAM disk for tests. memory://NAME opens a
// store shared by every device of that name in the process (so a test can
// close and reopen it); an unnamed one is private. Unwritten ranges read as
// zeros and are reported as holes.
#pragma once

#include <memory>

#include "engine/layer.h"
#include "engine/result.h"
#include "uri/uri.h"

namespace coblk {

struct MemoryStore;

class MemoryLayer : public Layer {
public:
    // Options: size (default 64 MiB; when the named store exists, its size
    // unless given), name. Fails naming a bad option.
    static Result<std::unique_ptr<MemoryLayer>> open(const uri::Options& opts, bool read_only);
    ~MemoryLayer() override;
    const char* kind() const override { return "memory"; }
    int64_t allocated_bytes() const override;

    // Forgets the named store (the next open starts empty). Any thread.
    static void drop(const std::string& name);

protected:
    Task<int> do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_flush() override { co_return 0; }
    Task<int> do_discard(uint64_t off, uint64_t len) override;
    Task<int> do_write_zeroes(uint64_t off, uint64_t len, unsigned flags) override;
    Task<int> do_truncate(uint64_t size) override;
    Task<int> do_block_status(uint64_t off, uint64_t len, Extent* out) override;
    Task<void> do_close() override { co_return; }

private:
    explicit MemoryLayer(std::shared_ptr<MemoryStore> s) : store_(std::move(s)) {}
    std::shared_ptr<MemoryStore> store_;
};

} // namespace coblk
