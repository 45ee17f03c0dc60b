// The Loop without io_uring (io_uring_setup refused, or COBLK_IO_URING=off):
// file operations run on the worker pool (engine/blocking.h) with the plain
// system calls that the io_uring opcodes stand for, and come back through
// the inbox; timeouts wait in a heap the loop keeps; the loop blocks in
// ppoll on the inbox eventfd. QEMU's aio=threads is the same idea.
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "engine/blocking.h"
#include "engine/loop.h"

namespace coblk {
namespace {

int64_t monotonic_ns() noexcept
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Later deadline first out of std::*_heap, so the heap's front is the
// nearest; equal deadlines in arrival order.
struct TimerLater {
    template <typename T>
    bool operator()(const T& a, const T& b) const noexcept
    {
        return a.deadline_ns != b.deadline_ns ? a.deadline_ns > b.deadline_ns : a.seq > b.seq;
    }
};

// Runs `op` as the system call its opcode names; returns what the CQE would
// hold (a count, 0, or -errno). A worker thread: reads only the op's own
// fields, which the loop does not touch while the op is out.
int execute(const UringOp& op) noexcept
{
    ssize_t r;
    switch (op.opcode) {
    case IORING_OP_READV:
        r = ::preadv2(op.fd, reinterpret_cast<const iovec*>(op.addr), int(op.len),
                      off_t(op.off), int(op.op_flags));
        break;
    case IORING_OP_WRITEV:
        r = ::pwritev2(op.fd, reinterpret_cast<const iovec*>(op.addr), int(op.len),
                       off_t(op.off), int(op.op_flags));
        break;
    case IORING_OP_FSYNC:
        r = (op.op_flags & IORING_FSYNC_DATASYNC) ? ::fdatasync(op.fd) : ::fsync(op.fd);
        break;
    case IORING_OP_FALLOCATE:
        // As in the SQE: the mode travels in len, the length in addr.
        r = ::fallocate(op.fd, int(op.len), off_t(op.off), off_t(op.addr));
        break;
    default:
        return -EINVAL;
    }
    return r < 0 ? -errno : int(r);
}

} // namespace

// Sets up what the loop needs without a ring: the bound on operations out
// (as the CQ size bounds a ring's), a timerfd and an epoll fd over it and the
// inbox eventfd for ring_fd(). Fails naming the call. Any thread, at create.
Result<void> Loop::init_workers(unsigned entries)
{
    uring_ = false;
    sq_entries_ = entries;
    max_inflight_ = 2 * std::max(entries, 1u) - 1;
    timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (timer_fd_ < 0)
        return make_error(errno, "timerfd_create for a loop without io_uring: {}",
                          std::strerror(errno));
    poll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (poll_fd_ < 0)
        return make_error(errno, "epoll_create1 for a loop without io_uring: {}",
                          std::strerror(errno));
    for (int fd : {inbox_.eventfd(), timer_fd_}) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (::epoll_ctl(poll_fd_, EPOLL_CTL_ADD, fd, &ev) < 0)
            return make_error(errno, "epoll_ctl adding fd {} for a loop without io_uring: {}", fd,
                              std::strerror(errno));
    }
    return {};
}

// Takes `op` from a coroutine: a timeout goes into the heap, anything else
// to a worker, or to the queue while max_inflight_ are out. Loop thread.
void Loop::queue_worker(UringOp* op) noexcept
{
    if (op->opcode == IORING_OP_TIMEOUT) {
        const auto* ts = reinterpret_cast<const __kernel_timespec*>(op->addr);
        int64_t deadline = monotonic_ns() + int64_t(ts->tv_sec) * 1000000000 + ts->tv_nsec;
        timers_.push_back(Timer{deadline, timer_seq_++, static_cast<SleepOp*>(op)});
        std::push_heap(timers_.begin(), timers_.end(), TimerLater{});
        return;
    }
    if (queued_head_ == nullptr && inflight_ < max_inflight_) {
        dispatch(op);
        return;
    }
    append_queued(op);
}

// Sends queued operations to workers while there is room. Loop thread.
void Loop::fill_workers() noexcept
{
    while (queued_head_ && inflight_ < max_inflight_) {
        UringOp* op = queued_head_;
        queued_head_ = static_cast<UringOp*>(op->next);
        if (!queued_head_)
            queued_tail_ = nullptr;
        dispatch(op);
    }
}

// Hands `op` to the worker pool, which runs it and pushes it onto this
// loop's inbox; drain_inbox() resumes it. When the pool cannot take it (no
// thread or memory to be had), it completes on the next turn with -ENOMEM.
// Loop thread.
void Loop::dispatch(UringOp* op) noexcept
{
    op->loop_op = true;
    inflight_++;
    try {
        submit_blocking([op] {
            op->res = execute(*op);
            Inbox& inbox = op->loop->inbox_;
            inbox.push(op);  // the loop may resume and free `op` from here on
        });
    } catch (...) {
        op->res = -ENOMEM;
        inbox_.push(op);
    }
}

// Reads the inbox eventfd down to zero (it is non-blocking). Loop thread.
void Loop::clear_eventfd() noexcept
{
    uint64_t n;
    syscalls_++;
    [[maybe_unused]] ssize_t r = ::read(inbox_.eventfd(), &n, sizeof n);
}

bool Loop::timer_due() const noexcept
{
    return !timers_.empty() && timers_.front().deadline_ns <= monotonic_ns();
}

// Resumes the waiters of every timeout due now, nearest first. A timeout
// that a resumed coroutine starts waits for a later turn. Loop thread.
void Loop::fire_timers() noexcept
{
    if (timers_.empty())
        return;
    int64_t now = monotonic_ns();
    while (!timers_.empty() && timers_.front().deadline_ns <= now) {
        std::pop_heap(timers_.begin(), timers_.end(), TimerLater{});
        due_.push_back(timers_.back().op);
        timers_.pop_back();
    }
    for (size_t i = 0; i < due_.size(); i++) {
        due_[i]->res = -ETIME;  // what an expired IORING_OP_TIMEOUT gives
        due_[i]->waiter.resume();
    }
    due_.clear();
}

// run_once() without a ring: the same steps, with ppoll on the inbox
// eventfd as the wait (bounded by the nearest timeout and `timeout`).
bool Loop::run_once_workers(bool block, const __kernel_timespec* timeout)
{
    CurrentLoopScope scope(this);
    if (!inbox_.empty()) {
        clear_eventfd();  // before taking: a later push signals again
        drain_inbox();
    }
    run_ready();
    fill_workers();
    fire_timers();
    bool wait = block && ready_.empty() && inbox_.empty();
    if (wait && inflight_ == 0 && foreign_pending_ == 0 && queued_head_ == nullptr &&
        timers_.empty())
        return false;
    if (wait && polling_) {
        yield_for_poll();
        wait = false;
    }
    if (wait) {
        int64_t wait_ns = -1;
        if (timeout)
            wait_ns = int64_t(timeout->tv_sec) * 1000000000 + timeout->tv_nsec;
        if (!timers_.empty()) {
            int64_t t = std::max<int64_t>(timers_.front().deadline_ns - monotonic_ns(), 0);
            wait_ns = wait_ns < 0 ? t : std::min(wait_ns, t);
        }
        timespec ts{wait_ns / 1000000000, wait_ns % 1000000000};
        pollfd p{inbox_.eventfd(), POLLIN, 0};
        syscalls_++;
        int r = ::ppoll(&p, 1, wait_ns < 0 ? nullptr : &ts, nullptr);
        if (r < 0 && errno != EINTR) {
            std::fprintf(stderr, "coblk: ppoll on the loop's inbox: %s\n", std::strerror(errno));
            std::abort();
        }
        if (r > 0)
            clear_eventfd();
    }
    drain_inbox();
    fill_workers();
    fire_timers();
    return true;
}

// settle() without a ring: turn until nothing is runnable, then leave the
// eventfd readable only when something waits in the inbox, and the timerfd
// armed for the nearest timeout, so that poll_fd_ means "a turn has work".
void Loop::settle_workers() noexcept
{
    for (int i = 0; i < 1000; i++) {
        if (!ready_.empty() || !inbox_.empty() || timer_due()) {
            run_once(false);
            continue;
        }
        // A signal left from an item an earlier drain took would wake the
        // program for nothing: clear it, then look again (a push after the
        // clear signals anew).
        clear_eventfd();
        if (inbox_.empty())
            break;
    }
    CurrentLoopScope scope(this);
    fill_workers();
    arm_timerfd();
}

// Points the timerfd at the nearest timeout, or disarms it; setting it
// also clears an expiry already counted. Loop thread.
void Loop::arm_timerfd() noexcept
{
    int64_t want = timers_.empty() ? 0 : timers_.front().deadline_ns;
    if (want == timer_armed_ns_)
        return;
    itimerspec its{};
    if (want != 0) {
        its.it_value.tv_sec = want / 1000000000;
        its.it_value.tv_nsec = want % 1000000000;
    }
    syscalls_++;
    if (::timerfd_settime(timer_fd_, want != 0 ? TFD_TIMER_ABSTIME : 0, &its, nullptr) < 0) {
        std::fprintf(stderr, "coblk: timerfd_settime: %s\n", std::strerror(errno));
        std::abort();
    }
    timer_armed_ns_ = want;
}

// Before the loop's memory goes: waits until every operation a worker holds
// has come back, without resuming anyone, then closes the fallback's fds.
// (A ring's exit cancels what it holds; a worker's system call cannot be
// cancelled, so a loop destroyed with a read of an idle pipe out would wait
// for it. File I/O ends by itself.) The destructor's thread.
void Loop::wait_workers_at_exit() noexcept
{
    while (inflight_ > 0) {
        clear_eventfd();
        for (InboxItem* it = inbox_.take_all(); it; it = it->next)
            if (it->loop_op)
                inflight_--;
        if (inflight_ == 0)
            break;
        pollfd p{inbox_.eventfd(), POLLIN, 0};
        ::poll(&p, 1, -1);
    }
    if (poll_fd_ >= 0)
        ::close(poll_fd_);
    if (timer_fd_ >= 0)
        ::close(timer_fd_);
}

} // namespace coblk
