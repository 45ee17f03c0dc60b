// Coroutine synchronisation for coroutines of one loop: a mutex, a range lock
// for overlapping requests, and a wait group / task group. None of these is
// for use across threads: every waiter is resumed through Loop::current().
#pragma once

#include <coroutine>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/loop.h"
#include "engine/task.h"

namespace coblk {

// A FIFO coroutine mutex: `auto guard = co_await m.lock();`
class Mutex {
public:
    class Guard {
    public:
        Guard() = default;
        explicit Guard(Mutex* m) : m_(m) {}
        Guard(Guard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
        Guard& operator=(Guard&& o) noexcept
        {
            if (this != &o) {
                release();
                m_ = std::exchange(o.m_, nullptr);
            }
            return *this;
        }
        ~Guard() { release(); }
        void release()
        {
            if (m_)
                std::exchange(m_, nullptr)->unlock();
        }

    private:
        Mutex* m_ = nullptr;
    };

    struct LockAwaiter {
        Mutex& m;
        std::coroutine_handle<> waiter;
        LockAwaiter* next = nullptr;
        bool await_ready() noexcept
        {
            if (m.locked_)
                return false;
            m.locked_ = true;
            return true;
        }
        void await_suspend(std::coroutine_handle<> h) noexcept
        {
            waiter = h;
            if (m.tail_)
                m.tail_->next = this;
            else
                m.head_ = this;
            m.tail_ = this;
        }
        Guard await_resume() noexcept { return Guard(&m); }
    };

    LockAwaiter lock() noexcept { return LockAwaiter{*this, {}}; }
    bool locked() const { return locked_; }

    // Hands the mutex to the oldest waiter (resumed on a later loop turn) or
    // frees it. Loop thread only.
    void unlock();

private:
    bool locked_ = false;
    LockAwaiter* head_ = nullptr;
    LockAwaiter* tail_ = nullptr;
};

// Excludes overlapping byte ranges: `auto g = co_await rl.lock(off, len);`
// Waiters are granted in FIFO order among those that overlap each other, so a
// stream of small requests cannot starve a large one.
class RangeLock {
public:
    class Guard {
    public:
        Guard() = default;
        Guard(RangeLock* rl, uint64_t off, uint64_t end) : rl_(rl), off_(off), end_(end) {}
        Guard(Guard&& o) noexcept
            : rl_(std::exchange(o.rl_, nullptr)), off_(o.off_), end_(o.end_) {}
        Guard& operator=(Guard&& o) noexcept
        {
            if (this != &o) {
                release();
                rl_ = std::exchange(o.rl_, nullptr);
                off_ = o.off_;
                end_ = o.end_;
            }
            return *this;
        }
        ~Guard() { release(); }
        void release()
        {
            if (rl_)
                std::exchange(rl_, nullptr)->unlock(off_, end_);
        }

    private:
        RangeLock* rl_ = nullptr;
        uint64_t off_ = 0, end_ = 0;
    };

    struct LockAwaiter {
        RangeLock& rl;
        uint64_t off, end;
        std::coroutine_handle<> waiter;
        LockAwaiter* next = nullptr;
        bool await_ready() noexcept { return rl.try_take(off, end); }
        void await_suspend(std::coroutine_handle<> h) noexcept
        {
            waiter = h;
            rl.enqueue(this);
        }
        Guard await_resume() noexcept { return Guard(&rl, off, end); }
    };

    // Locks [off, off+len); a zero length locks one byte at `off`.
    LockAwaiter lock(uint64_t off, uint64_t len) noexcept
    {
        return LockAwaiter{*this, off, off + (len ? len : 1), {}};
    }

    size_t held() const { return held_.size(); }

private:
    struct Range {
        uint64_t off, end;
    };
    bool overlaps_held(uint64_t off, uint64_t end) const;
    bool try_take(uint64_t off, uint64_t end);
    void enqueue(LockAwaiter* w);
    void unlock(uint64_t off, uint64_t end);

    std::vector<Range> held_;
    LockAwaiter* head_ = nullptr;
    LockAwaiter* tail_ = nullptr;
};

// Counts outstanding work; `co_await wg.wait()` resumes when it reaches zero.
class WaitGroup {
public:
    void add(size_t n = 1) { count_ += n; }
    // Marks one unit done, waking every waiter at zero. Loop thread only.
    // The common case (not the last unit) stays inline: every request passes
    // here once per layer.
    void done()
    {
        if (count_ > 1) {
            count_--;
            return;
        }
        done_last();
    }
    size_t count() const { return count_; }

    struct WaitAwaiter {
        WaitGroup& wg;
        std::coroutine_handle<> waiter;
        WaitAwaiter* next = nullptr;
        bool await_ready() const noexcept { return wg.count_ == 0; }
        void await_suspend(std::coroutine_handle<> h) noexcept
        {
            waiter = h;
            next = wg.waiters_;
            wg.waiters_ = this;
        }
        void await_resume() const noexcept {}
    };
    WaitAwaiter wait() noexcept { return WaitAwaiter{*this, {}}; }

private:
    void done_last();

    size_t count_ = 0;
    WaitAwaiter* waiters_ = nullptr;
};

// Runs coroutines concurrently on the current loop; join() waits for all.
class TaskGroup {
public:
    // Starts `t` now (it runs to its first suspension before this returns).
    void spawn(Task<void> t);
    WaitGroup::WaitAwaiter join() noexcept { return wg_.wait(); }
    size_t running() const { return wg_.count(); }

private:
    WaitGroup wg_;
};

} // namespace coblk
