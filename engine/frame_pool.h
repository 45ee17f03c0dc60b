// Per-thread recycling of coroutine frames: a frame freed on a thread is kept
// in that thread's free list for its size class and handed out again, so the
// steady state of a request path allocates nothing.
#pragma once

#include <cstddef>

namespace coblk {

// Returns memory for a coroutine frame of `size` bytes; throws std::bad_alloc
// like operator new when memory is exhausted. Any thread.
void* frame_alloc(std::size_t size);

// Gives back a frame from frame_alloc(size). Any thread (it joins the calling
// thread's free list).
void frame_free(void* p, std::size_t size) noexcept;

} // namespace coblk
