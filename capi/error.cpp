#include "capi/error.h"

namespace coblk::capi {
namespace {
// On the heap, not in the TLS block: libcoblk's TLS is kept small (see
// meson.build, initial-exec).
thread_local std::string message;
}

void set_error(int, const char* msg) noexcept
{
    try {
        message = msg;
    } catch (...) {
        message.clear();  // no memory for it: an empty message, never a throw
    }
}

const char* error_message() noexcept { return message.c_str(); }

} // namespace coblk::capi
