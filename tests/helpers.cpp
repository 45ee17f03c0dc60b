#include "tests/helpers.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace coblk::test {

std::unique_ptr<Loop> make_loop(unsigned entries)
{
    auto r = Loop::create(entries);
    if (!r.ok())
        FAIL("Loop::create(" << entries << "): " << r.error().message);
    return std::move(r).value();
}

ScratchDir::ScratchDir()
{
    char tmpl[] = "/var/tmp/coblk-test.XXXXXX";
    if (!::mkdtemp(tmpl))
        FAIL("mkdtemp(/var/tmp/coblk-test.XXXXXX): " << std::strerror(errno));
    path_ = tmpl;
}

ScratchDir::~ScratchDir()
{
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

std::string ScratchDir::file(std::string_view name) const
{
    return path_ + "/" + std::string(name);
}

void fill_pattern(void* buf, size_t len, uint32_t seed, uint64_t off)
{
    auto* p = static_cast<unsigned char*>(buf);
    for (size_t i = 0; i < len; i++)
        p[i] = pattern_byte(seed, off + i);
}

std::vector<unsigned char> pattern(size_t len, uint32_t seed, uint64_t off)
{
    std::vector<unsigned char> v(len);
    fill_pattern(v.data(), len, seed, off);
    return v;
}

long first_difference(const void* a, const void* b, size_t len)
{
    auto* x = static_cast<const unsigned char*>(a);
    auto* y = static_cast<const unsigned char*>(b);
    if (std::memcmp(x, y, len) == 0)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (x[i] != y[i])
            return long(i);
    return -1;
}

bool all_bytes(const void* buf, size_t len, unsigned char c)
{
    auto* p = static_cast<const unsigned char*>(buf);
    for (size_t i = 0; i < len; i++)
        if (p[i] != c)
            return false;
    return true;
}

void write_file(const std::string& path, const void* data, size_t len, off_t off,
                bool truncate_first)
{
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (truncate_first ? O_TRUNC : 0),
                    0644);
    if (fd < 0)
        FAIL("open(" << path << ") for writing: " << std::strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t n = ::pwrite(fd, static_cast<const char*>(data) + done, len - done, off + done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            ::close(fd);
            FAIL("pwrite(" << path << "): " << std::strerror(e));
        }
        done += size_t(n);
    }
    ::close(fd);
}

std::vector<unsigned char> read_file(const std::string& path, off_t off, size_t len)
{
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        FAIL("open(" << path << ") for reading: " << std::strerror(errno));
    std::vector<unsigned char> v(len, 0);
    size_t done = 0;
    while (done < len) {
        ssize_t n = ::pread(fd, v.data() + done, len - done, off + done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            ::close(fd);
            FAIL("pread(" << path << "): " << std::strerror(e));
        }
        if (n == 0)
            break;  // EOF: the rest stays zero
        done += size_t(n);
    }
    ::close(fd);
    return v;
}

off_t file_size(const std::string& path)
{
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
        FAIL("stat(" << path << "): " << std::strerror(errno));
    return st.st_size;
}

std::vector<unsigned char> read_whole_file(const std::string& path)
{
    return read_file(path, 0, size_t(file_size(path)));
}

int64_t file_allocated(const std::string& path)
{
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
        FAIL("stat(" << path << "): " << std::strerror(errno));
    return int64_t(st.st_blocks) * 512;
}

void make_sparse_file(const std::string& path, off_t size)
{
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        FAIL("open(" << path << "): " << std::strerror(errno));
    if (::ftruncate(fd, size) != 0) {
        int e = errno;
        ::close(fd);
        FAIL("ftruncate(" << path << "): " << std::strerror(e));
    }
    ::close(fd);
}

AlignedPtr aligned_alloc_bytes(size_t align, size_t len)
{
    void* p = nullptr;
    if (::posix_memalign(&p, align, len ? len : 1) != 0)
        FAIL("posix_memalign(" << align << ", " << len << ") failed");
    return AlignedPtr(static_cast<unsigned char*>(p));
}

ShellResult shell(const std::string& cmd)
{
    ShellResult r;
    FILE* f = ::popen(cmd.c_str(), "r");
    if (!f)
        return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
        r.out.append(buf, n);
    int st = ::pclose(f);
    r.status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    while (!r.out.empty() && std::isspace(static_cast<unsigned char>(r.out.back())))
        r.out.pop_back();
    return r;
}

void close_layer(Loop& loop, Layer& layer)
{
    sync_wait(loop, layer.close());
}

int sync_pread(Loop& loop, Layer& layer, uint64_t off, void* buf, size_t len)
{
    return sync_wait(loop, layer.pread(off, buf, len));
}

int sync_pwrite(Loop& loop, Layer& layer, uint64_t off, const void* buf, size_t len,
                unsigned flags)
{
    return sync_wait(loop, layer.pwrite(off, buf, len, flags));
}

std::vector<unsigned char> layer_read(Loop& loop, Layer& layer, uint64_t off, size_t len)
{
    std::vector<unsigned char> v(len, 0xEE);
    int r = sync_pread(loop, layer, off, v.data(), len);
    INFO("read of " << len << " bytes at " << off << " through " << layer.kind());
    REQUIRE(r == 0);
    return v;
}

} // namespace coblk::test
