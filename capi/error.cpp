#include "capi/error.h"

#include <pthread.h>

#include <cstdlib>
#include <cstring>

namespace coblk::capi {
namespace {

constexpr std::size_t kMessageMax = 512;

// Each thread's message lives in a heap buffer of kMessageMax bytes held by
// a pthread key, which frees it at thread exit. Not a thread_local
// std::string: libcoblk's TLS is kept small (see meson.build, initial-exec),
// and glibc allocates to register a thread_local's destructor on first
// touch and aborts the process when it cannot (a fresh thread whose first
// error is running out of memory). Setting a key's value allocates nothing.
struct MessageKey {
    pthread_key_t key{};
    bool ok = pthread_key_create(&key, std::free) == 0;
};

MessageKey& message_key()
{
    static MessageKey k;
    return k;
}

// When no buffer can be had: a fixed text, kept per thread.
constinit thread_local const char* fallback = nullptr;

} // namespace

void set_error(int, const char* msg) noexcept
{
    MessageKey& k = message_key();
    char* buf = k.ok ? static_cast<char*>(pthread_getspecific(k.key)) : nullptr;
    if (!buf && k.ok) {
        buf = static_cast<char*>(std::malloc(kMessageMax));
        if (buf && pthread_setspecific(k.key, buf) != 0) {
            std::free(buf);
            buf = nullptr;
        }
    }
    if (!buf) {
        fallback = "coblk: an error occurred, and there was no memory to record its message";
        return;
    }
    fallback = nullptr;
    std::strncpy(buf, msg, kMessageMax - 1);
    buf[kMessageMax - 1] = '\0';
}

const char* error_message() noexcept
{
    if (fallback)
        return fallback;
    MessageKey& k = message_key();
    const char* buf = k.ok ? static_cast<const char*>(pthread_getspecific(k.key)) : nullptr;
    return buf ? buf : "";
}

} // namespace coblk::capi
