// Blocking system calls (ioctls that may sleep, ftruncate, fallocate on some
// file systems), and the file I/O of a loop without io_uring, run on a
// process-wide pool of worker threads; the awaiting coroutine is resumed on
// its own loop through the inbox, like a completion from libgfapi or librados.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>

#include "engine/loop.h"
#include "engine/task.h"

namespace coblk {

// Queues `job` on the worker pool; never blocks. Throws when the job cannot
// be queued (no memory, or no thread could be started at all). Any thread.
void submit_blocking(std::function<void()> job);

// Runs `fn()` (returning >= 0 or -errno) on a worker thread and returns its
// result. Loop thread only; `fn` must not touch loop-owned state. `fn` is a
// template parameter so that callers pass a plain lambda: a std::function
// built as a temporary inside a co_await expression is one of the patterns
// g++ 12 miscompiles (see docs/architecture.md, "g++ 12 and temporaries").
template <typename Fn>
Task<int64_t> run_blocking(Loop& loop, Fn fn)
{
    co_return co_await await_foreign(loop, [&fn](ForeignCompletion* c) {
        submit_blocking([c, &fn] { c->complete(int64_t(fn())); });
    });
}

} // namespace coblk
