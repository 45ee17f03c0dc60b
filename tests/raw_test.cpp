// Tests of the `raw` format layer (over memory backends) and of format
// probing.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "backends/memory.h"
#include "formats/probe.h"
#include "formats/raw.h"
#include "engine/loop.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::test;
using Catch::Matchers::Contains;

namespace {

std::unique_ptr<Layer> mem(const char* size)
{
    return must(MemoryLayer::open({{"size", size}}, false), "MemoryLayer::open");
}

std::unique_ptr<RawLayer> raw_over(std::unique_ptr<Layer> child, uint64_t offset,
                                   std::optional<uint64_t> size, bool probed)
{
    RawOptions o;
    o.offset = offset;
    o.size = size;
    o.probed = probed;
    return must(RawLayer::open(std::move(child), o), "RawLayer::open");
}

// The first bytes of a qcow2 header: magic "QFI\xfb", version 3.
const unsigned char kQcow2Head[8] = {'Q', 'F', 'I', 0xfb, 0, 0, 0, 3};

} // namespace

TEST_CASE("raw: the offset/size window maps onto the child", "[raw]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto r = raw_over(mem("1M"), 65536, 131072, false);
    Layer& child = *r->child();
    CHECK(r->size() == 131072);
    CHECK(r->offset() == 65536);
    CHECK(std::string(r->kind()) == "raw");
    CHECK(std::string(r->protocol()) == "memory");

    auto data = pattern(8192, 1);
    REQUIRE(sync_pwrite(L, *r, 0, data.data(), data.size()) == 0);
    auto at_child = layer_read(L, child, 65536, 8192);
    CHECK_BYTES(at_child.data(), data.data(), 8192, 65536);
    auto before = layer_read(L, child, 0, 65536);
    CHECK_ZEROS(before.data(), 65536, 0);

    // The last byte of the window is child byte offset+size-1.
    unsigned char last = 0x99;
    REQUIRE(sync_pwrite(L, *r, 131071, &last, 1) == 0);
    auto c_last = layer_read(L, child, 65536 + 131071, 2);
    CHECK(c_last[0] == 0x99);
    CHECK(c_last[1] == 0);

    // Reads through the window see the child's bytes at the offset.
    auto other = pattern(4096, 2);
    REQUIRE(sync_pwrite(L, child, 65536 + 20000, other.data(), other.size()) == 0);
    auto via_raw = layer_read(L, *r, 20000, 4096);
    CHECK_BYTES(via_raw.data(), other.data(), 4096, 20000);

    // Nothing past the window, even though the child has room.
    CHECK(sync_pwrite(L, *r, 131072, data.data(), 1) == -EINVAL);
    CHECK(sync_pread(L, *r, 131000, data.data(), 100) == -EINVAL);
    auto beyond = layer_read(L, child, 65536 + 131072, 4096);
    CHECK_ZEROS(beyond.data(), 4096, 65536 + 131072);

    // write_zeroes and discard are shifted too.
    REQUIRE(sync_wait(L, r->write_zeroes(0, 4096)) == 0);
    auto z = layer_read(L, child, 65536, 8192);
    CHECK_ZEROS(z.data(), 4096, 65536);
    CHECK_BYTES(z.data() + 4096, data.data() + 4096, 4096, 65536 + 4096);
    close_layer(L, *r);
}

TEST_CASE("raw: an offset alone covers the rest of the child", "[raw]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto r = raw_over(mem("1M"), 4096, std::nullopt, false);
    CHECK(r->size() == (1 << 20) - 4096);
    close_layer(L, *r);
}

TEST_CASE("raw: a window that does not fit fails at open", "[raw]")
{
    RawOptions o;
    SECTION("size too large")
    {
        o.offset = (1 << 20) - 4096;
        o.size = 8192;
    }
    SECTION("offset past the end")
    {
        o.offset = 2 << 20;
    }
    SECTION("offset + size overflows")
    {
        o.offset = 4096;
        o.size = UINT64_MAX - 100;
    }
    auto r = RawLayer::open(mem("1M"), o);
    CHECK_FALSE(r.ok());
}

TEST_CASE("raw: parse_raw_options", "[raw]")
{
    auto o = must(parse_raw_options({{"offset", "64K"}, {"size", "1M"}}));
    CHECK(o.offset == 65536);
    REQUIRE(o.size);
    CHECK(*o.size == 1048576);
    auto d = must(parse_raw_options({}));
    CHECK(d.offset == 0);
    CHECK_FALSE(d.size);
    auto bad = parse_raw_options({{"offset", "abc"}});
    REQUIRE_FALSE(bad.ok());
    CHECK_THAT(bad.error().message, Contains("offset"));
}

TEST_CASE("raw: a probed raw refuses to turn sector 0 into another format", "[raw]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto r = raw_over(mem("1M"), 0, std::nullopt, true);
    Layer& child = *r->child();

    SECTION("one write of a qcow2 header")
    {
        std::vector<unsigned char> sector(512, 0);
        std::memcpy(sector.data(), kQcow2Head, sizeof kQcow2Head);
        CHECK(sync_pwrite(L, *r, 0, sector.data(), sector.size()) == -EPERM);
        auto c = layer_read(L, child, 0, 512);
        CHECK_ZEROS(c.data(), 512, 0);  // nothing of it landed
    }
    SECTION("the magic assembled by two small writes")
    {
        REQUIRE(sync_pwrite(L, *r, 0, kQcow2Head, 2) == 0);  // "QF" alone is harmless
        CHECK(sync_pwrite(L, *r, 2, kQcow2Head + 2, 6) == -EPERM);
        auto c = layer_read(L, child, 0, 8);
        CHECK(c[0] == 'Q');
        CHECK(c[1] == 'F');
        CHECK(c[2] == 0);
    }
    SECTION("a multi-element write that carries the magic")
    {
        unsigned char a[3] = {'Q', 'F', 'I'};
        std::vector<unsigned char> b(509, 0);
        b[0] = 0xfb;
        b[4] = 3;
        iovec v[2] = {{a, 3}, {b.data(), b.size()}};
        CHECK(sync_wait(L, r->pwritev(0, v, 2)) == -EPERM);
    }
    SECTION("writes elsewhere are unaffected")
    {
        std::vector<unsigned char> sector(512, 0);
        std::memcpy(sector.data(), kQcow2Head, sizeof kQcow2Head);
        REQUIRE(sync_pwrite(L, *r, 4096, sector.data(), sector.size()) == 0);
        auto c = layer_read(L, child, 4096, 512);
        CHECK_BYTES(c.data(), sector.data(), 512, 4096);
        auto data = pattern(4096, 3);
        REQUIRE(sync_pwrite(L, *r, 0, data.data(), data.size()) == 0);  // ordinary data
        auto c0 = layer_read(L, child, 0, 4096);
        CHECK_BYTES(c0.data(), data.data(), 4096, 0);
    }
    close_layer(L, *r);
}

TEST_CASE("raw: an explicit raw format allows any sector 0", "[raw]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto r = raw_over(mem("1M"), 0, std::nullopt, false);
    std::vector<unsigned char> sector(512, 0);
    std::memcpy(sector.data(), kQcow2Head, sizeof kQcow2Head);
    REQUIRE(sync_pwrite(L, *r, 0, sector.data(), sector.size()) == 0);
    auto c = layer_read(L, *r->child(), 0, 512);
    CHECK_BYTES(c.data(), sector.data(), 512, 0);
    close_layer(L, *r);
}

TEST_CASE("raw: close closes the child", "[raw]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto r = raw_over(mem("1M"), 0, std::nullopt, false);
    Layer* child = r->child();
    close_layer(L, *r);
    CHECK(r->closed());
    CHECK(child->closed());
    char buf[16];
    CHECK(sync_pread(L, *r, 0, buf, sizeof buf) == -EBADF);
}

TEST_CASE("probe_format recognises qcow2 and defaults to raw", "[raw]")
{
    unsigned char head[kProbeBytes] = {};
    CHECK(std::string(probe_format(head, sizeof head)) == "raw");
    std::memcpy(head, kQcow2Head, sizeof kQcow2Head);
    CHECK(std::string(probe_format(head, sizeof head)) == "qcow2");
    CHECK(std::string(probe_format(head, 2)) == "raw");  // too short to say
    CHECK(format_supported("raw"));
    CHECK_FALSE(format_supported("qcow2"));
}

TEST_CASE("raw: truncate passes through without a window, is refused with one", "[raw]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto whole = raw_over(mem("1M"), 0, std::nullopt, false);
    REQUIRE(sync_wait(L, whole->truncate(2 << 20)) == 0);
    CHECK(whole->size() == (2u << 20));
    CHECK(whole->child()->size() == (2u << 20));
    close_layer(L, *whole);

    auto windowed = raw_over(mem("1M"), 4096, 65536, false);
    CHECK(sync_wait(L, windowed->truncate(2 << 20)) < 0);
    CHECK(windowed->size() == 65536);
    CHECK(windowed->child()->size() == (1u << 20));
    close_layer(L, *windowed);
}

TEST_CASE("raw: block_status is shifted by the window", "[raw]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto r = raw_over(mem("16M"), 1 << 20, 8 << 20, false);
    auto data = pattern(65536, 8);
    // Child bytes [2M, 2M+64K) are raw bytes [1M, 1M+64K).
    REQUIRE(sync_pwrite(L, *r->child(), 2 << 20, data.data(), data.size()) == 0);
    Extent e;
    REQUIRE(sync_wait(L, r->block_status(1 << 20, 65536, &e)) == 0);
    CHECK(e.data);
    REQUIRE(sync_wait(L, r->block_status(0, 65536, &e)) == 0);
    CHECK_FALSE(e.data);
    CHECK(e.len <= 65536);
    // The last extent does not run past the window.
    REQUIRE(sync_wait(L, r->block_status((8 << 20) - 4096, 1 << 20, &e)) == 0);
    CHECK(e.len <= 4096);
    close_layer(L, *r);
}

namespace {

// A memory-backed child that keeps a list of snapshot names and records the
// calls it gets, to see what raw forwards. Reverting sets the size to the
// one recorded with the snapshot.
class SnapshotChild : public Layer {
public:
    SnapshotChild() { size_ = 65536; }
    const char* kind() const override { return "snapchild"; }
    std::vector<std::string> calls;
    std::vector<SnapshotInfo> snaps;

protected:
    Task<int> do_preadv(uint64_t, const iovec*, int, unsigned) override { co_return 0; }
    Task<int> do_pwritev(uint64_t, const iovec*, int, unsigned) override { co_return 0; }
    Task<int> do_flush() override { co_return 0; }
    Task<int> do_discard(uint64_t, uint64_t) override { co_return 0; }
    Task<int> do_write_zeroes(uint64_t, uint64_t, unsigned) override { co_return 0; }
    Task<int> do_truncate(uint64_t size) override
    {
        size_ = size;
        co_return 0;
    }
    Task<void> do_close() override { co_return; }
    Task<Result<std::vector<SnapshotInfo>>> do_snapshot_list() override
    {
        calls.push_back("list");
        co_return snaps;
    }
    Task<Result<void>> do_snapshot_create(const std::string& name) override
    {
        calls.push_back("create " + name);
        snaps.push_back(SnapshotInfo{name, snaps.size() + 1, size_, 1700000000});
        co_return Result<void>{};
    }
    Task<Result<void>> do_snapshot_delete(const std::string& name) override
    {
        calls.push_back("delete " + name);
        co_return Result<void>{};
    }
    Task<Result<void>> do_snapshot_revert(const std::string& name) override
    {
        calls.push_back("revert " + name);
        for (const auto& s : snaps)
            if (s.name == name) {
                size_ = s.size;
                co_return Result<void>{};
            }
        co_return make_error(ENOENT, "no snapshot '{}'", name);
    }
};

} // namespace

TEST_CASE("snapshots: a layer without them says ENOTSUP; the gate refuses bad calls",
          "[raw]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto r = raw_over(mem("64K"), 0, std::nullopt, false);
    auto list = sync_wait(L, r->snapshot_list());
    REQUIRE_FALSE(list.ok());
    CHECK(list.error().code == ENOTSUP);
    CHECK_THAT(list.error().message, Contains("memory"));
    auto c = sync_wait(L, r->snapshot_create("s1"));
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == ENOTSUP);
    CHECK_THAT(c.error().message, Contains("s1"));
    CHECK(sync_wait(L, r->snapshot_create("")).error().code == EINVAL);
    close_layer(L, *r);
    CHECK(sync_wait(L, r->snapshot_list()).error().code == EBADF);
    CHECK(sync_wait(L, r->snapshot_delete("s1")).error().code == EBADF);

    auto ro = must(MemoryLayer::open({{"size", "64K"}}, true), "MemoryLayer::open");
    auto d = sync_wait(L, ro->snapshot_revert("s1"));
    REQUIRE_FALSE(d.ok());
    CHECK(d.error().code == EROFS);
    CHECK_THAT(d.error().message, Contains("s1"));
    close_layer(L, *ro);
}

TEST_CASE("snapshots: raw forwards them to its child and follows a revert's size", "[raw]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto child = std::make_unique<SnapshotChild>();
    SnapshotChild& c = *child;
    auto r = raw_over(std::move(child), 0, std::nullopt, false);
    must(sync_wait(L, r->snapshot_create("one")), "create");
    REQUIRE(sync_wait(L, r->truncate(131072)) == 0);
    CHECK(r->size() == 131072);
    auto list = must(sync_wait(L, r->snapshot_list()), "list");
    REQUIRE(list.size() == 1);
    CHECK(list[0].name == "one");
    CHECK(list[0].size == 65536);
    must(sync_wait(L, r->snapshot_revert("one")), "revert");
    CHECK(r->size() == 65536);
    auto missing = sync_wait(L, r->snapshot_revert("two"));
    CHECK(missing.error().code == ENOENT);
    must(sync_wait(L, r->snapshot_delete("one")), "delete");
    CHECK(c.calls == std::vector<std::string>{"create one", "list", "revert one", "revert two",
                                              "delete one"});
    close_layer(L, *r);
}
