// The harness's clock: CLOCK_MONOTONIC in nanoseconds, read through the
// vDSO (no system call). Two reads per request: before submission and after
// completion.
#pragma once

#include <time.h>

#include <cstdint>

namespace coblk::bench {

// Nanoseconds on CLOCK_MONOTONIC. Any thread.
inline uint64_t now_ns() noexcept
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

} // namespace coblk::bench
