#include "bench/job_runner.h"

#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "bench/block_permutation.h"
#include "bench/clock.h"
#include "bench/prng.h"
#include "bench/verify_block.h"
#include "engine/loop.h"
#include "engine/sync.h"

namespace coblk::bench {
namespace {

std::atomic<bool> g_stop_all{false};

// One worker coroutine's own state: its buffer and the block it has in
// flight (verify mode only, to keep two workers off the same block).
struct Worker {
    unsigned char* buf = nullptr;
    iovec iov{};
    uint64_t blk = UINT64_MAX;
};

// Everything a clone's workers share. Only its loop's thread touches it.
struct JobCtx {
    Layer* dev = nullptr;
    const PreparedJob* job = nullptr;
    JobResult* out = nullptr;
    JobProgress* progress = nullptr;
    std::vector<Worker>* workers = nullptr;

    // What to issue.
    bool random = false;
    bool mixed = false;
    int fixed_dir = kRead;
    uint64_t mix_read = 50;          // reads per 100 requests of a mixed job
    uint64_t base = 0, nblocks = 0, bs = 0;
    uint64_t stride = 0;   // bytes between block starts: blockalign or bs
    uint64_t seq_next[2] = {0, 0};   // position in each direction's stream
    Prng rng;
    // Random jobs visit every block once per pass (fio's random map), in
    // the order of a permutation per direction; norandommap draws offsets
    // independently instead.
    bool use_map = false;
    BlockPermutation perm[2];

    // When to stop.
    uint64_t issue_limit = UINT64_MAX;
    uint64_t issued = 0;
    uint64_t deadline = UINT64_MAX;
    bool stop = false;

    // The one time check per completion: the next tick of the IOPS
    // samples, the deadline or the end of ramp_time, whichever is first.
    uint64_t next_event = 0;
    uint64_t stats_from = 0;
    bool recording = false;

    unsigned fsync_every = 0;
    unsigned writes_since_sync = 0;

    // IOPS samples.
    uint64_t epoch = 0;
    uint64_t slot_ns = kSlotNs;
    uint64_t next_slot_at = 0;
    size_t slot_cap = 0;
    uint32_t slot_count[2] = {0, 0};
    uint64_t total_ios[2] = {0, 0};

    // verify=crc32c.
    bool verify = false;
    bool check_all_reads = false;    // a read-only job checks every block
    bool verify_phase = false;       // reading back what a write job wrote
    std::vector<uint64_t> written;   // one bit per block written
    uint64_t write_seq = 0;
};

void update_next_event(JobCtx& c) noexcept
{
    c.next_event = std::min(c.next_slot_at, c.deadline);
    if (!c.recording)
        c.next_event = std::min(c.next_event, c.stats_from);
}

// Halves the resolution of the IOPS samples when their preallocated room is
// used up: adjacent slots are added together and the slot width doubles.
void coarsen_slots(JobCtx& c)
{
    for (auto& v : c.out->slots) {
        size_t n = v.size() / 2;
        for (size_t i = 0; i < n; i++)
            v[i] = v[2 * i] + v[2 * i + 1];
        v.resize(n);
    }
    c.slot_ns *= 2;
    c.out->slot_ns = c.slot_ns;
    // The slot in progress is the first half of the new slot at index n.
    c.next_slot_at = c.epoch + (c.out->slots[0].size() + 1) * c.slot_ns;
}

// The cold path of a completion at `now`: closes finished IOPS slots,
// publishes progress, starts recording after ramp_time, stops at the
// deadline or when asked to.
[[gnu::noinline]] void time_event(JobCtx& c, uint64_t now)
{
    if (!c.recording && now >= c.stats_from)
        c.recording = true;
    if (now >= c.deadline)
        c.stop = true;
    while (now >= c.next_slot_at) {
        for (int d = 0; d < 2; d++) {
            c.out->slots[d].push_back(c.slot_count[d]);
            c.total_ios[d] += c.slot_count[d];
            c.slot_count[d] = 0;
        }
        c.next_slot_at += c.slot_ns;
        if (c.out->slots[0].size() >= c.slot_cap)
            coarsen_slots(c);
    }
    c.progress->ios[kRead].store(c.total_ios[kRead], std::memory_order_relaxed);
    c.progress->ios[kWrite].store(c.total_ios[kWrite], std::memory_order_relaxed);
    c.progress->done_ios.store(c.issued, std::memory_order_relaxed);
    if (g_stop_all.load(std::memory_order_relaxed))
        c.stop = true;
    update_next_event(c);
}

// Records a completed request of direction `d` that took `lat` ns and
// completed at `now`.
inline void record(JobCtx& c, int d, uint64_t lat, uint64_t now) noexcept
{
    if (now >= c.next_event)
        time_event(c, now);
    if (c.recording)
        c.out->dir[d].lat.add(lat);
    c.slot_count[d]++;
}

inline int pick_dir(JobCtx& c) noexcept
{
    if (!c.mixed)
        return c.fixed_dir;
    return c.rng.below(100) < c.mix_read ? kRead : kWrite;
}

inline uint64_t pick_block(JobCtx& c, int d) noexcept
{
    if (c.random) {
        if (!c.use_map)
            return c.rng.below(c.nblocks);
        uint64_t b = c.perm[d].at(c.seq_next[d]);
        if (++c.seq_next[d] == c.nblocks) {
            c.seq_next[d] = 0;
            c.perm[d].reset(c.nblocks, c.rng.next());  // the next pass, in a new order
        }
        return b;
    }
    uint64_t b = c.seq_next[d];
    if (++c.seq_next[d] == c.nblocks)
        c.seq_next[d] = 0;
    return b;
}

bool written(const JobCtx& c, uint64_t blk) noexcept
{
    return (c.written[blk / 64] >> (blk % 64)) & 1;
}

// The next written block from the read cursor on (verify phase), or
// UINT64_MAX when none is left.
uint64_t next_written_block(JobCtx& c) noexcept
{
    uint64_t b = c.seq_next[kRead];
    while (b < c.nblocks) {
        uint64_t word = c.written[b / 64] >> (b % 64);
        if (word) {
            b += uint64_t(std::countr_zero(word));
            break;
        }
        b = (b / 64 + 1) * 64;
    }
    if (b >= c.nblocks)
        return UINT64_MAX;
    c.seq_next[kRead] = b + 1;
    return b;
}

// A block for direction `d` that no other worker has in flight (verify
// mode: a read racing a write of the same block could see a torn block).
// check_job guarantees more blocks than workers, so this ends.
uint64_t pick_free_block(JobCtx& c, int d) noexcept
{
    if (c.verify_phase)
        return next_written_block(c);
    for (;;) {
        uint64_t b = pick_block(c, d);
        bool busy = false;
        for (const Worker& w : *c.workers)
            busy |= w.blk == b;
        if (!busy)
            return b;
    }
}

void fail(JobCtx& c, int err, std::string msg)
{
    c.stop = true;
    if (c.out->error == 0) {
        c.out->error = err;
        c.out->error_msg = std::move(msg);
    }
}

// After a completed request in verify mode: marks written blocks, checks
// read blocks that carry (or must carry) a header. False on a mismatch.
bool verify_completed(JobCtx& c, int d, uint64_t blk, uint64_t off, const Worker& w)
{
    if (d == kWrite) {
        c.written[blk / 64] |= uint64_t(1) << (blk % 64);
        return true;
    }
    if (!c.check_all_reads && !written(c, blk))
        return true;
    std::string why = check_verify_block(w.buf, c.bs, off);
    if (why.empty())
        return true;
    fail(c, EILSEQ, fmt::format("{}: verify error at offset {}: {}", c.job->spec.name, off, why));
    return false;
}

// One of the job's `iodepth` request streams: takes the next offset,
// issues the request, records its latency; ends when the job stops.
Task<void> worker(JobCtx& c, Worker& w)
{
    Layer* dev = c.dev;
    const uint64_t bs = c.bs;
    while (!c.stop && c.issued < c.issue_limit) {
        c.issued++;
        int d = pick_dir(c);
        uint64_t blk;
        if (c.verify) {
            blk = pick_free_block(c, d);
            if (blk == UINT64_MAX)
                break;
            w.blk = blk;
        } else {
            blk = pick_block(c, d);
        }
        uint64_t off = c.base + blk * c.stride;
        if (c.verify && d == kWrite)
            fill_verify_block(w.buf, bs, off, ++c.write_seq);
        uint64_t t0 = now_ns();
        int r;
        if (d == kRead)
            r = co_await dev->preadv(off, &w.iov, 1);
        else
            r = co_await dev->pwritev(off, &w.iov, 1);
        uint64_t t1 = now_ns();
        if (r < 0) {
            fail(c, -r, fmt::format("{}: {} error at offset {}: {}", c.job->spec.name,
                                    d == kRead ? "read" : "write", off, std::strerror(-r)));
            break;
        }
        record(c, d, t1 - t0, t1);
        if (c.verify) {
            w.blk = UINT64_MAX;
            if (!verify_completed(c, d, blk, off, w))
                break;
        }
        if (d == kWrite && c.fsync_every && ++c.writes_since_sync >= c.fsync_every) {
            c.writes_since_sync = 0;
            uint64_t s0 = now_ns();
            int fr = co_await dev->flush();
            uint64_t s1 = now_ns();
            if (fr < 0) {
                fail(c, -fr, fmt::format("{}: flush error after {} writes: {}",
                                         c.job->spec.name, c.write_seq, std::strerror(-fr)));
                break;
            }
            if (c.recording)
                c.out->sync.add(s1 - s0);
        }
    }
}

char state_letter(Rw rw)
{
    switch (rw) {
    case Rw::Read: return 'R';
    case Rw::RandRead: return 'r';
    case Rw::Write: return 'W';
    case Rw::RandWrite: return 'w';
    case Rw::ReadWrite: return 'M';
    case Rw::RandRW: return 'm';
    }
    return '?';
}

// Runs every worker until the phase ends.
Task<void> run_phase(JobCtx& c)
{
    TaskGroup group;
    for (Worker& w : *c.workers)
        group.spawn(worker(c, w));
    co_await group.join();
}

// Sets the request limits of the main phase.
void configure_main_phase(JobCtx& c)
{
    const JobSpec& s = c.job->spec;
    c.random = rw_random(s.rw);
    c.use_map = c.random && !s.norandommap;
    for (int d = 0; d < 2; d++)
        c.perm[d].reset(c.nblocks, c.rng.next());
    c.mixed = rw_mixed(s.rw);
    c.fixed_dir = rw_reads(s.rw) ? kRead : kWrite;
    c.mix_read = s.rwmixread;
    c.issue_limit = s.time_based ? UINT64_MAX : c.nblocks;
    if (s.number_ios)
        c.issue_limit = std::min(c.issue_limit, s.number_ios);
    c.verify = s.verify;
    c.check_all_reads = s.verify && !rw_writes(s.rw);
    c.fsync_every = s.fsync;
}

// The clone's life on its loop: open, run, verify phase, close.
Task<void> job_main(Loop& loop, JobCtx& c)
{
    const PreparedJob& job = *c.job;
    const JobSpec& s = job.spec;
    std::string name = s.filename;
    OpenOptions options = job.open;
    auto dev = co_await open_device(loop, name, options);
    if (!dev) {
        fail(c, dev.error().code, fmt::format("{}: {}", s.name, dev.error().message));
        co_return;
    }
    c.dev = dev->get();

    uint64_t start = now_ns();
    c.out->start_ns = start;
    c.progress->start_ns.store(start, std::memory_order_relaxed);
    c.progress->state.store(state_letter(s.rw), std::memory_order_relaxed);
    c.stats_from = start + s.ramp_ns;
    c.recording = s.ramp_ns == 0;
    if (s.runtime_ns)
        c.deadline = start + s.ramp_ns + s.runtime_ns;
    c.next_slot_at = c.epoch + ((start - c.epoch) / c.slot_ns + 1) * c.slot_ns;
    update_next_event(c);

    loop.set_polling(s.busy_poll);
    co_await run_phase(c);
    uint64_t end = now_ns();
    loop.set_polling(false);
    uint64_t active = end > c.stats_from ? end - c.stats_from : 0;
    if (rw_reads(s.rw))
        c.out->dir[kRead].runtime_ns = active;
    if (rw_writes(s.rw))
        c.out->dir[kWrite].runtime_ns = active;

    // fio reads a write-only job's region back after writing it.
    bool verify_after = s.verify && s.do_verify && !rw_reads(s.rw) && c.out->error == 0 &&
                        !g_stop_all.load(std::memory_order_relaxed);
    if (verify_after) {
        c.progress->state.store('V', std::memory_order_relaxed);
        c.verify_phase = true;
        c.random = c.mixed = false;
        c.fixed_dir = kRead;
        c.fsync_every = 0;
        c.seq_next[kRead] = 0;
        c.issued = 0;
        c.issue_limit = 0;
        for (uint64_t w : c.written)
            c.issue_limit += uint64_t(std::popcount(w));
        c.deadline = UINT64_MAX;
        c.stop = false;
        c.recording = true;
        update_next_event(c);
        uint64_t vstart = now_ns();
        co_await run_phase(c);
        end = now_ns();
        c.out->dir[kRead].runtime_ns = end - vstart;
    }
    c.out->end_ns = end;
    co_await c.dev->close();
}

// Pushes the counts of the last, partial slot.
void finish_slots(JobCtx& c)
{
    if (c.out->start_ns == 0)
        return;
    time_event(c, c.out->end_ns);
    for (int d = 0; d < 2; d++) {
        c.out->slots[d].push_back(c.slot_count[d]);
        c.total_ios[d] += c.slot_count[d];
        c.slot_count[d] = 0;
    }
    c.progress->ios[kRead].store(c.total_ios[kRead], std::memory_order_relaxed);
    c.progress->ios[kWrite].store(c.total_ios[kWrite], std::memory_order_relaxed);
}

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

} // namespace

void stop_all_jobs() noexcept { g_stop_all.store(true, std::memory_order_relaxed); }

bool stop_requested() noexcept { return g_stop_all.load(std::memory_order_relaxed); }

void run_job(const PreparedJob& job, unsigned clone, uint64_t epoch_ns, JobProgress& progress,
             JobResult& out)
{
    const JobSpec& s = job.spec;
    out.job = &job;
    out.clone = clone;
    out.tid = int(gettid());
    out.slot_ns = kSlotNs;
    out.epoch_ns = epoch_ns;
    rusage ru0{}, ru1{};
    getrusage(RUSAGE_THREAD, &ru0);

    JobCtx c;
    c.job = &job;
    c.out = &out;
    c.progress = &progress;
    c.base = s.offset;
    c.bs = s.bs;
    c.stride = s.blockalign ? s.blockalign : s.bs;
    c.nblocks = job.nblocks;
    c.epoch = epoch_ns;
    uint64_t seed = s.randseed ? *s.randseed
                    : s.randrepeat ? 0x636F626C6B2D6265ull  // a fixed seed: "coblk-be"
                                   : now_ns() ^ (uint64_t(getpid()) << 32);
    c.rng.reseed(seed + clone);
    configure_main_phase(c);
    if (s.verify)
        c.written.assign((job.nblocks + 63) / 64, 0);

    // Room for every 100 ms slot of the run, coarsened if the run outlasts it.
    uint64_t planned = s.runtime_ns ? (s.runtime_ns + s.ramp_ns) / kSlotNs + 16 : 0;
    c.slot_cap = std::max<size_t>(size_t(std::min<uint64_t>(planned, 1u << 20)), 4096);
    c.slot_cap += c.slot_cap % 2;
    for (auto& v : out.slots)
        v.reserve(c.slot_cap + 1);

    std::vector<Worker> workers(s.iodepth);
    std::vector<std::unique_ptr<unsigned char, FreeDeleter>> buffers;
    Prng fill(seed ^ 0xF111F111F111F111ull);
    for (Worker& w : workers) {
        void* p = nullptr;
        if (posix_memalign(&p, std::max<size_t>(job.mem_align, 4096), s.bs) != 0) {
            out.error = ENOMEM;
            out.error_msg = fmt::format("{}: cannot allocate {} buffers of {} bytes", s.name,
                                        s.iodepth, s.bs);
            progress.state.store('_', std::memory_order_relaxed);
            return;
        }
        buffers.emplace_back(static_cast<unsigned char*>(p));
        w.buf = static_cast<unsigned char*>(p);
        w.iov = {p, s.bs};
        // Non-zero pseudo-random data, once: writes send it as it is.
        for (size_t i = 0; i < s.bs; i++) {
            auto b = static_cast<unsigned char>(fill.next() >> 56);
            w.buf[i] = b ? b : 0xA5;
        }
    }
    c.workers = &workers;

    unsigned entries = std::clamp(std::bit_ceil(s.iodepth), 64u, 4096u);
    auto loop = Loop::create(entries);
    if (!loop) {
        out.error = loop.error().code;
        out.error_msg = fmt::format("{}: {}", s.name, loop.error().message);
    } else {
        sync_wait(**loop, job_main(**loop, c));
        out.polls = (*loop)->polls();
        finish_slots(c);
    }
    getrusage(RUSAGE_THREAD, &ru1);
    auto secs = [](const timeval& a, const timeval& b) {
        return double(b.tv_sec - a.tv_sec) + double(b.tv_usec - a.tv_usec) / 1e6;
    };
    out.usr_s = secs(ru0.ru_utime, ru1.ru_utime);
    out.sys_s = secs(ru0.ru_stime, ru1.ru_stime);
    out.ctx = uint64_t((ru1.ru_nvcsw - ru0.ru_nvcsw) + (ru1.ru_nivcsw - ru0.ru_nivcsw));
    out.majf = uint64_t(ru1.ru_majflt - ru0.ru_majflt);
    out.minf = uint64_t(ru1.ru_minflt - ru0.ru_minflt);
    progress.state.store('_', std::memory_order_relaxed);
}

} // namespace coblk::bench
