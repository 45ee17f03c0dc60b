#include "capi/error.h"

#include <cstring>

namespace coblk::capi {
namespace {
// A fixed buffer: recording a message never allocates, so it cannot fail.
thread_local char message[1024];
}

void set_error(int, const char* msg) noexcept
{
    std::strncpy(message, msg, sizeof message - 1);
    message[sizeof message - 1] = '\0';
}

const char* error_message() noexcept { return message; }

} // namespace coblk::capi
