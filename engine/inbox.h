// The inbox: how a completion that arrives on a foreign thread (libgfapi,
// librados, a worker) is handed back to the loop that owns the waiting
// coroutine. Producers push onto a lock-free stack and signal an eventfd on
// the empty -> non-empty transition; the loop reads that eventfd (through its
// own io_uring, or with ppoll when it runs without one) and resumes each
// waiter on its own thread, exactly once.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>

namespace coblk {

struct InboxItem {
    // User-provided, so that the type is not a POD and a derived type may
    // put small members in its tail padding (UringOp keeps its size).
    InboxItem() noexcept {}
    InboxItem* next = nullptr;
    std::coroutine_handle<> waiter;
    bool loop_op = false;  // a UringOp a worker ran for a loop without io_uring
};

class Inbox {
public:
    // Creates the eventfd; throws std::system_error when it cannot.
    Inbox();
    ~Inbox();
    Inbox(const Inbox&) = delete;
    Inbox& operator=(const Inbox&) = delete;

    // Queues `item` for its loop. Any thread; never blocks. The item must not
    // be touched by the caller afterwards: the loop may resume and free it.
    // The inbox itself stays valid until push() returns: its destructor
    // waits for producers still inside.
    void push(InboxItem* item) noexcept;

    // Takes every queued item, oldest first. Loop thread only.
    InboxItem* take_all() noexcept;

    bool empty() const noexcept { return head_.load(std::memory_order_relaxed) == nullptr; }
    int eventfd() const noexcept { return efd_; }
    // Puts `marker` in the inbox if it is empty, without signalling, and
    // returns whether it did. Until the loop takes it out with take_all(),
    // pushes find the inbox non-empty and do not signal either: the loop is
    // in a timed wait of its own (Loop::gather_wait). Loop thread only.
    bool hold(InboxItem* marker) noexcept;

private:
    std::atomic<InboxItem*> head_{nullptr};
    std::atomic<int> pushers_{0};  // producers inside push(), for the destructor
    int efd_ = -1;
};

} // namespace coblk
