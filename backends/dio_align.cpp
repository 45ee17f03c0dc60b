// Kept apart from the other backends: <linux/stat.h>'s struct statx (which
// has the DIOALIGN fields) cannot share a translation unit with glibc's.
#include "backends/dio_align.h"

#include <linux/fcntl.h>
#include <linux/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace coblk {

DioAlign query_dio_align(int fd)
{
    struct statx stx {};
    if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0 ||
        !(stx.stx_mask & STATX_DIOALIGN))
        return {};
    return {stx.stx_dio_offset_align, stx.stx_dio_mem_align};
}

} // namespace coblk
