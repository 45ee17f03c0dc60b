#include "backends/file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "backends/dio_align.h"
#include "engine/blocking.h"

namespace coblk {

Result<CacheMode> parse_cache_mode(std::string_view text)
{
    if (text == "writeback" || text == "writethrough" || text == "unsafe")
        return CacheMode::Writeback;
    if (text == "none" || text == "directsync")
        return CacheMode::None;
    return make_error(EINVAL, "invalid cache mode '{}'; expected none or writeback", text);
}

Result<int> open_backing_fd(const std::string& path, const FileOpenOptions& o, const char* what)
{
    int flags = (o.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    if (o.cache == CacheMode::None)
        flags |= O_DIRECT;
    int fd = ::open(path.c_str(), flags);
    if (fd < 0 && errno == EINVAL && (flags & O_DIRECT))
        return make_error(EINVAL, "cannot open {} '{}' with cache=none: the file system "
                          "refuses O_DIRECT (use cache=writeback)", what, path);
    if (fd < 0)
        return make_error(errno, "cannot open {} '{}': {}", what, path, std::strerror(errno));
    if (o.locking) {
        struct flock fl {};
        fl.l_type = o.read_only ? F_RDLCK : F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
            int e = errno;
            ::close(fd);
            if (e == EAGAIN || e == EACCES)
                return make_error(EBUSY, "{} '{}' is locked by another user (open for {} "
                                  "elsewhere?); use locking=off to override", what, path,
                                  o.read_only ? "writing" : "reading or writing");
            return make_error(e, "cannot lock {} '{}': {}", what, path, std::strerror(e));
        }
    }
    return fd;
}

Result<std::unique_ptr<FileLayer>> FileLayer::open(Loop& loop, const std::string& path,
                                                   const FileOpenOptions& o)
{
    auto fd = open_backing_fd(path, o, "file");
    if (!fd)
        return fd.error();
    struct stat st {};
    if (fstat(*fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        bool blk = S_ISBLK(st.st_mode);
        ::close(*fd);
        if (blk)
            return make_error(EINVAL, "'{}' is a block device: open it as host_device:{}", path,
                              path);
        return make_error(e ? e : EINVAL, "'{}' is not a regular file", path);
    }
    uint32_t align = 1, mem = 1;
    if (o.cache == CacheMode::None) {
        // Without the kernel's word, 4096 is safe on every device we meet.
        DioAlign d = query_dio_align(*fd);
        align = d.offset ? d.offset : 4096;
        mem = d.memory ? d.memory : align;
    }
    std::unique_ptr<FileLayer> f(
        new FileLayer(loop, *fd, path, o.cache == CacheMode::None, align, mem));
    f->size_ = uint64_t(st.st_size);
    f->read_only_ = o.read_only;
    f->growable_ = true;
    f->limits_.discard = true;
    f->limits_.write_zeroes = true;
    return f;
}

int64_t FileLayer::allocated_bytes() const
{
    struct stat st {};
    if (fstat(fd_, &st) < 0)
        return -errno;
    return int64_t(st.st_blocks) * 512;
}

Task<int> FileLayer::do_discard(uint64_t off, uint64_t len)
{
    if (!punch_ok_ || len == 0)
        co_return 0;
    int r = co_await loop_.fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
    if (r == -EOPNOTSUPP || r == -ENOSYS) {
        punch_ok_ = false;  // discard is advisory: nothing to do
        r = 0;
    }
    co_return r;
}

// Zeroes by punching a hole (the default) or by FALLOC_FL_ZERO_RANGE
// (kReqNoUnmap), falling back to ZERO_RANGE and then to writing zero buffers
// where the file system refuses. A range past EOF first extends the file;
// with kReqNoUnmap the new tail is allocated too (a hole would need space
// later, when the file system may be full). Returns 0 or -errno.
Task<int> FileLayer::do_write_zeroes(uint64_t off, uint64_t len, unsigned flags)
{
    if (len == 0)
        co_return 0;
    std::optional<RangeLock::Guard> guard;
    if (direct_)
        guard.emplace(co_await write_lock_.lock(off, len));
    uint64_t end = off + len;
    if (end > size_) {
        int r = co_await run_blocking(loop_, [fd = fd_, end]() -> int64_t {
            return ftruncate(fd, off_t(end)) < 0 ? -errno : 0;
        });
        if (r < 0)
            co_return r;
        if (!(flags & kReqNoUnmap)) {
            if (off >= size_)
                co_return 0;  // the new tail of the file is a hole
            end = size_;
        }
    }
    if (!(flags & kReqNoUnmap) && punch_ok_) {
        int r = co_await loop_.fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                                         end - off);
        if (r != -EOPNOTSUPP && r != -ENOSYS)
            co_return r;
        punch_ok_ = false;
    }
    if (zero_range_ok_) {
        int r = co_await loop_.fallocate(fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off,
                                         end - off);
        if (r != -EOPNOTSUPP && r != -ENOSYS)
            co_return r;
        zero_range_ok_ = false;
    }
    guard.reset();  // the write path takes the lock itself
    co_return co_await write_zero_buffers(off, end - off);
}

Task<int> FileLayer::do_truncate(uint64_t size)
{
    int r = int(co_await run_blocking(loop_, [fd = fd_, size]() -> int64_t {
        return ftruncate(fd, off_t(size)) < 0 ? -errno : 0;
    }));
    if (r == 0)
        size_ = size;
    co_return r;
}

// Finds the data or hole extent at `off` with SEEK_DATA/SEEK_HOLE; a file
// system without them reports everything as data.
Task<int> FileLayer::do_block_status(uint64_t off, uint64_t len, Extent* out)
{
    out->len = len;
    out->data = false;
    out->zero = true;
    if (off >= size_)
        co_return 0;
    uint64_t limit = std::min(len, size_ - off);
    off_t data = lseek(fd_, off_t(off), SEEK_DATA);
    if (data < 0 && errno == ENXIO) {  // a hole up to EOF
        out->len = limit;
        co_return 0;
    }
    if (data < 0) {
        out->len = limit;
        out->data = true;
        out->zero = false;
        co_return 0;
    }
    if (uint64_t(data) > off) {
        out->len = std::min<uint64_t>(uint64_t(data) - off, limit);
        co_return 0;
    }
    off_t hole = lseek(fd_, off_t(off), SEEK_HOLE);
    uint64_t data_end = hole < 0 ? size_ : uint64_t(hole);
    out->len = std::min<uint64_t>(data_end - off, limit);
    out->data = true;
    out->zero = false;
    co_return 0;
}

} // namespace coblk
