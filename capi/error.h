// The C API's thread-local error message: every failing entry point records
// why, and returns the negative errno.
#pragma once

#include <string>

#include <fmt/format.h>

namespace coblk::capi {

// Stores `msg` (its first 511 bytes) as this thread's message. Never throws;
// when no memory can be had for the thread's first message, a fixed text
// saying so stands in for it.
void set_error(int code, const char* msg) noexcept;

// This thread's last message ("" when none).
const char* error_message() noexcept;

// Records a formatted message and returns -code. Never throws, and formats
// into a buffer on the stack, so a message can be recorded when memory has
// run out. Kept out of line and cold: the request path's checks then cost
// their tests alone, not the stack and registers of an inlined formatter.
template <typename... Args>
[[gnu::cold, gnu::noinline]] int fail(int code, fmt::format_string<Args...> f, Args&&... args) noexcept
{
    char buf[512];
    try {
        auto r = fmt::format_to_n(buf, sizeof buf - 1, f, std::forward<Args>(args)...);
        *(r.size < sizeof buf ? r.out : buf + sizeof buf - 1) = '\0';
        set_error(code, buf);
    } catch (...) {
        set_error(code, "coblk: error (its message could not be formatted)");
    }
    return -code;
}

} // namespace coblk::capi
