#include "engine/loop.h"

#include <sched.h>
#include <sys/syscall.h>
#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <system_error>

namespace coblk {
constinit thread_local Loop* detail::current_loop = nullptr;
using detail::current_loop;

Loop* Loop::current() noexcept { return current_loop; }

bool detail::post_to_current_loop(std::coroutine_handle<> h) noexcept
{
    if (!current_loop)
        return false;
    current_loop->post(h);
    return true;
}

void detail::Detached::promise_type::unhandled_exception() noexcept
{
    std::fputs("coblk: an exception escaped a spawned coroutine\n", stderr);
    std::terminate();
}

namespace {

// What COBLK_IO_URING asks for: io_uring if it works, always, or never.
enum class UringMode { Auto, On, Off };

Result<UringMode> uring_mode_from_env()
{
    const char* v = std::getenv("COBLK_IO_URING");
    if (!v || !*v || std::strcmp(v, "auto") == 0)
        return UringMode::Auto;
    if (std::strcmp(v, "on") == 0)
        return UringMode::On;
    if (std::strcmp(v, "off") == 0)
        return UringMode::Off;
    return make_error(EINVAL, "invalid COBLK_IO_URING='{}' in the environment: expected on, off "
                      "or auto", v);
}

// What COBLK_INBOX_WAIT asks for: true for the multishot poll (the default),
// false for the read (Loop::inbox_wait_by_read).
Result<bool> inbox_poll_from_env()
{
    const char* v = std::getenv("COBLK_INBOX_WAIT");
    if (!v || !*v || std::strcmp(v, "poll") == 0)
        return true;
    if (std::strcmp(v, "read") == 0)
        return false;
    return make_error(EINVAL, "invalid COBLK_INBOX_WAIT='{}' in the environment: expected poll "
                      "or read", v);
}

// io_uring_setup errors that mean "not here" rather than "not now":
// seccomp (ENOSYS, EPERM), kernel.io_uring_disabled (EPERM), LSMs (EACCES),
// the locked-memory limit of kernels before 5.12 (ENOMEM).
bool uring_unavailable(int err)
{
    return err == ENOSYS || err == EPERM || err == EACCES || err == ENOMEM;
}

// Prints the fallback's warning, once per process. Any thread.
void warn_no_uring(const char* reason)
{
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true))
        std::fprintf(stderr, "coblk: io_uring unavailable (%s); using worker threads for file "
                     "I/O\n", reason);
}

} // namespace

Result<std::unique_ptr<Loop>> Loop::create(unsigned entries, bool any_thread)
{
    auto mode = uring_mode_from_env();
    if (!mode.ok())
        return mode.error();
    auto inbox_poll = inbox_poll_from_env();
    if (!inbox_poll.ok())
        return inbox_poll.error();
    std::unique_ptr<Loop> loop;
    try {
        loop.reset(new Loop());
    } catch (const std::system_error& e) {  // the inbox's eventfd (EMFILE, ENFILE, ENOMEM)
        return make_error(e.code().value(), "cannot create a loop: {}", e.what());
    }
    if (*mode == UringMode::Off) {
        if (auto r = loop->init_workers(entries); !r.ok())
            return r.error();
        warn_no_uring("COBLK_IO_URING=off");
        return loop;
    }
    // Completions are only reaped at the loop's own turns, so the kernel need
    // not interrupt the thread to post them: with DEFER_TASKRUN (Linux 6.1+)
    // it posts them when the loop asks for events, in one batch; it needs
    // SINGLE_ISSUER, which ties the ring to one thread, so the ring starts
    // disabled and the thread that first runs the loop enables it. Older
    // kernels reject the flags; then COOP_TASKRUN alone, then nothing.
    const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED |
            IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_COOP_TASKRUN, 0};
    io_uring_params p{};
    int r = -EINVAL;
    for (unsigned flags : tries) {
        if (any_thread && (flags & IORING_SETUP_SINGLE_ISSUER))
            continue;
        p = io_uring_params{};
        p.flags = flags;
        r = io_uring_queue_init_params(entries, &loop->ring_, &p);
        if (r != -EINVAL)
            break;
    }
    if (r < 0 && *mode == UringMode::Auto && uring_unavailable(-r)) {
        if (auto w = loop->init_workers(entries); !w.ok())
            return w.error();
        std::string reason = fmt::format("{} from io_uring_setup", std::strerror(-r));
        warn_no_uring(reason.c_str());
        return loop;
    }
    if (r < 0)
        return make_error(-r, "io_uring_setup({} entries) failed: {}{}", entries,
                          std::strerror(-r),
                          *mode == UringMode::On ? " (COBLK_IO_URING=on)" : "");
    loop->defer_taskrun_ = p.flags & IORING_SETUP_DEFER_TASKRUN;
    loop->ring_disabled_ = p.flags & IORING_SETUP_R_DISABLED;
    loop->ring_ready_ = true;
    loop->sq_entries_ = p.sq_entries;
    loop->max_inflight_ = p.cq_entries - 1;
    loop->inbox_wait_.loop = loop.get();
    loop->inbox_wait_.on_complete = &Loop::on_inbox_wait;
    loop->inbox_wait_.fd = loop->inbox_.eventfd();
    if (*inbox_poll)
        loop->inbox_wait_by_poll();
    else
        loop->inbox_wait_by_read();
    loop->arm_inbox_wait();
    return loop;
}

Loop::~Loop()
{
    if (ring_ready_)
        io_uring_queue_exit(&ring_);
    if (!uring_)
        wait_workers_at_exit();
}

static UringOp make_op(Loop* loop, uint8_t opcode, int fd, uint64_t addr, uint32_t len,
                       uint64_t off, uint32_t flags) noexcept
{
    UringOp op;
    op.loop = loop;
    op.opcode = opcode;
    op.fd = fd;
    op.addr = addr;
    op.len = len;
    op.off = off;
    op.op_flags = flags;
    return op;
}

UringOp Loop::readv(int fd, const iovec* iov, unsigned iovcnt, uint64_t off) noexcept
{
    return make_op(this, IORING_OP_READV, fd, reinterpret_cast<uint64_t>(iov), iovcnt, off, 0);
}

UringOp Loop::writev(int fd, const iovec* iov, unsigned iovcnt, uint64_t off, int rw_flags) noexcept
{
    return make_op(this, IORING_OP_WRITEV, fd, reinterpret_cast<uint64_t>(iov), iovcnt, off,
                   static_cast<uint32_t>(rw_flags));
}

UringOp Loop::fsync(int fd, bool datasync) noexcept
{
    return make_op(this, IORING_OP_FSYNC, fd, 0, 0, 0, datasync ? IORING_FSYNC_DATASYNC : 0);
}

UringOp Loop::fallocate(int fd, int mode, uint64_t off, uint64_t len) noexcept
{
    // IORING_OP_FALLOCATE carries the length in addr and the mode in len.
    return make_op(this, IORING_OP_FALLOCATE, fd, len, static_cast<uint32_t>(mode), off, 0);
}

SleepOp Loop::sleep_for(std::chrono::nanoseconds d) noexcept
{
    SleepOp op;
    op.loop = this;
    op.opcode = IORING_OP_TIMEOUT;
    op.len = 1;
    op.off = 0;
    auto ns = d.count() < 0 ? 0 : d.count();
    op.ts.tv_sec = ns / 1000000000;
    op.ts.tv_nsec = ns % 1000000000;
    return op;
}

void Loop::spawn(Task<void> t)
{
    CurrentLoopScope scope(this);
    [](Task<void> task) -> detail::Detached { co_await std::move(task); }(std::move(t));
}

// Puts `op` into the ring, or queues it while the completion ring is full.
void Loop::queue(UringOp* op) noexcept
{
    if (!uring_) [[unlikely]] {
        queue_worker(op);
        return;
    }
    if (queued_head_ == nullptr && put_sqe(op)) {
        submit_early(op->opcode);
        return;
    }
    append_queued(op);
}

// Appends `op` to the operations waiting for room (FIFO). Loop thread.
void Loop::append_queued(UringOp* op) noexcept
{
    op->next = nullptr;
    if (queued_tail_)
        queued_tail_->next = op;
    else
        queued_head_ = op;
    queued_tail_ = op;
}

// Fills one SQE for `op`; false when the CQ budget or the SQ is exhausted.
bool Loop::put_sqe(UringOp* op) noexcept
{
    bool internal = op == &inbox_wait_;
    if (!internal && inflight_ >= max_inflight_)
        return false;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (!sqe) {
        // SQ full: push what is there and try again once.
        syscalls_++;
        io_uring_submit(&ring_);
        sqe = io_uring_get_sqe(&ring_);
        if (!sqe)
            return false;
    }
    io_uring_prep_rw(op->opcode, sqe, op->fd, reinterpret_cast<const void*>(op->addr), op->len,
                     op->off);
    sqe->rw_flags = static_cast<int>(op->op_flags);
    io_uring_sqe_set_data(sqe, op);
    if (!internal)
        inflight_++;
    return true;
}

// When to submit before the turn ends. Measured on these machines' virtio
// disks (bench/RESULTS.md): random O_DIRECT writes at depth 32 ran at 0.6x
// fio's IOPS when a turn's writes went down in one batch, and at 1.0x when
// each went down at once; random reads ran fastest in batches of about 4
// (1.8x fio's, against 1.3x when batched per turn and 1.0x one by one). So
// writes and flushes are submitted at once, everything else every
// kReadSubmitBatch SQEs and at the end of the turn. Loop thread only.
void Loop::submit_early(uint8_t opcode) noexcept
{
    if (ring_disabled_)
        return;  // before the first turn: that turn submits
    bool write = opcode == IORING_OP_WRITEV || opcode == IORING_OP_WRITE ||
                 opcode == IORING_OP_FSYNC || opcode == IORING_OP_WRITE_FIXED;
    if (write || io_uring_sq_ready(&ring_) >= kReadSubmitBatch) {
        syscalls_++;
        io_uring_submit(&ring_);
    }
}

void Loop::fill_sq() noexcept
{
    while (queued_head_) {
        UringOp* op = queued_head_;
        if (!put_sqe(op))
            return;
        queued_head_ = static_cast<UringOp*>(op->next);
        if (!queued_head_)
            queued_tail_ = nullptr;
    }
}

// The inbox eventfd wakes the loop through one multishot poll: each signal
// posts a CQE and the poll stays armed, so nothing is re-armed per wake-up
// and the counter is never read (it grows by one per signal; 2^64 - 2
// signals would take centuries). A poll the kernel ends (no
// IORING_CQE_F_MORE) is armed again. At create.
void Loop::inbox_wait_by_poll() noexcept
{
    inbox_wait_.opcode = IORING_OP_POLL_ADD;
    inbox_wait_.addr = 0;
    inbox_wait_.len = IORING_POLL_ADD_MULTI;
    inbox_wait_.op_flags = POLLIN;
}

// Kernels before 5.13 have no multishot poll (they refuse it with EINVAL):
// there the loop keeps one read of the eventfd in the ring and re-arms it
// after each wake-up. COBLK_INBOX_WAIT=read asks for this on any kernel.
// At create, or on the loop thread when the kernel refused the poll.
void Loop::inbox_wait_by_read() noexcept
{
    inbox_wait_.opcode = IORING_OP_READ;
    inbox_wait_.addr = reinterpret_cast<uint64_t>(&inbox_buf_);
    inbox_wait_.len = sizeof inbox_buf_;
    inbox_wait_.op_flags = 0;
}

void Loop::arm_inbox_wait() noexcept
{
    inbox_wait_arms_++;
    if (!put_sqe(&inbox_wait_)) {
        std::fputs("coblk: cannot arm the loop's inbox wait\n", stderr);
        std::abort();
    }
}

void Loop::on_inbox_wait(UringOp* op)
{
    Loop* loop = op->loop;
    loop->inbox_wakeups_++;
    if (op->res == -EINVAL && op->opcode == IORING_OP_POLL_ADD)
        loop->inbox_wait_by_read();
    loop->drain_inbox();
    if (!loop->inbox_wait_armed_)
        loop->arm_inbox_wait();
}

void Loop::drain_inbox() noexcept
{
    for (InboxItem* it = inbox_.take_all(); it;) {
        InboxItem* next = it->next;  // `it` may be freed by the resumption
        if (it == &gather_marker_) [[unlikely]] {
            it = next;  // gather_wait's marker: nothing waits on it
            continue;
        }
        if (it->loop_op) [[unlikely]] {
            inflight_--;  // a worker ran it: the loop has no io_uring
        } else {
            foreign_pending_--;
            if (static_cast<ForeignCompletion*>(it)->gather_us) {
                gather_pending_--;
                gather_done_++;
            }
        }
        it->waiter.resume();
        it = next;
    }
}

// Waits for completions while many operations that allow gathering are in
// flight (libgfapi's, at depth): a marker in the otherwise empty inbox
// (Inbox::hold) keeps producers from signalling for a window, so
// the completions that arrive in it wake the loop once, by the timeout,
// instead of each waking it through the eventfd. When the cores are
// saturated, as with a GlusterFS brick on the same host, those wake-ups are
// what the foreign threads, the brick and the loop fight over
// (bench/RESULTS.md). The window is the one the operations asked for, but
// at most an eighth of their latency (Little's law: in flight / completion
// rate), so that a request waits about 1/16 longer on average when the
// cores are idle and latency is all there is; under kGatherMinUs it is not
// worth a timer and the loop waits as usual. Returns what the io_uring wait
// returned (0 for a timeout), or 0 at once when a completion is already in
// the inbox. Loop thread, io_uring with EXT_ARG only.
int Loop::gather_wait() noexcept
{
    timespec now_ts{};
    clock_gettime(CLOCK_MONOTONIC, &now_ts);
    uint64_t now = uint64_t(now_ts.tv_sec) * 1'000'000'000u + uint64_t(now_ts.tv_nsec);
    if (now - gather_rate_t0_ >= kGatherRateSampleNs) {
        if (gather_rate_t0_ != 0)
            gather_per_us_ = double(gather_done_ - gather_rate_done0_) * 1e3 /
                             double(now - gather_rate_t0_);
        gather_rate_t0_ = now;
        gather_rate_done0_ = gather_done_;
    }
    double window_us = 0;
    if (gather_per_us_ > 0)
        window_us = std::min(double(gather_us_), double(gather_pending_) / gather_per_us_ / 8);
    if (window_us < kGatherMinUs)
        return io_uring_submit_and_wait(&ring_, 1);
    if (!inbox_.hold(&gather_marker_))
        return 0;  // a completion came in since the turn began: take it now
    __kernel_timespec ts{0, static_cast<long long>(window_us * 1e3)};
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    gather_waits_++;
    drain_inbox();  // takes the marker out, and what gathered behind it
    return r == -ETIME ? 0 : r;
}

void Loop::yield_for_poll() noexcept
{
    polls_.fetch_add(1, std::memory_order_relaxed);
    sched_yield();
}

void Loop::reap() noexcept
{
    constexpr unsigned kBatch = 64;
    io_uring_cqe* cqes[kBatch];
    UringOp* ops[kBatch];
    for (;;) {
        unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, kBatch);
        if (n == 0)
            return;
        for (unsigned i = 0; i < n; i++) {
            ops[i] = static_cast<UringOp*>(io_uring_cqe_get_data(cqes[i]));
            ops[i]->res = cqes[i]->res;
            if (ops[i] == &inbox_wait_)
                inbox_wait_armed_ = cqes[i]->flags & IORING_CQE_F_MORE;
        }
        io_uring_cq_advance(&ring_, n);
        for (unsigned i = 0; i < n; i++) {
            UringOp* op = ops[i];
            if (op->on_complete) {
                op->on_complete(op);
            } else {
                inflight_--;
                op->waiter.resume();
            }
        }
    }
}

void Loop::run_ready()
{
    running_.swap(ready_);
    for (auto h : running_)
        h.resume();
    running_.clear();
}

bool Loop::run_once(bool block, const __kernel_timespec* timeout)
{
    if (!uring_) [[unlikely]]
        return run_once_workers(block, timeout);
    CurrentLoopScope scope(this);
    if (ring_disabled_) {
        // liburing 2.3 declares io_uring_enable_rings() but does not export it.
        int r = int(syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                            nullptr, 0));
        if (r < 0) {
            std::fprintf(stderr, "coblk: enabling the io_uring: %s\n", std::strerror(errno));
            std::abort();
        }
        ring_disabled_ = false;
    }
    drain_inbox();
    run_ready();
    fill_sq();
    bool wait = block && ready_.empty() && inbox_.empty();
    if (wait && inflight_ == 0 && foreign_pending_ == 0 && queued_head_ == nullptr)
        return false;
    // A polling loop looks again instead of sleeping: the inbox at the
    // next turn's start, the ring's completions just below.
    if (wait && polling_) {
        yield_for_poll();
        wait = false;
    }
    if (wait) {
        syscalls_++;
        int r;
        if (timeout && !(ring_.features & IORING_FEAT_EXT_ARG)) {
            // Before Linux 5.11 liburing would wait with a timeout SQE of
            // its own, whose CQE reap() cannot tell from ours: do not
            // wait at all (the caller checks its deadline and comes back).
            r = io_uring_submit(&ring_);
        } else if (timeout) {
            io_uring_cqe* cqe = nullptr;
            auto ts = *timeout;
            r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
            if (r == -ETIME)
                r = 0;
        } else if (gather_pending_ >= kGatherMinPending &&
                   (ring_.features & IORING_FEAT_EXT_ARG)) {
            r = gather_wait();
        } else {
            r = io_uring_submit_and_wait(&ring_, 1);
        }
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            std::fprintf(stderr, "coblk: io_uring_submit_and_wait: %s\n", std::strerror(-r));
            std::abort();
        }
    } else if (io_uring_sq_ready(&ring_) > 0 || inflight_ > 0) {
        // With DEFER_TASKRUN, completions are only posted when we ask for
        // events, and with COOP_TASKRUN alone when the thread enters the
        // kernel: a busy loop must ask too, or it would never see them.
        syscalls_++;
        io_uring_submit_and_get_events(&ring_);
    }
    reap();
    return true;
}

void Loop::settle() noexcept
{
    if (!uring_) [[unlikely]] {
        settle_workers();
        return;
    }
    // A turn's last step (reaping) can resume coroutines that post others
    // or start new operations (a read-modify-write's write, the re-armed
    // inbox wait): turn until nothing is runnable. The bound only guards
    // against a coroutine that keeps re-posting itself.
    for (int i = 0; i < 1000 && (!ready_.empty() || !inbox_.empty()); i++)
        run_once(false);
    CurrentLoopScope scope(this);
    fill_sq();
    if (!ring_disabled_ && io_uring_sq_ready(&ring_) > 0) {
        syscalls_++;
        io_uring_submit(&ring_);
    }
}

void Loop::stalled()
{
    std::fputs("coblk: loop stalled: every coroutine waits and nothing is in flight "
               "(a lock or wait group that is never released?)\n", stderr);
    std::abort();
}

} // namespace coblk
