// The C API's thread-local error message: every failing entry point records
// why, and returns the negative errno.
#pragma once

#include <string>
#include <type_traits>

#include <fmt/format.h>

namespace coblk::capi {

// Stores `msg` (its first 511 bytes) as this thread's message. Never throws;
// when no memory can be had for the thread's first message, a fixed text
// saying so stands in for it.
void set_error(int code, const char* msg) noexcept;

// This thread's last message ("" when none).
const char* error_message() noexcept;

namespace detail {

// How fail() hands an argument to the formatter: numbers and pointers by
// value (in registers, so that a request path's checks never store their
// operands for a message they may not need), anything else by reference.
template <typename T>
using FailArg = std::conditional_t<std::is_scalar_v<std::remove_cvref_t<T>>,
                                   std::remove_cvref_t<T>, const std::remove_cvref_t<T>&>;

// Formats into a buffer on the stack and records the message; returns -code.
template <typename... Args>
[[gnu::cold, gnu::noinline]] int fail_format(int code, fmt::string_view f, Args... args) noexcept
{
    char buf[512];
    try {
        auto r = fmt::format_to_n(buf, sizeof buf - 1, fmt::runtime(f), args...);
        *(r.size < sizeof buf ? r.out : buf + sizeof buf - 1) = '\0';
        set_error(code, buf);
    } catch (...) {
        set_error(code, "coblk: error (its message could not be formatted)");
    }
    return -code;
}

} // namespace detail

// Records a formatted message and returns -code. Never throws, and formats
// into a buffer on the stack, so a message can be recorded when memory has
// run out. The format is checked at compile time here; the formatting is
// out of line and cold, so the request path's checks cost their tests alone.
template <typename... Args>
[[gnu::always_inline]] inline int fail(int code, fmt::format_string<Args...> f,
                                       Args&&... args) noexcept
{
    return detail::fail_format<detail::FailArg<Args>...>(code, fmt::string_view(f), args...);
}

} // namespace coblk::capi
