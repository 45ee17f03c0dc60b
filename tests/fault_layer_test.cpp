// Tests of the fault-injecting layer (tests/fault_layer.h) over the memory
// backend and over a real file. What reached the child is checked by reading
// the child directly (and the file with plain syscalls), against a model
// built in the test.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "backends/file.h"
#include "backends/memory.h"
#include "engine/loop.h"
#include "engine/sync.h"
#include "tests/fault_layer.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::test;

namespace {

using Bytes = std::vector<unsigned char>;

std::unique_ptr<Layer> mem(const char* size)
{
    return must(MemoryLayer::open({{"size", size}}, false), "MemoryLayer::open");
}

std::unique_ptr<Layer> file_child(Loop& L, const std::string& path, uint64_t size,
                                  CacheMode cache = CacheMode::Writeback)
{
    make_sparse_file(path, off_t(size));
    FileOpenOptions o;
    o.cache = cache;
    return must(FileLayer::open(L, path, o), "FileLayer::open(" + path + ")");
}

std::unique_ptr<FaultLayer> wrap(std::unique_ptr<Layer> child, FaultConfig cfg)
{
    cfg.close_child = false;
    return std::make_unique<FaultLayer>(std::move(child), cfg);
}

// Closes `f` and hands back its (open) child.
std::unique_ptr<Layer> take_child(Loop& L, FaultLayer& f)
{
    close_layer(L, f);
    auto c = f.release_child();
    REQUIRE(c);
    REQUIRE(!c->closed());
    return c;
}

// The child's whole content, read through the child.
Bytes contents(Loop& L, Layer& child) { return layer_read(L, child, 0, child.size()); }

// What a layer should hold: bytes and size.
struct Model {
    Bytes b;
    explicit Model(size_t n) : b(n, 0) {}
    void write(uint64_t off, const Bytes& d)
    {
        if (off + d.size() > b.size())
            b.resize(off + d.size(), 0);
        std::copy(d.begin(), d.end(), b.begin() + long(off));
    }
    void zero(uint64_t off, uint64_t len) { std::fill_n(b.begin() + long(off), len, 0); }
    void resize(size_t n) { b.resize(n, 0); }
};

int write_at(Loop& L, Layer& l, uint64_t off, const Bytes& d, unsigned flags = 0)
{
    return sync_pwrite(L, l, off, d.data(), d.size(), flags);
}

// Writes `data` at `off` and records the order of completion.
Task<void> tracked_write(Layer& l, uint64_t off, const Bytes& data, int id,
                         std::vector<int>& order, std::vector<int>& results)
{
    int r = co_await l.pwrite(off, data.data(), data.size());
    results.push_back(r);
    order.push_back(id);
}

} // namespace

TEST_CASE("fault: fail_rate 1 fails every request and leaves the child untouched", "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto child = mem("1M");
    auto before = pattern(8192, 7);
    REQUIRE(write_at(L, *child, 0, before) == 0);
    int64_t allocated = child->allocated_bytes();

    FaultConfig cfg;
    int write_errno = EIO;
    SECTION("EIO") { cfg.fail_errno = EIO; }
    SECTION("ENOSPC, for writes and write_zeroes only")
    {
        cfg.fail_errno = ENOSPC;
        write_errno = ENOSPC;
    }
    cfg.fail_rate = 1.0;
    auto f = wrap(std::move(child), cfg);
    auto data = pattern(8192, 8);
    Bytes buf(8192);
    CHECK(write_at(L, *f, 0, data) == -write_errno);
    CHECK(sync_wait(L, f->write_zeroes(0, 4096)) == -write_errno);
    CHECK(sync_pread(L, *f, 0, buf.data(), buf.size()) == -EIO);
    CHECK(sync_wait(L, f->flush()) == -EIO);
    CHECK(sync_wait(L, f->discard(0, 4096)) == -EIO);
    CHECK(sync_wait(L, f->truncate(4096)) == -EIO);
    CHECK(f->faults_injected() == 6);
    CHECK(f->write_points() == 4);

    auto c = take_child(L, *f);
    CHECK(c->size() == 1 << 20);
    CHECK(c->allocated_bytes() == allocated);
    auto now = layer_read(L, *c, 0, 8192);
    CHECK_BYTES(now.data(), before.data(), 8192, 0);
}

TEST_CASE("fault: a fail rate fails some requests, the same ones for the same seed", "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    // Writes block i with pattern i; returns the results and the child's bytes.
    auto run = [&](uint64_t seed) {
        FaultConfig cfg;
        cfg.seed = seed;
        cfg.fail_rate = 0.5;
        auto f = wrap(mem("1M"), cfg);
        std::vector<int> results;
        for (uint32_t i = 0; i < 200; i++)
            results.push_back(write_at(L, *f, i * 4096, pattern(4096, i)));
        auto c = take_child(L, *f);
        return std::make_pair(results, contents(L, *c));
    };
    auto [r1, c1] = run(42);
    long failed = std::count(r1.begin(), r1.end(), -EIO);
    CHECK(failed + std::count(r1.begin(), r1.end(), 0) == 200);
    CHECK(failed > 50);
    CHECK(failed < 150);
    // A failed write never reached the child; a successful one did.
    for (uint32_t i = 0; i < 200; i++) {
        INFO("block " << i << " result " << r1[i]);
        if (r1[i] == 0) {
            auto want = pattern(4096, i);
            CHECK_BYTES(c1.data() + i * 4096, want.data(), 4096, i * 4096);
        } else {
            CHECK_ZEROS(c1.data() + i * 4096, 4096, i * 4096);
        }
    }
    auto [r2, c2] = run(42);
    CHECK(r2 == r1);
    CHECK(c2 == c1);
    auto [r3, c3] = run(43);
    CHECK(r3 != r1);
}

TEST_CASE("fault: delays reorder completions", "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    constexpr int kWrites = 16;
    FaultConfig cfg;
    cfg.seed = 5;
    bool delayed = GENERATE(false, true);
    if (delayed) {
        cfg.delay_rate = 1.0;
        cfg.max_delay_us = 20000;
    }
    auto f = wrap(mem("1M"), cfg);
    std::vector<Bytes> data;
    for (int i = 0; i < kWrites; i++)
        data.push_back(pattern(4096, uint32_t(i)));
    std::vector<int> order, results;
    sync_wait(L, [](FaultLayer& f, std::vector<Bytes>& data, std::vector<int>& o,
                    std::vector<int>& r) -> Task<void> {
        TaskGroup tg;
        for (int i = 0; i < kWrites; i++)
            tg.spawn(tracked_write(f, uint64_t(i) * 4096, data[size_t(i)], i, o, r));
        co_await tg.join();
    }(*f, data, order, results));

    std::vector<int> issued(kWrites);
    for (int i = 0; i < kWrites; i++)
        issued[size_t(i)] = i;
    CHECK(results == std::vector<int>(kWrites, 0));
    auto sorted = order;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == issued);  // each completed once
    INFO("delayed: " << delayed);
    if (delayed) {
        CHECK(order != issued);
        CHECK(f->faults_injected() == kWrites);
    } else {
        CHECK(order == issued);
        CHECK(f->faults_injected() == 0);
    }
    auto c = take_child(L, *f);
    for (int i = 0; i < kWrites; i++) {
        auto got = layer_read(L, *c, uint64_t(i) * 4096, 4096);
        CHECK_BYTES(got.data(), data[size_t(i)].data(), 4096, i * 4096);
    }
}

TEST_CASE("fault: short transfers are finished, or fail, never a short success", "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    auto [kind, cache] = GENERATE(table<const char*, CacheMode>({
        {"memory", CacheMode::Writeback},
        {"file", CacheMode::Writeback},
        {"file", CacheMode::None},
    }));
    INFO(kind << (cache == CacheMode::None ? " cache=none" : ""));
    constexpr uint64_t kSize = 1 << 20;
    auto child = std::string(kind) == "memory" ? mem("1M")
                                               : file_child(L, dir.file("img"), kSize, cache);
    uint32_t align = child->limits().request_alignment;
    FaultConfig cfg;
    cfg.seed = 9;
    cfg.short_rate = 1.0;

    SECTION("the layer sends the rest itself")
    {
        auto f = wrap(std::move(child), cfg);
        Model m(kSize);
        uint64_t requests = 0;
        for (uint32_t i = 0; i < 40; i++) {
            uint64_t unit = std::max<uint64_t>(align, 512);
            uint64_t len = unit * (1 + (i * 7) % 32), off = unit * ((i * 131) % 128);
            auto d = pattern(len, i);
            REQUIRE(write_at(L, *f, off, d) == 0);
            m.write(off, d);
            requests += len / align >= 2;
        }
        for (uint64_t off = 0; off < kSize; off += 65536) {
            auto got = layer_read(L, *f, off, 65536);  // also shortened
            requests++;
            CHECK_BYTES(got.data(), m.b.data() + off, 65536, off);
        }
        CHECK(f->faults_injected() == requests);
        close_layer(L, *f);
    }
    SECTION("short_fails: -EIO after passing a proper prefix down")
    {
        cfg.short_fails = true;
        auto f = wrap(std::move(child), cfg);
        auto d = pattern(64 * 1024, 3);
        CHECK(write_at(L, *f, 0, d) == -EIO);
        Bytes buf(64 * 1024);
        CHECK(sync_pread(L, *f, 0, buf.data(), buf.size()) == -EIO);
        auto c = take_child(L, *f);
        auto got = layer_read(L, *c, 0, d.size());
        long prefix = first_difference(got.data(), d.data(), d.size());
        INFO("prefix written: " << prefix);
        CHECK(prefix > 0);
        CHECK(prefix % long(align) == 0);
        CHECK_ZEROS(got.data() + prefix, d.size() - size_t(prefix), prefix);
        close_layer(L, *c);
    }
}

TEST_CASE("fault: fail_write_point(n) fails write point n alone", "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    FaultConfig cfg;
    int write_errno = EIO;
    SECTION("EIO") {}
    SECTION("ENOSPC")
    {
        cfg.fail_errno = ENOSPC;
        write_errno = ENOSPC;
    }
    auto f = wrap(mem("1M"), cfg);
    f->fail_write_point(1);
    Model m(1 << 20);
    auto d0 = pattern(4096, 0), d1 = pattern(4096, 1), d2 = pattern(4096, 2);
    CHECK(write_at(L, *f, 0, d0) == 0);   // write point 0
    m.write(0, d0);
    layer_read(L, *f, 0, 4096);            // reads and flushes take none
    CHECK(sync_wait(L, f->flush()) == 0);
    CHECK(write_at(L, *f, 4096, d1) == -write_errno);   // 1: fails, not at the child
    CHECK(write_at(L, *f, 8192, d2) == 0);               // 2: goes on
    m.write(8192, d2);
    CHECK(f->write_points() == 3);
    CHECK(f->faults_injected() == 1);
    CHECK(!f->crashed());
    auto c = take_child(L, *f);
    auto now = contents(L, *c);
    CHECK_BYTES(now.data(), m.b.data(), m.b.size(), 0);
}

TEST_CASE("fault: crash_at(n) stops exactly write point n and everything after", "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto child = mem("1M");
    auto old = pattern(65536, 99);
    REQUIRE(write_at(L, *child, 0, old) == 0);
    auto f = wrap(std::move(child), FaultConfig{});
    f->crash_at(5);
    Model m(1 << 20);
    m.write(0, old);
    // Write points 0..4: pwrite, write_zeroes, discard, pwrite, truncate
    // (a grow of 0 bytes: the same size); reads and flushes take none.
    auto d0 = pattern(4096, 0), d3 = pattern(4096, 3);
    CHECK(write_at(L, *f, 0, d0) == 0);
    m.write(0, d0);
    CHECK(sync_wait(L, f->flush()) == 0);
    CHECK(sync_wait(L, f->write_zeroes(4096, 4096)) == 0);
    m.zero(4096, 4096);
    CHECK(sync_wait(L, f->discard(8192, 4096)) == 0);
    m.zero(8192, 4096);
    layer_read(L, *f, 0, 4096);
    CHECK(write_at(L, *f, 12288, d3) == 0);
    m.write(12288, d3);
    CHECK(sync_wait(L, f->truncate(1 << 20)) == 0);
    CHECK(f->write_points() == 5);
    CHECK(!f->crashed());

    auto d5 = pattern(4096, 5);
    CHECK(write_at(L, *f, 20480, d5) == -EIO);
    CHECK(f->crashed());
    Bytes buf(4096);
    CHECK(sync_pread(L, *f, 0, buf.data(), buf.size()) == -EIO);
    CHECK(sync_wait(L, f->flush()) == -EIO);
    CHECK(sync_wait(L, f->write_zeroes(0, 4096)) == -EIO);
    Extent e;
    CHECK(sync_wait(L, f->block_status(0, 4096, &e)) == -EIO);
    CHECK(f->write_points() == 7);

    auto c = take_child(L, *f);
    auto got = contents(L, *c);
    CHECK_BYTES(got.data(), m.b.data(), m.b.size(), 0);

    auto f2 = wrap(std::move(c), FaultConfig{});
    CHECK(layer_read(L, *f2, 0, 4096) == d0);
    f2->crash_now();
    CHECK(sync_pread(L, *f2, 0, buf.data(), buf.size()) == -EIO);
    close_layer(L, *f2);
}

namespace {

// The resolve_crash scenario: a flushed part, then unflushed writes of every
// kind (one of them FUA), over a child of 1 MiB. Fills `flushed` with what
// a completed flush made durable (plus the FUA write) and `all` with every
// completed write; returns the FUA write's range.
struct Scenario {
    Model flushed{1 << 20}, all{1 << 20};
};

void run_scenario(Loop& L, FaultLayer& f, Scenario& s)
{
    auto p1 = pattern(65536, 1), p2 = pattern(16384, 2);
    REQUIRE(write_at(L, f, 0, p1) == 0);
    REQUIRE(write_at(L, f, 131072, p2) == 0);
    REQUIRE(sync_wait(L, f.flush()) == 0);
    for (Model* m : {&s.flushed, &s.all}) {
        m->write(0, p1);
        m->write(131072, p2);
    }
    // Unflushed from here on, except the FUA write.
    auto p3 = pattern(16384, 3), p4 = pattern(8192, 4), p5 = pattern(4096, 5),
         p6 = pattern(3000, 6);
    REQUIRE(write_at(L, f, 8192, p3) == 0);                     // over p1
    REQUIRE(sync_wait(L, f.write_zeroes(133120, 4096)) == 0);   // over p2
    REQUIRE(sync_wait(L, f.discard(40960, 8192)) == 0);         // over p1
    REQUIRE(write_at(L, f, 204800, p4, kReqFua) == 0);
    REQUIRE(write_at(L, f, (1 << 20) - 4096, p5) == 0);         // cut off below
    REQUIRE(sync_wait(L, f.truncate(524288)) == 0);
    REQUIRE(write_at(L, f, 300000, p6) == 0);                   // unaligned
    s.flushed.write(204800, p4);
    s.all.write(8192, p3);
    s.all.zero(133120, 4096);
    s.all.zero(40960, 8192);
    s.all.write(204800, p4);
    s.all.resize(524288);
    s.all.write(300000, p6);
    if (f.growable()) {  // a write past the end grows a file
        auto p7 = pattern(4096, 7);
        REQUIRE(write_at(L, f, 600000, p7) == 0);
        s.all.write(600000, p7);
    }
}

} // namespace

TEST_CASE("fault: resolve_crash keeps the flushed state, or everything", "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    bool on_file = GENERATE(false, true);
    double keep = GENERATE(0.0, 1.0);
    INFO((on_file ? "file" : "memory") << ", keep " << keep);
    std::string path = dir.file("img");
    auto child = on_file ? file_child(L, path, 1 << 20) : mem("1M");
    FaultConfig cfg;
    cfg.seed = 11;
    auto f = wrap(std::move(child), cfg);
    Scenario s;
    run_scenario(L, *f, s);
    REQUIRE(sync_wait(L, f->resolve_crash(keep, false)) == 0);
    auto c = take_child(L, *f);
    const Model& want = keep == 0 ? s.flushed : s.all;
    CHECK(c->size() == want.b.size());
    auto got = contents(L, *c);
    CHECK_BYTES(got.data(), want.b.data(), std::min(got.size(), want.b.size()), 0);
    close_layer(L, *c);
    if (on_file) {
        auto disk = read_whole_file(path);
        REQUIRE(disk.size() == want.b.size());
        CHECK_BYTES(disk.data(), want.b.data(), disk.size(), 0);
    }
}

TEST_CASE("fault: a write completing after a flush arrived is not covered by it", "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    FaultConfig cfg;
    cfg.delay_rate = 1.0;
    cfg.max_delay_us = 5000;
    auto a = pattern(4096, 1), b = pattern(4096, 2);
    // Over several seeds B completes before or after the child's flush:
    // either way it was not complete when the flush arrived.
    for (uint64_t seed = 1; seed <= 8; seed++) {
        cfg.seed = seed;
        auto f = wrap(mem("1M"), cfg);
        REQUIRE(write_at(L, *f, 0, a) == 0);
        int rf = -1, rb = -1;
        sync_wait(L, [](FaultLayer& f, const Bytes& b, int& rf, int& rb) -> Task<void> {
            TaskGroup tg;
            tg.spawn([](FaultLayer& f, int& r) -> Task<void> { r = co_await f.flush(); }(f, rf));
            tg.spawn([](FaultLayer& f, const Bytes& b, int& r) -> Task<void> {
                r = co_await f.pwrite(4096, b.data(), b.size());
            }(f, b, rb));
            co_await tg.join();
        }(*f, b, rf, rb));
        REQUIRE(rf == 0);
        REQUIRE(rb == 0);
        REQUIRE(sync_wait(L, f->resolve_crash(0.0, false)) == 0);
        auto c = take_child(L, *f);
        INFO("seed " << seed);
        CHECK(layer_read(L, *c, 0, 4096) == a);
        CHECK_ZEROS(layer_read(L, *c, 4096, 4096).data(), 4096, 4096);
    }
}

namespace {

// Passes everything to its child; flush returns `flush_result` instead of
// flushing.
class FlushFails : public Layer {
public:
    FlushFails(std::unique_ptr<Layer> c, int flush_result)
        : child_(std::move(c)), flush_result_(flush_result)
    {
        size_ = child_->size();
        limits_ = child_->limits();
    }
    const char* kind() const override { return "flush-fails"; }

protected:
    Task<int> do_preadv(uint64_t off, const iovec* iov, int n, unsigned fl) override
    {
        co_return co_await child_->preadv(off, iov, n, fl);
    }
    Task<int> do_pwritev(uint64_t off, const iovec* iov, int n, unsigned fl) override
    {
        co_return co_await child_->pwritev(off, iov, n, fl);
    }
    Task<int> do_flush() override { co_return flush_result_; }
    Task<int> do_discard(uint64_t off, uint64_t len) override
    {
        co_return co_await child_->discard(off, len);
    }
    Task<int> do_write_zeroes(uint64_t off, uint64_t len, unsigned fl) override
    {
        co_return co_await child_->write_zeroes(off, len, fl);
    }
    Task<void> do_close() override { co_await child_->close(); }

private:
    std::unique_ptr<Layer> child_;
    int flush_result_;
};

} // namespace

TEST_CASE("fault: a flush the child failed makes nothing durable", "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto f = wrap(std::make_unique<FlushFails>(mem("1M"), -EIO), FaultConfig{});
    auto a = pattern(4096, 1);
    REQUIRE(write_at(L, *f, 0, a) == 0);
    CHECK(sync_wait(L, f->flush()) == -EIO);
    REQUIRE(sync_wait(L, f->resolve_crash(0.0, false)) == 0);
    auto c = take_child(L, *f);
    CHECK_ZEROS(layer_read(L, *c, 0, 4096).data(), 4096, 0);
}

TEST_CASE("fault: tear keeps a proper part of one write, in 512-byte sectors", "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    // Three non-overlapping unflushed writes: one of two sectors, one unaligned.
    struct W {
        uint64_t off, len;
    };
    const W writes[] = {{0, 1024}, {20000, 5000}, {65536, 16384}};
    double keep = GENERATE(0.0, 1.0);
    std::set<int> torn_seen;
    for (uint64_t seed = 1; seed <= 24; seed++) {
        FaultConfig cfg;
        cfg.seed = seed;
        auto f = wrap(mem("1M"), cfg);
        Model old(1 << 20), all(1 << 20);
        auto base = pattern(1 << 17, 100);
        REQUIRE(write_at(L, *f, 0, base) == 0);
        REQUIRE(sync_wait(L, f->flush()) == 0);
        old.write(0, base);
        all.write(0, base);
        for (uint32_t i = 0; i < 3; i++) {
            auto d = pattern(writes[i].len, i);
            REQUIRE(write_at(L, *f, writes[i].off, d) == 0);
            all.write(writes[i].off, d);
        }
        REQUIRE(sync_wait(L, f->resolve_crash(keep, true)) == 0);
        auto c = take_child(L, *f);
        auto got = contents(L, *c);
        INFO("seed " << seed << ", keep " << keep);
        // Outside the torn write, everything is as `keep` says; inside it,
        // each sector is wholly old or wholly new, and both kinds occur.
        const Model& rest = keep == 0 ? old : all;
        int torn = -1;
        for (int i = 0; i < 3; i++) {
            const W& w = writes[i];
            if (std::equal(got.begin() + long(w.off), got.begin() + long(w.off + w.len),
                           rest.b.begin() + long(w.off)))
                continue;
            CHECK(torn == -1);
            torn = i;
            size_t n_old = 0, n_new = 0;
            for (uint64_t s = w.off / 512 * 512; s < w.off + w.len; s += 512) {
                uint64_t a = std::max(s, w.off), b = std::min(s + 512, w.off + w.len);
                bool is_old = std::equal(got.begin() + long(a), got.begin() + long(b),
                                         old.b.begin() + long(a));
                bool is_new = std::equal(got.begin() + long(a), got.begin() + long(b),
                                         all.b.begin() + long(a));
                INFO("write " << i << ", sector at " << s);
                CHECK(is_old != is_new);
                n_old += is_old;
                n_new += is_new;
            }
            CHECK(n_old > 0);
            CHECK(n_new > 0);
        }
        CHECK(torn >= 0);
        torn_seen.insert(torn);
        // Nothing else changed.
        for (const W& w : writes)
            std::copy_n(rest.b.begin() + long(w.off), w.len, got.begin() + long(w.off));
        CHECK(got == rest.b);
    }
    CHECK(torn_seen.size() == 3);
}

namespace {

// Four overlapping writes (each overlaps every other in [6K, 8K)) issued
// at once over a flushed base, then a crash resolved with keep 0.5.
// Returns the child's first 16 KiB.
Bytes overlapping_crash(Loop& L, std::unique_ptr<Layer> child, uint64_t seed)
{
    FaultConfig cfg;
    cfg.seed = seed;
    auto f = wrap(std::move(child), cfg);
    auto base = pattern(16384, 50);
    REQUIRE(write_at(L, *f, 0, base) == 0);
    REQUIRE(sync_wait(L, f->flush()) == 0);
    std::vector<Bytes> data;
    for (uint32_t i = 0; i < 4; i++)
        data.push_back(pattern(8192, 60 + i, i * 2048));
    std::vector<int> order, results;
    sync_wait(L, [](FaultLayer& f, std::vector<Bytes>& data, std::vector<int>& o,
                    std::vector<int>& r) -> Task<void> {
        TaskGroup tg;
        for (int i = 0; i < 4; i++)
            tg.spawn(tracked_write(f, uint64_t(i) * 2048, data[size_t(i)], i, o, r));
        co_await tg.join();
    }(*f, data, order, results));
    REQUIRE(results == std::vector<int>(4, 0));
    REQUIRE(order == std::vector<int>{0, 1, 2, 3});  // the range lock is FIFO
    REQUIRE(sync_wait(L, f->resolve_crash(0.5, false)) == 0);
    auto c = take_child(L, *f);
    auto got = layer_read(L, *c, 0, 16384);
    close_layer(L, *c);
    return got;
}

} // namespace

TEST_CASE("fault: overlapping unflushed writes undo to a state a subset of them gives",
          "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    // Every state: the base with a subset of the writes applied in order.
    std::set<Bytes> valid;
    for (unsigned mask = 0; mask < 16; mask++) {
        Bytes b = pattern(16384, 50);
        for (uint32_t i = 0; i < 4; i++)
            if (mask & (1u << i)) {
                auto d = pattern(8192, 60 + i, i * 2048);
                std::copy(d.begin(), d.end(), b.begin() + long(i) * 2048);
            }
        valid.insert(b);
    }
    REQUIRE(valid.size() == 16);
    std::set<Bytes> seen;
    for (uint64_t seed = 1; seed <= 96; seed++) {
        // A file: its reads and writes really are in flight together.
        std::string path = dir.file("img" + std::to_string(seed));
        auto got = overlapping_crash(L, file_child(L, path, 1 << 20), seed);
        INFO("seed " << seed);
        CHECK(valid.count(got) == 1);
        seen.insert(got);
    }
    // The coin flips reach every subset.
    CHECK(seen.size() == valid.size());
}

TEST_CASE("fault: one seed replays one outcome; other seeds give others", "[fault]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    // Writes, failures, short transfers and a torn crash, all seeded.
    auto run = [&](uint64_t seed) {
        FaultConfig cfg;
        cfg.seed = seed;
        cfg.fail_rate = 0.2;
        cfg.short_rate = 0.3;
        auto f = wrap(mem("1M"), cfg);
        std::vector<int> results;
        for (uint32_t i = 0; i < 24; i++) {
            results.push_back(write_at(L, *f, (i * 5 % 16) * 8192, pattern(8192, i)));
            if (i % 8 == 7)
                results.push_back(sync_wait(L, f->flush()));
        }
        REQUIRE(sync_wait(L, f->resolve_crash(0.5, true)) == 0);
        auto c = take_child(L, *f);
        return std::make_pair(results, layer_read(L, *c, 0, 16 * 8192));
    };
    auto first = run(1234);
    CHECK(run(1234) == first);
    std::set<Bytes> outcomes;
    for (uint64_t seed = 1; seed <= 32; seed++)
        outcomes.insert(run(seed).second);
    CHECK(outcomes.size() >= 24);
}
