#include "tests/fault_layer.h"

#include <algorithm>
#include <chrono>

#include "engine/loop.h"

namespace coblk::test {
namespace {

constexpr uint64_t kSector = 512;

// Marks a request as having left the layer when its coroutine ends.
struct Leave {
    WaitGroup& wg;
    ~Leave() { wg.done(); }
};

// The iovecs describing `len` bytes of `iov` from byte `skip` on.
std::vector<iovec> iov_slice(const iovec* iov, int iovcnt, size_t skip, size_t len)
{
    std::vector<iovec> out;
    for (int i = 0; i < iovcnt && len > 0; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t n = std::min(iov[i].iov_len - skip, len);
        out.push_back({static_cast<char*>(iov[i].iov_base) + skip, n});
        len -= n;
        skip = 0;
    }
    return out;
}

} // namespace

FaultLayer::FaultLayer(std::unique_ptr<Layer> child, FaultConfig cfg)
    : child_(std::move(child)), cfg_(cfg), prng_(cfg.seed)
{
    size_ = child_->size();
    limits_ = child_->limits();
    read_only_ = child_->read_only();
    growable_ = child_->growable();
    durable_size_ = size_;
}

void FaultLayer::crash_at(uint64_t n)
{
    crash_at_ = n;
    if (n < write_points_)
        crashed_ = true;
}

std::unique_ptr<Layer> FaultLayer::release_child()
{
    if (!closed() || in_flight() > 0)
        return nullptr;
    return std::move(child_);
}

// Every request draws the same five numbers, whatever the knobs, so that
// the stream of decisions stays aligned with the stream of requests.
Task<int> FaultLayer::admit(Op op, uint64_t len, Draw& d)
{
    bool write = op != Op::Read && op != Op::Flush && op != Op::Status;
    uint64_t point = write ? write_points_++ : UINT64_MAX;
    if (write && point >= crash_at_)
        crashed_ = true;
    if (crashed_ || resolved_)
        co_return -EIO;
    double fail = unit(), delay = unit(), shorten = unit();
    uint64_t amount = prng_.next(), cut = prng_.next();
    if (fail < cfg_.fail_rate || (write && point == fail_point_)) {
        fails_++;
        bool enospc_ok = op == Op::Write || op == Op::WriteZeroes;
        co_return cfg_.fail_errno == ENOSPC && !enospc_ok ? -EIO : -cfg_.fail_errno;
    }
    if ((op == Op::Read || op == Op::Write) && shorten < cfg_.short_rate) {
        uint64_t a = std::max<uint64_t>(1, child_->limits().request_alignment);
        if (uint64_t units = len / a; units >= 2) {
            d.cut = a * (1 + cut % (units - 1));
            shorts_++;
        }
    }
    if (delay < cfg_.delay_rate && cfg_.max_delay_us > 0) {
        d.delay_us = uint32_t(1 + amount % cfg_.max_delay_us);
        delays_++;
        if (Loop* loop = Loop::current())
            co_await loop->sleep_for(std::chrono::microseconds(d.delay_us));
        if (crashed_)
            co_return -EIO;
    }
    co_return 0;
}

Task<int> FaultLayer::capture(Undo& u)
{
    u.old_size = child_->size();
    u.old.resize(u.len);
    if (u.len > 0) {
        // A growable child reads zeros past its end; others never get here
        // with such a range (the gate refuses it).
        if (int r = co_await child_->pread(u.off, u.old.data(), u.len); r < 0)
            co_return r;
    }
    co_return crashed_ ? -EIO : 0;
}

void FaultLayer::record(Undo&& u, int r, unsigned flags)
{
    u.seq = completed_++;
    u.durable = (flags & kReqFua) && r == 0 && !crashed_;
    unflushed_.push_back(std::move(u));
}

void FaultLayer::make_durable(uint64_t covers)
{
    while (!unflushed_.empty() && unflushed_.front().seq < covers) {
        durable_size_ = size_after(durable_size_, unflushed_.front());
        unflushed_.pop_front();
    }
}

uint64_t FaultLayer::size_after(uint64_t s, const Undo& u) const
{
    if (u.op == Op::Truncate)
        return u.new_size;
    if (child_->growable())
        return std::max(s, u.off + u.len);
    return s;
}

Task<int> FaultLayer::do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    ops_.add();
    Leave leave{ops_};
    uint64_t len = iov_length(iov, iovcnt);
    Draw d;
    if (int r = co_await admit(Op::Read, len, d); r < 0)
        co_return r;
    if (!d.cut)
        co_return co_await child_->preadv(off, iov, iovcnt, flags);
    auto head = iov_slice(iov, iovcnt, 0, d.cut);
    int r = co_await child_->preadv(off, head.data(), int(head.size()), flags);
    if (r < 0)
        co_return r;
    if (cfg_.short_fails || crashed_)
        co_return -EIO;
    auto tail = iov_slice(iov, iovcnt, d.cut, len - d.cut);
    co_return co_await child_->preadv(off + d.cut, tail.data(), int(tail.size()), flags);
}

// Why overlapping writes hold a range lock from the pre-image read to their
// completion. Undo restores pre-images in reverse completion order, and a
// write's pre-image must be exactly the bytes every earlier-completing
// overlapping write left. Without the lock, two overlapping writes A and B
// could both read their pre-image before either lands; A completes, then B;
// B's pre-image is then the state before A, so keeping A and undoing B would
// erase A's data. Under the lock B reads its pre-image only after A has
// completed, so for each byte the pre-images form a chain: undoing the
// writes after the last kept one, newest first, ends at that kept write's
// data. resolve_crash also skips bytes that a later kept write covers, so
// undoing an older write never erases a newer kept one. Overlapping writes
// through this layer are therefore serialized (RangeLock is FIFO among
// overlapping requests); non-overlapping ones still run concurrently.
// Truncate locks the whole range, since it changes the size every write
// sees.
Task<int> FaultLayer::do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    ops_.add();
    Leave leave{ops_};
    uint64_t len = iov_length(iov, iovcnt);
    Draw d;
    if (int r = co_await admit(Op::Write, len, d); r < 0)
        co_return r;
    auto guard = co_await locks_.lock(off, len);
    Undo u;
    u.op = Op::Write;
    u.off = off;
    u.len = len;
    if (int r = co_await capture(u); r < 0)
        co_return r;
    int r;
    if (!d.cut) {
        r = co_await child_->pwritev(off, iov, iovcnt, flags);
    } else {
        auto head = iov_slice(iov, iovcnt, 0, d.cut);
        r = co_await child_->pwritev(off, head.data(), int(head.size()), flags);
        if (r == 0 && cfg_.short_fails) {
            r = -EIO;
        } else if (r == 0 && !crashed_) {
            auto tail = iov_slice(iov, iovcnt, d.cut, len - d.cut);
            r = co_await child_->pwritev(off + d.cut, tail.data(), int(tail.size()), flags);
        }
    }
    record(std::move(u), r, flags);
    co_return crashed_ ? -EIO : r;
}

Task<int> FaultLayer::do_flush()
{
    ops_.add();
    Leave leave{ops_};
    // Only writes completed before the flush arrived are covered by it: a
    // write that completes while the flush is delayed or at the child is
    // counted as unflushed (conservative).
    uint64_t covers = completed_;
    Draw d;
    if (int r = co_await admit(Op::Flush, 0, d); r < 0)
        co_return r;
    int r = co_await child_->flush();
    if (crashed_)
        co_return -EIO;
    if (r == 0)
        make_durable(covers);
    co_return r;
}

Task<int> FaultLayer::do_discard(uint64_t off, uint64_t len)
{
    ops_.add();
    Leave leave{ops_};
    Draw d;
    if (int r = co_await admit(Op::Discard, len, d); r < 0)
        co_return r;
    auto guard = co_await locks_.lock(off, len);
    Undo u;
    u.op = Op::Discard;
    u.off = off;
    u.len = len;
    if (int r = co_await capture(u); r < 0)
        co_return r;
    int r = co_await child_->discard(off, len);
    record(std::move(u), r, 0);
    co_return crashed_ ? -EIO : r;
}

Task<int> FaultLayer::do_write_zeroes(uint64_t off, uint64_t len, unsigned flags)
{
    ops_.add();
    Leave leave{ops_};
    Draw d;
    if (int r = co_await admit(Op::WriteZeroes, len, d); r < 0)
        co_return r;
    auto guard = co_await locks_.lock(off, len);
    Undo u;
    u.op = Op::WriteZeroes;
    u.off = off;
    u.len = len;
    if (int r = co_await capture(u); r < 0)
        co_return r;
    int r = co_await child_->write_zeroes(off, len, flags);
    record(std::move(u), r, flags);
    co_return crashed_ ? -EIO : r;
}

Task<int> FaultLayer::do_truncate(uint64_t size)
{
    ops_.add();
    Leave leave{ops_};
    Draw d;
    if (int r = co_await admit(Op::Truncate, 0, d); r < 0)
        co_return r;
    auto guard = co_await locks_.lock(0, UINT64_MAX);
    Undo u;
    u.op = Op::Truncate;
    uint64_t old = child_->size();
    u.off = std::min(old, size);
    u.len = old - u.off;  // the tail a shrink cuts off; nothing for a grow
    if (int r = co_await capture(u); r < 0)
        co_return r;
    int r = co_await child_->truncate(size);
    u.new_size = child_->size();
    size_ = u.new_size;
    record(std::move(u), r, 0);
    co_return crashed_ ? -EIO : r;
}

Task<int> FaultLayer::do_block_status(uint64_t off, uint64_t len, Extent* out)
{
    ops_.add();
    Leave leave{ops_};
    if (crashed_ || resolved_)
        co_return -EIO;
    co_return co_await child_->block_status(off, len, out);
}

Task<void> FaultLayer::do_close()
{
    if (cfg_.close_child)
        co_await child_->close();
}

Task<int> FaultLayer::restore(const Undo& u, uint64_t from, uint64_t to,
                              const std::vector<std::pair<uint64_t, uint64_t>>& kept)
{
    std::vector<std::pair<uint64_t, uint64_t>> cover;
    for (const auto& k : kept)
        if (k.first < to && from < k.second)
            cover.push_back(k);
    std::sort(cover.begin(), cover.end());
    std::vector<std::pair<uint64_t, uint64_t>> gaps;
    uint64_t pos = from;
    for (const auto& c : cover) {
        if (c.first > pos)
            gaps.push_back({pos, std::min(c.first, to)});
        pos = std::max(pos, c.second);
    }
    if (pos < to)
        gaps.push_back({pos, to});
    for (const auto& [a, b] : gaps) {
        if (int r = co_await child_->pwrite(a, u.old.data() + (a - u.off), b - a); r < 0)
            co_return r;
    }
    co_return 0;
}

// Decisions are drawn first, in completion order (one coin per write, then
// the torn write and its sectors); then the child is put right newest write
// first, so every undone write's pre-image goes back over what later ones
// left, except where a later kept write's data must stay.
Task<int> FaultLayer::resolve_crash(double keep_probability, bool tear)
{
    crashed_ = true;
    co_await ops_.wait();
    if (resolved_)
        co_return -EIO;
    resolved_ = true;

    size_t n = unflushed_.size();
    std::vector<char> keep(n);
    for (size_t i = 0; i < n; i++) {
        bool coin = unit() < keep_probability;
        keep[i] = unflushed_[i].durable || coin;
    }
    size_t torn = n;
    std::vector<char> sector_kept;
    uint64_t first_sector = 0;
    if (tear) {
        std::vector<size_t> candidates;
        for (size_t i = 0; i < n; i++)
            if (unflushed_[i].op != Op::Truncate && unflushed_[i].len > 0 &&
                !unflushed_[i].durable)
                candidates.push_back(i);
        if (!candidates.empty()) {
            torn = candidates[prng_.below(candidates.size())];
            const Undo& u = unflushed_[torn];
            first_sector = u.off / kSector;
            size_t count = (u.off + u.len - 1) / kSector - first_sector + 1;
            sector_kept.resize(count);
            size_t kept_count = 0;
            for (auto& s : sector_kept)
                kept_count += (s = char(prng_.next() & 1));
            if (count >= 2 && kept_count == 0)
                sector_kept[prng_.below(count)] = 1;
            else if (count >= 2 && kept_count == count)
                sector_kept[prng_.below(count)] = 0;
        }
    }

    uint64_t final_size = durable_size_, need = 0;
    for (size_t i = 0; i < n; i++) {
        const Undo& u = unflushed_[i];
        if (keep[i] || i == torn)
            final_size = size_after(final_size, u);
        need = std::max(need, u.off + u.len);
    }
    // Room for every pre-image (a later shrink may have cut some off).
    if (child_->size() < need) {
        if (int r = co_await child_->truncate(need); r < 0)
            co_return r;
    }

    std::vector<std::pair<uint64_t, uint64_t>> kept;  // ranges holding kept data
    for (size_t i = n; i-- > 0;) {
        const Undo& u = unflushed_[i];
        if (i == torn) {
            for (size_t s = 0; s < sector_kept.size(); s++) {
                uint64_t a = std::max(u.off, (first_sector + s) * kSector);
                uint64_t b = std::min(u.off + u.len, (first_sector + s + 1) * kSector);
                if (sector_kept[s])
                    kept.push_back({a, b});
                else if (int r = co_await restore(u, a, b, kept); r < 0)
                    co_return r;
            }
        } else if (keep[i]) {
            uint64_t lo = u.off, hi = u.off + u.len;
            if (u.op == Op::Truncate) {
                lo = std::min(u.old_size, u.new_size);
                hi = std::max(u.old_size, u.new_size);
            }
            kept.push_back({lo, hi});
        } else if (u.len > 0) {
            if (int r = co_await restore(u, u.off, u.off + u.len, kept); r < 0)
                co_return r;
        }
    }
    if (child_->size() != final_size) {
        if (int r = co_await child_->truncate(final_size); r < 0)
            co_return r;
    }
    unflushed_.clear();
    co_return 0;
}

} // namespace coblk::test
