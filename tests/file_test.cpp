// Tests of the `file` backend in both cache modes. What the layer did is
// checked with plain pread(2)/fstat(2)/lseek(2) on the file, never with the
// layer alone.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backends/file.h"
#include "engine/loop.h"
#include "engine/sync.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::test;
using Catch::Matchers::Contains;

namespace {

const char* mode_name(CacheMode m) { return m == CacheMode::None ? "cache=none" : "cache=writeback"; }

std::unique_ptr<FileLayer> open_file(Loop& L, const std::string& path, CacheMode mode,
                                     bool read_only = false)
{
    FileOpenOptions o;
    o.cache = mode;
    o.read_only = read_only;
    return must(FileLayer::open(L, path, o), "FileLayer::open(" + path + ")");
}

// A file of `len` bytes of pattern `seed`, written with plain pwrite(2).
std::string make_pattern_file(const ScratchDir& dir, const char* name, size_t len, uint32_t seed)
{
    std::string path = dir.file(name);
    auto data = pattern(len, seed);
    write_file(path, data.data(), data.size(), 0, true);
    return path;
}

// Status of `off` in `fd` as lseek(2) reports it: is it data, and where
// does that status end.
struct SeekStatus {
    bool data;
    off_t end;
};
SeekStatus seek_status(int fd, off_t off, off_t size)
{
    off_t d = ::lseek(fd, off, SEEK_DATA);
    if (d == off) {
        off_t h = ::lseek(fd, off, SEEK_HOLE);
        return {true, h < 0 ? size : h};
    }
    return {false, d < 0 ? size : d};
}

void fsync_path(const std::string& path)
{
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    ::fsync(fd);
    ::close(fd);
}

} // namespace

TEST_CASE("file: pwrite and pread round trip, visible to plain pread", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", 256 * 1024, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);
    CHECK(f->size() == 256 * 1024);
    CHECK(std::string(f->kind()) == "file");
    CHECK(f->direct() == (mode == CacheMode::None));

    auto buf = aligned_alloc_bytes(4096, 64 * 1024);
    fill_pattern(buf.get(), 64 * 1024, 2, 0);
    REQUIRE(sync_pwrite(L, *f, 128 * 1024, buf.get(), 64 * 1024) == 0);
    // FUA writes complete durably; for the test they must at least land.
    fill_pattern(buf.get(), 4096, 3, 0);
    REQUIRE(sync_pwrite(L, *f, 0, buf.get(), 4096, kReqFua) == 0);

    auto want = pattern(256 * 1024, 1);
    auto p2 = pattern(64 * 1024, 2);
    std::copy(p2.begin(), p2.end(), want.begin() + 128 * 1024);
    auto p3 = pattern(4096, 3);
    std::copy(p3.begin(), p3.end(), want.begin());

    auto back = layer_read(L, *f, 0, want.size());
    CHECK_BYTES(back.data(), want.data(), want.size(), 0);
    close_layer(L, *f);
    auto disk = read_whole_file(path);
    REQUIRE(disk.size() == want.size());
    CHECK_BYTES(disk.data(), want.data(), want.size(), 0);
}

TEST_CASE("file: pwritev and preadv with multi-element iovecs", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", 128 * 1024, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);
    auto want = pattern(128 * 1024, 1);

    SECTION("aligned elements")
    {
        auto a = aligned_alloc_bytes(4096, 4096), b = aligned_alloc_bytes(4096, 8192),
             c = aligned_alloc_bytes(4096, 4096);
        fill_pattern(a.get(), 4096, 5, 0);
        fill_pattern(b.get(), 8192, 5, 4096);
        fill_pattern(c.get(), 4096, 5, 12288);
        iovec w[3] = {{a.get(), 4096}, {b.get(), 8192}, {c.get(), 4096}};
        REQUIRE(sync_wait(L, f->pwritev(32768, w, 3)) == 0);
        auto p = pattern(16384, 5);
        std::copy(p.begin(), p.end(), want.begin() + 32768);
    }
    SECTION("unaligned element lengths and addresses")
    {
        std::vector<unsigned char> a(101), b(3001), c(2);
        fill_pattern(a.data() + 1, 100, 6, 0);
        fill_pattern(b.data() + 1, 3000, 6, 100);
        fill_pattern(c.data() + 1, 1, 6, 3100);
        iovec w[3] = {{a.data() + 1, 100}, {b.data() + 1, 3000}, {c.data() + 1, 1}};
        REQUIRE(sync_wait(L, f->pwritev(40000 + 7, w, 3)) == 0);
        auto p = pattern(3101, 6);
        std::copy(p.begin(), p.end(), want.begin() + 40007);
    }

    // Read the whole file back through four unequal, oddly placed elements.
    std::vector<unsigned char> r1(1000 + 1), r2(50000 + 1), r3(1 + 1), r4(128 * 1024 - 51001 + 1);
    iovec r[4] = {{r1.data() + 1, 1000}, {r2.data() + 1, 50000}, {r3.data() + 1, 1},
                  {r4.data() + 1, r4.size() - 1}};
    REQUIRE(sync_wait(L, f->preadv(0, r, 4)) == 0);
    CHECK_BYTES(r1.data() + 1, want.data(), 1000, 0);
    CHECK_BYTES(r2.data() + 1, want.data() + 1000, 50000, 1000);
    CHECK_BYTES(r3.data() + 1, want.data() + 51000, 1, 51000);
    CHECK_BYTES(r4.data() + 1, want.data() + 51001, r4.size() - 1, 51001);

    close_layer(L, *f);
    auto disk = read_whole_file(path);
    REQUIRE(disk.size() == want.size());
    CHECK_BYTES(disk.data(), want.data(), want.size(), 0);
}

TEST_CASE("file: more iovec elements than IOV_MAX", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    constexpr int kElems = 2000;
    constexpr size_t kElem = 512;
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", kElems * kElem, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);

    auto wbuf = aligned_alloc_bytes(4096, kElems * kElem);
    fill_pattern(wbuf.get(), kElems * kElem, 9, 0);
    std::vector<iovec> iov(kElems);
    for (int i = 0; i < kElems; i++)
        iov[size_t(i)] = {wbuf.get() + size_t(i) * kElem, kElem};
    REQUIRE(sync_wait(L, f->pwritev(0, iov.data(), kElems)) == 0);

    auto rbuf = aligned_alloc_bytes(4096, kElems * kElem);
    std::memset(rbuf.get(), 0xEE, kElems * kElem);
    for (int i = 0; i < kElems; i++)
        iov[size_t(i)] = {rbuf.get() + size_t(i) * kElem, kElem};
    REQUIRE(sync_wait(L, f->preadv(0, iov.data(), kElems)) == 0);
    CHECK_BYTES(rbuf.get(), wbuf.get(), kElems * kElem, 0);

    close_layer(L, *f);
    auto disk = read_whole_file(path);
    REQUIRE(disk.size() == kElems * kElem);
    CHECK_BYTES(disk.data(), wbuf.get(), kElems * kElem, 0);
}

TEST_CASE("file: reads past EOF give zeros, short reads are completed", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    auto loop = make_loop();
    Loop& L = *loop;

    SECTION("wholly past EOF")
    {
        std::string path = make_pattern_file(dir, "img", 8192, 1);
        auto f = open_file(L, path, mode);
        auto buf = aligned_alloc_bytes(4096, 16384);
        std::memset(buf.get(), 0xAA, 16384);
        REQUIRE(sync_pread(L, *f, 8192, buf.get(), 16384) == 0);
        CHECK_ZEROS(buf.get(), 16384, 8192);
        std::memset(buf.get(), 0xAA, 16384);
        REQUIRE(sync_pread(L, *f, 1 << 20, buf.get(), 4096) == 0);
        CHECK_ZEROS(buf.get(), 4096, 1 << 20);
        close_layer(L, *f);
        CHECK(file_size(path) == 8192);  // reading does not grow the file
    }
    SECTION("a file shorter than the request, at an unaligned size")
    {
        std::string path = make_pattern_file(dir, "img", 6000, 1);
        auto f = open_file(L, path, mode);
        auto buf = aligned_alloc_bytes(4096, 16384);
        std::memset(buf.get(), 0xAA, 16384);
        REQUIRE(sync_pread(L, *f, 0, buf.get(), 16384) == 0);
        auto want = pattern(6000, 1);
        CHECK_BYTES(buf.get(), want.data(), 6000, 0);
        CHECK_ZEROS(buf.get() + 6000, 16384 - 6000, 6000);
        // Starting inside the file, unaligned, crossing EOF.
        std::memset(buf.get(), 0xAA, 16384);
        REQUIRE(sync_pread(L, *f, 5001, buf.get() + 1, 3000) == 0);
        CHECK_BYTES(buf.get() + 1, want.data() + 5001, 999, 5001);
        CHECK_ZEROS(buf.get() + 1 + 999, 3000 - 999, 6000);
        CHECK(buf.get()[0] == 0xAA);       // nothing written outside the buffer
        CHECK(buf.get()[3001] == 0xAA);
        close_layer(L, *f);
    }
}

TEST_CASE("file: unaligned requests at odd addresses match a reference", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    constexpr size_t kSize = 64 * 1024;
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", kSize, 1);
    auto ref = pattern(kSize, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);

    auto write_at = [&](uint64_t off, size_t len, uint32_t seed) {
        std::vector<unsigned char> src(len + 1);
        fill_pattern(src.data() + 1, len, seed, off);
        INFO("write " << len << " bytes at " << off);
        REQUIRE(sync_pwrite(L, *f, off, src.data() + 1, len) == 0);
        if (ref.size() < off + len)
            ref.resize(off + len, 0);
        std::copy(src.begin() + 1, src.end(), ref.begin() + long(off));
    };
    auto check_read = [&](uint64_t off, size_t len) {
        std::vector<unsigned char> dst(len + 2, 0xCD);
        INFO("read " << len << " bytes at " << off);
        REQUIRE(sync_pread(L, *f, off, dst.data() + 1, len) == 0);
        std::vector<unsigned char> want(len, 0);
        for (size_t i = 0; i < len; i++)
            want[i] = off + i < ref.size() ? ref[off + i] : 0;
        CHECK_BYTES(dst.data() + 1, want.data(), len, off);
        CHECK(dst[0] == 0xCD);
        CHECK(dst[len + 1] == 0xCD);
    };

    // The cases named in the contract, then a seeded random mix.
    write_at(1, 3, 100);
    check_read(0, 8);
    check_read(1, 3);
    write_at(4095, 2, 101);  // straddles a block boundary
    check_read(4094, 4);
    write_at(4000, 5000, 102);
    check_read(3999, 5002);
    write_at(8191, 1, 103);
    write_at(0, 1, 104);
    check_read(0, 1);

    std::mt19937 rng(4242);
    for (int i = 0; i < 200; i++) {
        uint64_t off = rng() % (kSize + 4096);  // some beyond the original EOF
        size_t len = 1 + rng() % 9000;
        if (rng() % 2)
            write_at(off, len, uint32_t(1000 + i));
        else
            check_read(off, len);
    }
    check_read(0, ref.size() + 4096);
    // The size is the end of the furthest write, even when O_DIRECT had to
    // write whole blocks past it.
    CHECK(f->size() == ref.size());
    close_layer(L, *f);

    auto disk = read_whole_file(path);
    CHECK(disk.size() == ref.size());
    REQUIRE(disk.size() >= ref.size());
    CHECK_BYTES(disk.data(), ref.data(), ref.size(), 0);
}

TEST_CASE("file: concurrent writes to distinct bytes of one block all survive", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    constexpr size_t kSize = 3 * 4096;
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", kSize, 1);
    auto want = pattern(kSize, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);

    struct W {
        uint64_t off;
        std::vector<unsigned char> data;
        int res = -12345;
    };
    std::vector<W> writes;
    for (int i = 0; i < 128; i++)  // one byte each, 61 apart: offsets 0..7747
        writes.push_back({uint64_t(i) * 61, {static_cast<unsigned char>(i + 1)}});
    writes.push_back({4095, {0xF1, 0xF2}});          // across the block boundary
    writes.push_back({8200, std::vector<unsigned char>(3000, 0xF3)});  // block 2 and 3
    writes.push_back({8195, {0xF4, 0xF5, 0xF6, 0xF7, 0xF8}});           // just before it
    for (auto& w : writes)
        std::copy(w.data.begin(), w.data.end(), want.begin() + long(w.off));

    sync_wait(L, [](FileLayer& fl, std::vector<W>& ws) -> Task<void> {
        TaskGroup tg;
        for (auto& w : ws)
            tg.spawn([](FileLayer& l, W& wr) -> Task<void> {
                wr.res = co_await l.pwrite(wr.off, wr.data.data(), wr.data.size());
            }(fl, w));
        co_await tg.join();
    }(*f, writes));
    int failed = 0;
    for (auto& w : writes)
        failed += w.res != 0;
    CHECK(failed == 0);
    close_layer(L, *f);
    auto disk = read_whole_file(path);
    REQUIRE(disk.size() == kSize);
    CHECK_BYTES(disk.data(), want.data(), kSize, 0);
}

TEST_CASE("file: concurrent overlapping unaligned O_DIRECT writes equal some serial order",
          "[file]")
{
    constexpr int kWriters = 64;
    constexpr size_t kSize = 4 * 4096;
    ScratchDir dir;
    std::string path = dir.file("img");
    std::vector<unsigned char> zeros(kSize, 0);
    write_file(path, zeros.data(), kSize, 0, true);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, CacheMode::None);

    struct W {
        uint64_t off;
        std::vector<unsigned char> data;
        int res = -12345;
    };
    std::mt19937 rng(777);
    std::vector<W> writes;
    for (int i = 0; i < kWriters; i++) {
        uint64_t off = rng() % (kSize - 1);
        size_t len = 1 + rng() % std::min<size_t>(6000, kSize - off);
        // Writer i fills its range with value i+1 (never the initial 0).
        writes.push_back({off, std::vector<unsigned char>(len, static_cast<unsigned char>(i + 1))});
    }
    sync_wait(L, [](FileLayer& fl, std::vector<W>& ws) -> Task<void> {
        TaskGroup tg;
        for (auto& w : ws)
            tg.spawn([](FileLayer& l, W& wr) -> Task<void> {
                wr.res = co_await l.pwrite(wr.off, wr.data.data(), wr.data.size());
            }(fl, w));
        co_await tg.join();
    }(*f, writes));
    int failed = 0;
    for (auto& w : writes)
        failed += w.res != 0;
    REQUIRE(failed == 0);
    close_layer(L, *f);
    auto disk = read_whole_file(path);
    REQUIRE(disk.size() >= kSize);

    // Each byte must hold the value of one of the writers covering it (or 0
    // if none does), and "the winner of each byte came after every other
    // writer covering it" must be satisfiable by one order: no cycle.
    std::vector<std::vector<bool>> after(kWriters, std::vector<bool>(kWriters, false));
    int bad_bytes = 0;
    long first_bad = -1;
    for (size_t b = 0; b < kSize; b++) {
        std::vector<int> cover;
        for (int i = 0; i < kWriters; i++)
            if (writes[size_t(i)].off <= b && b < writes[size_t(i)].off + writes[size_t(i)].data.size())
                cover.push_back(i);
        int v = disk[b];
        if (cover.empty()) {
            if (v != 0 && bad_bytes++ == 0)
                first_bad = long(b);
            continue;
        }
        int winner = v - 1;
        if (std::find(cover.begin(), cover.end(), winner) == cover.end()) {
            if (bad_bytes++ == 0)
                first_bad = long(b);
            continue;
        }
        for (int k : cover)
            if (k != winner)
                after[size_t(winner)][size_t(k)] = true;  // winner after k
    }
    INFO("first byte holding a value no covering writer wrote: " << first_bad);
    CHECK(bad_bytes == 0);
    // Kahn's algorithm over "k before winner" edges.
    std::vector<int> indeg(kWriters, 0);
    for (int w = 0; w < kWriters; w++)
        for (int k = 0; k < kWriters; k++)
            if (after[size_t(w)][size_t(k)])
                indeg[size_t(w)]++;
    std::vector<int> ready;
    for (int w = 0; w < kWriters; w++)
        if (indeg[size_t(w)] == 0)
            ready.push_back(w);
    int ordered = 0;
    while (!ready.empty()) {
        int k = ready.back();
        ready.pop_back();
        ordered++;
        for (int w = 0; w < kWriters; w++)
            if (after[size_t(w)][size_t(k)] && --indeg[size_t(w)] == 0)
                ready.push_back(w);
    }
    CHECK(ordered == kWriters);  // every writer placed: the order exists
}

TEST_CASE("file: flush", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", 65536, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);
    auto buf = aligned_alloc_bytes(4096, 4096);
    fill_pattern(buf.get(), 4096, 2, 0);
    REQUIRE(sync_pwrite(L, *f, 4096, buf.get(), 4096) == 0);
    CHECK(sync_wait(L, f->flush()) == 0);
    auto disk = read_file(path, 4096, 4096);
    CHECK_BYTES(disk.data(), buf.get(), 4096, 4096);
    close_layer(L, *f);
}

TEST_CASE("file: discard", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    constexpr size_t kSize = 1 << 20;
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", kSize, 1);
    fsync_path(path);
    auto old = pattern(kSize, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);

    REQUIRE(sync_wait(L, f->discard(256 * 1024, 256 * 1024)) == 0);
    REQUIRE(sync_wait(L, f->discard(1000, 4000)) == 0);  // unaligned both ends
    auto now = layer_read(L, *f, 0, kSize);
    CHECK(f->size() == kSize);
    close_layer(L, *f);

    // Outside the discarded ranges nothing changed.
    CHECK_BYTES(now.data(), old.data(), 1000, 0);
    CHECK_BYTES(now.data() + 5000, old.data() + 5000, 256 * 1024 - 5000, 5000);
    CHECK_BYTES(now.data() + 512 * 1024, old.data() + 512 * 1024, kSize - 512 * 1024, 512 * 1024);
    // Inside, each byte is either the old data or zero.
    int neither = 0;
    for (size_t b = 1000; b < 5000; b++)
        neither += now[b] != 0 && now[b] != old[b];
    for (size_t b = 256 * 1024; b < 512 * 1024; b++)
        neither += now[b] != 0 && now[b] != old[b];
    CHECK(neither == 0);
    CHECK(file_size(path) == off_t(kSize));
    auto disk = read_whole_file(path);
    CHECK_BYTES(disk.data(), now.data(), kSize, 0);

    if (f->limits().discard) {
        // The layer says discard frees space: the aligned range is a hole now.
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        off_t d = ::lseek(fd, 256 * 1024, SEEK_DATA);
        ::close(fd);
        CHECK(d >= 512 * 1024);
    }
}

TEST_CASE("file: block_status after discard reports a hole when discard frees space", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    constexpr size_t kSize = 1 << 20;
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", kSize, 1);
    fsync_path(path);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);
    Extent e;
    REQUIRE(sync_wait(L, f->block_status(256 * 1024, 256 * 1024, &e)) == 0);
    CHECK(e.data);  // fully written before the discard
    REQUIRE(sync_wait(L, f->discard(256 * 1024, 256 * 1024)) == 0);
    REQUIRE(sync_wait(L, f->block_status(256 * 1024, 256 * 1024, &e)) == 0);
    if (f->limits().discard) {
        CHECK_FALSE(e.data);
        CHECK(e.zero);
        CHECK(e.len == 256 * 1024);
    } else {
        WARN("the file layer reports that discard does not free space here");
    }
    close_layer(L, *f);
}

TEST_CASE("file: zero-length and overflowing requests", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", 8192, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);
    char buf[16] = {};
    CHECK(sync_pread(L, *f, 0, buf, 0) == 0);
    CHECK(sync_pread(L, *f, 3, buf + 1, 0) == 0);
    CHECK(sync_pwrite(L, *f, 5, buf + 1, 0) == 0);
    CHECK(sync_wait(L, f->preadv(0, nullptr, 0)) == 0);
    // off + len wraps around: refused, not sent to the kernel as a huge offset.
    CHECK(sync_pwrite(L, *f, UINT64_MAX - 4, buf, sizeof buf) == -EINVAL);
    CHECK(sync_pread(L, *f, UINT64_MAX - 4, buf, sizeof buf) == -EINVAL);
    CHECK(f->size() == 8192);
    close_layer(L, *f);
    CHECK(file_size(path) == 8192);
    auto disk = read_whole_file(path);
    auto want = pattern(8192, 1);
    CHECK_BYTES(disk.data(), want.data(), 8192, 0);
}

TEST_CASE("file: write_zeroes reads back zeros", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    unsigned flags = GENERATE(0u, unsigned(kReqNoUnmap));
    INFO(mode_name(mode) << (flags ? " no-unmap" : " may-unmap"));
    constexpr size_t kSize = 1 << 20;
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", kSize, 1);
    fsync_path(path);
    int64_t alloc_before = file_allocated(path);
    auto want = pattern(kSize, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);

    struct R {
        uint64_t off, len;
    };
    const R ranges[] = {{4096, 65536}, {100, 200}, {200 * 1024 - 1, 4097}, {768 * 1024, 256 * 1024}};
    for (const R& r : ranges) {
        INFO("write_zeroes " << r.len << " at " << r.off);
        REQUIRE(sync_wait(L, f->write_zeroes(r.off, r.len, flags)) == 0);
        std::fill(want.begin() + long(r.off), want.begin() + long(r.off + r.len), 0);
    }
    auto now = layer_read(L, *f, 0, kSize);
    CHECK_BYTES(now.data(), want.data(), kSize, 0);
    CHECK(f->size() == kSize);
    close_layer(L, *f);
    CHECK(file_size(path) == off_t(kSize));
    auto disk = read_whole_file(path);
    CHECK_BYTES(disk.data(), want.data(), kSize, 0);
    if (flags & kReqNoUnmap) {
        fsync_path(path);
        INFO("allocated before " << alloc_before << ", after " << file_allocated(path));
        CHECK(file_allocated(path) >= alloc_before);
    }
}

TEST_CASE("file: write_zeroes with kReqNoUnmap past EOF allocates the new tail", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", 8192, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);
    // What FVD relies on for its journal: space taken now cannot be refused
    // by a full file system later.
    REQUIRE(sync_wait(L, f->write_zeroes(4096, 1 << 20, kReqNoUnmap)) == 0);
    CHECK(f->size() == 4096 + (1 << 20));
    close_layer(L, *f);
    fsync_path(path);
    CHECK(file_size(path) == off_t(4096 + (1 << 20)));
    INFO("allocated: " << file_allocated(path));
    CHECK(file_allocated(path) >= int64_t(4096 + (1 << 20)));
    auto disk = read_whole_file(path);
    auto want = pattern(4096, 1);
    CHECK_BYTES(disk.data(), want.data(), 4096, 0);
    CHECK(all_bytes(disk.data() + 4096, 1 << 20, 0));
}

TEST_CASE("file: write_zeroes and writes past EOF grow the file", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", 8192, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);
    REQUIRE(f->growable());

    REQUIRE(sync_wait(L, f->write_zeroes(8192, 65536, 0)) == 0);
    CHECK(f->size() == 8192 + 65536);
    CHECK(file_size(path) == off_t(8192 + 65536));

    auto buf = aligned_alloc_bytes(4096, 8192);
    fill_pattern(buf.get(), 8192, 4, 0);
    REQUIRE(sync_pwrite(L, *f, 1 << 20, buf.get(), 8192) == 0);
    CHECK(f->size() == (1 << 20) + 8192);
    CHECK(file_size(path) == off_t((1 << 20) + 8192));
    close_layer(L, *f);
    auto disk = read_file(path, 8192, (1 << 20) + 8192 - 8192);
    CHECK_ZEROS(disk.data(), (1 << 20) - 8192, 8192);
    CHECK_BYTES(disk.data() + (1 << 20) - 8192, buf.get(), 8192, 1 << 20);
}

TEST_CASE("file: truncate grows and shrinks", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", 65536, 1);
    auto want = pattern(65536, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);

    REQUIRE(sync_wait(L, f->truncate(1 << 20)) == 0);
    CHECK(f->size() == 1 << 20);
    CHECK(file_size(path) == 1 << 20);
    auto grown = layer_read(L, *f, 0, 1 << 20);
    CHECK_BYTES(grown.data(), want.data(), 65536, 0);
    CHECK_ZEROS(grown.data() + 65536, (1 << 20) - 65536, 65536);

    REQUIRE(sync_wait(L, f->truncate(5000)) == 0);
    CHECK(f->size() == 5000);
    CHECK(file_size(path) == 5000);
    auto shrunk = layer_read(L, *f, 0, 8192);
    CHECK_BYTES(shrunk.data(), want.data(), 5000, 0);
    CHECK_ZEROS(shrunk.data() + 5000, 8192 - 5000, 5000);

    // Growing again does not bring the cut bytes back.
    REQUIRE(sync_wait(L, f->truncate(65536)) == 0);
    auto regrown = layer_read(L, *f, 0, 65536);
    CHECK_BYTES(regrown.data(), want.data(), 5000, 0);
    CHECK_ZEROS(regrown.data() + 5000, 65536 - 5000, 5000);
    close_layer(L, *f);
    CHECK(file_size(path) == 65536);
}

TEST_CASE("file: block_status finds data and holes as lseek does", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    constexpr off_t kSize = 4 << 20;
    ScratchDir dir;
    std::string path = dir.file("sparse");
    make_sparse_file(path, kSize);
    auto d1 = pattern(65536, 1);
    auto d2 = pattern(4096, 2);
    write_file(path, d1.data(), d1.size(), 1 << 20);
    write_file(path, d2.data(), d2.size(), 3 << 20);
    fsync_path(path);

    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);

    int holes = 0, datas = 0;
    uint64_t off = 0;
    for (int iter = 0; off < uint64_t(kSize) && iter < 10000; iter++) {
        Extent e;
        int r = sync_wait(L, f->block_status(off, uint64_t(kSize) - off, &e));
        INFO("block_status at " << off);
        REQUIRE(r == 0);
        REQUIRE(e.len > 0);
        SeekStatus s = seek_status(fd, off_t(off), kSize);
        INFO("lseek says " << (s.data ? "data" : "hole") << " until " << s.end << "; layer says "
                           << (e.data ? "data" : "hole") << " for " << e.len);
        CHECK(e.data == s.data);
        CHECK(off + e.len <= uint64_t(s.end));
        if (!e.data) {
            CHECK(e.zero);
            holes++;
        } else {
            datas++;
        }
        off += e.len;
    }
    CHECK(off == uint64_t(kSize));
    CHECK(holes >= 3);  // before, between and after the two data ranges
    CHECK(datas >= 2);

    // `len` bounds the answer.
    Extent e;
    REQUIRE(sync_wait(L, f->block_status(0, 4096, &e)) == 0);
    CHECK(e.len > 0);
    CHECK(e.len <= 4096);
    CHECK_FALSE(e.data);
    REQUIRE(sync_wait(L, f->block_status(1 << 20, 4096, &e)) == 0);
    CHECK(e.data);
    CHECK(e.len <= 4096);
    ::close(fd);
    close_layer(L, *f);
}

TEST_CASE("file: close waits for the writes in flight", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    constexpr int kN = 64;
    constexpr size_t kLen = 16384;
    ScratchDir dir;
    std::string path = dir.file("img");
    make_sparse_file(path, 0);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);

    auto buf = aligned_alloc_bytes(4096, kN * kLen);
    fill_pattern(buf.get(), kN * kLen, 8, 0);
    std::vector<int> res(kN, -12345);
    int done_when_close_returned = -1;
    size_t in_flight_before_close = 0;
    sync_wait(L, [](Loop& l, FileLayer& fl, unsigned char* data, std::vector<int>& rs, int& dwc,
                    size_t& ifbc) -> Task<void> {
        for (int i = 0; i < kN; i++)
            l.spawn([](FileLayer& lf, const unsigned char* p, int& r, uint64_t off) -> Task<void> {
                r = co_await lf.pwrite(off, p, kLen);
            }(fl, data + size_t(i) * kLen, rs[size_t(i)], uint64_t(i) * kLen));
        ifbc = fl.in_flight();
        co_await fl.close();
        dwc = int(std::count(rs.begin(), rs.end(), 0));
    }(L, *f, buf.get(), res, done_when_close_returned, in_flight_before_close));
    INFO("requests in flight when close() was called: " << in_flight_before_close);
    CHECK(in_flight_before_close > 0);  // the test really raced close()
    CHECK(done_when_close_returned == kN);
    CHECK(f->in_flight() == 0);
    CHECK(f->closed());
    auto disk = read_whole_file(path);
    REQUIRE(disk.size() >= kN * kLen);
    CHECK_BYTES(disk.data(), buf.get(), kN * kLen, 0);
}

TEST_CASE("file: requests after close fail with -EBADF", "[file]")
{
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", 65536, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, CacheMode::Writeback);
    close_layer(L, *f);
    close_layer(L, *f);  // idempotent
    CHECK(f->closed());
    char buf[512] = {};
    Extent e;
    CHECK(sync_pread(L, *f, 0, buf, sizeof buf) == -EBADF);
    CHECK(sync_pwrite(L, *f, 0, buf, sizeof buf) == -EBADF);
    CHECK(sync_wait(L, f->flush()) == -EBADF);
    CHECK(sync_wait(L, f->discard(0, 4096)) == -EBADF);
    CHECK(sync_wait(L, f->write_zeroes(0, 4096)) == -EBADF);
    CHECK(sync_wait(L, f->truncate(4096)) == -EBADF);
    CHECK(sync_wait(L, f->block_status(0, 4096, &e)) == -EBADF);
    auto disk = read_whole_file(path);
    auto want = pattern(65536, 1);
    REQUIRE(disk.size() == want.size());
    CHECK_BYTES(disk.data(), want.data(), want.size(), 0);
}

TEST_CASE("file: a read-only open refuses writes with -EROFS", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    std::string path = make_pattern_file(dir, "img", 65536, 1);
    auto want = pattern(65536, 1);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode, true);
    CHECK(f->read_only());
    auto buf = aligned_alloc_bytes(4096, 4096);
    std::memset(buf.get(), 0x77, 4096);
    CHECK(sync_pwrite(L, *f, 0, buf.get(), 4096) == -EROFS);
    CHECK(sync_wait(L, f->write_zeroes(0, 4096)) == -EROFS);
    CHECK(sync_wait(L, f->discard(0, 4096)) == -EROFS);
    CHECK(sync_wait(L, f->truncate(4096)) == -EROFS);
    auto r = layer_read(L, *f, 0, 65536);
    CHECK_BYTES(r.data(), want.data(), 65536, 0);
    close_layer(L, *f);
    auto disk = read_whole_file(path);
    REQUIRE(disk.size() == want.size());
    CHECK_BYTES(disk.data(), want.data(), want.size(), 0);
}

TEST_CASE("file: open errors name the file and the reason", "[file]")
{
    ScratchDir dir;
    auto loop = make_loop();
    Loop& L = *loop;
    FileOpenOptions o;

    SECTION("missing file")
    {
        std::string path = dir.file("does-not-exist");
        auto r = FileLayer::open(L, path, o);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == ENOENT);
        CHECK_THAT(r.error().message, Contains(path));
        CHECK(::access(path.c_str(), F_OK) != 0);  // not created by accident
    }
    SECTION("a directory")
    {
        o.read_only = GENERATE(false, true);
        INFO("read_only " << o.read_only);
        auto r = FileLayer::open(L, dir.path(), o);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains(dir.path()));
    }
    SECTION("locking")
    {
        std::string path = make_pattern_file(dir, "img", 4096, 1);
        auto first = FileLayer::open(L, path, o);
        REQUIRE(first.ok());

        auto second = FileLayer::open(L, path, o);
        REQUIRE_FALSE(second.ok());
        CHECK_THAT(second.error().message, Contains("lock", Catch::CaseSensitive::No));
        CHECK_THAT(second.error().message, Contains(path));

        FileOpenOptions ro = o;
        ro.read_only = true;
        auto reader = FileLayer::open(L, path, ro);
        CHECK_FALSE(reader.ok());  // a writer's lock is exclusive

        FileOpenOptions nolock = o;
        nolock.locking = false;
        auto unlocked = FileLayer::open(L, path, nolock);
        REQUIRE(unlocked.ok());
        close_layer(L, *unlocked.value());

        close_layer(L, *first.value());
        auto third = FileLayer::open(L, path, o);  // the lock went with close
        REQUIRE(third.ok());
        close_layer(L, *third.value());
    }
    SECTION("readers share")
    {
        std::string path = make_pattern_file(dir, "img", 4096, 1);
        o.read_only = true;
        auto a = FileLayer::open(L, path, o);
        auto b = FileLayer::open(L, path, o);
        REQUIRE(a.ok());
        REQUIRE(b.ok());
        close_layer(L, *a.value());
        close_layer(L, *b.value());
    }
}

TEST_CASE("file: limits and accounting", "[file]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    std::string path = dir.file("sparse");
    make_sparse_file(path, 1 << 20);
    auto d = pattern(65536, 1);
    write_file(path, d.data(), d.size(), 0);
    fsync_path(path);
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = open_file(L, path, mode);
    uint32_t a = f->limits().request_alignment;
    if (mode == CacheMode::None) {
        CHECK(a >= 512);
        CHECK((a & (a - 1)) == 0);
    } else {
        CHECK(a == 1);
    }
    CHECK(f->allocated_bytes() == file_allocated(path));
    CHECK(f->allocated_bytes() < (1 << 20));  // sparse: less than the size
    close_layer(L, *f);
}

TEST_CASE("file: an image closed after I/O reopens at once, its lock gone", "[file]")
{
    // io_uring may keep the open file alive a little after close(); the
    // layer drops its lock explicitly, so a reopen never finds it taken.
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string path = dir.file("reopen.img");
    make_sparse_file(path, 1 << 20);
    auto data = pattern(4096, 6);
    for (int i = 0; i < 2000; i++) {
        INFO("round " << i);
        FileOpenOptions o;
        o.cache = i % 2 ? CacheMode::None : CacheMode::Writeback;
        auto f = must(FileLayer::open(L, path, o), "FileLayer::open");
        REQUIRE(sync_pwrite(L, *f, uint64_t(i % 16) * 4096, data.data(), 4096) == 0);
        auto back = layer_read(L, *f, uint64_t(i % 16) * 4096, 4096);
        REQUIRE(sync_wait(L, f->flush()) == 0);
        close_layer(L, *f);
    }
}
