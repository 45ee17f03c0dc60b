// Tests of the FVD format: the on-disk parser (header, journal), and
// random workloads mirrored into a plain buffer through FVD images in every
// shape (compact or not, with or without a base, over memory and files,
// FVD over FVD), with reopening in between.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backends/memory.h"
#include "engine/loop.h"
#include "engine/sync.h"
#include "formats/fvd.h"
#include "formats/fvd_format.h"
#include "tests/helpers.h"
#include "tests/workload.h"
#include "uri/open.h"

using namespace coblk;
using namespace coblk::test;
using Catch::Matchers::Contains;

namespace {

Result<std::unique_ptr<Layer>> try_open(Loop& L, const std::string& name, OpenOptions o = {})
{
    return sync_wait(L, open_device(L, name, o));
}

std::unique_ptr<Layer> open_ok(Loop& L, const std::string& name, OpenOptions o = {})
{
    return must(try_open(L, name, std::move(o)), "open_device(" + name + ")");
}

void create_ok(Loop& L, const std::string& name, CreateOptions o)
{
    must(sync_wait(L, create_image(L, name, o)), "create_image(" + name + ")");
}

Result<void> try_create(Loop& L, const std::string& name, CreateOptions o)
{
    return sync_wait(L, create_image(L, name, o));
}

CreateOptions fvd_opts(uint64_t size, uri::Options opts = {})
{
    CreateOptions o;
    o.format = "fvd";
    o.size = size;
    o.options = std::move(opts);
    return o;
}

FvdLayer& as_fvd(Layer& l)
{
    auto* f = dynamic_cast<FvdLayer*>(&l);
    REQUIRE(f != nullptr);
    return *f;
}

} // namespace

// ------------------------------------------------------------------ parser

TEST_CASE("fvd: a header survives encoding and decoding", "[fvd]")
{
    fvd::Geometry g;
    g.virtual_size = 10 * 1048576 + 512;
    g.block_size = 16384;
    g.chunk_size = 1 << 20;
    auto h = must(fvd::layout(g));
    h.base_name = "base.img";
    h.base_format = "raw";
    h.base_size = 4096 * 3;
    h.compatible = fvd::kCompatCopyOnRead;
    auto bytes = fvd::encode_header(h);
    REQUIRE(bytes.size() == fvd::kHeaderSize);
    auto d = must(fvd::decode_header(bytes, h.data_offset, false));
    CHECK(d.virtual_size == h.virtual_size);
    CHECK(d.block_size == 16384);
    CHECK(d.compact());
    CHECK(d.blocks() == (g.virtual_size + 16383) / 16384);
    CHECK(d.base_name == "base.img");
    CHECK(d.base_format == "raw");
    CHECK(d.base_size == 4096 * 3);
    CHECK(d.compatible == fvd::kCompatCopyOnRead);
    CHECK(d.bitmap_offset % 4096 == 0);
    CHECK(d.table_offset >= d.bitmap_offset + d.bitmap_size);
    CHECK(d.journal_offset >= d.table_offset + d.table_size);
    CHECK(d.data_offset >= d.journal_offset + d.journal_size);
}

TEST_CASE("fvd: damaged headers are refused naming the field", "[fvd]")
{
    fvd::Geometry g;
    g.virtual_size = 64 << 20;
    auto h = must(fvd::layout(g));
    uint64_t image = h.data_offset;

    auto refuse = [&](fvd::Header bad, const char* field, uint64_t size = 0) {
        auto r = fvd::decode_header(fvd::encode_header(bad), size ? size : image, false);
        INFO("expecting a complaint about " << field);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains(field));
    };
    auto b = h;
    b.version = 2;
    refuse(b, "version");
    b = h;
    b.incompatible |= 1ull << 40;
    refuse(b, "incompatible");
    b = h;
    b.block_size = 3000;
    refuse(b, "block_size");
    b = h;
    b.chunk_size = 4096;   // smaller than the block
    refuse(b, "chunk_size");
    b = h;
    b.bitmap_offset = 100;
    refuse(b, "bitmap");
    b = h;
    b.journal_offset = h.table_offset;   // overlaps the table
    refuse(b, "overlaps");
    b = h;
    b.table_size = 4096 * 1000;
    refuse(b, "table");
    b = h;
    b.virtual_size = 0;
    refuse(b, "virtual_size");
    b = h;
    b.virtual_size = 1ull << 62;   // absurd: refused before any allocation
    refuse(b, "virtual_size");
    b = h;
    b.data_offset = h.data_offset + (1ull << 40);
    refuse(b, "data_offset");
    b = h;
    b.base_format = "raw";   // without a base
    refuse(b, "base");
    refuse(h, "past the end", 8192);   // a truncated image
    b = h;
    b.incompatible |= fvd::kIncompatDataFile;
    refuse(b, "data_file");

    auto bytes = fvd::encode_header(h);
    bytes[50] ^= 1;
    auto r = fvd::decode_header(bytes, image, false);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Contains("CRC"));
    bytes = fvd::encode_header(h);
    bytes[1] = 'X';
    r = fvd::decode_header(bytes, image, false);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Contains("magic"));
    r = fvd::decode_header(std::span<const uint8_t>(bytes.data(), 100), image, false);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Contains("truncated"));
}

TEST_CASE("fvd: journal records replay in order and a torn tail ends the journal", "[fvd]")
{
    fvd::Geometry g;
    g.virtual_size = 64 << 20;
    g.journal_size = 64 * 1024;
    auto h = must(fvd::layout(g));
    h.journal_sequence = 7;
    std::vector<uint8_t> j(h.journal_size, 0);
    std::vector<fvd::Entry> e1 = fvd::block_runs({5, 3, 4, 9});
    REQUIRE(e1.size() == 2);
    CHECK((e1[0].b == 3 && e1[0].a == 3));
    CHECK((e1[1].b == 9 && e1[1].a == 1));
    e1.push_back({fvd::Entry::kTableEntry, 2, 0});
    auto r1 = fvd::encode_record(7, e1);
    std::vector<fvd::Entry> e2 = {{fvd::Entry::kBitmapRun, 16, 100}};
    auto r2 = fvd::encode_record(8, e2);
    std::memcpy(j.data(), r1.data(), r1.size());
    std::memcpy(j.data() + r1.size(), r2.data(), r2.size());

    auto rep = must(fvd::replay_journal(j, h));
    CHECK(rep.records == 2);
    CHECK(rep.entries.size() == 4);
    CHECK(rep.next_sequence == 9);
    CHECK(rep.end == r1.size() + r2.size());

    SECTION("a record of an older epoch is not replayed") {
        h.journal_sequence = 8;
        auto r = must(fvd::replay_journal(j, h));
        CHECK(r.records == 0);
        CHECK(r.end == 0);
    }
    SECTION("a torn last record ends the journal quietly") {
        j[r1.size() + 30] ^= 0xFF;
        auto r = must(fvd::replay_journal(j, h));
        CHECK(r.records == 1);
        CHECK(r.end == r1.size());
    }
    SECTION("a damaged record with a good one after it is corruption") {
        j[40] ^= 0xFF;
        auto r = fvd::replay_journal(j, h);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("record 7"));
    }
    SECTION("an entry past the end is refused naming it") {
        std::vector<fvd::Entry> bad = {{fvd::Entry::kBitmapRun, 2, h.blocks() - 1}};
        auto rb = fvd::encode_record(9, bad);
        std::memcpy(j.data() + rep.end, rb.data(), rb.size());
        auto r = fvd::replay_journal(j, h);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("record 9 entry 0"));
    }
}

// ------------------------------------------------------------------ images

TEST_CASE("fvd: bitmap runs and counts and ranges agree with a bit-by-bit reference", "[fvd]")
{
    // The bitmap skips whole bytes and words; every answer is checked
    // against a plain vector<bool> on random patterns with long runs.
    std::mt19937_64 rng(7);
    for (int round = 0; round < 200; round++) {
        uint64_t bits = 1 + rng() % 3000;
        fvd::Bitmap b(bits);
        std::vector<bool> ref(bits, false);
        for (int k = 0; k < 12; k++) {
            uint64_t first = rng() % bits;
            uint64_t n = rng() % (bits - first + 1);
            b.set_range(first, n);
            for (uint64_t i = first; i < first + n; i++)
                ref[i] = true;
        }
        uint64_t count = 0;
        for (uint64_t i = 0; i < bits; i++) {
            REQUIRE(b.test(i) == ref[i]);
            count += ref[i];
        }
        REQUIRE(b.count() == count);
        for (int q = 0; q < 50; q++) {
            uint64_t first = rng() % bits;
            uint64_t max = 1 + rng() % (bits - first);
            uint64_t run = 1;
            while (run < max && ref[first + run] == ref[first])
                run++;
            bool all = true, any = false;
            for (uint64_t i = first; i < first + max; i++) {
                all = all && ref[i];
                any = any || ref[i];
            }
            INFO("bits " << bits << " first " << first << " max " << max);
            REQUIRE(b.run(first, max) == run);
            REQUIRE(b.all(first, max) == all);
            REQUIRE(b.any(first, max) == any);
        }
        REQUIRE(b.all(0, 0));
        REQUIRE_FALSE(b.any(0, 0));
    }
}

TEST_CASE("fvd: create, info fields and an empty image reads zeros", "[fvd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string img = dir.file("a.fvd");
    create_ok(L, img, fvd_opts(8 << 20, {{"block_size", "16k"}, {"journal_size", "64k"}}));
    auto l = open_ok(L, img);
    FvdLayer& f = as_fvd(*l);
    CHECK(std::string(l->kind()) == "fvd");
    CHECK(l->size() == (8 << 20));
    CHECK(f.header().block_size == 16384);
    CHECK(f.header().compact());
    CHECK(f.blocks_in_image() == 0);
    auto got = layer_read(L, *l, 0, 1 << 20);
    CHECK_ZEROS(got.data(), got.size(), 0);
    close_layer(L, *l);
    // A compact image takes no data space until written.
    CHECK(file_size(img) == off_t(f.header().data_offset));
}

TEST_CASE("fvd: random workloads read back identically in every shape", "[fvd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    const uint64_t size = 12 * 1048576 + 4096 * 3;   // not a multiple of the block

    bool compact = GENERATE(true, false);
    int base_kind = GENERATE(0, 1, 2);   // none, raw file, fvd over raw
    bool on_memory = GENERATE(false, true);
    uint32_t block = GENERATE(4096u, 65536u);
    INFO("compact " << compact << " base " << base_kind << " memory " << on_memory
         << " block " << block);

    std::vector<unsigned char> model(size, 0);
    std::string base_name;
    if (base_kind > 0) {
        // The base: a raw file with a pattern over 3/4 of the image size.
        std::string raw = dir.file("base.raw");
        auto data = pattern(size * 3 / 4, 77);
        write_file(raw, data.data(), data.size(), 0, true);
        std::memcpy(model.data(), data.data(), data.size());
        base_name = raw;
        if (base_kind == 2) {
            // An FVD in the middle of the chain, with writes of its own.
            std::string mid = dir.file("mid.fvd");
            create_ok(L, mid, fvd_opts(0, {{"backing_file", "base.raw"},
                                           {"backing_fmt", "raw"}}));
            auto m = open_ok(L, mid);
            REQUIRE(m->size() == size * 3 / 4);
            model.resize(size * 3 / 4);
            random_workload(L, *m, model, 5, 20, 8);
            close_layer(L, *m);
            model.resize(size, 0);
            base_name = "mid.fvd";
        }
    }
    std::string img = on_memory ? "memory://fvd-shape" : dir.file("top.fvd");
    if (on_memory) {
        MemoryLayer::drop("fvd-shape");
        if (base_kind > 0)
            base_name = dir.file(base_name == "mid.fvd" ? "mid.fvd" : "base.raw");
    }
    uri::Options opts = {{"compact", compact ? "on" : "off"},
                         {"block_size", std::to_string(block)},
                         {"chunk_size", "256k"},
                         {"journal_size", "16k"}};   // small: recycled often
    if (!base_name.empty())
        opts.emplace_back("backing_file", base_name);
    create_ok(L, img, fvd_opts(size, opts));

    for (int round = 0; round < 3; round++) {
        auto l = open_ok(L, img);
        REQUIRE(std::string(l->kind()) == "fvd");
        check_all(L, *l, model);
        random_workload(L, *l, model, 1000 + round, 40, 12);
        check_all(L, *l, model);
        close_layer(L, *l);
    }
    if (on_memory)
        MemoryLayer::drop("fvd-shape");
}

TEST_CASE("fvd: partial writes into one block at once are serialised", "[fvd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string raw = dir.file("base.raw");
    auto base = pattern(1 << 20, 3);
    write_file(raw, base.data(), base.size(), 0, true);
    std::string img = dir.file("o.fvd");
    create_ok(L, img, fvd_opts(0, {{"backing_file", raw}}));
    auto l = open_ok(L, img);
    // 16 writes of 4 KiB into the same 64 KiB block, all in flight at once:
    // each fills the rest of the block from the base only if it is first.
    std::vector<Req> reqs(16);
    std::vector<unsigned char> model = base;
    for (size_t i = 0; i < reqs.size(); i++) {
        reqs[i].kind = Req::Write;
        reqs[i].off = 65536 + i * 4096;
        reqs[i].len = 4096;
        reqs[i].buf = pattern(4096, 100 + uint32_t(i));
        std::memcpy(model.data() + reqs[i].off, reqs[i].buf.data(), 4096);
    }
    std::vector<Task<void>> tasks;
    for (auto& r : reqs)
        tasks.push_back(run_req(*l, r));
    sync_wait(L, run_all(tasks));
    for (auto& r : reqs)
        CHECK(r.result == 0);
    CHECK(as_fvd(*l).blocks_in_image() == 1);
    check_all(L, *l, model);
    close_layer(L, *l);
    auto again = open_ok(L, img);
    check_all(L, *again, model);
    close_layer(L, *again);
}

TEST_CASE("fvd: metadata reaches the image at flush, through the journal", "[fvd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    MemoryLayer::drop("fvd-journal");
    std::string img = "memory://fvd-journal";
    create_ok(L, img, fvd_opts(4 << 20, {{"block_size", "4k"}, {"journal_size", "16k"}}));
    auto l = open_ok(L, img);
    auto data = pattern(4096, 9);
    REQUIRE(sync_pwrite(L, *l, 8192, data.data(), 4096) == 0);
    REQUIRE(sync_pwrite(L, *l, 4 * 4096, data.data(), 4096, kReqFua) == 0);

    // Open the same store again without closing the first device: what a
    // crash right now would leave. Both writes were flushed (FUA).
    auto second = open_ok(L, img, OpenOptions{.read_only = true});
    CHECK(as_fvd(*second).replayed_records() >= 1);
    CHECK(as_fvd(*second).blocks_in_image() == 2);
    auto got = layer_read(L, *second, 8192, 4096);
    CHECK_BYTES(got.data(), data.data(), 4096, 8192);
    close_layer(L, *second);

    // Enough flushed writes to fill the 16 KiB journal many times over.
    for (int i = 0; i < 200; i++) {
        REQUIRE(sync_pwrite(L, *l, uint64_t(i) * 4096 * 3, data.data(), 4096) == 0);
        REQUIRE(sync_wait(L, l->flush()) == 0);
    }
    auto third = open_ok(L, img, OpenOptions{.read_only = true});
    for (int i = 0; i < 200; i++) {
        auto g = layer_read(L, *third, uint64_t(i) * 4096 * 3, 4096);
        INFO("write " << i);
        CHECK_BYTES(g.data(), data.data(), 4096, uint64_t(i) * 4096 * 3);
    }
    close_layer(L, *third);
    close_layer(L, *l);
    MemoryLayer::drop("fvd-journal");
}

TEST_CASE("fvd: bad images and bad bases are refused at open, naming the culprit", "[fvd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;

    SECTION("a base reference to a missing file") {
        std::string base = dir.file("b.raw");
        write_file(base, "x", 1, 0, true);
        std::string img = dir.file("o.fvd");
        create_ok(L, img, fvd_opts(1 << 20, {{"backing_file", "b.raw"}}));
        REQUIRE(::unlink(base.c_str()) == 0);
        auto r = try_open(L, img);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("base image 'b.raw'"));
    }
    SECTION("a base chain that loops") {
        std::string a = dir.file("a.fvd"), b = dir.file("b.fvd");
        create_ok(L, b, fvd_opts(1 << 20));
        create_ok(L, a, fvd_opts(1 << 20, {{"backing_file", "b.fvd"}}));
        // Point b at a by rewriting its header.
        auto hb = read_file(b, 0, 4096);
        auto h = must(fvd::decode_header(hb, file_size(b), true));
        h.base_name = "a.fvd";
        h.base_size = 1 << 20;
        auto bytes = fvd::encode_header(h);
        write_file(b, bytes.data(), bytes.size());
        auto r = try_open(L, a);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == ELOOP);
        CHECK_THAT(r.error().message, Contains("loops"));
    }
    SECTION("a table with two chunks in one place") {
        std::string img = dir.file("t.fvd");
        create_ok(L, img, fvd_opts(4 << 20));
        auto h = must(fvd::decode_header(read_file(img, 0, 4096), file_size(img), true));
        uint32_t entries[2] = {0, 0};
        write_file(img, entries, sizeof entries, off_t(h.table_offset));
        auto r = try_open(L, img);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("FVD table: chunk 1"));
    }
    SECTION("a table entry past the end") {
        std::string img = dir.file("t.fvd");
        create_ok(L, img, fvd_opts(4 << 20));
        auto h = must(fvd::decode_header(read_file(img, 0, 4096), file_size(img), true));
        uint32_t entry = 1000;
        write_file(img, &entry, sizeof entry, off_t(h.table_offset));
        auto r = try_open(L, img);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("past the last one"));
    }
    SECTION("a bitmap that marks a block of an unallocated chunk") {
        std::string img = dir.file("t.fvd");
        create_ok(L, img, fvd_opts(4 << 20));
        auto h = must(fvd::decode_header(read_file(img, 0, 4096), file_size(img), true));
        unsigned char bit = 1;
        write_file(img, &bit, 1, off_t(h.bitmap_offset));
        auto r = try_open(L, img);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("block 0 is in the image"));
    }
    SECTION("a truncated image") {
        std::string img = dir.file("t.fvd");
        create_ok(L, img, fvd_opts(4 << 20));
        REQUIRE(::truncate(img.c_str(), 8192) == 0);
        auto r = try_open(L, img);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("past the end"));
    }
    SECTION("creation options out of range") {
        auto r = try_create(L, dir.file("x.fvd"), fvd_opts(1 << 20, {{"block_size", "3k"}}));
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("block_size"));
        r = try_create(L, dir.file("x.fvd"), fvd_opts(1 << 20, {{"colour", "red"}}));
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("colour"));
        r = try_create(L, dir.file("x.fvd"), fvd_opts(0));
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("no size"));
    }
}

// ------------------------------------------------------------------ copy-on-read, prefetch

namespace {

// Lets background coroutines run until `done()` holds, for at most ~30 s
// (a hang guard, not a timing assertion).
template <typename F>
bool run_until(Loop& L, F done)
{
    for (int i = 0; i < 3000 && !done(); i++)
        sync_wait(L, [](Loop& l) -> Task<void> {
            co_await l.sleep_for(std::chrono::milliseconds(10));
        }(L));
    return done();
}

} // namespace

TEST_CASE("fvd: copy-on-read stores base data read by the guest in the image", "[fvd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string base = dir.file("base.raw");
    auto old_data = pattern(4 << 20, 21);
    write_file(base, old_data.data(), old_data.size(), 0, true);
    std::string img = dir.file("o.fvd");
    create_ok(L, img, fvd_opts(0, {{"backing_file", "base.raw"}}));

    OpenOptions o;
    o.options = {{"copy_on_read", "on"}};
    auto l = open_ok(L, img, o);
    FvdLayer& f = as_fvd(*l);
    REQUIRE(f.copy_on_read());
    // 1 MiB from 100 KiB: blocks 2..16 are read whole, 1 and 17 in part.
    auto got = layer_read(L, *l, 100 * 1024, 1 << 20);
    CHECK_BYTES(got.data(), old_data.data() + 100 * 1024, 1 << 20, 100 * 1024);
    REQUIRE(run_until(L, [&] { return f.blocks_copied_on_read() >= 15; }));
    CHECK(f.blocks_copied_on_read() == 15);
    CHECK(f.where(1) == FvdLayer::Where::Base);
    CHECK(f.where(2) == FvdLayer::Where::Image);
    CHECK(f.where(16) == FvdLayer::Where::Image);
    CHECK(f.where(17) == FvdLayer::Where::Base);

    SECTION("a crash loses the copies, and reads still come right from the base") {
        // Another open of the same file, while the first is still open,
        // sees what a crash now would leave: nothing was flushed.
        OpenOptions ro;
        ro.read_only = true;
        ro.options = {{"locking", "off"}};
        auto second = open_ok(L, img, ro);
        CHECK(as_fvd(*second).blocks_in_image() == 0);
        auto again = layer_read(L, *second, 0, 4 << 20);
        CHECK_BYTES(again.data(), old_data.data(), 4 << 20, 0);
        close_layer(L, *second);
        close_layer(L, *l);
    }
    SECTION("copied blocks stay in the image after a clean close") {
        close_layer(L, *l);
        // Change the base behind the image's back: copied blocks keep the
        // old bytes, the others show the new ones.
        auto new_data = pattern(4 << 20, 22);
        write_file(base, new_data.data(), new_data.size());
        auto r = open_ok(L, img);
        auto all = layer_read(L, *r, 0, 4 << 20);
        CHECK_BYTES(all.data() + 2 * 65536, old_data.data() + 2 * 65536, 15 * 65536, 2 * 65536);
        CHECK_BYTES(all.data(), new_data.data(), 2 * 65536, 0);
        CHECK_BYTES(all.data() + 17 * 65536, new_data.data() + 17 * 65536, 47 * 65536,
                    17 * 65536);
        close_layer(L, *r);
    }
}

TEST_CASE("fvd: copy-on-read stays within its memory budget", "[fvd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string base = dir.file("base.raw");
    auto data = pattern(2 << 20, 5);
    write_file(base, data.data(), data.size(), 0, true);
    std::string img = dir.file("o.fvd");
    create_ok(L, img, fvd_opts(0, {{"backing_file", "base.raw"}, {"copy_on_read", "on"}}));
    OpenOptions o;
    o.options = {{"cor_budget", "64k"}};
    auto l = open_ok(L, img, o);
    FvdLayer& f = as_fvd(*l);
    REQUIRE(f.copy_on_read());   // from the image's default
    auto big = layer_read(L, *l, 0, 1 << 20);      // over budget: not copied
    auto small = layer_read(L, *l, 1 << 20, 65536);  // within it
    CHECK_BYTES(big.data(), data.data(), 1 << 20, 0);
    REQUIRE(run_until(L, [&] { return f.blocks_copied_on_read() >= 1; }));
    close_layer(L, *l);
    CHECK(f.blocks_copied_on_read() == 1);
    CHECK(f.blocks_in_image() == 1);
}

TEST_CASE("fvd: prefetch copies the whole base and the image then stands alone", "[fvd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string base = dir.file("base.raw");
    auto data = pattern(6 << 20, 8);
    write_file(base, data.data(), data.size(), 0, true);
    std::string img = dir.file("o.fvd");
    // The image is larger than its base: the rest reads as zeros and needs
    // no copying.
    create_ok(L, img, fvd_opts(8 << 20, {{"backing_file", "base.raw"}, {"prefetch", "on"}}));
    OpenOptions o;
    o.options = {{"prefetch_delay", "0"}, {"prefetch_idle", "0"}};
    auto l = open_ok(L, img, o);
    FvdLayer& f = as_fvd(*l);
    // A guest write meanwhile must survive the prefetcher.
    auto mine = pattern(5000, 9);
    REQUIRE(sync_pwrite(L, *l, 3 * 65536 + 100, mine.data(), mine.size()) == 0);
    REQUIRE(run_until(L, [&] { return !f.prefetching(); }));
    CHECK(f.base_copied());
    CHECK(f.blocks_prefetched() >= 95);
    close_layer(L, *l);

    std::vector<unsigned char> model = data;
    model.resize(8 << 20, 0);
    std::memcpy(model.data() + 3 * 65536 + 100, mine.data(), mine.size());
    REQUIRE(::unlink(base.c_str()) == 0);   // no longer needed
    auto r = open_ok(L, img);
    CHECK(as_fvd(*r).base() == nullptr);
    check_all(L, *r, model);
    close_layer(L, *r);
}

TEST_CASE("fvd: space a crash leaked is found at open, reused, and given back", "[fvd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string img = dir.file("leak.fvd");
    create_ok(L, img, fvd_opts(16 << 20, {{"chunk_size", "1m"}}));
    OpenOptions shared;
    shared.options = {{"locking", "off"}};
    auto l = open_ok(L, img, shared);
    auto data = pattern(4096, 3);
    // Chunk 0 flushed; chunks for 5 MiB and 9 MiB written but never flushed.
    REQUIRE(sync_pwrite(L, *l, 0, data.data(), 4096, kReqFua) == 0);
    REQUIRE(sync_pwrite(L, *l, 9 << 20, data.data(), 4096) == 0);
    REQUIRE(sync_pwrite(L, *l, 5 << 20, data.data(), 4096) == 0);
    uint64_t data_offset = as_fvd(*l).header().data_offset;
    // What a crash now leaves: the file holds three chunks, the metadata one.
    REQUIRE(file_size(img) > off_t(data_offset + (2 << 20)));
    {
        auto after = open_ok(L, img, shared);
        FvdLayer& f = as_fvd(*after);
        CHECK(f.chunks_allocated() == 1);
        CHECK(f.unused_tail_bytes() == uint64_t(file_size(img)) - data_offset - (1 << 20));
        REQUIRE(sync_wait(L, f.release_unused_tail()) == 0);
        CHECK(file_size(img) == off_t(data_offset + (1 << 20)));
        auto zero = layer_read(L, *after, 9 << 20, 4096);
        CHECK_ZEROS(zero.data(), 4096, 9 << 20);
        close_layer(L, *after);
    }
    // (The first device stays open, untouched, until the end: closing it
    // now would write its metadata.)
    // A chunk in the middle that no entry names is reused by the next write.
    auto hb = read_file(img, 0, 4096);
    auto h = must(fvd::decode_header(hb, file_size(img), true));
    uint32_t moved = 2;   // chunk 0 now at physical 2: physical 0 and 1 are free
    write_file(img, &moved, 4, off_t(h.table_offset));
    auto bytes = read_file(img, off_t(data_offset), 4096);
    write_file(img, bytes.data(), 4096, off_t(data_offset + (2 << 20)));
    off_t before = file_size(img);
    auto re = open_ok(L, img);
    CHECK(as_fvd(*re).chunks_free_at_open() == 2);
    REQUIRE(sync_pwrite(L, *re, 3 << 20, data.data(), 4096) == 0);
    auto got = layer_read(L, *re, 0, 4096);
    CHECK_BYTES(got.data(), data.data(), 4096, 0);
    close_layer(L, *re);
    // The write went into physical chunk 0: the file did not grow.
    CHECK(file_size(img) == before);
    close_layer(L, *l);
}
