// The alignment O_DIRECT needs on an open file descriptor.
#pragma once

#include <cstdint>

namespace coblk {

struct DioAlign {
    uint32_t offset = 0;  // file offsets and lengths; 0 when unknown
    uint32_t memory = 0;  // buffer addresses; 0 when unknown
};

// Asks the kernel (statx STATX_DIOALIGN, Linux 6.1+). Returns zeros when the
// kernel or file system does not say. Any thread.
DioAlign query_dio_align(int fd);

} // namespace coblk
