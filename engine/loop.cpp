#include "engine/loop.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace coblk {
namespace {
thread_local Loop* current_loop = nullptr;
}

CurrentLoopScope::CurrentLoopScope(Loop* loop) noexcept : saved(current_loop)
{
    current_loop = loop;
}

CurrentLoopScope::~CurrentLoopScope() { current_loop = saved; }

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

Result<std::unique_ptr<Loop>> Loop::create(unsigned entries)
{
    std::unique_ptr<Loop> loop(new Loop());
    io_uring_params p{};
    // Completions are only reaped at the loop's own turns, so the kernel need
    // not interrupt the thread to run completion work (COOP_TASKRUN); older
    // kernels reject the flag, then we retry without it.
    p.flags = IORING_SETUP_COOP_TASKRUN;
    int r = io_uring_queue_init_params(entries, &loop->ring_, &p);
    if (r == -EINVAL) {
        p = io_uring_params{};
        r = io_uring_queue_init_params(entries, &loop->ring_, &p);
    }
    if (r < 0)
        return make_error(-r, "io_uring_setup({} entries) failed: {}", entries, std::strerror(-r));
    loop->ring_ready_ = true;
    loop->sq_entries_ = p.sq_entries;
    loop->max_inflight_ = p.cq_entries - 1;
    loop->inbox_read_.loop = loop.get();
    loop->inbox_read_.on_complete = &Loop::on_inbox_read;
    loop->inbox_read_.opcode = IORING_OP_READ;
    loop->inbox_read_.fd = loop->inbox_.eventfd();
    loop->inbox_read_.addr = reinterpret_cast<uint64_t>(&loop->inbox_buf_);
    loop->inbox_read_.len = sizeof loop->inbox_buf_;
    loop->arm_inbox_read();
    return loop;
}

Loop::~Loop()
{
    if (ring_ready_)
        io_uring_queue_exit(&ring_);
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
    if (queued_head_ == nullptr && put_sqe(op))
        return;
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
    bool internal = op == &inbox_read_;
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

void Loop::fill_sq() noexcept
{
    while (queued_head_) {
        UringOp* op = queued_head_;
        if (!put_sqe(op))
            return;
        queued_head_ = op->next;
        if (!queued_head_)
            queued_tail_ = nullptr;
    }
}

void Loop::arm_inbox_read() noexcept
{
    if (!put_sqe(&inbox_read_)) {
        std::fputs("coblk: cannot arm the loop's inbox read\n", stderr);
        std::abort();
    }
}

void Loop::on_inbox_read(UringOp* op)
{
    Loop* loop = op->loop;
    loop->drain_inbox();
    loop->arm_inbox_read();
}

void Loop::drain_inbox() noexcept
{
    for (InboxItem* it = inbox_.take_all(); it;) {
        InboxItem* next = it->next;  // `it` may be freed by the resumption
        foreign_pending_--;
        it->waiter.resume();
        it = next;
    }
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

bool Loop::run_once(bool block)
{
    CurrentLoopScope scope(this);
    drain_inbox();
    run_ready();
    fill_sq();
    bool idle = ready_.empty() && inbox_.empty();
    if (block && idle) {
        if (inflight_ == 0 && foreign_pending_ == 0 && queued_head_ == nullptr)
            return false;
        syscalls_++;
        int r = io_uring_submit_and_wait(&ring_, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            std::fprintf(stderr, "coblk: io_uring_submit_and_wait: %s\n", std::strerror(-r));
            std::abort();
        }
    } else if (io_uring_sq_ready(&ring_) > 0) {
        syscalls_++;
        io_uring_submit(&ring_);
    }
    reap();
    return true;
}

void Loop::stalled()
{
    std::fputs("coblk: loop stalled: every coroutine waits and nothing is in flight "
               "(a lock or wait group that is never released?)\n", stderr);
    std::abort();
}

} // namespace coblk
