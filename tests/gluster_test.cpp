// Tests of the gluster backend against a real volume. The volume's URI
// prefix comes from COBLK_GLUSTER_URI (gluster://127.0.0.1/coblk); run them
// under tests/services/with-gluster.sh, which starts a single-node server on
// 127.0.0.1 and sets it.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backends/gluster.h"
#include "backends/gluster_connection.h"
#include "engine/loop.h"
#include "engine/sync.h"
#include "uri/open.h"
#include "uri/uri.h"
#include "tests/foreign_stress.h"
#include "tests/gluster_helpers.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::test;
using namespace coblk::test::gluster;
using Catch::Matchers::Contains;

namespace {

int sync_flush(Loop& L, Layer& l) { return sync_wait(L, l.flush()); }
int sync_discard(Loop& L, Layer& l, uint64_t off, uint64_t len)
{
    return sync_wait(L, l.discard(off, len));
}
int sync_zero(Loop& L, Layer& l, uint64_t off, uint64_t len)
{
    return sync_wait(L, l.write_zeroes(off, len));
}
int sync_truncate(Loop& L, Layer& l, uint64_t size) { return sync_wait(L, l.truncate(size)); }

// Writes `len` bytes of `src` at `off` as up to three iovecs of uneven size.
Task<int> pwrite_split(Layer& l, uint64_t off, const unsigned char* src, size_t len)
{
    iovec v[3];
    size_t a = len / 3, b = len / 2;
    v[0] = {const_cast<unsigned char*>(src), a};
    v[1] = {const_cast<unsigned char*>(src) + a, b - a};
    v[2] = {const_cast<unsigned char*>(src) + b, len - b};
    co_return co_await l.pwritev(off, v, 3);
}

double seconds_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Opening `name`, whose server address has nothing listening, fails within
// a few seconds with ENOTCONN or ECONNREFUSED, naming `where` and `volume`.
void check_nobody_listens(Loop& L, const std::string& name, const std::string& where,
                          const std::string& volume)
{
    auto t0 = std::chrono::steady_clock::now();
    auto r = try_open(L, name);
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message);
    CHECK((r.error().code == ENOTCONN || r.error().code == ECONNREFUSED));
    CHECK_THAT(r.error().message, Contains(where));
    CHECK_THAT(r.error().message, Contains(volume));
    CHECK(seconds_since(t0) < 10);
}

} // namespace

TEST_CASE("gluster: create, open, size, and odd-sized I/O match a reference buffer", "[gluster]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string name = image_uri("roundtrip");
    const uint64_t size = 3 * 1048576 + 123;
    create_ok(L, name, size);
    auto d = open_ok(L, name);
    CHECK(std::string(d->kind()) == "gluster");
    CHECK(d->size() == size);
    CHECK(d->limits().request_alignment == 1);
    CHECK(d->limits().max_transfer == 512ull << 20);

    std::vector<unsigned char> ref(size, 0);
    // A new image reads as zeros.
    CHECK_ZEROS(layer_read(L, *d, 0, size).data(), size, 0);

    std::mt19937_64 rng(5);
    for (uint32_t i = 0; i < 40; i++) {
        uint64_t len = 1 + rng() % 200000;
        uint64_t off = rng() % (size - len + 1);
        auto p = pattern(len, i + 1, off);
        INFO("write " << i << " at " << off << " len " << len);
        REQUIRE(sync_wait(L, pwrite_split(*d, off, p.data(), len)) == 0);
        std::copy(p.begin(), p.end(), ref.begin() + long(off));
    }
    // The last byte, and one byte at an odd spot.
    unsigned char x = 0xEE;
    REQUIRE(sync_pwrite(L, *d, size - 1, &x, 1) == 0);
    ref[size - 1] = x;
    REQUIRE(sync_pwrite(L, *d, 777777, &x, 1) == 0);
    ref[777777] = x;

    auto all = layer_read(L, *d, 0, size);
    CHECK_BYTES(all.data(), ref.data(), size, 0);
    for (int i = 0; i < 30; i++) {
        uint64_t len = 1 + rng() % 300000;
        uint64_t off = rng() % (size - len + 1);
        INFO("read at " << off << " len " << len);
        auto got = layer_read(L, *d, off, len);
        CHECK_BYTES(got.data(), ref.data() + off, len, off);
    }
    // An image keeps its size: past the end is refused.
    CHECK(sync_pwrite(L, *d, size, &x, 1) == -EINVAL);
    CHECK(sync_pread(L, *d, size - 1, &x, 2) == -EINVAL);
    CHECK(d->size() == size);
    close_layer(L, *d);
    CHECK(sync_pread(L, *d, 0, &x, 1) == -EBADF);

    // Reopened, the data is still there.
    auto again = open_ok(L, name);
    CHECK(again->size() == size);
    auto back = layer_read(L, *again, 0, size);
    CHECK_BYTES(back.data(), ref.data(), size, 0);
    close_layer(L, *again);
}

TEST_CASE("gluster: data written by coblk matches qemu-img compare, and the reverse",
          "[gluster]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string name = image_uri("qemu");
    // A whole number of sectors: QEMU's gluster driver fails a short read at
    // EOF with EIO, and it reads whole sectors.
    const uint64_t size = 2 * 1048576 + 4096 * 3 + 512;
    create_ok(L, name, size);
    std::vector<unsigned char> ref(size, 0);
    {
        auto d = open_ok(L, name);
        std::mt19937_64 rng(11);
        for (uint32_t i = 0; i < 20; i++) {
            uint64_t len = 1 + rng() % 100000;
            uint64_t off = rng() % (size - len + 1);
            auto p = pattern(len, 100 + i, off);
            REQUIRE(sync_pwrite(L, *d, off, p.data(), len) == 0);
            std::copy(p.begin(), p.end(), ref.begin() + long(off));
        }
        // Flush: qemu-img is another client and sees only what reached the brick.
        REQUIRE(sync_flush(L, *d) == 0);
        close_layer(L, *d);
    }
    std::string local = dir.file("ref.raw");
    write_file(local, ref.data(), ref.size());
    auto same = shell("qemu-img compare -f raw -F raw '" + name + "' '" + local + "' 2>&1");
    INFO(same.out);
    CHECK(same.status == 0);
    // And the comparison can fail: one byte differs locally.
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
    auto got = layer_read(L, *d, 0, size);
    CHECK_BYTES(got.data(), ref.data(), size, 0);
    close_layer(L, *d);
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

TEST_CASE("gluster: 64 concurrent requests complete once each, on the loop's thread",
          "[gluster]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string name = image_uri("concurrent");
    create_ok(L, name, 64 * 65536 + 64 * 7 + 65536);
    auto d = open_ok(L, name);
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
}

TEST_CASE("gluster: 256 requests in flight on 4 loops share one connection; each resumes "
          "once, on its own loop", "[gluster]")
{
    auto loop = make_loop();
    StressConfig c;
    c.name = image_uri("stress");
    c.format = "gluster";
    c.connections = gluster_connection_count;
    create_ok(*loop, c.name, uint64_t(c.loops * c.per_loop) * c.stride);
    check_foreign_stress(*loop, c);
}

TEST_CASE("gluster: flush, discard and write_zeroes", "[gluster]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string name = image_uri("zeroes");
    const uint64_t size = 4 * 1048576;
    create_ok(L, name, size);
    auto d = open_ok(L, name);
    auto p = pattern(size, 7);
    REQUIRE(sync_pwrite(L, *d, 0, p.data(), size) == 0);
    CHECK(sync_flush(L, *d) == 0);
    CHECK(d->limits().discard);
    CHECK(d->limits().write_zeroes);

    // write_zeroes: exact, odd range.
    REQUIRE(sync_zero(L, *d, 100001, 300007) == 0);
    auto got = layer_read(L, *d, 0, size);
    CHECK_ZEROS(got.data() + 100001, 300007, 100001);
    CHECK_BYTES(got.data(), p.data(), 100001, 0);
    CHECK_BYTES(got.data() + 400008, p.data() + 400008, size - 400008, 400008);

    // discard then zero the same range: reads as zeros, the rest intact.
    REQUIRE(sync_discard(L, *d, 1048576, 1048576) == 0);
    REQUIRE(sync_zero(L, *d, 1048576, 1048576) == 0);
    got = layer_read(L, *d, 0, size);
    CHECK_ZEROS(got.data() + 1048576, 1048576, 1048576);
    CHECK_BYTES(got.data() + 2097152, p.data() + 2097152, size - 2097152, 2097152);
    CHECK(sync_flush(L, *d) == 0);
    close_layer(L, *d);
    CHECK(sync_flush(L, *d) == -EBADF);
}

TEST_CASE("gluster: truncate resizes, and a file shrunk behind our back reads as zeros",
          "[gluster]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string name = image_uri("truncate");
    create_ok(L, name, 65536);
    auto d = open_ok(L, name);
    auto p = pattern(65536, 3);
    REQUIRE(sync_pwrite(L, *d, 0, p.data(), p.size()) == 0);
    REQUIRE(sync_truncate(L, *d, 1048576 + 5) == 0);
    CHECK(d->size() == 1048576 + 5);
    auto tail = layer_read(L, *d, 65536, 1048576 + 5 - 65536);
    CHECK_ZEROS(tail.data(), tail.size(), 65536);
    unsigned char x = 1;
    CHECK(sync_pwrite(L, *d, 1048576 + 4, &x, 1) == 0);

    // Another handle shrinks the file: a read of the old range that reaches
    // the new EOF gets the data up to it and zeros after (short read path).
    auto other = open_ok(L, name);
    CHECK(other->size() == 1048576 + 5);
    REQUIRE(sync_truncate(L, *other, 1000) == 0);
    close_layer(L, *other);
    auto got = layer_read(L, *d, 0, 4096);
    CHECK_BYTES(got.data(), p.data(), 1000, 0);
    CHECK_ZEROS(got.data() + 1000, 4096 - 1000, 1000);

    REQUIRE(sync_truncate(L, *d, 8192) == 0);
    close_layer(L, *d);
    auto again = open_ok(L, name);
    CHECK(again->size() == 8192);
    close_layer(L, *again);
}

TEST_CASE("gluster: create_image makes a new file of the requested size", "[gluster]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string name = image_uri("created");
    REQUIRE_FALSE(try_open(L, name).ok());
    create_ok(L, name, 5 * 1048576 + 512);
    auto d = open_ok(L, name);
    CHECK(d->size() == 5 * 1048576 + 512);
    close_layer(L, *d);
    // Creating again truncates to the new size.
    create_ok(L, name, 4096);
    auto e = open_ok(L, name);
    CHECK(e->size() == 4096);
    close_layer(L, *e);
    // Through the probing path too (raw over gluster).
    auto raw = must(sync_wait(L, open_device(L, name, OpenOptions{})), "open raw");
    CHECK(std::string(raw->protocol()) == "gluster");
    close_layer(L, *raw);
}

TEST_CASE("gluster: errors name server, volume and path", "[gluster]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    uri::GlusterSpec s = server_spec();
    std::string host = s.host.find(':') != std::string::npos ? "[" + s.host + "]" : s.host;

    SECTION("wrong volume: ENOENT naming the volume")
    {
        auto t0 = std::chrono::steady_clock::now();
        auto r = try_open(L, "gluster://" + host + "/coblk-no-such-volume/img");
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == ENOENT);
        CHECK_THAT(r.error().message, Contains("coblk-no-such-volume"));
        CHECK(seconds_since(t0) < 10);
    }
    SECTION("wrong port: ENOTCONN within a few seconds")
    {
        check_nobody_listens(L, "gluster://" + host + ":1/" + s.volume + "/img", ":1 ", s.volume);
    }
    SECTION("wrong host (an address where nothing listens): fails within a few seconds")
    {
        // glusterd binds 127.0.0.1 only; 127.0.0.2 is loopback too, but refused.
        check_nobody_listens(L, "gluster://127.0.0.2/" + s.volume + "/img", "127.0.0.2:24007",
                             s.volume);
    }
    SECTION("wrong host (a name with no address): EHOSTUNREACH naming it")
    {
        auto t0 = std::chrono::steady_clock::now();
        auto r = try_open(L, "gluster://coblk-no-such-host.invalid/" + s.volume + "/img");
        REQUIRE_FALSE(r.ok());
        INFO(r.error().message);
        CHECK(r.error().code == EHOSTUNREACH);
        CHECK_THAT(r.error().message, Contains("no address for host 'coblk-no-such-host.invalid'"));
        CHECK_THAT(r.error().message, Contains(s.volume));
        CHECK(seconds_since(t0) < 10);
    }
    SECTION("missing file: ENOENT naming path and volume")
    {
        auto r = try_open(L, volume_uri() + "/coblk-no-such-file.img");
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == ENOENT);
        CHECK_THAT(r.error().message, Contains("/coblk-no-such-file.img"));
        CHECK_THAT(r.error().message, Contains(s.volume));
    }
    SECTION("a server that accepts and never answers: ETIMEDOUT after connect-timeout")
    {
        // A listening socket that is never accepted from: the kernel completes
        // the TCP handshake, then nothing is ever said (a frozen glusterd).
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(lfd >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(listen(lfd, 16) == 0);
        socklen_t al = sizeof a;
        REQUIRE(getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &al) == 0);
        int port = ntohs(a.sin_port);
        auto t0 = std::chrono::steady_clock::now();
        auto r = try_open(L, fmt::format("gluster://127.0.0.1:{}/{}/img?connect-timeout=1.5",
                                         port, s.volume));
        double took = seconds_since(t0);
        close(lfd);
        REQUIRE_FALSE(r.ok());
        INFO(r.error().message);
        CHECK(r.error().code == ETIMEDOUT);
        CHECK_THAT(r.error().message, Contains(s.volume));
        CHECK_THAT(r.error().message, Contains(fmt::format(":{}", port)));
        CHECK(took >= 1.4);
        CHECK(took < 5);
    }
    SECTION("bad options are refused naming them")
    {
        auto r = try_open(L, volume_uri() + "/img?ping-timeout=soon");
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == EINVAL);
        CHECK_THAT(r.error().message, Contains("ping-timeout"));
        r = try_open(L, volume_uri() + "/img?gather-us=20000");
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == EINVAL);
        CHECK_THAT(r.error().message, Contains("gather-us"));
        r = try_open(L, volume_uri() + "/img?client-io-threads=maybe");
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == EINVAL);
        CHECK_THAT(r.error().message, Contains("client-io-threads"));
    }
}

TEST_CASE("gluster: images on one volume share one connection", "[gluster]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string a = image_uri("share-a"), b = image_uri("share-b");
    create_ok(L, a, 4096);
    create_ok(L, b, 8192);
    size_t before = gluster_connection_count();
    auto da = open_ok(L, a);
    CHECK(gluster_connection_count() == before + 1);
    auto db = open_ok(L, b + "?ping-timeout=5");
    CHECK(gluster_connection_count() == before + 1);
    CHECK(db->size() == 8192);
    unsigned char x = 9;
    CHECK(sync_pwrite(L, *da, 0, &x, 1) == 0);
    CHECK(sync_pwrite(L, *db, 0, &x, 1) == 0);
    close_layer(L, *da);
    CHECK(gluster_connection_count() == before + 1);  // b still holds it
    CHECK(sync_pread(L, *db, 0, &x, 1) == 0);
    close_layer(L, *db);
    CHECK(gluster_connection_count() == before);
}

TEST_CASE("gluster: after a connection SIGPIPE is ignored, so a dead brick cannot kill the "
          "process", "[gluster]")
{
    // The test runner leaves SIGPIPE at its default action: whichever
    // gluster test connected first set it to ignored.
    auto loop = make_loop();
    Loop& L = *loop;
    std::string a = image_uri("sigpipe");
    create_ok(L, a, 4096);
    auto d = open_ok(L, a);
    struct sigaction now {};
    REQUIRE(sigaction(SIGPIPE, nullptr, &now) == 0);
    CHECK_FALSE(now.sa_flags & SA_SIGINFO);
    CHECK(now.sa_handler == SIG_IGN);
    close_layer(L, *d);
}

TEST_CASE("gluster: the unix socket transport reaches the same volume", "[gluster]")
{
    // with-gluster.sh exports the server's state dir; glusterd's socket is
    // in its run directory.
    const char* state = std::getenv("COBLK_GLUSTER_STATE");
    std::string sock = state ? std::string(state) + "/run/glusterd.socket" : "";
    if (sock.empty() || access(sock.c_str(), F_OK) != 0) {
        WARN("COBLK_GLUSTER_STATE does not name a state dir with run/glusterd.socket: "
             "unix transport not tested");
        return;
    }
    auto loop = make_loop();
    Loop& L = *loop;
    uri::GlusterSpec s = server_spec();
    std::string tcp_name = image_uri("unix");
    create_ok(L, tcp_name, 65536);
    auto tcp = open_ok(L, tcp_name);
    auto p = pattern(65536, 21);
    REQUIRE(sync_pwrite(L, *tcp, 0, p.data(), p.size()) == 0);
    REQUIRE(sync_flush(L, *tcp) == 0);
    size_t before = gluster_connection_count();
    std::string unix_name = fmt::format("gluster+unix:///{}/coblk-test-{}-unix?socket={}",
                                        s.volume, getpid(), sock);
    auto ux = open_ok(L, unix_name);
    CHECK(gluster_connection_count() == before + 1);  // another server address
    auto got = layer_read(L, *ux, 0, 65536);
    CHECK_BYTES(got.data(), p.data(), 65536, 0);
    close_layer(L, *ux);
    close_layer(L, *tcp);
}

TEST_CASE("gluster: requests over 512 MiB are split and complete whole", "[gluster]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string name = image_uri("big");
    const uint64_t len = (512ull << 20) + 8191;  // crosses the split point unaligned
    const uint64_t off = 4095;
    create_ok(L, name, off + len + 1);
    auto d = open_ok(L, name);
    std::vector<unsigned char> p(len);
    fill_pattern(p.data(), len, 77, off);
    REQUIRE(sync_pwrite(L, *d, off, p.data(), len) == 0);
    std::vector<unsigned char> back(len, 0);
    REQUIRE(sync_pread(L, *d, off, back.data(), len) == 0);
    CHECK_BYTES(back.data(), p.data(), len, off);
    close_layer(L, *d);
    CHECK(d->in_flight() == 0);
}
