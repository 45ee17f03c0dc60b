// Tests of the `null` and `memory` backends.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backends/memory.h"
#include "backends/null.h"
#include "engine/loop.h"
#include "engine/sync.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::test;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

std::unique_ptr<NullLayer> open_null(Loop& L, uri::Options opts, bool ro = false)
{
    return must(NullLayer::open(L, opts, ro), "NullLayer::open");
}

std::unique_ptr<MemoryLayer> open_mem(uri::Options opts, bool ro = false)
{
    return must(MemoryLayer::open(opts, ro), "MemoryLayer::open");
}

} // namespace

// ---------------------------------------------------------------- null

TEST_CASE("null: reads give zeros and writes succeed", "[null]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto n = open_null(L, {});
    CHECK(std::string(n->kind()) == "null");
    std::vector<unsigned char> buf(65536, 0xAA);
    REQUIRE(sync_pread(L, *n, 4096, buf.data(), buf.size()) == 0);
    CHECK_ZEROS(buf.data(), buf.size(), 4096);

    auto data = pattern(65536, 1);
    CHECK(sync_pwrite(L, *n, 0, data.data(), data.size()) == 0);
    CHECK(sync_wait(L, n->flush()) == 0);
    CHECK(sync_wait(L, n->discard(0, 4096)) == 0);
    CHECK(sync_wait(L, n->write_zeroes(0, 4096)) == 0);
    // Writes are dropped: still zeros.
    std::fill(buf.begin(), buf.end(), 0xAA);
    REQUIRE(sync_pread(L, *n, 0, buf.data(), buf.size()) == 0);
    CHECK_ZEROS(buf.data(), buf.size(), 0);
    close_layer(L, *n);
}

TEST_CASE("null: size defaults to 1 GiB and ?size= is honoured", "[null]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto def = open_null(L, {});
    CHECK(def->size() == 1073741824ull);
    close_layer(L, *def);
    auto small = open_null(L, {{"size", "1M"}});
    CHECK(small->size() == 1048576ull);
    close_layer(L, *small);
    auto big = open_null(L, {{"size", "4T"}});
    CHECK(big->size() == (4ull << 40));
    close_layer(L, *big);
}

TEST_CASE("null: requests past the end are refused", "[null]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto n = open_null(L, {{"size", "1M"}});
    std::vector<unsigned char> buf(4096);
    CHECK(sync_pread(L, *n, (1 << 20) - 2048, buf.data(), buf.size()) == -EINVAL);
    CHECK(sync_pwrite(L, *n, 1 << 20, buf.data(), buf.size()) == -EINVAL);
    CHECK(sync_pread(L, *n, (1 << 20) - 4096, buf.data(), buf.size()) == 0);
    close_layer(L, *n);
}

TEST_CASE("null: read-zeroes=off leaves the buffer untouched", "[null]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto n = open_null(L, {{"read-zeroes", "off"}});
    std::vector<unsigned char> buf(8192, 0xAA);
    REQUIRE(sync_pread(L, *n, 0, buf.data(), buf.size()) == 0);
    CHECK(all_bytes(buf.data(), buf.size(), 0xAA));
    close_layer(L, *n);
}

TEST_CASE("null: bad options are refused by name", "[null]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto bad_size = NullLayer::open(L, {{"size", "lots"}}, false);
    REQUIRE_FALSE(bad_size.ok());
    CHECK_THAT(bad_size.error().message, Contains("size"));
    auto bad_key = NullLayer::open(L, {{"colour", "blue"}}, false);
    REQUIRE_FALSE(bad_key.ok());
    CHECK_THAT(bad_key.error().message, Contains("colour"));
    auto bad_bool = NullLayer::open(L, {{"read-zeroes", "perhaps"}}, false);
    REQUIRE_FALSE(bad_bool.ok());
    CHECK_THAT(bad_bool.error().message, Contains("perhaps"));
}

TEST_CASE("null: read-only refuses writes", "[null]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto n = open_null(L, {}, true);
    char buf[512] = {};
    CHECK(sync_pwrite(L, *n, 0, buf, sizeof buf) == -EROFS);
    CHECK(sync_pread(L, *n, 0, buf, sizeof buf) == 0);
    close_layer(L, *n);
}

namespace {

Task<void> timed_read(Layer& l, std::vector<std::string>& ev, std::string name)
{
    char buf[512];
    int r = co_await l.pread(0, buf, sizeof buf);
    ev.push_back(name + (r == 0 ? "" : "!"));
}

Task<void> timed_sleep(Loop& L, std::vector<std::string>& ev, std::string name,
                       std::chrono::nanoseconds d)
{
    co_await L.sleep_for(d);
    ev.push_back(name);
}

} // namespace

TEST_CASE("null: latency-ns delays completions", "[null]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto slow = open_null(L, {{"latency-ns", "40000000"}});  // 40 ms
    auto fast = open_null(L, {});
    std::vector<std::string> ev;
    sync_wait(L, [](Loop& l, Layer& s, Layer& f, std::vector<std::string>& e) -> Task<void> {
        TaskGroup tg;
        tg.spawn(timed_read(s, e, "slow-read"));
        tg.spawn(timed_sleep(l, e, "sleep-2ms", 2ms));
        tg.spawn(timed_read(f, e, "fast-read"));
        tg.spawn(timed_sleep(l, e, "sleep-200ms", 200ms));
        co_await tg.join();
    }(L, *slow, *fast, ev));
    // The undelayed read beats a 2 ms timer; the 40 ms one loses to it but
    // beats a 200 ms timer.
    CHECK(ev == std::vector<std::string>{"fast-read", "sleep-2ms", "slow-read", "sleep-200ms"});
    close_layer(L, *slow);
    close_layer(L, *fast);
}

TEST_CASE("null: close waits for delayed requests", "[null]")
{
    constexpr int kN = 16;
    auto loop = make_loop();
    Loop& L = *loop;
    auto n = open_null(L, {{"latency-ns", "2000000"}});  // 2 ms
    std::vector<int> res(kN, -12345);
    int done_at_close = -1;
    sync_wait(L, [](Loop& l, Layer& lay, std::vector<int>& rs, int& dac) -> Task<void> {
        for (int i = 0; i < kN; i++)
            l.spawn([](Layer& ly, int& r) -> Task<void> {
                char buf[512];
                r = co_await ly.pread(0, buf, sizeof buf);
            }(lay, rs[size_t(i)]));
        co_await lay.close();
        dac = int(std::count(rs.begin(), rs.end(), 0));
    }(L, *n, res, done_at_close));
    CHECK(done_at_close == kN);
    char buf[512];
    CHECK(sync_pread(L, *n, 0, buf, sizeof buf) == -EBADF);
}

// ---------------------------------------------------------------- memory

TEST_CASE("memory: named stores survive close and reopen", "[memory]")
{
    const std::string name = "coblk-test-named";
    MemoryLayer::drop(name);
    auto loop = make_loop();
    Loop& L = *loop;
    auto data = pattern(100000, 3);
    {
        auto m = open_mem({{"name", name}, {"size", "1M"}});
        CHECK(m->size() == 1048576);
        CHECK(std::string(m->kind()) == "memory");
        REQUIRE(sync_pwrite(L, *m, 12345, data.data(), data.size()) == 0);
        close_layer(L, *m);
    }
    {
        auto m = open_mem({{"name", name}});  // the store's size, not the default
        CHECK(m->size() == 1048576);
        auto back = layer_read(L, *m, 12345, data.size());
        CHECK_BYTES(back.data(), data.data(), data.size(), 12345);
        auto before = layer_read(L, *m, 0, 12345);
        CHECK_ZEROS(before.data(), 12345, 0);
        // A second open of the same name shares the bytes while both are open.
        auto m2 = open_mem({{"name", name}});
        std::vector<unsigned char> x(10, 0x42);
        REQUIRE(sync_pwrite(L, *m2, 0, x.data(), x.size()) == 0);
        auto seen = layer_read(L, *m, 0, 10);
        CHECK_BYTES(seen.data(), x.data(), 10, 0);
        close_layer(L, *m2);
        close_layer(L, *m);
    }
    MemoryLayer::drop(name);
    {
        auto m = open_mem({{"name", name}, {"size", "1M"}});
        auto back = layer_read(L, *m, 12345, data.size());
        CHECK_ZEROS(back.data(), data.size(), 12345);
        close_layer(L, *m);
    }
    MemoryLayer::drop(name);
}

TEST_CASE("memory: unnamed stores are private", "[memory]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto a = open_mem({{"size", "1M"}});
    auto b = open_mem({{"size", "1M"}});
    auto data = pattern(4096, 4);
    REQUIRE(sync_pwrite(L, *a, 0, data.data(), data.size()) == 0);
    auto from_b = layer_read(L, *b, 0, 4096);
    CHECK_ZEROS(from_b.data(), 4096, 0);
    auto from_a = layer_read(L, *a, 0, 4096);
    CHECK_BYTES(from_a.data(), data.data(), 4096, 0);
    close_layer(L, *a);
    close_layer(L, *b);
    // And a fresh unnamed one starts empty.
    auto c = open_mem({{"size", "1M"}});
    auto from_c = layer_read(L, *c, 0, 4096);
    CHECK_ZEROS(from_c.data(), 4096, 0);
    close_layer(L, *c);
}

TEST_CASE("memory: default size is 64 MiB", "[memory]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto m = open_mem({});
    CHECK(m->size() == (64ull << 20));
    close_layer(L, *m);
}

TEST_CASE("memory: block_status reports holes for unwritten ranges", "[memory]")
{
    constexpr uint64_t kSize = 16 << 20;
    auto loop = make_loop();
    Loop& L = *loop;
    auto m = open_mem({{"size", "16M"}});
    auto data = pattern(4096, 5);
    REQUIRE(sync_pwrite(L, *m, 4 << 20, data.data(), data.size()) == 0);

    Extent e;
    REQUIRE(sync_wait(L, m->block_status(0, kSize, &e)) == 0);
    CHECK_FALSE(e.data);
    CHECK(e.zero);
    CHECK(e.len > 0);
    CHECK(e.len <= (4u << 20));

    REQUIRE(sync_wait(L, m->block_status(4 << 20, kSize - (4 << 20), &e)) == 0);
    CHECK(e.data);
    CHECK(e.len >= 1);

    REQUIRE(sync_wait(L, m->block_status(12 << 20, kSize - (12 << 20), &e)) == 0);
    CHECK_FALSE(e.data);
    CHECK(e.zero);

    // Walking the whole device: the extents tile it, the written range is
    // inside data, and most of the device is holes.
    uint64_t off = 0, data_bytes = 0;
    bool written_covered = false;
    for (int i = 0; off < kSize && i < 100000; i++) {
        REQUIRE(sync_wait(L, m->block_status(off, kSize - off, &e)) == 0);
        REQUIRE(e.len > 0);
        if (e.data) {
            data_bytes += e.len;
            if (off <= (4u << 20) && (4u << 20) + 4096 <= off + e.len)
                written_covered = true;
        }
        off += e.len;
    }
    CHECK(off == kSize);
    CHECK(written_covered);
    CHECK(data_bytes < kSize / 2);
    close_layer(L, *m);
}

TEST_CASE("memory: out-of-range requests give -EINVAL", "[memory]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto m = open_mem({{"size", "1M"}});
    std::vector<unsigned char> buf(4096);
    CHECK(sync_pread(L, *m, (1 << 20) - 100, buf.data(), buf.size()) == -EINVAL);
    CHECK(sync_pwrite(L, *m, 1 << 20, buf.data(), buf.size()) == -EINVAL);
    CHECK(sync_wait(L, m->write_zeroes(1 << 20, 4096)) == -EINVAL);
    CHECK(sync_wait(L, m->discard((1 << 20) - 1, 2)) == -EINVAL);
    CHECK(m->size() == 1 << 20);
    close_layer(L, *m);
}

TEST_CASE("memory: write_zeroes, discard and truncate", "[memory]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto m = open_mem({{"size", "1M"}});
    auto data = pattern(1 << 20, 6);
    REQUIRE(sync_pwrite(L, *m, 0, data.data(), data.size()) == 0);
    auto want = data;

    REQUIRE(sync_wait(L, m->write_zeroes(1000, 5000)) == 0);
    std::fill(want.begin() + 1000, want.begin() + 6000, 0);
    auto now = layer_read(L, *m, 0, 1 << 20);
    CHECK_BYTES(now.data(), want.data(), want.size(), 0);

    REQUIRE(sync_wait(L, m->discard(65536, 65536)) == 0);
    now = layer_read(L, *m, 0, 1 << 20);
    int neither = 0;
    for (size_t b = 65536; b < 131072; b++)
        neither += now[b] != 0 && now[b] != want[b];
    CHECK(neither == 0);
    std::copy(now.begin() + 65536, now.begin() + 131072, want.begin() + 65536);
    CHECK_BYTES(now.data(), want.data(), want.size(), 0);

    // Shrink, then grow: the cut bytes do not come back.
    REQUIRE(sync_wait(L, m->truncate(300000)) == 0);
    CHECK(m->size() == 300000);
    REQUIRE(sync_wait(L, m->truncate(1 << 20)) == 0);
    CHECK(m->size() == 1 << 20);
    now = layer_read(L, *m, 0, 1 << 20);
    CHECK_BYTES(now.data(), want.data(), 300000, 0);
    CHECK_ZEROS(now.data() + 300000, (1 << 20) - 300000, 300000);
    close_layer(L, *m);
}

TEST_CASE("memory: allocated_bytes grows with writes", "[memory]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto m = open_mem({{"size", "16M"}});
    int64_t before = m->allocated_bytes();
    CHECK(before >= 0);
    auto data = pattern(1 << 20, 7);
    REQUIRE(sync_pwrite(L, *m, 0, data.data(), data.size()) == 0);
    CHECK(m->allocated_bytes() >= before + (1 << 20));
    CHECK(m->allocated_bytes() < (16 << 20));
    close_layer(L, *m);
}

TEST_CASE("memory: read-only refuses writes, bad options are named", "[memory]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto m = open_mem({{"size", "1M"}}, true);
    char buf[512] = {};
    CHECK(sync_pwrite(L, *m, 0, buf, sizeof buf) == -EROFS);
    close_layer(L, *m);
    auto bad = MemoryLayer::open({{"size", "x1"}}, false);
    REQUIRE_FALSE(bad.ok());
    CHECK_THAT(bad.error().message, Contains("size"));
    auto unknown = MemoryLayer::open({{"flavour", "mint"}}, false);
    REQUIRE_FALSE(unknown.ok());
    CHECK_THAT(unknown.error().message, Contains("flavour"));
}

TEST_CASE("memory: random multi-element requests match a reference", "[memory]")
{
    constexpr size_t kSize = 1 << 20;
    auto loop = make_loop();
    Loop& L = *loop;
    auto m = open_mem({{"size", "1M"}});
    std::vector<unsigned char> ref(kSize, 0);
    std::mt19937 rng(99);
    // Splits [0, len) of `buf` into 1..4 iovec elements of random lengths.
    auto split = [&](unsigned char* buf, size_t len, std::vector<iovec>& out) {
        out.clear();
        size_t done = 0;
        int parts = 1 + int(rng() % 4);
        for (int i = 0; i < parts - 1 && done < len; i++) {
            size_t n = rng() % (len - done + 1);
            out.push_back({buf + done, n});
            done += n;
        }
        out.push_back({buf + done, len - done});
    };
    std::vector<iovec> iov;
    for (int i = 0; i < 300; i++) {
        uint64_t off = rng() % kSize;
        size_t len = 1 + rng() % std::min<size_t>(200000, kSize - off);
        INFO("op " << i << ": " << len << " bytes at " << off);
        switch (rng() % 4) {
        case 0: {
            std::vector<unsigned char> src = pattern(len, uint32_t(i), off);
            split(src.data(), len, iov);
            REQUIRE(sync_wait(L, m->pwritev(off, iov.data(), int(iov.size()))) == 0);
            std::copy(src.begin(), src.end(), ref.begin() + long(off));
            break;
        }
        case 1: {
            std::vector<unsigned char> dst(len, 0xEE);
            split(dst.data(), len, iov);
            REQUIRE(sync_wait(L, m->preadv(off, iov.data(), int(iov.size()))) == 0);
            CHECK_BYTES(dst.data(), ref.data() + off, len, off);
            break;
        }
        case 2:
            REQUIRE(sync_wait(L, m->write_zeroes(off, len, (rng() % 2) ? kReqNoUnmap : 0u)) == 0);
            std::fill(ref.begin() + long(off), ref.begin() + long(off + len), 0);
            break;
        case 3: {
            REQUIRE(sync_wait(L, m->discard(off, len)) == 0);
            auto now = layer_read(L, *m, off, len);
            int neither = 0;
            for (size_t b = 0; b < len; b++)
                neither += now[b] != 0 && now[b] != ref[off + b];
            CHECK(neither == 0);
            std::copy(now.begin(), now.end(), ref.begin() + long(off));
            break;
        }
        }
    }
    auto all = layer_read(L, *m, 0, kSize);
    CHECK_BYTES(all.data(), ref.data(), kSize, 0);
    close_layer(L, *m);
}

TEST_CASE("memory: overflowing and zero-length requests", "[memory]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto m = open_mem({{"size", "1M"}});
    char buf[16] = {};
    CHECK(sync_pwrite(L, *m, UINT64_MAX - 4, buf, sizeof buf) == -EINVAL);
    CHECK(sync_pread(L, *m, UINT64_MAX - 4, buf, sizeof buf) == -EINVAL);
    CHECK(sync_pread(L, *m, 1 << 20, buf, 0) == 0);  // empty, at the end: allowed
    CHECK(sync_pwrite(L, *m, 100, buf, 0) == 0);
    close_layer(L, *m);
}
