// A fault-injecting layer for tests: it wraps any layer and, driven by one
// seeded PRNG, fails (EIO, ENOSPC), delays (and so reorders), shortens or
// "crashes" the requests that pass through it, and afterwards resolves a
// crash on the child as a power cut would. Given the same seed, the same
// order of requests arriving and (for resolve_crash) of writes completing,
// every decision repeats, so a failure replays.
//
// Threads: like every layer, used from the coroutines of one loop.
#pragma once

#include <cerrno>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "bench/prng.h"
#include "engine/layer.h"
#include "engine/sync.h"

namespace coblk::test {

struct FaultConfig {
    uint64_t seed = 1;
    // Probability that a request completes with -fail_errno without
    // reaching the child.
    double fail_rate = 0;
    // EIO or ENOSPC; ENOSPC is given to pwritev and write_zeroes only, other
    // requests chosen to fail get -EIO.
    int fail_errno = EIO;
    // Probability that a request sleeps 1..max_delay_us microseconds before
    // going down; concurrent requests then reach the child, and complete, in
    // another order than they arrived.
    double delay_rate = 0;
    uint32_t max_delay_us = 0;
    // Probability that a read or write goes down as a shorter request first
    // (split at a multiple of the child's request alignment). The layer
    // then sends the rest itself, or, with short_fails, returns -EIO: a
    // caller never sees a short transfer reported as success.
    double short_rate = 0;
    bool short_fails = false;
    // close() closes the child too. Set false to take the child back with
    // release_child() after close(), e.g. to reopen it after a crash.
    bool close_child = true;
};

class FaultLayer : public Layer {
public:
    // Wraps `child`, taking its size, limits, read-only and growable state.
    FaultLayer(std::unique_ptr<Layer> child, FaultConfig cfg);

    const char* kind() const override { return "fault"; }
    const char* protocol() const override { return child_ ? child_->protocol() : kind(); }
    int64_t allocated_bytes() const override
    {
        return child_ ? child_->allocated_bytes() : -EBADF;
    }
    Layer* child() const override { return child_.get(); }

    // ---- crash simulation ----
    // Every write-type request (pwritev, write_zeroes, discard, truncate)
    // that reaches this layer takes the next write point number, from 0,
    // whatever happens to it afterwards. The count issued so far:
    uint64_t write_points() const { return write_points_; }
    // Arms a crash at write point `n`: that write and every later request of
    // any kind fail with -EIO without reaching the child. When `n` has
    // already been issued the crash happens at once.
    void crash_at(uint64_t n);
    void crash_now() { crashed_ = true; }
    // Makes write point `n` alone fail with -fail_errno (EIO where ENOSPC
    // does not apply) without reaching the child, as an injected failure;
    // later requests go on. For tests that need one chosen write to fail.
    void fail_write_point(uint64_t n) { fail_point_ = n; }
    bool crashed() const { return crashed_; }

    // Crashes (if not yet), waits for the requests still inside the layer,
    // then leaves on the child a state a power cut could have left: every
    // write that completed after the last completed flush is independently
    // kept (probability keep_probability) or undone; with `tear`, one of
    // them (never a truncate) is torn instead: only a seeded, proper subset
    // of its 512-byte sectors keeps the new data (a write within one sector
    // is kept or undone whole). Writes covered by a
    // completed flush, and FUA writes that completed before the crash, are
    // always kept. A write still at the child when the crash came counts
    // as unflushed (it may or may not have landed). Afterwards the layer
    // only fails (-EIO): close it and take the child with release_child().
    // 0, or the -errno of a child request made while undoing.
    Task<int> resolve_crash(double keep_probability, bool tear);

    // The child, once close() has completed (null before). It was closed
    // by close() unless FaultConfig::close_child is false.
    std::unique_ptr<Layer> release_child();

    // Failures + delays + shortened requests injected so far.
    uint64_t faults_injected() const { return fails_ + delays_ + shorts_; }

protected:
    Task<int> do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_flush() override;
    Task<int> do_discard(uint64_t off, uint64_t len) override;
    Task<int> do_write_zeroes(uint64_t off, uint64_t len, unsigned flags) override;
    Task<int> do_truncate(uint64_t size) override;
    Task<int> do_block_status(uint64_t off, uint64_t len, Extent* out) override;
    Task<void> do_close() override;

private:
    enum class Op { Read, Write, Flush, Discard, WriteZeroes, Truncate, Status };

    // What the PRNG decided for one request.
    struct Draw {
        bool fail = false;
        uint32_t delay_us = 0;
        uint64_t cut = 0;  // bytes of the first, shorter child request; 0: none
    };

    // The pre-image of one write that reached the child.
    struct Undo {
        uint64_t seq = 0;       // completion order among writes
        Op op = Op::Write;
        uint64_t off = 0, len = 0;      // the bytes `old` holds (truncate: the cut tail)
        uint64_t old_size = 0;          // child size when the pre-image was taken
        uint64_t new_size = 0;          // truncate: the size asked for
        bool durable = false;           // a FUA write that completed before the crash
        std::vector<unsigned char> old;
    };

    // Admits a request: the crash check, a write point for writes, the
    // draws, an injected failure or delay. 0 to go on, or -errno to return.
    Task<int> admit(Op op, uint64_t len, Draw& d);
    // Reads the child's bytes at [u.off, u.off+u.len) into u.old. 0 or -errno.
    Task<int> capture(Undo& u);
    // Files a completed write's pre-image; `r` is the child's result.
    void record(Undo&& u, int r, unsigned flags);
    // Writes covered by a flush that completed become durable.
    void make_durable(uint64_t covers);
    // The size the child has after the writes of `u`, kept, starting at `s`.
    uint64_t size_after(uint64_t s, const Undo& u) const;
    // Writes u's pre-image bytes in [from, to) back to the child, except
    // where `kept` (ranges holding kept data) covers them. 0 or -errno.
    Task<int> restore(const Undo& u, uint64_t from, uint64_t to,
                      const std::vector<std::pair<uint64_t, uint64_t>>& kept);
    double unit() { return double(prng_.next() >> 11) * 0x1.0p-53; }

    std::unique_ptr<Layer> child_;
    FaultConfig cfg_;
    bench::Prng prng_;
    // Overlapping writes take turns from pre-image to completion: see
    // fault_layer.cpp on why.
    RangeLock locks_;
    WaitGroup ops_;  // requests inside this layer, for resolve_crash

    uint64_t write_points_ = 0;
    uint64_t crash_at_ = UINT64_MAX;
    uint64_t fail_point_ = UINT64_MAX;
    bool crashed_ = false;
    bool resolved_ = false;

    uint64_t completed_ = 0;     // writes completed at the child
    std::deque<Undo> unflushed_; // by completion order
    uint64_t durable_size_ = 0;  // child size after every durable write

    uint64_t fails_ = 0, delays_ = 0, shorts_ = 0;
};

} // namespace coblk::test
