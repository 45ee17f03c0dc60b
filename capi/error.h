// The C API's thread-local error message: every failing entry point records
// why, and returns the negative errno.
#pragma once

#include <string>

#include <fmt/format.h>

namespace coblk::capi {

// Stores `msg` as this thread's message. Never throws.
void set_error(int code, const char* msg) noexcept;

// This thread's last message ("" when none).
const char* error_message() noexcept;

// Records a formatted message and returns -code. Never throws: when the
// message cannot be formatted it records a generic one. Kept out of line
// and cold: the request path's checks then cost their tests alone, not the
// stack and registers of an inlined formatter.
template <typename... Args>
[[gnu::cold, gnu::noinline]] int fail(int code, fmt::format_string<Args...> f, Args&&... args) noexcept
{
    try {
        std::string m = fmt::format(f, std::forward<Args>(args)...);
        set_error(code, m.c_str());
    } catch (...) {
        set_error(code, "coblk: error (no memory for its message)");
    }
    return -code;
}

} // namespace coblk::capi
