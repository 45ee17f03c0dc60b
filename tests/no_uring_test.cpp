// The loop without io_uring (COBLK_IO_URING=off, as when io_uring_setup is
// refused): file operations on worker threads, timeouts kept by the loop,
// foreign completions, and the completion fd after settle(). Results are
// checked with plain syscalls on real files and, where io_uring works here,
// against what a ring-backed loop returns for the same operation.
// tests/no_uring.sh makes io_uring really unavailable (seccomp).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backends/file.h"
#include "engine/blocking.h"
#include "engine/loop.h"
#include "engine/sync.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::test;
using Catch::Matchers::Contains;

namespace {

// Sets COBLK_IO_URING for the scope's life (the previous value back after).
// Test thread only, while no other thread reads the environment.
class EnvScope {
public:
    explicit EnvScope(const char* value)
    {
        if (const char* old = std::getenv("COBLK_IO_URING"))
            saved_ = old;
        if (value)
            ::setenv("COBLK_IO_URING", value, 1);
        else
            ::unsetenv("COBLK_IO_URING");
    }
    ~EnvScope()
    {
        if (saved_)
            ::setenv("COBLK_IO_URING", saved_->c_str(), 1);
        else
            ::unsetenv("COBLK_IO_URING");
    }
    EnvScope(const EnvScope&) = delete;
    EnvScope& operator=(const EnvScope&) = delete;

private:
    std::optional<std::string> saved_;
};

std::unique_ptr<Loop> make_worker_loop(unsigned entries = 256, bool any_thread = false)
{
    EnvScope env("off");
    auto loop = must(Loop::create(entries, any_thread), "Loop::create with COBLK_IO_URING=off");
    REQUIRE_FALSE(loop->uses_io_uring());
    return loop;
}

// A loop with io_uring when this machine has it (null otherwise), to
// compare results with.
std::unique_ptr<Loop> make_ring_loop()
{
    EnvScope env("auto");
    auto r = Loop::create(64);
    if (!r.ok() || !r.value()->uses_io_uring())
        return nullptr;
    return std::move(r).value();
}

int open_or_fail(const std::string& path, int flags)
{
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
    INFO("open " << path << ": " << std::strerror(errno));
    REQUIRE(fd >= 0);
    return fd;
}

Task<int> read_at(Loop& l, int fd, void* buf, size_t len, uint64_t off)
{
    iovec v{buf, len};
    co_return co_await l.readv(fd, &v, 1, off);
}

Task<int> write_at(Loop& l, int fd, const void* buf, size_t len, uint64_t off, int rw_flags = 0)
{
    iovec v{const_cast<void*>(buf), len};
    co_return co_await l.writev(fd, &v, 1, off, rw_flags);
}

Task<int> do_fsync(Loop& l, int fd, bool datasync) { co_return co_await l.fsync(fd, datasync); }

Task<int> do_fallocate(Loop& l, int fd, int mode, uint64_t off, uint64_t len)
{
    co_return co_await l.fallocate(fd, mode, off, len);
}

bool readable(int fd, int timeout_ms)
{
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    return r > 0 && (p.revents & POLLIN);
}

} // namespace

TEST_CASE("no-uring: COBLK_IO_URING picks the backend; a bad value is refused naming it",
          "[no-uring]")
{
    {
        EnvScope env("off");
        auto r = Loop::create(32);
        REQUIRE(r.ok());
        CHECK_FALSE(r.value()->uses_io_uring());
        CHECK(r.value()->ring_fd() >= 0);
    }
    {
        EnvScope env("sometimes");
        auto r = Loop::create(32);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == EINVAL);
        CHECK_THAT(r.error().message, Contains("COBLK_IO_URING") && Contains("sometimes"));
    }
    {
        // "on" requires io_uring: a ring, or the setup error (never workers).
        EnvScope env("on");
        auto r = Loop::create(32);
        if (r.ok())
            CHECK(r.value()->uses_io_uring());
        else
            CHECK_THAT(r.error().message, Contains("io_uring_setup"));
    }
}

TEST_CASE("no-uring: readv, writev, fsync and fallocate on a real file", "[no-uring]")
{
    auto loop = make_worker_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string path = dir.file("f");
    int fd = open_or_fail(path, O_RDWR | O_CREAT);
    constexpr size_t kLen = 256 * 1024;
    auto data = pattern(kLen, 7);

    SECTION("writev then readv, each checked with plain syscalls")
    {
        CHECK(sync_wait(L, write_at(L, fd, data.data(), kLen, 0)) == int(kLen));
        CHECK_BYTES(read_file(path, 0, kLen).data(), data.data(), kLen, 0);
        // Two iovecs at an odd offset.
        std::vector<unsigned char> a(1000), b(3000);
        iovec v[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
        int r = sync_wait(L, [](Loop& l, int f, iovec* iv) -> Task<int> {
            co_return co_await l.readv(f, iv, 2, 12345);
        }(L, fd, v));
        CHECK(r == 4000);
        CHECK_BYTES(a.data(), data.data() + 12345, a.size(), 12345);
        CHECK_BYTES(b.data(), data.data() + 13345, b.size(), 13345);
        CHECK(sync_wait(L, do_fsync(L, fd, false)) == 0);
        CHECK(sync_wait(L, do_fsync(L, fd, true)) == 0);
        // A write with RWF_DSYNC (a FUA write), then its bytes by pread.
        auto fua = pattern(4096, 8);
        CHECK(sync_wait(L, write_at(L, fd, fua.data(), fua.size(), 8192, RWF_DSYNC)) == 4096);
        CHECK_BYTES(read_file(path, 8192, 4096).data(), fua.data(), 4096, 8192);
    }

    SECTION("reads at and past EOF give short counts and 0")
    {
        write_file(path, data.data(), 10000, 0, true);
        std::vector<unsigned char> buf(8192, 0xEE);
        CHECK(sync_wait(L, read_at(L, fd, buf.data(), buf.size(), 4096)) == 10000 - 4096);
        CHECK_BYTES(buf.data(), data.data() + 4096, 10000 - 4096, 4096);
        CHECK(sync_wait(L, read_at(L, fd, buf.data(), buf.size(), 10000)) == 0);
        CHECK(sync_wait(L, read_at(L, fd, buf.data(), buf.size(), 1 << 30)) == 0);
    }

    SECTION("fallocate allocates, punches a hole, zeroes a range")
    {
        write_file(path, data.data(), kLen, 0, true);
        ::fsync(fd);
        int64_t before = file_allocated(path);
        CHECK(sync_wait(L, do_fallocate(L, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                        65536, 65536)) == 0);
        CHECK(file_size(path) == off_t(kLen));
        CHECK(file_allocated(path) <= before - 65536);
        CHECK_ZEROS(read_file(path, 65536, 65536).data(), 65536, 65536);
        CHECK_BYTES(read_file(path, 0, 65536).data(), data.data(), 65536, 0);
        CHECK_BYTES(read_file(path, 131072, 65536).data(), data.data() + 131072, 65536, 131072);
        CHECK(sync_wait(L, do_fallocate(L, fd, 0, kLen, 1 << 20)) == 0);
        CHECK(file_size(path) == off_t(kLen + (1 << 20)));
        int r = sync_wait(L, do_fallocate(L, fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                          4096, 4096));
        if (r != -EOPNOTSUPP) {
            CHECK(r == 0);
            CHECK_ZEROS(read_file(path, 4096, 4096).data(), 4096, 4096);
        }
    }
    ::close(fd);
}

TEST_CASE("no-uring: failures are the negative errno io_uring gives", "[no-uring]")
{
    auto loop = make_worker_loop();
    Loop& W = *loop;
    auto ring = make_ring_loop();
    ScratchDir dir;
    std::string path = dir.file("f");
    write_file(path, pattern(8192, 3).data(), 8192, 0, true);
    int ro = open_or_fail(path, O_RDONLY);
    int rw = open_or_fail(path, O_RDWR);
    int dirfd = open_or_fail(dir.path(), O_RDONLY | O_DIRECTORY);
    std::vector<unsigned char> buf(4096);

    struct Case {
        const char* what;
        int want;
        std::function<Task<int>(Loop&)> run;
    };
    std::vector<Case> cases = {
        {"readv on a closed fd", -EBADF,
         [&](Loop& l) { return read_at(l, 1 << 20, buf.data(), buf.size(), 0); }},
        {"writev on a read-only fd", -EBADF,
         [&](Loop& l) { return write_at(l, ro, buf.data(), buf.size(), 0); }},
        {"readv of a directory", -EISDIR,
         [&](Loop& l) { return read_at(l, dirfd, buf.data(), buf.size(), 0); }},
        {"writev with an unknown RWF flag", -EOPNOTSUPP,
         [&](Loop& l) { return write_at(l, rw, buf.data(), buf.size(), 0, 0x40000000); }},
        {"fallocate on a read-only fd", -EBADF,
         [&](Loop& l) { return do_fallocate(l, ro, 0, 0, 4096); }},
        {"fallocate with a bad mode", -EOPNOTSUPP,
         [&](Loop& l) { return do_fallocate(l, rw, 0x4000, 0, 4096); }},
        {"fsync on a closed fd", -EBADF, [&](Loop& l) { return do_fsync(l, 1 << 20, false); }},
    };
    for (auto& c : cases) {
        INFO(c.what);
        auto t = c.run(W);
        int got = sync_wait(W, std::move(t));
        CHECK(got < 0);
        if (ring) {
            // The kernel's own answer through io_uring is the reference.
            auto rt = c.run(*ring);
            CHECK(got == sync_wait(*ring, std::move(rt)));
        } else {
            CHECK(got == c.want);
        }
    }
    ::close(ro);
    ::close(rw);
    ::close(dirfd);
}

TEST_CASE("no-uring: 64 concurrent requests through the file layer match a reference",
          "[no-uring]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    // 8 entries: at most 15 operations out, the rest queued in the loop.
    auto entries = GENERATE(8u, 256u);
    INFO((mode == CacheMode::None ? "cache=none" : "cache=writeback") << ", entries " << entries);
    auto loop = make_worker_loop(entries);
    Loop& L = *loop;
    ScratchDir dir;
    constexpr size_t kSlot = 64 * 1024, kRequests = 64, kSize = kSlot * kRequests;
    std::string path = dir.file("img");
    std::vector<unsigned char> ref = pattern(kSize, 21);
    write_file(path, ref.data(), ref.size(), 0, true);
    FileOpenOptions o;
    o.cache = mode;
    auto file = must(FileLayer::open(L, path, o), "FileLayer::open");

    std::mt19937_64 rng(uint64_t(entries) * 2 + (mode == CacheMode::None));
    for (int round = 0; round < 4; round++) {
        INFO("round " << round);
        // Each request has a slot of its own, so the outcome does not depend
        // on completion order; offsets and lengths are unaligned on purpose.
        struct Req {
            bool write;
            uint64_t off;
            std::vector<unsigned char> buf;
            int res = -12345;
        };
        std::vector<Req> reqs(kRequests);
        for (size_t i = 0; i < kRequests; i++) {
            Req& q = reqs[i];
            size_t len = 1 + rng() % (kSlot - 1);
            q.off = i * kSlot + rng() % (kSlot - len + 1);
            q.write = rng() % 2;
            q.buf = q.write ? pattern(len, uint32_t(100 + round), q.off)
                            : std::vector<unsigned char>(len, 0xEE);
        }
        sync_wait(L, [](Layer& f, std::vector<Req>& rs) -> Task<void> {
            TaskGroup tg;
            for (auto& q : rs)
                tg.spawn([](Layer& fl, Req& r) -> Task<void> {
                    if (r.write)
                        r.res = co_await fl.pwrite(r.off, r.buf.data(), r.buf.size());
                    else
                        r.res = co_await fl.pread(r.off, r.buf.data(), r.buf.size());
                }(f, q));
            co_await tg.join();
        }(*file, reqs));
        int bad = 0;
        for (auto& q : reqs) {
            bad += q.res != 0;
            if (q.write)
                std::memcpy(ref.data() + q.off, q.buf.data(), q.buf.size());
            else if (q.res == 0)
                CHECK_BYTES(q.buf.data(), ref.data() + q.off, q.buf.size(), q.off);
        }
        CHECK(bad == 0);
    }
    CHECK(sync_wait(L, file->flush()) == 0);
    close_layer(L, *file);
    auto disk = read_whole_file(path);
    REQUIRE(disk.size() == ref.size());
    CHECK_BYTES(disk.data(), ref.data(), ref.size(), 0);
}

TEST_CASE("no-uring: discard, write_zeroes and reads past EOF through the file layer",
          "[no-uring]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    auto loop = make_worker_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string path = dir.file("img");
    constexpr size_t kSize = 1 << 20;
    auto data = pattern(kSize, 5);
    write_file(path, data.data(), kSize, 0, true);
    FileOpenOptions o;
    o.cache = mode;
    auto file = must(FileLayer::open(L, path, o), "FileLayer::open");
    CHECK(sync_wait(L, file->discard(65536, 131072)) == 0);
    CHECK(sync_wait(L, file->write_zeroes(400000, 5000)) == 0);
    // The file layer is growable: a read across EOF zero-fills the rest.
    std::vector<unsigned char> tail(8192, 0xEE);
    CHECK(sync_wait(L, file->pread(kSize - 4096, tail.data(), tail.size())) == 0);
    CHECK_BYTES(tail.data(), data.data() + kSize - 4096, 4096, kSize - 4096);
    CHECK_ZEROS(tail.data() + 4096, 4096, kSize);
    CHECK(sync_wait(L, file->flush()) == 0);
    close_layer(L, *file);

    auto disk = read_whole_file(path);
    REQUIRE(disk.size() == kSize);
    // A discard may leave the data (it is advice); where it reads as zeros
    // it must be whole blocks. write_zeroes must zero exactly its range.
    CHECK_ZEROS(disk.data() + 400000, 5000, 400000);
    CHECK_BYTES(disk.data(), data.data(), 65536, 0);
    CHECK_BYTES(disk.data() + 196608, data.data() + 196608, 400000 - 196608, 196608);
    CHECK_BYTES(disk.data() + 405000, data.data() + 405000, kSize - 405000, 405000);
}

TEST_CASE("no-uring: sleep_for wakes in deadline order, never early", "[no-uring]")
{
    auto loop = make_worker_loop();
    Loop& L = *loop;
    std::vector<int> order;
    bool early = false;
    sync_wait(L, [](Loop& l, std::vector<int>& ord, bool& e) -> Task<void> {
        TaskGroup tg;
        for (int ms : {30, 10, 0, 20, 10})
            tg.spawn([](Loop& lp, int m, std::vector<int>& o, bool& ea) -> Task<void> {
                auto start = std::chrono::steady_clock::now();
                std::chrono::milliseconds d(m);
                int r = co_await lp.sleep_for(d);
                ea |= std::chrono::steady_clock::now() - start < std::chrono::milliseconds(m);
                o.push_back(r == 0 ? m : -1);
            }(l, ms, ord, e));
        co_await tg.join();
    }(L, order, early));
    CHECK(order == std::vector<int>{0, 10, 10, 20, 30});
    CHECK_FALSE(early);
}

TEST_CASE("no-uring: foreign completions resume on the loop's thread, once each", "[no-uring]")
{
    auto loop = make_worker_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string path = dir.file("f");
    write_file(path, pattern(1 << 20, 9).data(), 1 << 20, 0, true);
    int fd = open_or_fail(path, O_RDONLY);
    constexpr int kN = 100;
    std::atomic<int> on_loop_thread{0};
    std::vector<int> resumed(kN, 0);
    std::vector<int> results(kN, -1);
    std::thread::id loop_thread = std::this_thread::get_id();
    sync_wait(L, [](Loop& l, int f, std::vector<int>& res, std::vector<int>& times,
                    std::atomic<int>& wrong, std::thread::id me) -> Task<void> {
        TaskGroup tg;
        for (int i = 0; i < kN; i++)
            tg.spawn([](Loop& lp, int fdd, int k, std::vector<int>& rs, std::vector<int>& ts,
                        std::atomic<int>& w, std::thread::id id) -> Task<void> {
                // A worker's blocking call and a file read interleaved.
                auto fn = [k, id, &w] {
                    if (std::this_thread::get_id() == id)
                        w++;
                    return int64_t(k);
                };
                int64_t v = co_await run_blocking(lp, fn);
                if (std::this_thread::get_id() != id)
                    w++;
                unsigned char b[512];
                int r = co_await read_at(lp, fdd, b, sizeof b, uint64_t(k) * 4096);
                if (std::this_thread::get_id() != id)
                    w++;
                rs[size_t(k)] = r == 512 ? int(v) : -2;
                ts[size_t(k)]++;
            }(l, f, i, res, times, wrong, me));
        co_await tg.join();
    }(L, fd, results, resumed, on_loop_thread, loop_thread));
    ::close(fd);
    CHECK(on_loop_thread == 0);
    for (int i = 0; i < kN; i++) {
        INFO("request " << i);
        CHECK(results[size_t(i)] == i);
        CHECK(resumed[size_t(i)] == 1);
    }
}

TEST_CASE("no-uring: after settle() the completion fd polls readable exactly when a turn has "
          "work", "[no-uring]")
{
    // As the C API uses it: a loop any thread may run, left to an epoll loop.
    auto loop = make_worker_loop(64, true);
    Loop& L = *loop;
    int cfd = L.ring_fd();

    L.settle();
    CHECK_FALSE(readable(cfd, 0));  // nothing in flight: never readable

    // A read from a pipe, which keeps its worker until the test writes:
    // quiet while it waits, readable once it is done (a bounded wait, not a
    // timing assertion), quiet again once a turn has taken it. Offset -1 is
    // the pipe's current position, for io_uring and preadv2 alike.
    struct Pipe {
        int fd[2] = {-1, -1};
        ~Pipe()  // before the loop goes: a worker still reading gets EOF
        {
            for (int f : fd)
                if (f >= 0)
                    ::close(f);
        }
    } pipe;
    REQUIRE(::pipe2(pipe.fd, O_CLOEXEC) == 0);
    int* pipefd = pipe.fd;
    std::vector<unsigned char> buf(100);
    int res = -12345;
    L.spawn([](Loop& l, int f, unsigned char* b, int& r) -> Task<void> {
        r = co_await read_at(l, f, b, 100, ~uint64_t(0));
    }(L, pipefd[0], buf.data(), res));
    L.settle();
    CHECK_FALSE(readable(cfd, 0));
    auto sent = pattern(100, 4);
    REQUIRE(::write(pipefd[1], sent.data(), sent.size()) == 100);
    REQUIRE(readable(cfd, 30000));
    CHECK(res == -12345);  // only a turn resumes it
    L.run_once(false);
    L.settle();
    CHECK(res == 100);
    CHECK_BYTES(buf.data(), sent.data(), 100, 0);
    CHECK_FALSE(readable(cfd, 0));

    // A timeout: the fd turns readable when it is due.
    bool slept = false;
    L.spawn([](Loop& l, bool& s) -> Task<void> {
        std::chrono::milliseconds d(20);
        co_await l.sleep_for(d);
        s = true;
    }(L, slept));
    L.settle();
    REQUIRE(readable(cfd, 30000));
    for (int i = 0; i < 100 && !slept; i++) {
        L.run_once(false);
        L.settle();
        if (!slept)
            REQUIRE(readable(cfd, 30000));  // woken early: must stay readable until due
    }
    CHECK(slept);
    L.settle();
    CHECK_FALSE(readable(cfd, 0));

    // A foreign completion, which the test makes from another thread only
    // after settle().
    int64_t got = -1;
    ForeignCompletion* pending = nullptr;
    L.spawn([](Loop& l, int64_t& g, ForeignCompletion*& p) -> Task<void> {
        auto start = [&p](ForeignCompletion* c) { p = c; };
        g = co_await await_foreign(l, start);
    }(L, got, pending));
    L.settle();
    REQUIRE(pending != nullptr);
    CHECK_FALSE(readable(cfd, 0));
    std::thread([pending] { pending->complete(77); }).join();
    REQUIRE(readable(cfd, 30000));
    L.run_once(false);
    L.settle();
    CHECK(got == 77);
    CHECK_FALSE(readable(cfd, 0));
}
