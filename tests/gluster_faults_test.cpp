// Fault tests of the gluster backend against the real server of
// tests/services/gluster-up.sh: glusterd frozen or stopped, the brick killed
// or frozen while requests are in flight, and write-behind on and off. The
// server is driven by tests/services/gluster-ctl.sh (COBLK_GLUSTER_CTL,
// exported by with-gluster.sh and by meson); every test leaves it healthy
// whatever happens (Healer), and a request that never completes ends the
// run after healing the server (HangGuard) instead of hanging it.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backends/gluster_connection.h"
#include "engine/blocking.h"
#include "engine/loop.h"
#include "engine/sync.h"
#include "uri/open.h"
#include "uri/uri.h"
#include "tests/gluster_helpers.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::test;
using namespace coblk::test::gluster;
using Catch::Matchers::Contains;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

std::string env_or_fail(const char* name, const char* why)
{
    const char* v = std::getenv(name);
    if (!v || !*v)
        FAIL(name << " is not set: " << why);
    return v;
}

std::string ctl_path()
{
    return env_or_fail("COBLK_GLUSTER_CTL", "it names tests/services/gluster-ctl.sh "
                                            "(with-gluster.sh and meson set it)");
}

// Runs `gluster-ctl.sh ARGS` and returns its standard output; fails the test
// with its messages unless it succeeds. Any thread but a loop's.
std::string ctl(const std::string& args)
{
    auto r = shell(ctl_path() + " " + args + " 2>&1");
    INFO("gluster-ctl.sh " << args << ": " << r.out);
    REQUIRE(r.status == 0);
    return r.out;
}

// Brings the server back to health at scope exit: thaws glusterd and the
// brick, starts whichever is gone, and resets the volume options in
// `reset`. Never fails the test from a destructor; it prints instead.
struct Healer {
    std::vector<std::string> reset;
    Healer() = default;
    explicit Healer(std::vector<std::string> keys) : reset(std::move(keys)) {}
    Healer(const Healer&) = delete;
    Healer& operator=(const Healer&) = delete;
    ~Healer()
    {
        const char* c = std::getenv("COBLK_GLUSTER_CTL");
        if (!c)
            return;
        auto h = shell(std::string(c) + " heal 2>&1");
        if (h.status != 0)
            std::fprintf(stderr, "gluster-faults: could not heal the server: %s\n",
                         h.out.c_str());
        for (const auto& k : reset) {
            auto r = shell(std::string(c) + " reset " + k + " 2>&1");
            if (r.status != 0)
                std::fprintf(stderr, "gluster-faults: could not reset %s: %s\n", k.c_str(),
                             r.out.c_str());
        }
    }
};

// A hang guard: unless disarmed (destroyed) within `limit`, heals the
// server, prints `what` and ends the process with status 1. A request that
// never completes cannot be abandoned (no early cancel), so this is the only
// way such a test can fail instead of hanging.
class HangGuard {
public:
    HangGuard(std::chrono::seconds limit, std::string what)
        : t_([this, limit, what = std::move(what)] {
              std::unique_lock<std::mutex> g(mu_);
              if (cv_.wait_for(g, limit, [this] { return done_; }))
                  return;
              std::fprintf(stderr, "gluster-faults: HANG: %s did not finish within %lld s\n",
                           what.c_str(), static_cast<long long>(limit.count()));
              if (const char* c = std::getenv("COBLK_GLUSTER_CTL"))
                  (void)!std::system((std::string(c) + " heal").c_str());
              std::fflush(nullptr);
              _exit(1);
          })
    {
    }
    ~HangGuard()
    {
        {
            std::lock_guard<std::mutex> g(mu_);
            done_ = true;
        }
        cv_.notify_all();
        t_.join();
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread t_;
};

// The image's file in the brick's directory, read with plain syscalls.
std::string brick_file(const std::string& name)
{
    return fmt::format("{}/coblk-test-{}-{}", ctl("brick-dir"), getpid(), name);
}

double seconds_since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Errors a request may fairly fail with when its brick dies or stops
// answering: the connection is gone (ENOTCONN), the transport said so
// (EIO, ECONNABORTED, EBADFD after a reconnect), or the ping timer fired.
bool clear_io_error(int r)
{
    return r == -ENOTCONN || r == -EIO || r == -ECONNABORTED || r == -EBADFD ||
           r == -ETIMEDOUT || r == -ECONNRESET;
}

// A region of 4 KiB blocks that writers keep rewriting, each block with a
// new generation, and flushing after each write. `durable[b]` is the last
// generation whose write *and* following flush succeeded; `pending[b]` a
// later generation whose write was started but not known flushed (0: none).
// After a fault, a block with no pending write must read as its durable
// generation exactly, and one with a pending write as one of the two.
struct Region {
    static constexpr uint64_t kBlock = 4096;
    uint64_t base = 0;
    uint32_t blocks = 0;
    std::vector<uint32_t> durable, pending;
    uint64_t completed = 0;      // writes + flushes that succeeded
    int live = 0;                // writers still running
    std::vector<int> first_error;  // per writer: its first failure (0: none yet)
    std::vector<double> failed_at; // per writer: seconds since the fault when it failed
    Clock::time_point fault_time{};
    bool fault_started = false;

    Region(uint64_t b, uint32_t n, int writers)
        : base(b), blocks(n), durable(n, 1), pending(n, 0), live(writers),
          first_error(size_t(writers), 0),
          failed_at(size_t(writers), -1)
    {
    }
    uint64_t offset(uint32_t blk) const { return base + blk * kBlock; }
    static uint32_t seed(uint32_t gen) { return 0xF00D0000u + gen; }
};

// Writes generation 1 of every block of `r` and flushes.
void fill_region(Loop& L, Layer& d, const Region& r)
{
    std::vector<unsigned char> buf(size_t(r.blocks) * Region::kBlock);
    for (uint32_t b = 0; b < r.blocks; b++)
        fill_pattern(buf.data() + b * Region::kBlock, Region::kBlock, Region::seed(1),
                     r.offset(b));
    REQUIRE(sync_pwrite(L, d, r.base, buf.data(), buf.size()) == 0);
    REQUIRE(sync_wait(L, d.flush()) == 0);
}

// Writer `w` of `nw`: rewrites its blocks (w, w+nw, ...) with rising
// generations, flushing after each, until the first failure, which it
// records with its time since the fault. Loop thread.
Task<void> writer(Layer& d, Region& r, int w, int nw)
{
    std::vector<unsigned char> buf(Region::kBlock);
    for (uint32_t gen = 2;; gen++) {
        for (uint32_t b = uint32_t(w); b < r.blocks; b += uint32_t(nw)) {
            fill_pattern(buf.data(), buf.size(), Region::seed(gen), r.offset(b));
            r.pending[b] = gen;
            int e = co_await d.pwrite(r.offset(b), buf.data(), buf.size());
            if (e == 0)
                e = co_await d.flush();
            if (e != 0) {
                r.first_error[size_t(w)] = e;
                r.failed_at[size_t(w)] = r.fault_started ? seconds_since(r.fault_time) : -1;
                r.live--;
                co_return;
            }
            r.durable[b] = gen;
            r.pending[b] = 0;
            r.completed++;
        }
    }
}

// Once `after` writes have completed, runs `gluster-ctl.sh cmd` (on a worker
// thread, so that the writers keep going while it runs) and sets `status` to
// its exit status; leaves it alone if every writer failed before. Loop thread.
Task<void> inject(Loop& L, Region& r, uint64_t after, const std::string* cmd, int* status)
{
    while (r.completed < after && r.live > 0)
        co_await L.sleep_for(5ms);
    if (r.live == 0)
        co_return;
    r.fault_time = Clock::now();
    r.fault_started = true;
    std::string command = ctl_path() + " " + *cmd + " 2>&1";
    *status = int(co_await run_blocking(L, [&command]() -> int64_t {
        return shell(command).status;
    }));
}

Task<void> run_fault(Loop& L, Layer& d, Region& r, int writers, uint64_t after,
                     const std::string* cmd, int* status)
{
    TaskGroup g;
    for (int w = 0; w < writers; w++)
        g.spawn(writer(d, r, w, writers));
    g.spawn(inject(L, r, after, cmd, status));
    co_await g.join();
}

// Reads the region back through a new open of `name` and checks every block
// against what the writers know of it.
void check_region(Loop& L, const std::string& name, const Region& r)
{
    auto d = open_ok(L, name);
    auto got = layer_read(L, *d, r.base, size_t(r.blocks) * Region::kBlock);
    uint32_t pending_new = 0;
    for (uint32_t b = 0; b < r.blocks; b++) {
        const unsigned char* p = got.data() + b * Region::kBlock;
        auto want = pattern(Region::kBlock, Region::seed(r.durable[b]), r.offset(b));
        bool is_durable = first_difference(p, want.data(), Region::kBlock) == -1;
        if (r.pending[b] == 0) {
            INFO("block " << b << " at " << r.offset(b) << ": acknowledged and flushed generation "
                 << r.durable[b] << " lost");
            CHECK(is_durable);
        } else if (!is_durable) {
            auto newer = pattern(Region::kBlock, Region::seed(r.pending[b]), r.offset(b));
            INFO("block " << b << " at " << r.offset(b) << ": neither generation "
                 << r.durable[b] << " (flushed) nor " << r.pending[b] << " (in flight)");
            CHECK(first_difference(p, newer.data(), Region::kBlock) == -1);
            pending_new++;
        }
    }
    INFO(pending_new << " in-flight writes landed");
    close_layer(L, *d);
}

// Runs 16 writers over `r` on `d` and `gluster-ctl.sh cmd` once 300 writes
// are done; checks that every writer then failed with a clear errno within
// `bound` seconds of the fault. Ends the process (after healing the server)
// if the requests are not all done within 120 s.
void fault_during_io(Loop& L, Layer& d, Region& r, const std::string& cmd, double bound)
{
    int status = -1;
    {
        HangGuard guard(120s, "I/O after gluster-ctl.sh " + cmd);
        sync_wait(L, run_fault(L, d, r, int(r.first_error.size()), 300, &cmd, &status));
    }
    REQUIRE(status == 0);
    for (size_t w = 0; w < r.first_error.size(); w++) {
        INFO("writer " << w << " failed with " << r.first_error[w] << " after "
             << r.failed_at[w] << " s");
        CHECK(clear_io_error(r.first_error[w]));
        CHECK(r.failed_at[w] >= 0);
        CHECK(r.failed_at[w] < bound);  // a hang guard, not a speed figure
    }
}

// Writes `p` at 0 of `name` through an open of its own, and flushes.
void write_flushed(Loop& L, const std::string& name, const std::vector<unsigned char>& p)
{
    auto d = open_ok(L, name);
    REQUIRE(sync_pwrite(L, *d, 0, p.data(), p.size()) == 0);
    REQUIRE(sync_wait(L, d->flush()) == 0);
    close_layer(L, *d);
}

// A new open of `name` reads `p` at 0.
void check_reads_back(Loop& L, const std::string& name, const std::vector<unsigned char>& p)
{
    auto d = open_ok(L, name);
    auto got = layer_read(L, *d, 0, p.size());
    CHECK_BYTES(got.data(), p.data(), p.size(), 0);
    close_layer(L, *d);
}

} // namespace

TEST_CASE("gluster faults: glusterd frozen during connect: ETIMEDOUT within connect-timeout, "
          "then a new open works",
          "[gluster-faults]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string name = image_uri("frozen-glusterd");
    create_ok(L, name, 65536);
    auto p = pattern(65536, 31);
    write_flushed(L, name, p);
    REQUIRE(gluster_connection_count() == 0);  // the next open must connect afresh

    Healer heal;
    ctl("freeze-glusterd");
    auto t0 = Clock::now();
    auto r = try_open(L, name + "?connect-timeout=2");
    double took = seconds_since(t0);
    ctl("thaw-glusterd");
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message);
    CHECK(r.error().code == ETIMEDOUT);
    CHECK_THAT(r.error().message, Contains("volume '"));
    CHECK_THAT(r.error().message, Contains("127.0.0.1:24007"));
    CHECK_THAT(r.error().message, Contains("connect timeout of 2000 ms"));
    CHECK(took >= 1.9);
    CHECK(took < 10);  // hang guard, not a speed figure
    CHECK(gluster_connection_count() == 0);

    // glusterd answers again: a new open connects and reads the data back.
    check_reads_back(L, name, p);
}

TEST_CASE("gluster faults: glusterd not running: open images keep working, a new open fails "
          "fast with ENOTCONN, and works once glusterd is back",
          "[gluster-faults]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string name = image_uri("no-glusterd");
    create_ok(L, name, 65536);
    auto d = open_ok(L, name);

    Healer heal;
    ctl("stop-glusterd");
    // The brick still runs: I/O on an open image does not need glusterd.
    auto p = pattern(65536, 32);
    CHECK(sync_pwrite(L, *d, 0, p.data(), p.size()) == 0);
    CHECK(sync_wait(L, d->flush()) == 0);
    close_layer(L, *d);
    REQUIRE(gluster_connection_count() == 0);

    auto t0 = Clock::now();
    auto r = try_open(L, name);
    double took = seconds_since(t0);
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message);
    CHECK((r.error().code == ENOTCONN || r.error().code == ECONNREFUSED));
    CHECK_THAT(r.error().message, Contains("127.0.0.1:24007"));
    CHECK_THAT(r.error().message, Contains("is glusterd running"));
    CHECK(took < 10);

    ctl("start-glusterd");
    check_reads_back(L, name, p);
}

TEST_CASE("gluster faults: brick killed during I/O: requests fail with a clear errno, "
          "flushed writes survive the restart",
          "[gluster-faults]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string name = image_uri("killed-brick");
    Region r(65536, 256, 16);
    create_ok(L, name, r.base + uint64_t(r.blocks) * Region::kBlock);
    Healer heal;
    auto d = open_ok(L, name);
    fill_region(L, *d, r);
    fault_during_io(L, *d, r, "kill-brick", 60);
    // The image is closed (its fd released) with the brick still dead.
    {
        HangGuard guard(60s, "close with the brick dead");
        close_layer(L, *d);
    }
    ctl("restart-brick");
    check_region(L, name, r);
}

TEST_CASE("gluster faults: brick frozen during I/O with ping-timeout 3: requests fail in "
          "bounded time, flushed writes survive",
          "[gluster-faults]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    Healer heal({"network.ping-timeout"});
    ctl("set network.ping-timeout 3");
    std::string name = image_uri("frozen-brick");
    Region r(65536, 256, 16);
    create_ok(L, name, r.base + uint64_t(r.blocks) * Region::kBlock);
    auto d = open_ok(L, name + "?ping-timeout=3");
    fill_region(L, *d, r);
    // In-flight requests fail after up to about twice the ping timeout (the
    // libgfapi recipes); 30 s is the hang guard.
    fault_during_io(L, *d, r, "freeze-brick", 30);
    ctl("thaw-brick");
    {
        HangGuard guard(60s, "close after the brick was thawed");
        close_layer(L, *d);
    }
    check_region(L, name, r);
}

TEST_CASE("gluster faults: flush reaches the brick's file, write-behind on and off",
          "[gluster-faults]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    Healer heal({"performance.write-behind"});
    const uint64_t off = 12345, len = 100003;

    SECTION("write-behind off: an acknowledged write is already in the brick's file")
    {
        ctl("set performance.write-behind off");
        REQUIRE(ctl("get performance.write-behind") == "off");
        std::string name = image_uri("wb-off");
        create_ok(L, name, 1 << 20);
        auto d = open_ok(L, name);
        auto p = pattern(len, 41, off);
        REQUIRE(sync_pwrite(L, *d, off, p.data(), len) == 0);
        auto on_disk = read_file(brick_file("wb-off"), off_t(off), len);
        CHECK_BYTES(on_disk.data(), p.data(), len, off);
        CHECK(sync_wait(L, d->flush()) == 0);
        on_disk = read_file(brick_file("wb-off"), off_t(off), len);
        CHECK_BYTES(on_disk.data(), p.data(), len, off);
        close_layer(L, *d);
    }
    SECTION("write-behind on: a write acknowledged while the brick is frozen reaches its file "
            "through flush")
    {
        ctl("set performance.write-behind on");
        REQUIRE(ctl("get performance.write-behind") == "on");
        std::string name = image_uri("wb-on");
        create_ok(L, name, 1 << 20);
        auto d = open_ok(L, name);
        auto p = pattern(len, 42, off);
        // open-behind defers the brick's open to the first write: make it
        // happen now, so that the write below needs nothing from the brick.
        unsigned char one = 1;
        REQUIRE(sync_pwrite(L, *d, 900000, &one, 1) == 0);
        REQUIRE(sync_wait(L, d->flush()) == 0);
        {
            HangGuard guard(30s, "a write-behind write to a frozen brick");
            ctl("freeze-brick");
            // Acknowledged by write-behind: the brick is stopped and cannot
            // have written anything, and its file still holds zeros.
            REQUIRE(sync_pwrite(L, *d, off, p.data(), len) == 0);
            auto before = read_file(brick_file("wb-on"), off_t(off), len);
            CHECK_ZEROS(before.data(), len, off);
            ctl("thaw-brick");
            CHECK(sync_wait(L, d->flush()) == 0);
        }
        auto on_disk = read_file(brick_file("wb-on"), off_t(off), len);
        CHECK_BYTES(on_disk.data(), p.data(), len, off);
        close_layer(L, *d);
    }
}
