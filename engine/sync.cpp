#include "engine/sync.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace coblk {
namespace {

// Resumption of a released waiter goes through the current loop's ready
// queue, never inline, so that unlock() can be called from any coroutine
// without running another one on its stack.
void wake(std::coroutine_handle<> h)
{
    Loop* loop = Loop::current();
    if (!loop) {
        std::fputs("coblk: a coroutine lock was released outside a loop\n", stderr);
        std::abort();
    }
    loop->post(h);
}

} // namespace

void Mutex::unlock()
{
    if (LockAwaiter* w = head_) {
        head_ = w->next;
        if (!head_)
            tail_ = nullptr;
        wake(w->waiter);  // stays locked: ownership passes to `w`
        return;
    }
    locked_ = false;
}

bool RangeLock::overlaps_held(uint64_t off, uint64_t end) const
{
    return std::any_of(held_.begin(), held_.end(),
                       [&](const Range& r) { return off < r.end && r.off < end; });
}

bool RangeLock::try_take(uint64_t off, uint64_t end)
{
    // Behind any waiter we overlap, to keep FIFO order among overlapping ones.
    for (LockAwaiter* w = head_; w; w = w->next)
        if (off < w->end && w->off < end)
            return false;
    if (overlaps_held(off, end))
        return false;
    held_.push_back({off, end});
    return true;
}

void RangeLock::enqueue(LockAwaiter* w)
{
    w->next = nullptr;
    if (tail_)
        tail_->next = w;
    else
        head_ = w;
    tail_ = w;
}

void RangeLock::unlock(uint64_t off, uint64_t end)
{
    for (size_t i = 0; i < held_.size(); i++) {
        if (held_[i].off == off && held_[i].end == end) {
            held_[i] = held_.back();
            held_.pop_back();
            break;
        }
    }
    // Grant every waiter that overlaps neither a held range nor an older
    // waiter that is still waiting.
    LockAwaiter* prev = nullptr;
    LockAwaiter* w = head_;
    while (w) {
        LockAwaiter* next = w->next;
        bool blocked = overlaps_held(w->off, w->end);
        for (LockAwaiter* older = head_; !blocked && older != w; older = older->next)
            blocked = w->off < older->end && older->off < w->end;
        if (!blocked) {
            if (prev)
                prev->next = next;
            else
                head_ = next;
            if (tail_ == w)
                tail_ = prev;
            held_.push_back({w->off, w->end});
            wake(w->waiter);
        } else {
            prev = w;
        }
        w = next;
    }
}

void WaitGroup::done_last()
{
    if (count_ == 0) {
        std::fputs("coblk: WaitGroup::done() without a matching add()\n", stderr);
        std::abort();
    }
    if (--count_ > 0)
        return;
    WaitAwaiter* w = std::exchange(waiters_, nullptr);
    while (w) {
        WaitAwaiter* next = w->next;
        wake(w->waiter);
        w = next;
    }
}

void TaskGroup::spawn(Task<void> t)
{
    wg_.add();
    [](Task<void> task, WaitGroup& wg) -> detail::Detached {
        co_await std::move(task);
        wg.done();
    }(std::move(t), wg_);
}

} // namespace coblk
