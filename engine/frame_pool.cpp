#include "engine/frame_pool.h"

#include <pthread.h>

#include <new>

namespace coblk {
namespace {

constexpr std::size_t kGranule = 64;
constexpr std::size_t kClasses = 32;          // frames up to 2 KiB are pooled
constexpr std::size_t kMaxCachedPerClass = 4096;

struct FreeBlock {
    FreeBlock* next;
};

// Trivially destructible and constant-initialised, so that reaching it
// costs no thread_local initialisation guard on the request path.
struct Pool {
    FreeBlock* heads[kClasses] = {};
    std::size_t counts[kClasses] = {};
    bool reaper_armed = false;  // reap() below will free the lists at thread exit
    bool gone = false;          // the thread is exiting: use the heap
};

constinit thread_local Pool pool;

// Frees the thread's cached frames at thread exit: a pthread key whose
// value is set on a thread's first cached frame. Not a thread_local object
// with a destructor: glibc allocates to register one, on first touch, and
// aborts the process when that fails (a fresh thread whose first request
// finds memory exhausted); setting a key's value allocates nothing.
void reap(void*) noexcept
{
    for (std::size_t c = 0; c < kClasses; c++) {
        while (pool.heads[c]) {
            FreeBlock* b = pool.heads[c];
            pool.heads[c] = b->next;
            ::operator delete(b);
        }
        pool.counts[c] = 0;
    }
    pool.gone = true;  // frames freed later in thread exit go to the heap
}

struct ReaperKey {
    pthread_key_t key{};
    bool ok = pthread_key_create(&key, reap) == 0;
};

// Whether this thread's cached frames will be freed at its exit; arms that
// on first use. False when it cannot be armed: then nothing is cached.
bool reaper_armed()
{
    if (pool.reaper_armed)
        return true;
    static ReaperKey k;
    static const char token = 0;
    if (!k.ok || pthread_setspecific(k.key, &token) != 0)
        return false;
    pool.reaper_armed = true;
    return true;
}

std::size_t class_of(std::size_t size) { return (size + kGranule - 1) / kGranule - 1; }

} // namespace

void* frame_alloc(std::size_t size)
{
    std::size_t c = class_of(size);
    if (c >= kClasses || pool.gone)
        return ::operator new(size);
    if (FreeBlock* b = pool.heads[c]) {
        pool.heads[c] = b->next;
        pool.counts[c]--;
        return b;
    }
    return ::operator new((c + 1) * kGranule);
}

void frame_free(void* p, std::size_t size) noexcept
{
    std::size_t c = class_of(size);
    if (c >= kClasses || pool.gone || pool.counts[c] >= kMaxCachedPerClass) {
        ::operator delete(p);
        return;
    }
    if (!reaper_armed()) {
        ::operator delete(p);
        return;
    }
    auto* b = static_cast<FreeBlock*>(p);
    b->next = pool.heads[c];
    pool.heads[c] = b;
    pool.counts[c]++;
}

} // namespace coblk
