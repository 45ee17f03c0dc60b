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

struct Pool {
    FreeBlock* heads[kClasses] = {};
    std::size_t counts[kClasses] = {};
    ~Pool();
};

// Set once the thread's pool is gone, so that frames freed during thread exit
// (after the pool's destructor ran) go straight back to the heap.
thread_local bool pool_gone = false;
thread_local Pool pool;

Pool::~Pool()
{
    for (std::size_t c = 0; c < kClasses; c++) {
        while (heads[c]) {
            FreeBlock* b = heads[c];
            heads[c] = b->next;
            ::operator delete(b);
        }
    }
    pool_gone = true;
}

std::size_t class_of(std::size_t size) { return (size + kGranule - 1) / kGranule - 1; }

} // namespace

void* frame_alloc(std::size_t size)
{
    std::size_t c = class_of(size);
    if (c >= kClasses || pool_gone)
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
    if (c >= kClasses || pool_gone || pool.counts[c] >= kMaxCachedPerClass) {
        ::operator delete(p);
        return;
    }
    auto* b = static_cast<FreeBlock*>(p);
    b->next = pool.heads[c];
    pool.heads[c] = b;
    pool.counts[c]++;
}

} // namespace coblk
