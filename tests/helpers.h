// Shared helpers of the Catch2 suite: a loop per test, scratch directories
// on a real file system, deterministic patterns, plain-syscall file access
// (to check what a layer did without trusting the layer), and a few
// coroutine utilities.
#pragma once

#include <catch2/catch.hpp>

#include <sys/types.h>
#include <unistd.h>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/layer.h"
#include "engine/loop.h"
#include "engine/result.h"
#include "engine/task.h"

namespace coblk::test {

// A new loop (io_uring, or worker threads without it); fails the test when
// Loop::create fails.
std::unique_ptr<Loop> make_loop(unsigned entries = 256);

// Unwraps a Result, failing the test with its message when it is an error.
template <typename T>
T must(Result<T> r, std::string_view what = "")
{
    if (!r.ok())
        FAIL("unexpected error" << (what.empty() ? "" : " from ") << what << ": errno "
                                << r.error().code << ": " << r.error().message);
    return std::move(r).value();
}

inline void must(Result<void> r, std::string_view what = "")
{
    if (!r.ok())
        FAIL("unexpected error" << (what.empty() ? "" : " from ") << what << ": errno "
                                << r.error().code << ": " << r.error().message);
}

// A directory made with mkdtemp under /var/tmp (a disk file system, unlike
// /tmp on some hosts, so O_DIRECT and holes behave as on real storage),
// removed with everything in it at scope exit.
class ScratchDir {
public:
    ScratchDir();
    ~ScratchDir();
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;

    const std::string& path() const { return path_; }
    // path()/name
    std::string file(std::string_view name) const;

private:
    std::string path_;
};

// The byte of pattern `seed` at absolute offset `off`: differs between
// neighbouring offsets, between seeds, and is rarely zero.
inline unsigned char pattern_byte(uint32_t seed, uint64_t off)
{
    uint64_t x = (off + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t(seed) + 1) * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    unsigned char b = static_cast<unsigned char>(x);
    return b ? b : 0x5A;
}

// Fills `len` bytes with pattern `seed` as it is at offsets [off, off+len).
void fill_pattern(void* buf, size_t len, uint32_t seed, uint64_t off = 0);
std::vector<unsigned char> pattern(size_t len, uint32_t seed, uint64_t off = 0);

// Index of the first byte where a and b differ, or -1 when equal (and of
// equal length). For readable failure messages on large buffers.
long first_difference(const void* a, const void* b, size_t len);
bool all_bytes(const void* buf, size_t len, unsigned char c);

// Checks `len` bytes at `got` equal `want`; on failure names the first
// differing offset (plus `base` to show a file offset).
#define CHECK_BYTES(got, want, len, base)                                                     \
    do {                                                                                      \
        long d_ = ::coblk::test::first_difference((got), (want), (len));                      \
        INFO("first difference at offset " << (d_ < 0 ? -1 : long(base) + d_));              \
        CHECK(d_ == -1);                                                                      \
    } while (0)

#define CHECK_ZEROS(got, len, base)                                                           \
    do {                                                                                      \
        std::vector<unsigned char> z_((len), 0);                                              \
        CHECK_BYTES((got), z_.data(), (len), (base));                                         \
    } while (0)

// Plain-syscall file access. Each fails the test on error.
void write_file(const std::string& path, const void* data, size_t len, off_t off = 0,
                bool truncate_first = false);
std::vector<unsigned char> read_file(const std::string& path, off_t off, size_t len);
std::vector<unsigned char> read_whole_file(const std::string& path);
off_t file_size(const std::string& path);
// Bytes allocated to the file (st_blocks * 512).
int64_t file_allocated(const std::string& path);
// Makes a sparse file of `size` bytes.
void make_sparse_file(const std::string& path, off_t size);

// A buffer from posix_memalign, released with free.
struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};
using AlignedPtr = std::unique_ptr<unsigned char, FreeDeleter>;
AlignedPtr aligned_alloc_bytes(size_t align, size_t len);

// Runs a shell command; returns its exit status (-1 when it could not run)
// and its standard output, trimmed of trailing white space.
struct ShellResult {
    int status = -1;
    std::string out;
};
ShellResult shell(const std::string& cmd);

// Resumes the awaiting coroutine on the loop's next turn (a suspension that
// involves no timer and no I/O).
struct Yield {
    Loop& loop;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) { loop.post(h); }
    void await_resume() const noexcept {}
};
inline Yield yield(Loop& loop) { return Yield{loop}; }

// Awaits `layer.close()` from plain code.
void close_layer(Loop& loop, Layer& layer);

// I/O helpers from plain code: each runs one request to completion.
int sync_pread(Loop& loop, Layer& layer, uint64_t off, void* buf, size_t len);
int sync_pwrite(Loop& loop, Layer& layer, uint64_t off, const void* buf, size_t len,
                unsigned flags = 0);

// Reads `len` bytes at `off` through the layer; fails the test on error.
std::vector<unsigned char> layer_read(Loop& loop, Layer& layer, uint64_t off, size_t len);

} // namespace coblk::test
