#include "engine/frame_pool.h"

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
    bool reaper_armed = false;  // the Reaper below will free the lists
    bool gone = false;          // the thread is exiting: use the heap
};

constinit thread_local Pool pool;

// Frees the thread's cached frames at thread exit. Touched once per thread,
// on the first frame that is cached, which registers its destructor.
struct Reaper {
    bool armed = false;
    ~Reaper()
    {
        for (std::size_t c = 0; c < kClasses; c++) {
            while (pool.heads[c]) {
                FreeBlock* b = pool.heads[c];
                pool.heads[c] = b->next;
                ::operator delete(b);
            }
        }
        pool.gone = true;  // frames freed later in thread exit go to the heap
    }
};

thread_local Reaper reaper;

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
    if (!pool.reaper_armed) {
        pool.reaper_armed = true;
        reaper.armed = true;
    }
    auto* b = static_cast<FreeBlock*>(p);
    b->next = pool.heads[c];
    pool.heads[c] = b;
    pool.counts[c]++;
}

} // namespace coblk
