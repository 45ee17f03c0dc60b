// Errors of control paths (parse, open, create): an errno and a message that
// names what is at fault. I/O paths do not use this; they return -errno.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace coblk {

struct Error {
    int code = EINVAL;      // positive errno value
    std::string message;    // names the URI, file or field at fault
};

// Builds an Error from an errno and a fmt-style message.
template <typename... Args>
Error make_error(int code, fmt::format_string<Args...> f, Args&&... args)
{
    return Error{code, fmt::format(f, std::forward<Args>(args)...)};
}

// A value or an Error, for setup paths.
template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}
    Result(Error e) : v_(std::move(e)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    const T& value() const& { return std::get<0>(v_); }
    T* operator->() { return &std::get<0>(v_); }
    T& operator*() & { return std::get<0>(v_); }

    const Error& error() const { return std::get<1>(v_); }

private:
    std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error e) : err_(std::move(e)), failed_(true) {}

    bool ok() const { return !failed_; }
    explicit operator bool() const { return ok(); }
    const Error& error() const { return err_; }

private:
    Error err_;
    bool failed_ = false;
};

} // namespace coblk
