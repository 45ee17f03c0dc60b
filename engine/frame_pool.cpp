#include "engine/frame_pool.h"

#include <pthread.h>

#include <new>

namespace coblk::detail {

constinit thread_local FramePool frame_pool;

namespace {

// Frees the thread's cached frames at thread exit: a pthread key whose
// value is set on a thread's first cached frame. Not a thread_local object
// with a destructor: glibc allocates to register one, on first touch, and
// aborts the process when that fails (a fresh thread whose first request
// finds memory exhausted); setting a key's value allocates nothing.
void reap(void*) noexcept
{
    FramePool& pool = frame_pool;
    pool.caching = false;
    pool.gone = true;  // frames freed later in thread exit go to the heap
    for (std::size_t c = 0; c < kFrameClasses; c++) {
        while (pool.heads[c]) {
            FreeFrame* f = pool.heads[c];
            pool.heads[c] = f->next;
            ::operator delete(f);
        }
        pool.counts[c] = 0;
    }
}

struct ReaperKey {
    pthread_key_t key{};
    bool ok = pthread_key_create(&key, reap) == 0;
};

// Arms the reaper that frees this thread's cached frames at its exit, and
// with it caching. False when it cannot be armed: then nothing is cached
// (and a later free tries again).
bool arm_reaper(FramePool& pool)
{
    static ReaperKey k;
    static const char token = 0;
    if (!k.ok || pthread_setspecific(k.key, &token) != 0)
        return false;
    pool.caching = true;
    return true;
}

} // namespace

// No cached frame of this class (or too large a frame): a new one from the
// heap, rounded up to its class, always (even on an exiting thread), since
// whichever thread frees it may cache it for any frame of that class.
void* frame_alloc_slow(std::size_t size)
{
    std::size_t c = frame_class(size);
    if (c >= kFrameClasses)
        return ::operator new(size);
    return ::operator new((c + 1) * kFrameGranule);
}

// The freed frame cannot be cached as it is: the thread's first free (which
// arms the reaper: caching is off until then), a full class, a frame too
// large, or a thread that is exiting.
void frame_free_slow(void* p, std::size_t size) noexcept
{
    FramePool& pool = frame_pool;
    std::size_t c = frame_class(size);
    if (c >= kFrameClasses || pool.gone || pool.counts[c] >= kMaxCachedPerClass ||
        (!pool.caching && !arm_reaper(pool))) {
        ::operator delete(p);
        return;
    }
    auto* f = static_cast<FreeFrame*>(p);
    f->next = pool.heads[c];
    pool.heads[c] = f;
    pool.counts[c]++;
}

} // namespace coblk::detail
