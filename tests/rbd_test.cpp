// Tests of the rbd backend against a real single-node Ceph cluster. The
// cluster comes from COBLK_CEPH_CONF (its ceph.conf) and COBLK_CEPH_POOL;
// run them under tests/services/with-ceph.sh, which starts one on 127.0.0.1
// and sets both (and COBLK_CEPH_STATE, where the OSD's pid file is).
// The rbd, qemu-img and qemu-io commands check what coblk wrote from outside.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backends/rbd.h"
#include "backends/rbd_connection.h"
#include "engine/loop.h"
#include "engine/sync.h"
#include "uri/open.h"
#include "uri/uri.h"
#include "tests/foreign_stress.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::test;
using Catch::Matchers::Contains;

namespace {

// The value of environment variable `name`; fails the test when unset.
std::string env_or_fail(const char* name)
{
    const char* v = std::getenv(name);
    if (!v || !*v)
        FAIL(name << " is not set: run the [rbd] tests under tests/services/with-ceph.sh, "
                     "which starts a single-node Ceph cluster on 127.0.0.1 and sets "
                     "COBLK_CEPH_CONF, COBLK_CEPH_POOL and COBLK_CEPH_STATE");
    return v;
}

std::string conf() { return env_or_fail("COBLK_CEPH_CONF"); }

std::string pool()
{
    const char* p = std::getenv("COBLK_CEPH_POOL");
    return p && *p ? p : "rbd";
}

// A per-process image name in the pool.
std::string image(const std::string& name)
{
    return fmt::format("coblk-test-{}-{}", getpid(), name);
}

// The rbd: URI of image `img` (with "@snap" appended when given) and `extra`
// options (":key=value...").
std::string rbd_uri(const std::string& img, const std::string& snap = "",
                    const std::string& extra = "")
{
    return fmt::format("rbd:{}/{}{}:conf={}{}", pool(), img, snap.empty() ? "" : "@" + snap,
                       conf(), extra);
}

// The rbd command on the test cluster, bounded so that a dead cluster
// cannot hang the test.
ShellResult rbd_cmd(const std::string& args)
{
    return shell(fmt::format("timeout 60 rbd -c '{}' --rados-osd-op-timeout 30 "
                             "--rados-mon-op-timeout 30 {} 2>&1", conf(), args));
}

Result<std::unique_ptr<Layer>> try_open(Loop& L, const std::string& name, bool read_only = false,
                                        const std::string& format = "rbd")
{
    OpenOptions o;
    o.format = format;
    o.read_only = read_only;
    return sync_wait(L, open_device(L, name, o));
}

std::unique_ptr<Layer> open_ok(Loop& L, const std::string& name, bool read_only = false)
{
    return must(try_open(L, name, read_only), "open_device(" + name + ")");
}

// Creates image `img` of `size` bytes through coblk, removing a leftover
// of an earlier run with the same pid first.
void create_ok(Loop& L, const std::string& img, uint64_t size)
{
    rbd_cmd(fmt::format("snap purge {}/{}", pool(), img));
    rbd_cmd(fmt::format("rm --no-progress {}/{}", pool(), img));
    CreateOptions o;
    o.size = size;
    std::string name = rbd_uri(img);
    must(sync_wait(L, create_image(L, name, o)), "create_image(" + name + ")");
}

// Removes image `img` and its snapshots with the rbd command.
void remove_image(const std::string& img)
{
    rbd_cmd(fmt::format("snap purge {}/{}", pool(), img));
    auto r = rbd_cmd(fmt::format("rm --no-progress {}/{}", pool(), img));
    INFO(r.out);
    CHECK(r.status == 0);
}

double seconds_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Writes `len` bytes of `src` at `off` as three iovecs of uneven size.
Task<int> pwrite_split(Layer& l, uint64_t off, const unsigned char* src, size_t len)
{
    iovec v[3];
    size_t a = len / 3, b = len / 2;
    v[0] = {const_cast<unsigned char*>(src), a};
    v[1] = {const_cast<unsigned char*>(src) + a, b - a};
    v[2] = {const_cast<unsigned char*>(src) + b, len - b};
    co_return co_await l.pwritev(off, v, 3);
}

// Writes `count` random extents of pattern data into `l` and `ref`.
void scribble(Loop& L, Layer& l, std::vector<unsigned char>& ref, uint32_t seed, int count,
              uint64_t max_len)
{
    std::mt19937_64 rng(seed);
    for (int i = 0; i < count; i++) {
        uint64_t len = 1 + rng() % max_len;
        uint64_t off = rng() % (ref.size() - len + 1);
        auto p = pattern(len, seed * 1000 + uint32_t(i), off);
        INFO("write " << i << " at " << off << " len " << len);
        REQUIRE(sync_wait(L, pwrite_split(l, off, p.data(), len)) == 0);
        std::copy(p.begin(), p.end(), ref.begin() + long(off));
    }
}

// The PID of the test cluster's OSD, from its pid file.
pid_t osd_pid()
{
    std::string state = env_or_fail("COBLK_CEPH_STATE");
    std::ifstream f(state + "/run/osd.0.pid");
    long pid = 0;
    f >> pid;
    if (pid <= 0)
        FAIL("no OSD pid in " << state << "/run/osd.0.pid");
    return pid_t(pid);
}

// Sends SIGCONT to a stopped process when it goes out of scope, however
// the test leaves.
struct Thaw {
    pid_t pid;
    ~Thaw() { kill(pid, SIGCONT); }
};

} // namespace

TEST_CASE("rbd: create, open, size, and odd-sized I/O match a reference buffer", "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string img = image("roundtrip");
    const uint64_t size = 9 * 1048576 + 123;  // crosses 4 MiB objects, odd tail
    create_ok(L, img, size);
    auto d = open_ok(L, rbd_uri(img));
    CHECK(std::string(d->kind()) == "rbd");
    CHECK(d->size() == size);
    CHECK_FALSE(d->read_only());

    std::vector<unsigned char> ref(size, 0);
    CHECK_ZEROS(layer_read(L, *d, 0, size).data(), size, 0);
    scribble(L, *d, ref, 1, 40, 300000);
    // Across the 4 MiB object boundary, and the last byte.
    auto edge = pattern(100000, 77, (4 << 20) - 50000);
    REQUIRE(sync_pwrite(L, *d, (4 << 20) - 50000, edge.data(), edge.size()) == 0);
    std::copy(edge.begin(), edge.end(), ref.begin() + (4 << 20) - 50000);
    unsigned char x = 0xEE;
    REQUIRE(sync_pwrite(L, *d, size - 1, &x, 1) == 0);
    ref[size - 1] = x;

    auto all = layer_read(L, *d, 0, size);
    CHECK_BYTES(all.data(), ref.data(), size, 0);
    std::mt19937_64 rng(2);
    for (int i = 0; i < 30; i++) {
        uint64_t len = 1 + rng() % 300000;
        uint64_t off = rng() % (size - len + 1);
        INFO("read at " << off << " len " << len);
        auto got = layer_read(L, *d, off, len);
        CHECK_BYTES(got.data(), ref.data() + off, len, off);
    }
    CHECK(sync_pwrite(L, *d, size, &x, 1) == -EINVAL);
    CHECK(sync_pread(L, *d, size - 1, &x, 2) == -EINVAL);
    REQUIRE(sync_wait(L, d->flush()) == 0);
    close_layer(L, *d);
    CHECK(sync_pread(L, *d, 0, &x, 1) == -EBADF);

    // Reopened (raw, probed), the data is still there.
    auto again = must(try_open(L, rbd_uri(img), false, ""), "open raw over rbd");
    CHECK(std::string(again->kind()) == "raw");
    CHECK(std::string(again->protocol()) == "rbd");
    CHECK(again->size() == size);
    auto back = layer_read(L, *again, 0, size);
    CHECK_BYTES(back.data(), ref.data(), size, 0);
    close_layer(L, *again);
    remove_image(img);
}

TEST_CASE("rbd: what coblk wrote is what qemu-img compare and rbd export see", "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string img = image("interop");
    const uint64_t size = 6 * 1048576;
    create_ok(L, img, size);
    std::vector<unsigned char> ref(size, 0);
    {
        auto d = open_ok(L, rbd_uri(img));
        scribble(L, *d, ref, 11, 25, 200000);
        REQUIRE(sync_wait(L, d->flush()) == 0);
        close_layer(L, *d);
    }
    std::string local = dir.file("ref.raw");
    write_file(local, ref.data(), ref.size());
    std::string name = rbd_uri(img);
    auto same = shell("qemu-img compare -f raw -F raw '" + name + "' '" + local + "' 2>&1");
    INFO(same.out);
    CHECK(same.status == 0);

    std::string exported = dir.file("export.raw");
    auto ex = rbd_cmd(fmt::format("export --no-progress {}/{} '{}'", pool(), img, exported));
    INFO(ex.out);
    REQUIRE(ex.status == 0);
    auto got = read_whole_file(exported);
    REQUIRE(got.size() == size);
    CHECK_BYTES(got.data(), ref.data(), size, 0);

    // The comparison can fail: one byte differs locally.
    unsigned char flip = ref[4321] ^ 0xFF;
    write_file(local, &flip, 1, 4321);
    auto differ = shell("qemu-img compare -f raw -F raw '" + name + "' '" + local + "' 2>&1");
    INFO(differ.out);
    CHECK(differ.status == 1);

    // The reverse: qemu-io writes, coblk reads.
    auto w = shell("qemu-io -f raw -c 'write -P 0x5a 12345 70001' '" + name + "' 2>&1");
    INFO(w.out);
    REQUIRE(w.status == 0);
    std::fill(ref.begin() + 12345, ref.begin() + 12345 + 70001, 0x5a);
    auto d = open_ok(L, name);
    auto back = layer_read(L, *d, 0, size);
    CHECK_BYTES(back.data(), ref.data(), size, 0);
    close_layer(L, *d);
    remove_image(img);
}

namespace {

struct Tally {
    std::vector<int> done;
    std::thread::id loop_thread;
    int wrong_thread = 0;
    int failed = 0;
};

Task<void> one_request(Layer& l, Tally& t, int i, std::vector<unsigned char>& buf)
{
    uint64_t off = uint64_t(i) * 65536 + uint64_t(i) * 7;
    fill_pattern(buf.data(), buf.size(), 1000 + uint32_t(i), off);
    int r = co_await l.pwrite(off, buf.data(), buf.size());
    if (std::this_thread::get_id() != t.loop_thread)
        t.wrong_thread++;
    if (r != 0)
        t.failed++;
    std::vector<unsigned char> back(buf.size());
    r = co_await l.pread(off, back.data(), back.size());
    if (std::this_thread::get_id() != t.loop_thread)
        t.wrong_thread++;
    if (r != 0 || back != buf)
        t.failed++;
    t.done[size_t(i)]++;
}

Task<void> many(Layer& l, Tally& t, std::vector<std::vector<unsigned char>>& bufs)
{
    TaskGroup g;
    for (int i = 0; i < int(bufs.size()); i++)
        g.spawn(one_request(l, t, i, bufs[size_t(i)]));
    co_await g.join();
}

} // namespace

TEST_CASE("rbd: 64 concurrent requests complete once each, on the loop's thread", "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string img = image("concurrent");
    create_ok(L, img, 64 * 65536 + 64 * 7 + 65536);
    auto d = open_ok(L, rbd_uri(img));
    Tally t;
    t.done.assign(64, 0);
    t.loop_thread = std::this_thread::get_id();
    std::vector<std::vector<unsigned char>> bufs(64, std::vector<unsigned char>(40000 + 1));
    sync_wait(L, many(*d, t, bufs));
    CHECK(t.failed == 0);
    CHECK(t.wrong_thread == 0);
    for (int i = 0; i < 64; i++) {
        INFO("request " << i);
        CHECK(t.done[size_t(i)] == 1);
    }
    CHECK(d->in_flight() == 0);
    close_layer(L, *d);
    remove_image(img);
}

TEST_CASE("rbd: 256 requests in flight on 4 loops share one cluster handle; each resumes "
          "once, on its own loop", "[rbd]")
{
    auto loop = make_loop();
    StressConfig c;
    std::string img = image("stress");
    c.name = rbd_uri(img);
    c.format = "rbd";
    c.connections = rbd_connection_count;
    create_ok(*loop, img, uint64_t(c.loops * c.per_loop) * c.stride);
    check_foreign_stress(*loop, c);
    remove_image(img);
}

TEST_CASE("rbd: flush, discard and write_zeroes", "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string img = image("zeroes");
    const uint64_t size = 8 * 1048576;
    create_ok(L, img, size);
    auto d = open_ok(L, rbd_uri(img));
    auto p = pattern(size, 7);
    REQUIRE(sync_pwrite(L, *d, 0, p.data(), size) == 0);
    CHECK(sync_wait(L, d->flush()) == 0);

    REQUIRE(sync_wait(L, d->write_zeroes(100001, 300007)) == 0);
    auto got = layer_read(L, *d, 0, size);
    CHECK_ZEROS(got.data() + 100001, 300007, 100001);
    CHECK_BYTES(got.data(), p.data(), 100001, 0);
    CHECK_BYTES(got.data() + 400008, p.data() + 400008, size - 400008, 400008);

    // A whole object discarded, then zeroed (with kReqNoUnmap): zeros, the
    // rest intact.
    REQUIRE(sync_wait(L, d->discard(4 << 20, 4 << 20)) == 0);
    REQUIRE(sync_wait(L, d->write_zeroes(4 << 20, 4 << 20, kReqNoUnmap)) == 0);
    got = layer_read(L, *d, 0, size);
    CHECK_ZEROS(got.data() + (4 << 20), 4 << 20, 4 << 20);
    CHECK_BYTES(got.data() + 400008, p.data() + 400008, (4 << 20) - 400008, 400008);
    CHECK(sync_wait(L, d->flush()) == 0);
    close_layer(L, *d);
    CHECK(sync_wait(L, d->flush()) == -EBADF);
    remove_image(img);
}

TEST_CASE("rbd: truncate resizes; an image shrunk behind our back reads as zeros past its end",
          "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string img = image("truncate");
    create_ok(L, img, 65536);
    auto d = open_ok(L, rbd_uri(img));
    auto p = pattern(65536, 3);
    REQUIRE(sync_pwrite(L, *d, 0, p.data(), p.size()) == 0);
    REQUIRE(sync_wait(L, d->truncate(1048576 + 5)) == 0);
    CHECK(d->size() == 1048576 + 5);
    auto tail = layer_read(L, *d, 65536, 1048576 + 5 - 65536);
    CHECK_ZEROS(tail.data(), tail.size(), 65536);

    // Another client shrinks the image: a read that straddles the new end
    // gets the data up to it, then zeros; one wholly past it gets zeros.
    auto r = rbd_cmd(fmt::format("resize --allow-shrink --no-progress --size 1000B {}/{}",
                                 pool(), img));
    INFO(r.out);
    REQUIRE(r.status == 0);
    std::vector<unsigned char> got(4096, 0xAA);
    bool seen = false;
    // librbd learns of the resize through its header watch: give it a moment.
    for (int i = 0; i < 100 && !seen; i++) {
        REQUIRE(sync_pread(L, *d, 0, got.data(), got.size()) == 0);
        seen = all_bytes(got.data() + 1000, 4096 - 1000, 0);
        if (!seen)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    REQUIRE(seen);
    CHECK_BYTES(got.data(), p.data(), 1000, 0);
    std::vector<unsigned char> far(4096, 0xAA);
    REQUIRE(sync_pread(L, *d, 8192, far.data(), far.size()) == 0);
    CHECK_ZEROS(far.data(), far.size(), 8192);

    REQUIRE(sync_wait(L, d->truncate(8192)) == 0);
    close_layer(L, *d);
    auto again = open_ok(L, rbd_uri(img));
    CHECK(again->size() == 8192);
    close_layer(L, *again);
    remove_image(img);
}

TEST_CASE("rbd: snapshots made through coblk are rbd's, read back old data, revert and delete",
          "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string img = image("snap");
    const uint64_t size = 5 * 1048576;
    create_ok(L, img, size);
    auto d = must(try_open(L, rbd_uri(img), false, "raw"), "open raw over rbd");
    std::vector<unsigned char> old_ref(size, 0);
    scribble(L, *d, old_ref, 21, 10, 500000);
    must(sync_wait(L, d->snapshot_create("s1")), "snapshot_create(s1)");
    std::vector<unsigned char> new_ref = old_ref;
    scribble(L, *d, new_ref, 22, 10, 500000);
    REQUIRE(sync_wait(L, d->truncate(size + 1048576)) == 0);
    new_ref.resize(size + 1048576, 0);

    auto ls = rbd_cmd(fmt::format("snap ls --format json {}/{}", pool(), img));
    INFO(ls.out);
    REQUIRE(ls.status == 0);
    CHECK_THAT(ls.out, Contains("\"name\":\"s1\""));
    CHECK_THAT(ls.out, Contains(fmt::format("\"size\":{}", size)));

    auto list = must(sync_wait(L, d->snapshot_list()), "snapshot_list");
    REQUIRE(list.size() == 1);
    CHECK(list[0].name == "s1");
    CHECK(list[0].size == size);
    CHECK(list[0].timestamp > 1600000000);

    auto again = sync_wait(L, d->snapshot_create("s1"));
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().code == EEXIST);
    CHECK_THAT(again.error().message, Contains("s1"));

    // The snapshot, opened by name, has the old data and refuses writes.
    auto s = open_ok(L, rbd_uri(img, "s1"));
    CHECK(s->read_only());
    CHECK(s->size() == size);
    auto old_data = layer_read(L, *s, 0, size);
    CHECK_BYTES(old_data.data(), old_ref.data(), size, 0);
    unsigned char x = 1;
    CHECK(sync_pwrite(L, *s, 0, &x, 1) == -EROFS);
    CHECK(sync_wait(L, s->snapshot_create("nope")).error().code == EROFS);
    close_layer(L, *s);
    // The head has the new data.
    auto head = layer_read(L, *d, 0, new_ref.size());
    CHECK_BYTES(head.data(), new_ref.data(), new_ref.size(), 0);

    // Revert: the head is the snapshot again, size included.
    must(sync_wait(L, d->snapshot_revert("s1")), "snapshot_revert(s1)");
    CHECK(d->size() == size);
    auto reverted = layer_read(L, *d, 0, size);
    CHECK_BYTES(reverted.data(), old_ref.data(), size, 0);

    auto missing = sync_wait(L, d->snapshot_delete("no-such"));
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == ENOENT);
    CHECK_THAT(missing.error().message, Contains("no-such"));
    must(sync_wait(L, d->snapshot_delete("s1")), "snapshot_delete(s1)");
    auto ls2 = rbd_cmd(fmt::format("snap ls --format json {}/{}", pool(), img));
    CHECK(ls2.status == 0);
    CHECK(ls2.out.find("\"s1\"") == std::string::npos);
    close_layer(L, *d);
    remove_image(img);
}

TEST_CASE("rbd: a snapshot made with the rbd command opens in coblk", "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string img = image("clisnap");
    const uint64_t size = 2 * 1048576;
    create_ok(L, img, size);
    std::vector<unsigned char> ref(size, 0);
    auto d = open_ok(L, rbd_uri(img));
    scribble(L, *d, ref, 31, 8, 200000);
    REQUIRE(sync_wait(L, d->flush()) == 0);
    auto c = rbd_cmd(fmt::format("snap create --no-progress {}/{}@from-cli", pool(), img));
    INFO(c.out);
    REQUIRE(c.status == 0);
    std::vector<unsigned char> later = ref;
    scribble(L, *d, later, 32, 8, 200000);

    auto s = open_ok(L, rbd_uri(img, "from-cli"));
    auto got = layer_read(L, *s, 0, size);
    CHECK_BYTES(got.data(), ref.data(), size, 0);
    close_layer(L, *s);
    auto list = must(sync_wait(L, d->snapshot_list()), "snapshot_list");
    REQUIRE(list.size() == 1);
    CHECK(list[0].name == "from-cli");
    close_layer(L, *d);
    remove_image(img);
}

TEST_CASE("rbd: errors name the pool, image, snapshot, file or option at fault", "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string img = image("errors");
    create_ok(L, img, 65536);

    SECTION("missing pool")
    {
        auto r = try_open(L, fmt::format("rbd:coblk-no-such-pool/{}:conf={}", img, conf()));
        REQUIRE_FALSE(r.ok());
        INFO(r.error().message);
        CHECK(r.error().code == ENOENT);
        CHECK_THAT(r.error().message, Contains("pool 'coblk-no-such-pool'"));
    }
    SECTION("missing image")
    {
        auto r = try_open(L, rbd_uri("coblk-no-such-image"));
        REQUIRE_FALSE(r.ok());
        INFO(r.error().message);
        CHECK(r.error().code == ENOENT);
        CHECK_THAT(r.error().message, Contains("image 'coblk-no-such-image'"));
        CHECK_THAT(r.error().message, Contains(conf()));
    }
    SECTION("missing snapshot")
    {
        auto r = try_open(L, rbd_uri(img, "no-such-snap"));
        REQUIRE_FALSE(r.ok());
        INFO(r.error().message);
        CHECK(r.error().code == ENOENT);
        CHECK_THAT(r.error().message, Contains("snapshot 'no-such-snap'"));
    }
    SECTION("bad conf path")
    {
        auto r = try_open(L, fmt::format("rbd:{}/{}:conf=/nonexistent/ceph.conf", pool(), img));
        REQUIRE_FALSE(r.ok());
        INFO(r.error().message);
        CHECK(r.error().code == ENOENT);
        CHECK_THAT(r.error().message, Contains("'/nonexistent/ceph.conf'"));
    }
    SECTION("unknown option")
    {
        auto r = try_open(L, rbd_uri(img, "", ":rbd_no_such_option=1"));
        REQUIRE_FALSE(r.ok());
        INFO(r.error().message);
        CHECK(r.error().code == EINVAL);
        CHECK_THAT(r.error().message, Contains("'rbd_no_such_option'"));
    }
    SECTION("bad option value")
    {
        auto r = try_open(L, rbd_uri(img, "", ":rados_osd_op_timeout=soon"));
        REQUIRE_FALSE(r.ok());
        INFO(r.error().message);
        CHECK(r.error().code == EINVAL);
        CHECK_THAT(r.error().message, Contains("rados_osd_op_timeout"));
        CHECK_THAT(r.error().message, Contains("'soon'"));
    }
    SECTION("creating an image that exists")
    {
        CreateOptions o;
        o.size = 4096;
        std::string name = rbd_uri(img);
        auto r = sync_wait(L, create_image(L, name, o));
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == EEXIST);
        CHECK_THAT(r.error().message, Contains(img));
    }
    SECTION("cluster down at open: ETIMEDOUT after client_mount_timeout")
    {
        // The conf's keys, but a mon address where nothing listens.
        auto t0 = std::chrono::steady_clock::now();
        auto r = try_open(L, rbd_uri(img, "", ":mon_host=127.0.0.1\\:1:client_mount_timeout=3"));
        double took = seconds_since(t0);
        REQUIRE_FALSE(r.ok());
        INFO(r.error().message);
        CHECK(r.error().code == ETIMEDOUT);
        CHECK_THAT(r.error().message, Contains("127.0.0.1:1"));
        CHECK(took >= 2.5);
        CHECK(took < 20);  // hang guard
    }
    remove_image(img);
}

TEST_CASE("rbd: a frozen OSD fails I/O in bounded time; after it thaws a new open works",
          "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string img = image("frozen");
    create_ok(L, img, 16 * 1048576);
    // librbd's cache would acknowledge a write before it reaches the OSD:
    // cache=none turns it off (as QEMU does), so both requests below need
    // the OSD.
    std::string name = rbd_uri(img, "", ":rados_osd_op_timeout=3");
    OpenOptions o;
    o.format = "rbd";
    o.cache = "none";
    auto d = must(sync_wait(L, open_device(L, name, o)), "open with cache=none");
    auto p = pattern(4096, 5);
    REQUIRE(sync_pwrite(L, *d, 0, p.data(), p.size()) == 0);

    pid_t osd = osd_pid();
    int w = 0, r = 0;
    double took_w = 0, took_r = 0;
    {
        Thaw thaw{osd};
        REQUIRE(kill(osd, SIGSTOP) == 0);
        auto t0 = std::chrono::steady_clock::now();
        auto q = pattern(4096, 6);
        // Another object, not yet written: with object-map on, librbd
        // updates the map first, so this fails after two op timeouts (6 s).
        w = sync_pwrite(L, *d, 8 << 20, q.data(), q.size());
        took_w = seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        std::vector<unsigned char> back(4096);
        r = sync_pread(L, *d, 12 << 20, back.data(), back.size());
        took_r = seconds_since(t0);
    }
    CHECK(w == -ETIMEDOUT);
    CHECK(took_w >= 2.5);
    CHECK(took_w < 30);  // hang guard
    CHECK(r == -ETIMEDOUT);
    CHECK(took_r >= 2.5);
    CHECK(took_r < 30);  // hang guard
    close_layer(L, *d);

    // Thawed: a new open reads and writes again.
    auto e = open_ok(L, name);
    REQUIRE(sync_pwrite(L, *e, 4096, p.data(), p.size()) == 0);
    auto back = layer_read(L, *e, 0, 4096);
    CHECK_BYTES(back.data(), p.data(), 4096, 0);
    close_layer(L, *e);
    remove_image(img);
}

TEST_CASE("rbd: images opened with the same options share one cluster handle", "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string a = image("share-a"), b = image("share-b");
    create_ok(L, a, 4096);
    create_ok(L, b, 8192);
    size_t before = rbd_connection_count();
    auto da = open_ok(L, rbd_uri(a));
    CHECK(rbd_connection_count() == before + 1);
    auto db = open_ok(L, rbd_uri(b));
    CHECK(rbd_connection_count() == before + 1);
    auto dc = open_ok(L, rbd_uri(b, "", ":rbd_cache=false"));  // other options: another
    CHECK(rbd_connection_count() == before + 2);
    close_layer(L, *dc);
    CHECK(rbd_connection_count() == before + 1);
    close_layer(L, *da);
    CHECK(rbd_connection_count() == before + 1);  // b still holds it
    unsigned char x = 9;
    CHECK(sync_pwrite(L, *db, 0, &x, 1) == 0);
    close_layer(L, *db);
    CHECK(rbd_connection_count() == before);
    remove_image(a);
    remove_image(b);
}

TEST_CASE("rbd: namespaces are separate image name spaces", "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string ns = fmt::format("coblk-ns-{}", getpid());
    auto mk = rbd_cmd(fmt::format("namespace create --pool {} --namespace {}", pool(), ns));
    INFO(mk.out);
    REQUIRE(mk.status == 0);
    std::string img = image("ns");
    auto c = rbd_cmd(fmt::format("create --size 1M {}/{}/{}", pool(), ns, img));
    INFO(c.out);
    REQUIRE(c.status == 0);
    std::string name = fmt::format("rbd:{}/{}/{}:conf={}", pool(), ns, img, conf());
    auto d = open_ok(L, name);
    auto p = pattern(4096, 8);
    REQUIRE(sync_pwrite(L, *d, 0, p.data(), p.size()) == 0);
    close_layer(L, *d);
    // Not visible outside the namespace.
    auto outside = try_open(L, rbd_uri(img));
    CHECK(outside.error().code == ENOENT);
    auto e = open_ok(L, name);
    auto back = layer_read(L, *e, 0, 4096);
    CHECK_BYTES(back.data(), p.data(), 4096, 0);
    close_layer(L, *e);
    rbd_cmd(fmt::format("rm --no-progress {}/{}/{}", pool(), ns, img));
    rbd_cmd(fmt::format("namespace remove --pool {} --namespace {}", pool(), ns));
}
