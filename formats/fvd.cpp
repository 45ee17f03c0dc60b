// FVD's request paths and metadata handling. docs/fvd-format.md is the
// on-disk specification; docs/architecture.md describes when metadata
// reaches the disk.
#include "formats/fvd.h"

#include "uri/uri.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace coblk {
namespace {

// Counts a request past FVD's snapshot gate for as long as it lives.
struct InFlight {
    explicit InFlight(WaitGroup& wg) : wg(wg) { wg.add(); }
    ~InFlight() { wg.done(); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
    WaitGroup& wg;
};

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;

// A zeroed 4 KiB-aligned buffer, or null when out of memory.
Buffer make_buffer(size_t len)
{
    void* p = nullptr;
    if (posix_memalign(&p, fvd::kAlign, std::max<size_t>(len, 1)) != 0)
        return nullptr;
    std::memset(p, 0, len);
    return Buffer(static_cast<uint8_t*>(p));
}

// The bytes [skip, skip + len) of `iov` as an iovec list of their own.
std::vector<iovec> iov_slice(const iovec* iov, int iovcnt, uint64_t skip, uint64_t len)
{
    std::vector<iovec> out;
    for (int i = 0; i < iovcnt && len > 0; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        uint64_t n = std::min<uint64_t>(iov[i].iov_len - skip, len);
        out.push_back({static_cast<char*>(iov[i].iov_base) + skip, size_t(n)});
        len -= n;
        skip = 0;
    }
    return out;
}

void put_le32(uint8_t* p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = uint8_t(v >> (8 * i));
}

// Reads `len` bytes at `off` of `l` into a new buffer. 0 or -errno.
Task<int> read_region(Layer& l, uint64_t off, uint64_t len, std::vector<uint8_t>& out)
{
    out.assign(len, 0);
    if (len == 0)
        co_return 0;
    co_return co_await l.pread(off, out.data(), len);
}

// Writes `bytes` at `off`, padded with zeros to `region` bytes. 0 or -errno.
Task<int> write_region(Layer& l, uint64_t off, uint64_t region, const uint8_t* bytes,
                       uint64_t len)
{
    Buffer buf = make_buffer(region);
    if (!buf)
        co_return -ENOMEM;
    if (len)
        std::memcpy(buf.get(), bytes, std::min(len, region));
    co_return co_await l.pwrite(off, buf.get(), region);
}

} // namespace

Result<FvdOptions> parse_fvd_options(const std::vector<std::pair<std::string, std::string>>& opts)
{
    FvdOptions o;
    for (const auto& [k, v] : opts) {
        if (k == "copy_on_read" || k == "prefetch") {
            auto b = uri::parse_bool(v, k);
            if (!b)
                return b.error();
            (k == "prefetch" ? o.prefetch : o.copy_on_read) = *b;
        } else if (k == "prefetch_delay" || k == "prefetch_idle" || k == "prefetch_min_mbps" ||
                   k == "cor_budget") {
            auto n = uri::parse_size(v, k);
            if (!n)
                return n.error();
            if (k == "prefetch_delay")
                o.prefetch_delay_ms = *n;
            else if (k == "prefetch_idle")
                o.prefetch_idle_ms = *n;
            else if (k == "prefetch_min_mbps")
                o.prefetch_min_mbps = *n;
            else
                o.cor_budget = *n;
        } else {
            return make_error(EINVAL, "unknown fvd option '{}' (known: copy_on_read, prefetch, "
                              "prefetch_delay, prefetch_idle, prefetch_min_mbps, cor_budget)", k);
        }
    }
    return o;
}

uint64_t FvdLayer::now_ns()
{
    return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count());
}

FvdLayer::FvdLayer(std::unique_ptr<Layer> child, std::string name)
    : child_(std::move(child)), name_(std::move(name))
{
}

FvdLayer::~FvdLayer() = default;

uint64_t FvdLayer::block_end(uint64_t b) const
{
    return std::min(block_start(b + 1), hdr_.virtual_size);
}

uint64_t FvdLayer::chunks_allocated() const
{
    uint64_t n = 0;
    for (uint32_t p : fresh_table_)
        n += p != fvd::kUnallocated;
    return n;
}

uint64_t FvdLayer::unused_tail_bytes() const
{
    if (!hdr_.compact() || !child_->growable())
        return 0;
    uint64_t end = hdr_.data_offset + (next_chunk_ << chunk_shift_);
    return child_->size() > end ? child_->size() - end : 0;
}

Task<int> FvdLayer::release_unused_tail()
{
    if (unused_tail_bytes() == 0)
        co_return 0;
    co_return co_await child_->truncate(hdr_.data_offset + (next_chunk_ << chunk_shift_));
}

Task<int> FvdLayer::set_base(std::string name, std::string format, uint64_t size)
{
    if (read_only_)
        co_return -EROFS;
    if (name.size() > fvd::kMaxStringLen || format.size() > fvd::kMaxStringLen)
        co_return -ENAMETOOLONG;
    int r = co_await commit();
    if (r < 0)
        co_return r;
    auto guard = co_await commit_lock_.lock();
    fvd::Header old = hdr_;
    hdr_.base_name = std::move(name);
    hdr_.base_format = hdr_.base_name.empty() ? "" : std::move(format);
    hdr_.base_size = hdr_.base_name.empty() ? 0 : size;
    hdr_.compatible &= ~fvd::kCompatBaseCopied;
    r = co_await write_header();
    if (r < 0)
        hdr_ = old;
    co_return r;
}

FvdLayer::Where FvdLayer::where(uint64_t b) const
{
    if (fresh_.test(b))
        return Where::Image;
    return base_ && block_start(b) < base_limit_ ? Where::Base : Where::Zero;
}

// ------------------------------------------------------------------ open

Task<Result<std::unique_ptr<FvdLayer>>> FvdLayer::open(std::unique_ptr<Layer> child,
                                                       std::string name, bool read_only,
                                                       const FvdBaseOpener* opener,
                                                       const FvdOptions& options,
                                                       std::shared_ptr<FvdSiblings> siblings)
{
    std::unique_ptr<FvdLayer> l(new FvdLayer(std::move(child), std::move(name)));
    l->opts_ = options;
    l->siblings_ = std::move(siblings);
    l->loop_ = Loop::current();
    auto r = co_await l->load(read_only, opener);
    if (!r) {
        if (l->base_)
            co_await l->base_->close();
        co_await l->child_->close();
        co_return Error{r.error().code, fmt::format("'{}': {}", l->name_, r.error().message)};
    }
    l->start_background();
    co_return std::move(l);
}

void FvdLayer::start_background()
{
    bool writable_base = !read_only_ && base_;
    cor_ = writable_base && opts_.copy_on_read.value_or(hdr_.compatible & fvd::kCompatCopyOnRead);
    if (writable_base && !prefetch_running_ &&
        opts_.prefetch.value_or(hdr_.compatible & fvd::kCompatPrefetch) && loop_) {
        prefetch_running_ = true;
        background_.spawn(prefetch_loop());
    }
}

Task<Result<void>> FvdLayer::load(bool read_only, const FvdBaseOpener* opener)
{
    Layer& c = *child_;
    std::vector<uint8_t> buf;
    if (c.size() < fvd::kHeaderSize)
        co_return make_error(EINVAL, "FVD header: truncated (the image holds {} bytes, the "
                             "header needs {})", c.size(), fvd::kHeaderSize);
    if (int r = co_await read_region(c, 0, fvd::kHeaderSize, buf); r < 0)
        co_return make_error(-r, "cannot read the FVD header: {}", std::strerror(-r));
    auto h = fvd::decode_header(buf, c.size(), c.growable());
    if (!h)
        co_return h.error();
    hdr_ = std::move(h).value();
    block_shift_ = unsigned(std::countr_zero(hdr_.block_size));
    chunk_shift_ = unsigned(std::countr_zero(hdr_.chunk_size));

    // Bitmap.
    if (int r = co_await read_region(c, hdr_.bitmap_offset, fvd::bitmap_bytes(hdr_), buf); r < 0)
        co_return make_error(-r, "cannot read the FVD bitmap: {}", std::strerror(-r));
    durable_ = fvd::Bitmap(hdr_.blocks());
    durable_.bytes() = std::move(buf);
    buf = {};
    if (!durable_.tail_clean())
        co_return make_error(EINVAL, "FVD bitmap: bits are set past the last block ({})",
                             hdr_.blocks());

    // Table, then the journal's updates on top of bitmap and table.
    if (hdr_.compact()) {
        if (int r = co_await read_region(c, hdr_.table_offset, fvd::table_bytes(hdr_), buf);
            r < 0)
            co_return make_error(-r, "cannot read the FVD table: {}", std::strerror(-r));
        auto t = fvd::decode_table(buf, hdr_);
        if (!t)
            co_return t.error();
        durable_table_ = std::move(t).value();
    }
    if (int r = co_await read_region(c, hdr_.journal_offset, hdr_.journal_size, buf); r < 0)
        co_return make_error(-r, "cannot read the FVD journal: {}", std::strerror(-r));
    auto rep = fvd::replay_journal(buf, hdr_);
    if (!rep)
        co_return rep.error();
    if (auto r = fvd::apply_journal(*rep, durable_, durable_table_, hdr_); !r)
        co_return r.error();
    replayed_ = rep->records;
    journal_pos_ = rep->end;
    journal_seq_ = rep->next_sequence;

    // Leaked physical chunks (below the highest in use, named by no entry)
    // are reused first, lowest first.
    if (hdr_.compact()) {
        fvd::Bitmap owned(hdr_.chunks());
        uint64_t used_end = 0;
        for (uint32_t p : durable_table_)
            if (p != fvd::kUnallocated) {
                owned.set(p);
                used_end = std::max<uint64_t>(used_end, uint64_t(p) + 1);
            }
        for (uint64_t p = used_end; p-- > 0;)
            if (!owned.test(p))
                free_chunks_.push_back(uint32_t(p));
        free_at_open_ = free_chunks_.size();
        next_chunk_ = used_end;
        if (c.growable()) {
            uint64_t have = c.size() > hdr_.data_offset ? c.size() - hdr_.data_offset : 0;
            zero_from_chunk_ = std::max(next_chunk_, (have + hdr_.chunk_size - 1) >> chunk_shift_);
        }
    }

    // Base.
    if (!hdr_.base_name.empty() && !(hdr_.compatible & fvd::kCompatBaseCopied) &&
        !opts_.without_base) {
        if (!opener)
            co_return make_error(EINVAL, "has base image '{}', which cannot be opened here",
                                 hdr_.base_name);
        auto b = co_await (*opener)(hdr_.base_name, hdr_.base_format);
        if (!b)
            co_return make_error(b.error().code, "cannot open its base image '{}': {}",
                                 hdr_.base_name, b.error().message);
        base_ = std::move(b).value();
        base_limit_ = std::min(hdr_.base_size, base_->size());
    }

    fresh_ = durable_;
    queued_ = durable_;
    fresh_table_ = durable_table_;
    table_queued_.assign(durable_table_.size(), false);
    for (size_t i = 0; i < durable_table_.size(); i++)
        table_queued_[i] = durable_table_[i] != fvd::kUnallocated;

    size_ = hdr_.virtual_size;
    read_only_ = read_only;
    limits_.request_alignment = c.limits().request_alignment;
    limits_.memory_alignment = c.limits().memory_alignment;
    limits_.fua = false;
    if (!read_only) {
        hdr_.clean = false;
        if (int r = co_await write_header(); r < 0)
            co_return make_error(-r, "cannot mark the FVD header in use: {}", std::strerror(-r));
    }
    co_return Result<void>{};
}

Task<int> FvdLayer::format(Layer& c, const fvd::Header& h)
{
    // The bitmap starts clear: zeroed without writing data where the child
    // can, but allocated (kReqNoUnmap) like the journal below, so that a
    // full file system cannot refuse the bitmap's write-back later.
    int r = 0;
    if (co_await c.write_zeroes(h.bitmap_offset, h.bitmap_size, kReqNoUnmap) != 0 &&
        (r = co_await write_region(c, h.bitmap_offset, h.bitmap_size, nullptr, 0)) < 0)
        co_return r;
    if (h.compact()) {
        std::vector<uint8_t> t(h.table_size, 0xFF);
        if ((r = co_await c.pwrite(h.table_offset, t.data(), t.size())) < 0)
            co_return r;
    }
    // The journal starts zeroed, so that records of an image that lived
    // here before cannot be taken for ours, and allocated (kReqNoUnmap), so
    // that a full file system cannot refuse a journal record later: the
    // data of acknowledged writes would be lost with it.
    if (co_await c.write_zeroes(h.journal_offset, h.journal_size, kReqNoUnmap) != 0) {
        for (uint64_t at = 0; at < h.journal_size; at += 1 << 20) {
            uint64_t n = std::min<uint64_t>(1 << 20, h.journal_size - at);
            if ((r = co_await write_region(c, h.journal_offset + at, n, nullptr, 0)) < 0)
                co_return r;
        }
    }
    std::vector<uint8_t> hb = fvd::encode_header(h);
    if ((r = co_await c.pwrite(0, hb.data(), hb.size())) < 0)
        co_return r;
    co_return co_await c.flush();
}

// ------------------------------------------------------------------ reads

Task<int> FvdLayer::image_io(bool write, uint64_t voff, const iovec* iov, int iovcnt,
                             unsigned flags)
{
    Layer& c = *child_;
    uint64_t len = iov_length(iov, iovcnt);
    if (!hdr_.compact()) {
        uint64_t p = hdr_.data_offset + voff;
        if (write)
            co_return co_await c.pwritev(p, iov, iovcnt, flags);
        co_return co_await c.preadv(p, iov, iovcnt, flags);
    }
    uint64_t done = 0;
    while (done < len) {
        uint64_t vo = voff + done;
        uint64_t ch = vo >> chunk_shift_;
        uint64_t in = vo & (hdr_.chunk_size - 1);
        uint64_t n = std::min<uint64_t>(len - done, hdr_.chunk_size - in);
        uint32_t pc = fresh_table_[ch];
        if (pc == fvd::kUnallocated)
            co_return -EIO;  // a block in the image without a chunk: not reachable
        uint64_t p = hdr_.data_offset + (uint64_t(pc) << chunk_shift_) + in;
        int r;
        std::vector<iovec> part;
        const iovec* v = iov;
        int vn = iovcnt;
        if (done != 0 || n != len) {
            part = iov_slice(iov, iovcnt, done, n);
            v = part.data();
            vn = int(part.size());
        }
        if (write)
            r = co_await c.pwritev(p, v, vn, flags);
        else
            r = co_await c.preadv(p, v, vn, flags);
        if (r < 0)
            co_return r;
        done += n;
    }
    co_return 0;
}

Task<int> FvdLayer::base_read(uint64_t voff, const iovec* iov, int iovcnt)
{
    uint64_t len = iov_length(iov, iovcnt);
    if (!base_ || voff >= base_limit_) {
        iov_memset(iov, iovcnt, 0, 0, len);
        co_return 0;
    }
    uint64_t part = std::min(len, base_limit_ - voff);
    if (part == len)
        co_return co_await base_->preadv(voff, iov, iovcnt);
    std::vector<iovec> head = iov_slice(iov, iovcnt, 0, part);
    int r = co_await base_->preadv(voff, head.data(), int(head.size()));
    if (r == 0)
        iov_memset(iov, iovcnt, part, 0, len - part);
    co_return r;
}

Task<int> FvdLayer::do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    // The snapshot gate (see wait_unheld), inline: reads are the hot path.
    if (held_)
        co_await wait_unheld();
    InFlight counted(io_);
    if (prefetch_running_)
        guest_io();   // a clock read per request only while the prefetcher needs it
    uint64_t len = iov_length(iov, iovcnt);
    if (len == 0)
        co_return 0;
    uint64_t end = off + len, last = block_of(end - 1), pos = off;
    while (pos < end) {
        uint64_t b = block_of(pos);
        uint64_t nb = fresh_.run(b, last - b + 1);
        uint64_t pe = std::min(end, block_start(b + nb));
        bool in_image = fresh_.test(b);
        int r;
        std::vector<iovec> part;
        const iovec* v = iov;
        int vn = iovcnt;
        if (pos != off || pe != end) {
            part = iov_slice(iov, iovcnt, pos - off, pe - pos);
            v = part.data();
            vn = int(part.size());
        }
        if (in_image)
            r = co_await image_io(false, pos, v, vn, flags);
        else
            r = co_await base_read(pos, v, vn);
        if (r < 0)
            co_return r;
        if (!in_image && cor_ && !stopping_) {
            // The whole blocks this read took from the base go into the
            // image in the background, within the budget.
            uint64_t fb = block_of(pos + block_start(1) - 1), lb = fb;
            uint64_t base_blocks = block_of(base_limit_ + block_start(1) - 1);
            while (lb < base_blocks && block_end(lb) <= pe)
                lb++;
            uint64_t bytes = lb > fb ? block_end(lb - 1) - block_start(fb) : 0;
            if (bytes && cor_in_flight_ + bytes <= opts_.cor_budget) {
                std::unique_ptr<uint8_t[]> copy(new (std::nothrow) uint8_t[bytes]);
                if (copy) {
                    iov_to_buf(iov, iovcnt, block_start(fb) - off, copy.get(), bytes);
                    cor_in_flight_ += bytes;
                    background_.spawn(copy_in(fb, lb - fb, std::move(copy)));
                }
            }
        }
        pos = pe;
    }
    co_return 0;
}

Task<int> FvdLayer::copy_from_base(uint64_t first, uint64_t n, const uint8_t* data)
{
    uint64_t lo = block_start(first);
    auto guard = co_await block_lock_.lock(lo, block_end(first + n - 1) - lo);
    for (uint64_t b = first; b < first + n;) {
        uint64_t nb = fresh_.run(b, first + n - b);
        if (fresh_.test(b)) {   // a guest write got there first
            b += nb;
            continue;
        }
        int r = co_await allocate_chunks(b, nb);
        if (r < 0)
            co_return r;
        iovec v{const_cast<uint8_t*>(data) + (block_start(b) - lo),
                size_t(block_end(b + nb - 1) - block_start(b))};
        r = co_await image_io(true, block_start(b), &v, 1, 0);
        if (r < 0)
            co_return r;
        // Only the fresh bitmap learns of it: the data is a copy of the
        // base, so losing the bit in a crash loses nothing. A later guest
        // write to the block queues it for the journal.
        fresh_.set_range(b, nb);
        b += nb;
    }
    co_return 0;
}

Task<void> FvdLayer::copy_in(uint64_t first, uint64_t n, std::unique_ptr<uint8_t[]> data)
{
    uint64_t bytes = block_end(first + n - 1) - block_start(first);
    if (co_await copy_from_base(first, n, data.get()) == 0)
        cor_blocks_ += n;
    cor_in_flight_ -= bytes;
}

Task<void> FvdLayer::prefetch_loop()
{
    using namespace std::chrono;
    constexpr uint64_t kStepBytes = 1 << 20;
    const uint64_t step = std::max<uint64_t>(1, kStepBytes >> block_shift_);
    const uint64_t base_blocks = block_of(base_limit_ + block_start(1) - 1);
    auto nap = [&](uint64_t ms) { return loop_->sleep_for(milliseconds(ms)); };

    uint64_t start = now_ns();
    while (!stopping_ && now_ns() - start < opts_.prefetch_delay_ms * 1000000)
        co_await nap(std::min<uint64_t>(50, opts_.prefetch_delay_ms));
    Buffer buf = make_buffer(size_t(step << block_shift_));
    uint64_t b = 0;
    while (buf && !stopping_ && b < base_blocks) {
        if (fresh_.test(b)) {
            b += fresh_.run(b, base_blocks - b);
            continue;
        }
        // The guest goes first: wait while it has requests in flight or
        // had some in the last prefetch_idle ms.
        if (in_flight() > 0 || now_ns() - last_guest_ns_ < opts_.prefetch_idle_ms * 1000000) {
            co_await nap(std::max<uint64_t>(1, opts_.prefetch_idle_ms / 2));
            continue;
        }
        uint64_t nb = std::min(fresh_.run(b, base_blocks - b), step);
        uint64_t lo = block_start(b), len = block_end(b + nb - 1) - lo;
        iovec v{buf.get(), size_t(len)};
        uint64_t t0 = now_ns();
        int r = co_await base_read(lo, &v, 1);
        if (r == 0)
            r = co_await copy_from_base(b, nb, buf.get());
        if (r < 0)
            break;   // the guest's own requests will report the trouble
        prefetched_blocks_ += nb;
        b += nb;
        uint64_t dt = std::max<uint64_t>(1, now_ns() - t0);
        if (opts_.prefetch_min_mbps && len * 1000 / dt < opts_.prefetch_min_mbps)
            co_await nap(200);   // the storage is busy: back off
    }
    if (!stopping_ && buf && base_blocks <= hdr_.blocks() &&
        (base_blocks == 0 || fresh_.all(0, base_blocks))) {
        // Everything the base holds is in the image: say so durably, after
        // the data and the bits, so later opens leave the base alone.
        auto guard = co_await commit_lock_.lock();
        fvd::Bitmap bits = fresh_;
        std::vector<uint32_t> table = fresh_table_;
        if (co_await child_->flush() == 0) {
            uint64_t compat = hdr_.compatible;
            hdr_.compatible |= fvd::kCompatBaseCopied;
            if (co_await write_back(bits, table, false) == 0) {
                durable_.merge(bits);
                durable_table_ = table;
            } else {
                hdr_.compatible = compat;
            }
        }
    }
    prefetch_running_ = false;
}

// ------------------------------------------------------------------ writes

void FvdLayer::queue_blocks(uint64_t first, uint64_t n)
{
    for (uint64_t b = first; b < first + n; b++) {
        if (queued_.test(b))
            continue;
        queued_.set(b);
        pending_blocks_.push_back(b);
        if (!hdr_.compact())
            continue;
        uint64_t c = chunk_of_block(b);
        if (!table_queued_[c]) {
            table_queued_[c] = true;
            pending_chunks_.push_back(c);
        }
    }
}

Task<int> FvdLayer::ensure_capacity(uint64_t p)
{
    Layer& c = *child_;
    uint64_t need = hdr_.data_offset + ((p + 1) << chunk_shift_);
    if (c.growable() || c.size() >= need)
        co_return 0;
    auto guard = co_await grow_lock_.lock();
    if (c.size() >= need)
        co_return 0;
    // Grow in large steps: a device that needs a resize call per chunk
    // would pay for one per allocation.
    uint64_t step = std::max<uint64_t>(64ull << 20, c.size() / 8);
    uint64_t want = std::max(need, c.size() + step);
    want = std::min(want, hdr_.data_offset + (hdr_.chunks() << chunk_shift_));
    want = std::max(want, need);
    if (co_await c.truncate(want) == 0 || co_await c.truncate(need) == 0)
        co_return 0;
    co_return -ENOSPC;
}

Task<int> FvdLayer::allocate_chunks(uint64_t first, uint64_t n)
{
    if (!hdr_.compact())
        co_return 0;
    for (uint64_t ch = chunk_of_block(first); ch <= chunk_of_block(first + n - 1); ch++) {
        if (fresh_table_[ch] == fvd::kUnallocated) {
            uint64_t p;
            if (!free_chunks_.empty()) {
                p = free_chunks_.back();
                free_chunks_.pop_back();
            } else {
                p = next_chunk_++;
            }
            fresh_table_[ch] = uint32_t(p);
        }
        if (int r = co_await ensure_capacity(fresh_table_[ch]); r < 0)
            co_return r;
    }
    co_return 0;
}

bool FvdLayer::block_reads_zero_in_place(uint64_t b) const
{
    if (!hdr_.compact() || fresh_table_[chunk_of_block(b)] < zero_from_chunk_)
        return false;
    return !base_ || block_start(b) >= base_limit_;
}

Task<int> FvdLayer::allocating_write(uint64_t first, uint64_t n, uint64_t off, const iovec* iov,
                                     int iovcnt, uint64_t skip, uint64_t len)
{
    int r = co_await allocate_chunks(first, n);
    if (r < 0)
        co_return r;
    uint64_t last = first + n - 1, gend = off + len;
    bool in_place = true;
    for (uint64_t b = first; b <= last && in_place; b++)
        in_place = block_reads_zero_in_place(b);

    if (in_place) {
        // Fresh storage that reads as zeros with nothing in the base under
        // it: the guest's bytes are all there is to write.
        std::vector<iovec> part = iov_slice(iov, iovcnt, skip, len);
        r = co_await image_io(true, off, part.data(), int(part.size()), 0);
    } else {
        uint64_t pos = off;
        bool head_partial = off > block_start(first) || gend < block_end(first);
        bool tail_partial = last != first && gend < block_end(last);
        // A partial block is completed from the base (or zeros) and
        // written whole.
        auto fill_block = [&](uint64_t b) -> Task<int> {
            uint64_t bs = block_start(b), be = block_end(b);
            Buffer buf = make_buffer(be - bs);
            if (!buf)
                co_return -ENOMEM;
            iovec whole{buf.get(), size_t(be - bs)};
            int rr = co_await base_read(bs, &whole, 1);
            if (rr < 0)
                co_return rr;
            uint64_t from = std::max(off, bs), to = std::min(gend, be);
            iov_to_buf(iov, iovcnt, skip + (from - off), buf.get() + (from - bs), to - from);
            co_return co_await image_io(true, bs, &whole, 1, 0);
        };
        if (head_partial) {
            r = co_await fill_block(first);
            pos = std::min(gend, block_end(first));
        }
        uint64_t mid_end = tail_partial ? block_start(last) : gend;
        if (r == 0 && mid_end > pos) {
            std::vector<iovec> part = iov_slice(iov, iovcnt, skip + (pos - off), mid_end - pos);
            r = co_await image_io(true, pos, part.data(), int(part.size()), 0);
        }
        if (r == 0 && tail_partial)
            r = co_await fill_block(last);
    }
    if (r < 0) {
        // The blocks stay out of the image, but their chunks may now hold
        // part of this write: never again assume they read as zeros.
        if (hdr_.compact() && zero_from_chunk_ != UINT64_MAX)
            for (uint64_t ch = chunk_of_block(first); ch <= chunk_of_block(last); ch++)
                zero_from_chunk_ = std::max<uint64_t>(zero_from_chunk_,
                                                      uint64_t(fresh_table_[ch]) + 1);
        co_return r;
    }
    fresh_.set_range(first, n);
    queue_blocks(first, n);
    co_return 0;
}

Task<int> FvdLayer::write_impl(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    if (prefetch_running_)
        guest_io();   // a clock read per request only while the prefetcher needs it
    uint64_t len = iov_length(iov, iovcnt);
    if (len == 0) {
        if (flags & kReqFua)
            co_return co_await commit();
        co_return 0;
    }
    uint64_t first = block_of(off), last = block_of(off + len - 1);
    int r = 0;
    if (fresh_.all(first, last - first + 1)) {
        // Every block is in the image already: an in-place write. Its
        // blocks are queued even when it fails. A block copy-on-read or
        // prefetch brought in is in the fresh bitmap only, which is safe
        // only while the image holds exactly the base's bytes there; a
        // failed write may have landed in part (one piece of a write over
        // two chunks, say), reads show that from now on, and a crash after
        // the next flush must not bring the base's bytes back.
        r = co_await image_io(true, off, iov, iovcnt, 0);
        queue_blocks(first, last - first + 1);
    } else {
        uint64_t lo = block_start(first);
        auto guard = co_await block_lock_.lock(lo, block_end(last) - lo);
        uint64_t end = off + len, pos = off;
        while (r == 0 && pos < end) {
            uint64_t b = block_of(pos);
            uint64_t nb = fresh_.run(b, last - b + 1);
            uint64_t pe = std::min(end, block_start(b + nb));
            if (fresh_.test(b)) {
                std::vector<iovec> part = iov_slice(iov, iovcnt, pos - off, pe - pos);
                r = co_await image_io(true, pos, part.data(), int(part.size()), 0);
                queue_blocks(b, nb);   // even when it failed: see above
            } else {
                r = co_await allocating_write(b, nb, pos, iov, iovcnt, pos - off, pe - pos);
            }
            pos = pe;
        }
    }
    if (r == 0 && (flags & kReqFua))
        r = co_await commit();
    co_return r;
}

// ------------------------------------------------------------------ gate

// Every request passes here: while a snapshot switches the image under the
// layer (hold()), new requests wait and the switch waits for those past
// the gate, so no request sees half of a switch.
Task<void> FvdLayer::wait_unheld()
{
    while (held_)
        co_await unheld_.wait();
}

Task<int> FvdLayer::do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags)
{
    if (held_)
        co_await wait_unheld();
    io_.add();
    int r = co_await write_impl(off, iov, iovcnt, flags);
    io_.done();
    co_return r;
}

Task<int> FvdLayer::do_write_zeroes(uint64_t off, uint64_t len, unsigned flags)
{
    if (held_)
        co_await wait_unheld();
    io_.add();
    int r = co_await write_zeroes_impl(off, len, flags);
    io_.done();
    co_return r;
}

Task<int> FvdLayer::do_flush()
{
    if (held_)
        co_await wait_unheld();
    io_.add();
    int r = co_await commit();
    io_.done();
    co_return r;
}

Task<int> FvdLayer::do_discard(uint64_t, uint64_t)
{
    // Blocks never leave the image (a later read may return the old data,
    // as the Layer contract allows), so a discard has nothing to do.
    co_return 0;
}

Task<int> FvdLayer::write_zeroes_impl(uint64_t off, uint64_t len, unsigned flags)
{
    constexpr uint64_t kPiece = 1 << 20;
    Buffer zeros = make_buffer(std::min(len, kPiece));
    if (!zeros)
        co_return -ENOMEM;
    for (uint64_t done = 0; done < len;) {
        uint64_t n = std::min(len - done, kPiece);
        uint64_t at = off + done;
        uint64_t first = block_of(at), last = block_of(at + n - 1);
        // Blocks outside the image read as zeros already when no base lies
        // under them.
        bool already = true;
        for (uint64_t b = first; b <= last && already; b++)
            already = !fresh_.test(b) && (!base_ || block_start(b) >= base_limit_);
        if (!already) {
            iovec v{zeros.get(), size_t(n)};
            if (int r = co_await write_impl(at, &v, 1, flags & kReqFua); r < 0)
                co_return r;
        }
        done += n;
    }
    co_return 0;
}

Task<int> FvdLayer::do_block_status(uint64_t off, uint64_t len, Extent* out)
{
    if (held_)
        co_await wait_unheld();
    uint64_t b = block_of(off);
    uint64_t last = block_of(off + len - 1);
    uint64_t nb = fresh_.run(b, last - b + 1);
    out->len = std::min(off + len, block_start(b + nb)) - off;
    if (fresh_.test(b)) {
        out->data = true;
        out->zero = false;
    } else if (base_ && off < base_limit_) {
        out->len = std::min(out->len, base_limit_ - off);
        out->data = true;   // in the base, a child of this layer
        out->zero = false;
    } else {
        out->data = false;
        out->zero = true;
    }
    co_return 0;
}

// ------------------------------------------------------------------ metadata

Task<int> FvdLayer::write_header()
{
    std::vector<uint8_t> b = fvd::encode_header(hdr_);
    int r = co_await child_->pwrite(0, b.data(), b.size());
    if (r == 0)
        r = co_await child_->flush();
    co_return r;
}

Task<int> FvdLayer::write_back(const fvd::Bitmap& bitmap, const std::vector<uint32_t>& table,
                               bool clean)
{
    // The table first, durably: a bit must never reach the disk before the
    // table entry of its chunk does (the journal that would supply the
    // entry is about to be retired).
    int r = 0;
    if (hdr_.compact()) {
        std::vector<uint8_t> t(hdr_.table_size, 0xFF);
        for (size_t i = 0; i < table.size(); i++)
            put_le32(t.data() + 4 * i, table[i]);
        r = co_await child_->pwrite(hdr_.table_offset, t.data(), t.size());
        if (r == 0)
            r = co_await child_->flush();
    }
    const auto& bits = bitmap.bytes();
    if (r == 0)
        r = co_await write_region(*child_, hdr_.bitmap_offset, hdr_.bitmap_size, bits.data(),
                                  bits.size());
    if (r == 0)
        r = co_await child_->flush();
    if (r < 0)
        co_return r;
    // Records already in the journal carry older sequence numbers than the
    // new epoch's first one, so replay ignores them from now on.
    fvd::Header h = hdr_;
    hdr_.journal_sequence = journal_seq_;
    hdr_.clean = clean;
    r = co_await write_header();
    if (r < 0) {
        hdr_ = h;
        co_return r;
    }
    journal_pos_ = 0;
    co_return 0;
}

Task<int> FvdLayer::commit()
{
    auto guard = co_await commit_lock_.lock();
    std::vector<uint64_t> blocks, chunks;
    blocks.swap(pending_blocks_);
    chunks.swap(pending_chunks_);
    // The data the queued metadata points at must be durable before the
    // metadata is: a record must never make the image show a block whose
    // bytes did not reach the disk.
    int r = co_await child_->flush();
    if (r == 0 && (!blocks.empty() || !chunks.empty())) {
        std::vector<fvd::Entry> entries = fvd::block_runs(blocks);
        for (uint64_t c : chunks)
            entries.push_back({fvd::Entry::kTableEntry, fresh_table_[c], c});
        fvd::Bitmap bits = durable_;
        std::vector<uint32_t> table = durable_table_;
        for (const fvd::Entry& e : entries) {
            if (e.type == fvd::Entry::kBitmapRun)
                bits.set_range(e.b, e.a);
            else
                table[e.b] = e.a;
        }
        if (journal_pos_ + fvd::record_bytes(entries.size()) <= hdr_.journal_size) {
            std::vector<uint8_t> rec = fvd::encode_record(journal_seq_, entries);
            r = co_await child_->pwrite(hdr_.journal_offset + journal_pos_, rec.data(),
                                        rec.size());
            if (r == 0)
                r = co_await child_->flush();
            if (r == 0) {
                journal_pos_ += rec.size();
                journal_seq_++;
            }
        } else {
            // The journal is full: all metadata goes in place and a new
            // journal epoch starts.
            r = co_await write_back(bits, table, false);
        }
        if (r == 0) {
            durable_ = std::move(bits);
            durable_table_ = std::move(table);
        }
    }
    if (r < 0) {
        pending_blocks_.insert(pending_blocks_.end(), blocks.begin(), blocks.end());
        pending_chunks_.insert(pending_chunks_.end(), chunks.begin(), chunks.end());
    }
    co_return r;
}

Task<void> FvdLayer::do_close()
{
    stopping_ = true;
    co_await background_.join();
    if (!read_only_) {
        // Everything goes in place and the journal starts empty: the next
        // open has nothing to replay.
        int r = co_await commit();
        if (r == 0)
            co_await write_back(fresh_, fresh_table_, true);
    }
    if (base_)
        co_await base_->close();
    co_await child_->close();
}

} // namespace coblk
