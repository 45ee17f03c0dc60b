// The Loop: one per thread, owner of one io_uring, and the only place in the
// engine that blocks. Coroutines started on a loop resume on its thread.
//
// A loop turn: resume coroutines posted to the ready queue, move queued
// operations into the submission ring while the completion ring has room,
// submit what is left with one syscall (waiting for a completion if nothing
// else is runnable), then resume the waiters of every reaped completion and
// of every inbox item handed over by foreign threads. Writes are submitted
// as they come and other operations in groups of four (submit_early: what
// was measured fastest on these machines' disks).
//
// Without io_uring (io_uring_setup refused: seccomp, kernel.io_uring_disabled,
// RLIMIT_MEMLOCK; or COBLK_IO_URING=off) the same loop runs each operation
// on the worker pool of engine/blocking.h, which completes it through the
// inbox, keeps timeouts in a heap of its own, and blocks in ppoll on the
// inbox eventfd (see Loop::create).
#pragma once

#include <linux/time_types.h>
#include <liburing.h>
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/inbox.h"
#include "engine/result.h"
#include "engine/task.h"

namespace coblk {

class Loop;

// One io_uring operation awaited by a coroutine. It lives in the awaiting
// coroutine's frame; sqe.user_data points at it. Without io_uring a worker
// runs it and hands it back through the inbox (hence the InboxItem base,
// whose `next` also links it while it is queued for ring space).
struct UringOp : InboxItem {
    uint8_t opcode = 0;  // opcode and res first: they fit in the base's padding
    int res = 0;
    Loop* loop = nullptr;
    void (*on_complete)(UringOp*) = nullptr;  // for the loop's internal ops

    int fd = -1;
    uint64_t addr = 0;
    uint32_t len = 0;
    uint64_t off = 0;
    uint32_t op_flags = 0;  // rw_flags / fsync_flags / timeout_flags

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept;
    // The CQE's result: >= 0 on success, -errno on failure.
    int await_resume() const noexcept { return res; }
};

// A relative timeout; completes with 0 when it expires.
struct SleepOp : UringOp {
    __kernel_timespec ts{};
    void await_suspend(std::coroutine_handle<> h) noexcept;
    int await_resume() const noexcept { return res == -ETIME ? 0 : res; }
};

// An operation completed by another thread: the starter hands `this` (as a
// ForeignCompletion*) to a library or worker, which calls complete() once.
struct ForeignCompletion : InboxItem {
    Loop* loop = nullptr;
    int64_t result = 0;
    // How long the loop may let this completion wait for others before it
    // wakes for them, in microseconds; 0: at once (see Loop::gather_wait).
    uint32_t gather_us = 0;
    // Records `r` and queues the waiter on its loop. Any thread, once; the
    // caller must not touch the object afterwards.
    void complete(int64_t r) noexcept;
};

template <typename Start>
struct ForeignAwaiter : ForeignCompletion {
    Start start;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h);
    int64_t await_resume() const noexcept { return result; }
};

class Loop {
public:
    // Creates a loop with an io_uring of `entries` submission slots. Any
    // thread; the loop then belongs to the thread running it, unless
    // `any_thread`: then its ring is set up without SINGLE_ISSUER and
    // DEFER_TASKRUN, and any thread may run it, one at a time (the C API's
    // queues, which a VMM may hand from thread to thread).
    // When io_uring_setup fails with ENOSYS, EPERM, EACCES or ENOMEM, or the
    // environment says COBLK_IO_URING=off, the loop runs its operations on
    // worker threads instead, and the first such loop of the process prints
    // one warning on stderr. COBLK_IO_URING=on makes io_uring required.
    // Fails naming the culprit: another io_uring_setup error, a bad
    // COBLK_IO_URING value, or no eventfd (for the inbox), timerfd or epoll fd.
    static Result<std::unique_ptr<Loop>> create(unsigned entries = 256, bool any_thread = false);
    ~Loop();
    Loop(const Loop&) = delete;
    Loop& operator=(const Loop&) = delete;

    // The loop whose turn is running on this thread, or null.
    static Loop* current() noexcept;

    // Operation awaiters; each resolves to the CQE result (-errno on error).
    UringOp readv(int fd, const iovec* iov, unsigned iovcnt, uint64_t off) noexcept;
    UringOp writev(int fd, const iovec* iov, unsigned iovcnt, uint64_t off, int rw_flags = 0) noexcept;
    UringOp fsync(int fd, bool datasync) noexcept;
    UringOp fallocate(int fd, int mode, uint64_t off, uint64_t len) noexcept;
    SleepOp sleep_for(std::chrono::nanoseconds d) noexcept;

    // Resumes `h` on a later turn of this loop. Loop thread only.
    void post(std::coroutine_handle<> h) { ready_.push_back(h); }

    // Starts `t` on this loop without waiting for it; it runs until its first
    // suspension before spawn returns. An exception escaping it terminates.
    void spawn(Task<void> t);

    // Runs `t` to completion on this loop, turning the loop as needed, and
    // returns its value. Not from inside a coroutine of this loop. Aborts with
    // a message when every coroutine waits and nothing can wake them.
    template <typename T>
    T run(Task<T> t);

    // One loop turn; `block` allows waiting for a completion, at most
    // `timeout` when it is given. Returns false when nothing is runnable and
    // nothing is in flight (a stall).
    bool run_once(bool block, const __kernel_timespec* timeout = nullptr);

    // Runs what is runnable without waiting, then sends every queued
    // operation to the kernel: afterwards the loop needs no turn until its
    // ring fd polls readable (how the C API leaves a queue to a program's
    // own epoll loop). Any thread that may run the loop.
    void settle() noexcept;

    // Polling: while operations are in flight and nothing is runnable, a
    // turn that may wait gives the CPU up (sched_yield) and looks again
    // instead of sleeping in the kernel. A completion is then taken without
    // the wake-up of a sleeping thread, at the cost of a busy CPU
    // (bench/RESULTS.md: RBD at depth 1). Off by default. Loop thread.
    void set_polling(bool on) noexcept { polling_ = on; }
    bool polling() const noexcept { return polling_; }
    // Turns that polled instead of waiting. Any thread may read it (tests
    // wait for the first poll before completing an operation).
    uint64_t polls() const noexcept { return polls_.load(std::memory_order_relaxed); }

    // Completions handed over from foreign threads land here.
    Inbox& inbox() noexcept { return inbox_; }

    unsigned sq_entries() const noexcept { return sq_entries_; }
    // The ring's fd: polls readable when completions wait to be reaped.
    // Without io_uring an epoll fd over the inbox eventfd and a timerfd for
    // the nearest timeout, with the same meaning after settle().
    int ring_fd() const noexcept { return uring_ ? ring_.ring_fd : poll_fd_; }
    // System calls the loop's thread made for I/O: io_uring_enter, or without
    // io_uring the waits, eventfd reads and timer settings (not the workers').
    uint64_t syscalls() const noexcept { return syscalls_; }
    // Waits that gathered foreign completions (gather_wait), for tests.
    uint64_t gather_waits() const noexcept { return gather_waits_; }
    // With io_uring: whether the inbox eventfd is waited on by a multishot
    // poll (else by a read), how often that wait was put into the ring, and
    // how many CQEs it posted. For tests and stats.
    bool inbox_waits_by_poll() const noexcept { return inbox_wait_.opcode == IORING_OP_POLL_ADD; }
    uint64_t inbox_wait_arms() const noexcept { return inbox_wait_arms_; }
    uint64_t inbox_wakeups() const noexcept { return inbox_wakeups_; }
    // False when the loop runs its operations on worker threads.
    bool uses_io_uring() const noexcept { return uring_; }

private:
    friend struct UringOp;
    friend struct SleepOp;
    friend struct ForeignCompletion;
    template <typename S> friend struct ForeignAwaiter;

    Loop() = default;
    void queue(UringOp* op) noexcept;
    void append_queued(UringOp* op) noexcept;
    void fill_sq() noexcept;
    void submit_early(uint8_t opcode) noexcept;
    static constexpr unsigned kReadSubmitBatch = 4;
    bool put_sqe(UringOp* op) noexcept;
    void reap() noexcept;
    void drain_inbox() noexcept;
    void run_ready();
    void inbox_wait_by_poll() noexcept;
    void inbox_wait_by_read() noexcept;
    void arm_inbox_wait() noexcept;
    static void on_inbox_wait(UringOp* op);
    [[noreturn]] void stalled();
    int gather_wait() noexcept;
    // A polling turn's step in place of a wait: counts it and gives the CPU
    // up once; the turn then goes on without waiting. Loop thread.
    void yield_for_poll() noexcept;
    // gather_wait's limits: gather only with this many such operations in
    // flight, resample their completion rate this often, and never wait a
    // window shorter than this (a timer costs more than it saves).
    static constexpr unsigned kGatherMinPending = 8;
    static constexpr uint64_t kGatherRateSampleNs = 2'000'000;
    static constexpr double kGatherMinUs = 10;

    // Without io_uring (engine/loop_workers.cpp).
    Result<void> init_workers(unsigned entries);
    void queue_worker(UringOp* op) noexcept;
    void fill_workers() noexcept;
    void dispatch(UringOp* op) noexcept;
    bool run_once_workers(bool block, const __kernel_timespec* timeout);
    void settle_workers() noexcept;
    void clear_eventfd() noexcept;
    bool timer_due() const noexcept;
    void fire_timers() noexcept;
    void arm_timerfd() noexcept;
    void wait_workers_at_exit() noexcept;

    io_uring ring_{};
    bool ring_ready_ = false;
    unsigned sq_entries_ = 0;
    unsigned max_inflight_ = 0;   // CQ entries less the inbox wait's
    unsigned inflight_ = 0;       // user ops in the ring
    unsigned foreign_pending_ = 0;
    // Completion gathering (gather_wait): operations in flight that allow
    // it, the window the latest of them asked for, and the completion rate.
    unsigned gather_pending_ = 0;
    uint32_t gather_us_ = 0;
    uint64_t gather_done_ = 0;       // gathering completions drained, ever
    uint64_t gather_rate_t0_ = 0;    // ns, CLOCK_MONOTONIC, start of the rate sample
    uint64_t gather_rate_done0_ = 0; // gather_done_ then
    double gather_per_us_ = 0;       // completions per microsecond, last sample
    uint64_t gather_waits_ = 0;      // waits that gathered, for tests and stats
    InboxItem gather_marker_;        // held in the inbox during a gathering wait
    UringOp* queued_head_ = nullptr;  // waiting for ring space, FIFO
    UringOp* queued_tail_ = nullptr;
    std::vector<std::coroutine_handle<>> ready_;
    std::vector<std::coroutine_handle<>> running_;
    Inbox inbox_;
    UringOp inbox_wait_;             // a multishot poll of the inbox eventfd, or a read
    uint64_t inbox_buf_ = 0;         // where the read puts the counter
    bool inbox_wait_armed_ = false;  // the last inbox CQE said the poll stays armed
    uint64_t inbox_wait_arms_ = 0;
    uint64_t inbox_wakeups_ = 0;
    uint64_t syscalls_ = 0;
    bool polling_ = false;
    std::atomic<uint64_t> polls_{0};
    bool defer_taskrun_ = false;  // completions are posted only when we ask for events
    bool ring_disabled_ = false;  // enabled by the first run_once, on the loop's thread

    // Without io_uring: ops run by workers count in inflight_; timeouts wait
    // in a min-heap by deadline (then arrival); ring_fd() is poll_fd_.
    struct Timer {
        int64_t deadline_ns;
        uint64_t seq;
        SleepOp* op;
    };
    bool uring_ = true;
    std::vector<Timer> timers_;
    std::vector<SleepOp*> due_;
    uint64_t timer_seq_ = 0;
    int64_t timer_armed_ns_ = 0;  // the timerfd's deadline, 0 when disarmed
    int timer_fd_ = -1;
    int poll_fd_ = -1;
};

namespace detail {
// The loop this thread is running (Loop::current()); set by CurrentLoopScope.
extern constinit thread_local Loop* current_loop;
} // namespace detail

// Makes `loop` the current loop of this thread for the scope's life. Inline:
// every request started from outside a loop (the C API's, a VMM's) pays it.
struct CurrentLoopScope {
    explicit CurrentLoopScope(Loop* loop) noexcept : saved(detail::current_loop)
    {
        detail::current_loop = loop;
    }
    ~CurrentLoopScope() { detail::current_loop = saved; }
    CurrentLoopScope(const CurrentLoopScope&) = delete;
    CurrentLoopScope& operator=(const CurrentLoopScope&) = delete;
    Loop* saved;
};

namespace detail {

// A coroutine that starts at once and frees itself when it ends.
struct Detached {
    struct promise_type {
        static void* operator new(std::size_t n) { return frame_alloc(n); }
        static void operator delete(void* p, std::size_t n) noexcept { frame_free(p, n); }
        Detached get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept;
    };
};

template <typename T>
struct RunState {
    std::optional<T> value;
    std::exception_ptr exception;
    bool done = false;
};
template <>
struct RunState<void> {
    std::exception_ptr exception;
    bool done = false;
};

template <typename T>
Detached run_wrapper(Task<T> t, RunState<T>& st)
{
    try {
        if constexpr (std::is_void_v<T>)
            co_await std::move(t);
        else
            st.value.emplace(co_await std::move(t));
    } catch (...) {
        st.exception = std::current_exception();
    }
    st.done = true;
}

} // namespace detail

inline void UringOp::await_suspend(std::coroutine_handle<> h) noexcept
{
    waiter = h;
    loop->queue(this);
}

inline void SleepOp::await_suspend(std::coroutine_handle<> h) noexcept
{
    addr = reinterpret_cast<uint64_t>(&ts);
    UringOp::await_suspend(h);
}

inline void ForeignCompletion::complete(int64_t r) noexcept
{
    result = r;
    loop->inbox_.push(this);
}

template <typename Start>
void ForeignAwaiter<Start>::await_suspend(std::coroutine_handle<> h)
{
    waiter = h;
    loop->foreign_pending_++;
    if (gather_us) {
        loop->gather_pending_++;
        loop->gather_us_ = gather_us;
    }
    // The waiter is recorded before the operation starts, and the loop only
    // drains its inbox after this returns: a completion that races ahead of
    // the suspension still resumes the coroutine after it has suspended.
    start(static_cast<ForeignCompletion*>(this));
}

// Awaits an operation that `start(ForeignCompletion*)` hands to another
// thread; resolves to the value passed to complete(). With `gather_us`, the
// loop may gather this completion with others for up to that long while many
// such operations are in flight (Loop::gather_wait).
template <typename Start>
ForeignAwaiter<Start> await_foreign(Loop& loop, Start start, uint32_t gather_us = 0)
{
    ForeignAwaiter<Start> a{{}, std::move(start)};
    a.loop = &loop;
    a.gather_us = gather_us;
    return a;
}

template <typename T>
T Loop::run(Task<T> t)
{
    CurrentLoopScope scope(this);
    detail::RunState<T> st;
    detail::run_wrapper(std::move(t), st);
    while (!st.done) {
        // A turn that finds nothing in flight may still have run the last
        // step of `t`: only a turn that leaves it unfinished is a stall.
        if (!run_once(true) && !st.done)
            stalled();
    }
    if (st.exception)
        std::rethrow_exception(st.exception);
    if constexpr (!std::is_void_v<T>)
        return std::move(*st.value);
}

// Runs `t` on `loop` until it completes and returns its value: the bridge
// from plain code (tools, tests, the C API) into coroutines.
template <typename T>
T sync_wait(Loop& loop, Task<T> t)
{
    return loop.run(std::move(t));
}

} // namespace coblk
