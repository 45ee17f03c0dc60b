// FVD snapshots through the Layer snapshot interface: the current image
// becomes the snapshot file and a new overlay takes its name, while the
// layer stays open (formats/fvd_snapshot.cpp, docs/fvd-format.md).
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/loop.h"
#include "engine/sync.h"
#include "formats/fvd.h"
#include "formats/fvd_format.h"
#include "tests/helpers.h"
#include "uri/open.h"

using namespace coblk;
using namespace coblk::test;
using Catch::Matchers::Contains;

namespace {

constexpr uint64_t kSize = 8 << 20;
constexpr uint64_t kBlock = 4096;   // the unit the tests write in

std::unique_ptr<Layer> open_ok(Loop& L, const std::string& name, bool read_only = false,
                               std::string format = "")
{
    OpenOptions o;
    o.read_only = read_only;
    o.format = std::move(format);
    return must(sync_wait(L, open_device(L, name, o)), "open_device(" + name + ")");
}

void create_fvd(Loop& L, const std::string& name, uri::Options opts = {{"block_size", "16k"}})
{
    CreateOptions o;
    o.format = "fvd";
    o.size = kSize;
    o.options = std::move(opts);
    must(sync_wait(L, create_image(L, name, o)), "create_image(" + name + ")");
}

FvdLayer& as_fvd(Layer& l)
{
    auto* f = dynamic_cast<FvdLayer*>(&l);
    REQUIRE(f != nullptr);
    return *f;
}

Result<void> snap(Loop& L, Layer& l, const std::string& name)
{
    return sync_wait(L, l.snapshot_create(name));
}

Result<void> revert(Loop& L, Layer& l, const std::string& name)
{
    return sync_wait(L, l.snapshot_revert(name));
}

std::vector<SnapshotInfo> list(Loop& L, Layer& l)
{
    return must(sync_wait(L, l.snapshot_list()), "snapshot_list");
}

// Writes pattern `seed` over [off, off+len) and flushes.
void put(Loop& L, Layer& l, uint64_t off, size_t len, uint32_t seed)
{
    auto p = pattern(len, seed, off);
    REQUIRE(sync_pwrite(L, l, off, p.data(), len) == 0);
    REQUIRE(sync_wait(L, l.flush()) == 0);
}

// Checks that [off, off+len) reads as pattern `seed`.
void expect(Loop& L, Layer& l, uint64_t off, size_t len, uint32_t seed)
{
    auto got = layer_read(L, l, off, len);
    auto want = pattern(len, seed, off);
    CHECK_BYTES(got.data(), want.data(), len, off);
}

bool exists(const std::string& path)
{
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

} // namespace

TEST_CASE("fvd snapshot: the snapshot keeps the old data, the overlay takes the new",
          "[fvd][fvd-snapshot]")
{
    auto L = make_loop();
    ScratchDir d;
    std::string img = d.file("disk.fvd");
    create_fvd(*L, img);
    auto dev = open_ok(*L, img);
    put(*L, *dev, 0, kSize, 1);
    CHECK(list(*L, *dev).empty());

    must(snap(*L, *dev, "s1"), "snapshot_create");
    CHECK(exists(d.file("disk.fvd.snap-s1")));
    CHECK_FALSE(exists(d.file(".disk.fvd.snap-s1.new")));
    // Still open, same device: the new writes land in the new overlay.
    put(*L, *dev, 1 << 20, 64 << 10, 2);
    expect(*L, *dev, 0, 1 << 20, 1);
    expect(*L, *dev, 1 << 20, 64 << 10, 2);
    FvdLayer& f = as_fvd(*dev);
    CHECK(f.header().base_name == "disk.fvd.snap-s1");
    CHECK((f.header().compatible & fvd::kCompatBaseIsSnapshot) != 0);
    CHECK(f.where((1 << 20) / f.header().block_size) == FvdLayer::Where::Image);
    CHECK(f.where(0) == FvdLayer::Where::Base);
    auto l = list(*L, *dev);
    REQUIRE(l.size() == 1);
    CHECK(l[0].name == "s1");
    CHECK(l[0].id == 1);
    CHECK(l[0].size == kSize);
    close_layer(*L, *dev);

    // The snapshot file, opened directly and read-only, holds the old data.
    auto s = open_ok(*L, d.file("disk.fvd.snap-s1"), true);
    expect(*L, *s, 0, kSize, 1);
    close_layer(*L, *s);
    // The image, reopened, holds both and lists the snapshot.
    auto again = open_ok(*L, img, true);
    expect(*L, *again, 0, 1 << 20, 1);
    expect(*L, *again, 1 << 20, 64 << 10, 2);
    expect(*L, *again, (1 << 20) + (64 << 10), kSize - (1 << 20) - (64 << 10), 1);
    l = list(*L, *again);
    REQUIRE(l.size() == 1);
    CHECK(l[0].name == "s1");
    close_layer(*L, *again);
}

namespace {

// Writers that each own a stripe of 4 KiB units and write versions of them
// one after another; unit u at version v holds pattern(seed = v) at its
// offset. Version 0 is the content before the writers start.
struct Versions {
    std::vector<uint32_t> issued, acked;
    size_t done = 0;   // writes acknowledged
    bool snapped = false;   // the snapshot call returned
    explicit Versions(size_t units) : issued(units, 0), acked(units, 0) {}
};

// Each writer goes on until the snapshot call has returned and it has made
// `rounds` more writes.
Task<void> writer(Loop& L, Layer& l, Versions& v, unsigned id, unsigned writers, int rounds,
                  int& failures)
{
    std::mt19937 rng(id * 7919 + 1);
    size_t units = v.issued.size();
    std::vector<unsigned char> buf(kBlock);
    for (int i = 0, after = 0; after < rounds; i++) {
        after += v.snapped;
        size_t u = (rng() % (units / writers)) * writers + id;
        uint32_t ver = ++v.issued[u];
        fill_pattern(buf.data(), kBlock, ver, u * kBlock);
        if (co_await l.pwrite(u * kBlock, buf.data(), kBlock) != 0)
            failures++;
        else
            v.acked[u] = ver;
        v.done++;
        if (i % 8 == 0)
            co_await yield(L);
    }
}

// Takes the snapshot once the writers have `after` writes done, noting the
// versions acknowledged before the call and issued before it returned.
Task<void> snapshotter(Loop& L, Layer& l, Versions& v, std::vector<uint32_t>& lo,
                       std::vector<uint32_t>& hi, Result<void>& r, size_t after)
{
    while (v.done < after)
        co_await yield(L);
    lo = v.acked;
    std::string name = "busy";
    r = co_await l.snapshot_create(name);
    hi = v.issued;
    v.snapped = true;
}

// The version unit `u` of `data` holds, within [lo, hi], or -1.
long version_of(const unsigned char* data, size_t u, uint32_t lo, uint32_t hi)
{
    std::vector<unsigned char> want(kBlock);
    for (uint32_t ver = lo; ver <= hi; ver++) {
        fill_pattern(want.data(), kBlock, ver, u * kBlock);
        if (std::memcmp(data, want.data(), kBlock) == 0)
            return long(ver);
    }
    return -1;
}

} // namespace

TEST_CASE("fvd snapshot: taken while writers are busy, nothing acknowledged is lost",
          "[fvd][fvd-snapshot]")
{
    auto L = make_loop();
    ScratchDir d;
    // Version 0 is in a raw base, so that first writes to a unit allocate
    // (read the base, write the whole block: several steps each) and some
    // are half done when the snapshot starts.
    auto v0 = pattern(kSize, 0, 0);
    write_file(d.file("base.raw"), v0.data(), v0.size());
    std::string img = d.file("busy.fvd");
    create_fvd(*L, img, {{"block_size", "16k"}, {"backing_file", "base.raw"},
                         {"backing_fmt", "raw"}});
    auto dev = open_ok(*L, img);
    const size_t units = kSize / kBlock;
    const unsigned writers = 4;
    Versions v(units);
    std::vector<uint32_t> lo, hi;
    Result<void> r;
    int failures = 0;
    auto all = [&]() -> Task<void> {
        TaskGroup g;
        for (unsigned i = 0; i < writers; i++)
            g.spawn(writer(*L, *dev, v, i, writers, 100, failures));
        g.spawn(snapshotter(*L, *dev, v, lo, hi, r, 300));
        co_await g.join();
    };
    sync_wait(*L, all());
    must(r, "snapshot_create while writing");
    REQUIRE(failures == 0);
    REQUIRE(sync_wait(*L, dev->flush()) == 0);
    // Some writes went before the snapshot and some after, or the test
    // shows nothing.
    size_t before = 0, after = 0;
    for (size_t u = 0; u < units; u++) {
        before += lo[u] > 0;
        after += v.acked[u] > hi[u];
    }
    CHECK(before > 0);
    CHECK(after > 0);

    // The image holds the last acknowledged version of every unit.
    auto all_now = layer_read(*L, *dev, 0, kSize);
    size_t bad = 0;
    for (size_t u = 0; u < units; u++)
        bad += version_of(all_now.data() + u * kBlock, u, v.acked[u], v.acked[u]) < 0;
    CHECK(bad == 0);
    close_layer(*L, *dev);

    // The snapshot holds, per unit, a whole version at least as new as the
    // last one acknowledged before the call and no newer than the last one
    // issued before it returned.
    auto s = open_ok(*L, d.file("busy.fvd.snap-busy"), true);
    auto old = layer_read(*L, *s, 0, kSize);
    close_layer(*L, *s);
    bad = 0;
    for (size_t u = 0; u < units; u++)
        bad += version_of(old.data() + u * kBlock, u, lo[u], hi[u]) < 0;
    CHECK(bad == 0);
    // And after reopening, the image still has every acknowledged write.
    auto re = open_ok(*L, img, true);
    auto reread = layer_read(*L, *re, 0, kSize);
    CHECK_BYTES(reread.data(), all_now.data(), kSize, 0);
    close_layer(*L, *re);
}

TEST_CASE("fvd snapshot: revert drops what was written after the snapshot",
          "[fvd][fvd-snapshot]")
{
    auto L = make_loop();
    ScratchDir d;
    std::string img = d.file("r.fvd");
    create_fvd(*L, img, {{"block_size", "64k"}, {"compact", "off"}});
    auto dev = open_ok(*L, img);
    put(*L, *dev, 0, kSize, 11);
    must(snap(*L, *dev, "clean"), "snapshot_create");
    put(*L, *dev, 12345, 300000, 12);
    must(revert(*L, *dev, "clean"), "snapshot_revert");
    expect(*L, *dev, 0, kSize, 11);
    CHECK(as_fvd(*dev).blocks_in_image() == 0);
    // Writing after the revert works and is kept.
    put(*L, *dev, 4096, 4096, 13);
    REQUIRE(list(*L, *dev).size() == 1);
    close_layer(*L, *dev);
    CHECK_FALSE(exists(d.file(".r.fvd.snap-clean.new")));
    auto re = open_ok(*L, img, true);
    expect(*L, *re, 0, 4096, 11);
    expect(*L, *re, 4096, 4096, 13);
    expect(*L, *re, 8192, kSize - 8192, 11);
    close_layer(*L, *re);
}

TEST_CASE("fvd snapshot: two in a row make a chain, listed oldest first",
          "[fvd][fvd-snapshot]")
{
    auto L = make_loop();
    ScratchDir d;
    std::string img = d.file("two.fvd");
    create_fvd(*L, img);
    auto dev = open_ok(*L, img);
    put(*L, *dev, 0, 1 << 20, 21);
    must(snap(*L, *dev, "a"), "snapshot a");
    put(*L, *dev, 0, 64 << 10, 22);
    must(snap(*L, *dev, "b"), "snapshot b");
    put(*L, *dev, 32 << 10, 64 << 10, 23);
    auto l = list(*L, *dev);
    REQUIRE(l.size() == 2);
    CHECK(l[0].name == "a");
    CHECK(l[0].id == 2);
    CHECK(l[1].name == "b");
    CHECK(l[1].id == 1);
    // Only the latest can be reverted to: the older one has b built on it.
    auto r = revert(*L, *dev, "a");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ENOTSUP);
    CHECK_THAT(r.error().message, Contains("latest") && Contains("'b'"));
    must(revert(*L, *dev, "b"), "revert to b");
    expect(*L, *dev, 0, 64 << 10, 22);
    expect(*L, *dev, 64 << 10, (1 << 20) - (64 << 10), 21);
    close_layer(*L, *dev);

    auto sa = open_ok(*L, d.file("two.fvd.snap-a"), true);
    expect(*L, *sa, 0, 1 << 20, 21);
    close_layer(*L, *sa);
    auto sb = open_ok(*L, d.file("two.fvd.snap-b"), true);
    CHECK(as_fvd(*sb).header().base_name == "two.fvd.snap-a");
    expect(*L, *sb, 0, 64 << 10, 22);
    expect(*L, *sb, 64 << 10, (1 << 20) - (64 << 10), 21);
    close_layer(*L, *sb);
    auto re = open_ok(*L, img, true);
    REQUIRE(list(*L, *re).size() == 2);
    close_layer(*L, *re);
}

TEST_CASE("fvd snapshot: bad names and impossible requests are refused, naming why",
          "[fvd][fvd-snapshot]")
{
    auto L = make_loop();
    ScratchDir d;
    std::string img = d.file("bad.fvd");
    create_fvd(*L, img);
    auto dev = open_ok(*L, img);
    put(*L, *dev, 0, 65536, 31);
    struct Case {
        std::string name, says;
    };
    const Case cases[] = {{"a/b", "'/'"},
                          {".hidden", "starts with '.'"},
                          {std::string("a\0b", 3), "NUL"},
                          {"sp ace", "0x20"},
                          {std::string(200, 'x'), "longer than 128"}};
    for (const auto& c : cases) {
        auto r = snap(*L, *dev, c.name);
        INFO("name " << c.name);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == EINVAL);
        CHECK_THAT(r.error().message, Contains(c.says) && Contains("bad.fvd"));
    }
    auto empty = snap(*L, *dev, "");
    REQUIRE_FALSE(empty);
    CHECK(empty.error().code == EINVAL);
    CHECK(list(*L, *dev).empty());

    must(snap(*L, *dev, "one"), "snapshot one");
    auto twice = snap(*L, *dev, "one");
    REQUIRE_FALSE(twice);
    CHECK(twice.error().code == EEXIST);
    CHECK_THAT(twice.error().message, Contains("bad.fvd.snap-one"));
    auto none = revert(*L, *dev, "nope");
    REQUIRE_FALSE(none);
    CHECK(none.error().code == ENOENT);
    auto del = sync_wait(*L, dev->snapshot_delete("none"));
    REQUIRE_FALSE(del);
    CHECK(del.error().code == ENOENT);
    CHECK_THAT(del.error().message, Contains("none"));
    // The failures changed nothing: the image still reads and writes.
    expect(*L, *dev, 0, 65536, 31);
    put(*L, *dev, 0, 4096, 32);
    expect(*L, *dev, 0, 4096, 32);
    REQUIRE(list(*L, *dev).size() == 1);
    close_layer(*L, *dev);

    auto ro = open_ok(*L, img, true);
    auto r = snap(*L, *ro, "two");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == EROFS);
    close_layer(*L, *ro);
}

TEST_CASE("fvd snapshot: on a protocol other than file it fails naming the protocol",
          "[fvd][fvd-snapshot]")
{
    auto L = make_loop();
    std::string img = "memory://fvd-snapshot-test";
    create_fvd(*L, img);
    auto dev = open_ok(*L, img, false, "fvd");
    auto r = snap(*L, *dev, "s");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ENOTSUP);
    CHECK_THAT(r.error().message, Contains("memory"));
    close_layer(*L, *dev);
}

TEST_CASE("fvd snapshot: a crash at each step of create leaves an image that opens",
          "[fvd][fvd-snapshot]")
{
    // A stop after step k leaves the files as a process crash there would
    // (every step syncs what it wrote before the next one starts); a copy
    // of the directory taken then is what the next open finds.
    for (int step = 1; step <= 4; step++) {
        DYNAMIC_SECTION("stopped after step " << step)
        {
            auto L = make_loop();
            ScratchDir d;
            std::string img = d.file("c.fvd");
            create_fvd(*L, img);
            auto dev = open_ok(*L, img);
            put(*L, *dev, 0, kSize, 41);
            // Written, not flushed: the snapshot's own flush covers it.
            auto extra = pattern(8192, 42, 65536);
            REQUIRE(sync_pwrite(*L, *dev, 65536, extra.data(), extra.size()) == 0);
            as_fvd(*dev).stop_snapshot_after_step(step);
            auto r = snap(*L, *dev, "s");
            REQUIRE_FALSE(r);
            CHECK(r.error().code == ECANCELED);
            ScratchDir cd;
            std::string copy = cd.path();
            // One cp keeps the hard link between the image and the
            // snapshot name (step 2 on) as it is.
            REQUIRE(shell("cp -a '" + d.path() + "/.' '" + copy + "/'").status == 0);
            close_layer(*L, *dev);

            std::string cimg = copy + "/c.fvd";
            auto re = open_ok(*L, cimg);
            expect(*L, *re, 0, 65536, 41);
            expect(*L, *re, 65536, 8192, 42);
            expect(*L, *re, 65536 + 8192, kSize - 65536 - 8192, 41);
            auto& f = as_fvd(*re);
            auto l = list(*L, *re);
            if (step < 4) {
                CHECK(f.header().base_name.empty());
                CHECK(l.empty());
                // Taking the snapshot again finishes the job: a leftover
                // link and temporary file are reused.
                must(snap(*L, *re, "s"), "snapshot_create after the crash");
            } else {
                CHECK(f.header().base_name == "c.fvd.snap-s");
                REQUIRE(l.size() == 1);
                auto again = snap(*L, *re, "s");
                REQUIRE_FALSE(again);
                CHECK(again.error().code == EEXIST);
            }
            REQUIRE(list(*L, *re).size() == 1);
            close_layer(*L, *re);
            auto s = open_ok(*L, copy + "/c.fvd.snap-s", true);
            expect(*L, *s, 0, 65536, 41);
            expect(*L, *s, 65536, 8192, 42);
            close_layer(*L, *s);
        }
    }
}

namespace {

Result<void> remove_snap(Loop& L, Layer& l, const std::string& name)
{
    return sync_wait(L, l.snapshot_delete(name));
}

} // namespace

TEST_CASE("fvd snapshot: delete merges the latest snapshot into the image",
          "[fvd][fvd-snapshot]")
{
    auto L = make_loop();
    ScratchDir d;
    // An original raw base under everything: after the last delete the
    // image is an ordinary overlay over it again.
    auto base = pattern(kSize, 50, 0);
    write_file(d.file("orig.raw"), base.data(), base.size());
    std::string img = d.file("m.fvd");
    create_fvd(*L, img, {{"block_size", "16k"}, {"backing_file", "orig.raw"},
                         {"backing_fmt", "raw"}});
    auto dev = open_ok(*L, img);
    put(*L, *dev, 0, 1 << 20, 51);
    must(snap(*L, *dev, "a"), "snapshot a");
    put(*L, *dev, 512 << 10, 1 << 20, 52);
    must(snap(*L, *dev, "b"), "snapshot b");
    put(*L, *dev, 3 << 20, 100000, 53);
    auto want = layer_read(*L, *dev, 0, kSize);

    auto older = remove_snap(*L, *dev, "a");
    REQUIRE_FALSE(older);
    CHECK(older.error().code == ENOTSUP);
    CHECK_THAT(older.error().message, Contains("latest") && Contains("'b'"));

    must(remove_snap(*L, *dev, "b"), "delete b");
    CHECK_FALSE(exists(d.file("m.fvd.snap-b")));
    auto got = layer_read(*L, *dev, 0, kSize);
    CHECK_BYTES(got.data(), want.data(), kSize, 0);
    auto l = list(*L, *dev);
    REQUIRE(l.size() == 1);
    CHECK(l[0].name == "a");
    CHECK(l[0].id == 1);
    CHECK(as_fvd(*dev).header().base_name == "m.fvd.snap-a");

    must(remove_snap(*L, *dev, "a"), "delete a");
    CHECK_FALSE(exists(d.file("m.fvd.snap-a")));
    CHECK(list(*L, *dev).empty());
    FvdLayer& f = as_fvd(*dev);
    CHECK(f.header().base_name == "orig.raw");
    CHECK(f.header().base_format == "raw");
    CHECK((f.header().compatible & fvd::kCompatBaseIsSnapshot) == 0);
    got = layer_read(*L, *dev, 0, kSize);
    CHECK_BYTES(got.data(), want.data(), kSize, 0);
    // Writes go on as before.
    put(*L, *dev, 7 << 20, 4096, 54);
    close_layer(*L, *dev);

    auto re = open_ok(*L, img, true);
    got = layer_read(*L, *re, 0, kSize);
    std::memcpy(want.data() + (7 << 20), pattern(4096, 54, 7 << 20).data(), 4096);
    CHECK_BYTES(got.data(), want.data(), kSize, 0);
    CHECK(list(*L, *re).empty());
    close_layer(*L, *re);
}

TEST_CASE("fvd snapshot: a crash at each step of delete leaves the same content",
          "[fvd][fvd-snapshot]")
{
    for (int step = 1; step <= 2; step++) {
        DYNAMIC_SECTION("stopped after step " << step)
        {
            auto L = make_loop();
            ScratchDir d;
            std::string img = d.file("k.fvd");
            create_fvd(*L, img);
            auto dev = open_ok(*L, img);
            put(*L, *dev, 0, kSize, 61);
            must(snap(*L, *dev, "s"), "snapshot s");
            put(*L, *dev, 40000, 70000, 62);
            auto want = layer_read(*L, *dev, 0, kSize);
            as_fvd(*dev).stop_snapshot_after_step(step);
            auto r = remove_snap(*L, *dev, "s");
            REQUIRE_FALSE(r);
            CHECK(r.error().code == ECANCELED);
            ScratchDir cd;
            REQUIRE(shell("cp -a '" + d.path() + "/.' '" + cd.path() + "/'").status == 0);
            close_layer(*L, *dev);

            auto re = open_ok(*L, cd.path() + "/k.fvd");
            auto got = layer_read(*L, *re, 0, kSize);
            CHECK_BYTES(got.data(), want.data(), kSize, 0);
            auto l = list(*L, *re);
            if (step == 1) {
                // Still over the snapshot, which the image no longer needs
                // for any block it shows: deleting again finishes the job.
                REQUIRE(l.size() == 1);
                must(remove_snap(*L, *re, "s"), "delete after the crash");
            } else {
                // Repointed: the snapshot file is a leftover to remove.
                CHECK(l.empty());
                CHECK(exists(cd.path() + "/k.fvd.snap-s"));
            }
            CHECK(list(*L, *re).empty());
            got = layer_read(*L, *re, 0, kSize);
            CHECK_BYTES(got.data(), want.data(), kSize, 0);
            close_layer(*L, *re);
        }
    }
}
