// Task<T>: a lazy coroutine. It starts when awaited: the awaiter resumes it
// at once, and when it finishes before its first real suspension (a null or
// memory request, a lock that was free) the awaiter simply carries on. When
// it finishes later, it resumes its awaiter. Frames come from the
// per-thread frame pool.
//
// The stack stays bounded at any optimisation level: nested resumptions
// are counted per thread, and past kMaxNestedResumes the coroutine goes to
// the current loop's ready queue instead of onto the stack. (Symmetric
// transfer alone keeps the stack flat only when the compiler makes it a
// tail call, which g++ does not do at -O0 or under AddressSanitizer; a
// request loop over a synchronous backend overflowed the stack there.)
#pragma once

#include <coroutine>
#include <exception>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "engine/frame_pool.h"

namespace coblk {

template <typename T = void>
class Task;

namespace detail {

constexpr unsigned kMaxNestedResumes = 64;
inline thread_local unsigned nested_resumes = 0;

// Queues `h` on the current thread's loop; false when no loop is running
// on this thread. Defined in loop.cpp.
bool post_to_current_loop(std::coroutine_handle<> h) noexcept;

// Resumes `h` on this stack, or, when kMaxNestedResumes resumptions are
// already nested on it, on a later turn of the current loop.
inline void resume_bounded(std::coroutine_handle<> h) noexcept
{
    if (nested_resumes >= kMaxNestedResumes && post_to_current_loop(h))
        return;
    nested_resumes++;
    h.resume();
    nested_resumes--;
}

struct PromiseBase {
    std::coroutine_handle<> continuation = std::noop_coroutine();
    std::exception_ptr exception;
    bool starting = false;        // the awaiter's await_suspend is running us
    bool finished_early = false;  // we finished while `starting`

    static void* operator new(std::size_t n) { return frame_alloc(n); }
    static void operator delete(void* p, std::size_t n) noexcept { frame_free(p, n); }

    std::suspend_always initial_suspend() noexcept { return {}; }

    struct FinalAwaiter {
        bool await_ready() noexcept { return false; }
        // Finished while the awaiter is still starting us: it carries on by
        // itself. Otherwise resume it; our frame may be gone afterwards.
        template <typename P>
        void await_suspend(std::coroutine_handle<P> h) noexcept
        {
            PromiseBase& p = h.promise();
            if (p.starting) {
                p.finished_early = true;
                return;
            }
            resume_bounded(p.continuation);
        }
        void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }

    void unhandled_exception() noexcept { exception = std::current_exception(); }
};

template <typename T>
struct Promise : PromiseBase {
    std::optional<T> value;

    Task<T> get_return_object() noexcept;
    template <typename U>
    void return_value(U&& v) { value.emplace(std::forward<U>(v)); }

    T take()
    {
        if (exception)
            std::rethrow_exception(exception);
        return std::move(*value);
    }
};

template <>
struct Promise<void> : PromiseBase {
    Task<void> get_return_object() noexcept;
    void return_void() noexcept {}
    void take()
    {
        if (exception)
            std::rethrow_exception(exception);
    }
};

} // namespace detail

template <typename T>
class [[nodiscard]] Task {
public:
    using promise_type = detail::Promise<T>;
    using handle_type = std::coroutine_handle<promise_type>;

    Task() = default;
    explicit Task(handle_type h) : h_(h) {}
    Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    Task& operator=(Task&& o) noexcept
    {
        if (this != &o) {
            if (h_)
                h_.destroy();
            h_ = std::exchange(o.h_, {});
        }
        return *this;
    }
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;
    ~Task()
    {
        if (h_)
            h_.destroy();
    }

    bool valid() const { return bool(h_); }

    struct Awaiter {
        handle_type h;
        bool await_ready() const noexcept { return false; }
        // Runs the task until it finishes or suspends; false (do not
        // suspend) when it already finished. Coroutines of a loop only run
        // on its thread, so nothing can resume `h` before resume() returns.
        // Deep in nested resumptions, the task starts on a later loop turn.
        bool await_suspend(std::coroutine_handle<> awaiting) noexcept
        {
            auto& p = h.promise();
            p.continuation = awaiting;
            if (detail::nested_resumes >= detail::kMaxNestedResumes &&
                detail::post_to_current_loop(h))
                return true;
            p.starting = true;
            detail::nested_resumes++;
            h.resume();
            detail::nested_resumes--;
            p.starting = false;
            return !p.finished_early;
        }
        T await_resume() { return h.promise().take(); }
    };

    // Awaiting starts the task; the task's frame lives until this Task dies.
    Awaiter operator co_await() && noexcept { return Awaiter{h_}; }
    Awaiter operator co_await() & noexcept { return Awaiter{h_}; }

private:
    handle_type h_;
};

namespace detail {
template <typename T>
inline Task<T> Promise<T>::get_return_object() noexcept
{
    return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}
inline Task<void> Promise<void>::get_return_object() noexcept
{
    return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}
} // namespace detail

} // namespace coblk
