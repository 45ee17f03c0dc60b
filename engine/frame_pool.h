// Per-thread recycling of coroutine frames: a frame freed on a thread is kept
// in that thread's free list for its size class and handed out again, so the
// steady state of a request path allocates nothing.
//
// The common cases (a cached frame to hand out, room to cache a freed one)
// are inline: every coroutine of a request allocates and frees its frame,
// and the size is a constant at each of those sites.
#pragma once

#include <cstddef>

namespace coblk {

namespace detail {

inline constexpr std::size_t kFrameGranule = 64;
inline constexpr std::size_t kFrameClasses = 32;  // frames up to 2 KiB are pooled
inline constexpr std::size_t kMaxCachedPerClass = 4096;

struct FreeFrame {
    FreeFrame* next;
};

// One thread's free lists. Trivially destructible and constant-initialised,
// so that reaching it costs no thread_local initialisation guard.
struct FramePool {
    FreeFrame* heads[kFrameClasses] = {};
    std::size_t counts[kFrameClasses] = {};
    // Freed frames may be cached: the thread's reaper is armed (it frees the
    // lists at thread exit) and has not run yet.
    bool caching = false;
    bool gone = false;  // the reaper ran (the thread is exiting): use the heap
};

extern constinit thread_local FramePool frame_pool;

constexpr std::size_t frame_class(std::size_t size)
{
    return (size + kFrameGranule - 1) / kFrameGranule - 1;
}

// The uncommon cases: the heap, and arming the thread's reaper.
void* frame_alloc_slow(std::size_t size);
void frame_free_slow(void* p, std::size_t size) noexcept;

} // namespace detail

// Returns memory for a coroutine frame of `size` bytes; throws std::bad_alloc
// like operator new when memory is exhausted. Any thread.
inline void* frame_alloc(std::size_t size)
{
    std::size_t c = detail::frame_class(size);
    if (c < detail::kFrameClasses) {
        detail::FramePool& pool = detail::frame_pool;
        if (detail::FreeFrame* f = pool.heads[c]) {
            pool.heads[c] = f->next;
            pool.counts[c]--;
            return f;
        }
    }
    return detail::frame_alloc_slow(size);
}

// Gives back a frame from frame_alloc(size). Any thread (it joins the calling
// thread's free list).
inline void frame_free(void* p, std::size_t size) noexcept
{
    std::size_t c = detail::frame_class(size);
    detail::FramePool& pool = detail::frame_pool;
    if (c < detail::kFrameClasses && pool.caching &&
        pool.counts[c] < detail::kMaxCachedPerClass) {
        auto* f = static_cast<detail::FreeFrame*>(p);
        f->next = pool.heads[c];
        pool.heads[c] = f;
        pool.counts[c]++;
        return;
    }
    detail::frame_free_slow(p, size);
}

} // namespace coblk
