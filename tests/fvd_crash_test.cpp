// FVD crash consistency: a mixed workload on an FVD image over the
// fault-injecting layer is cut at every write point the image makes (data
// and metadata alike) and at random points across many seeds; the crash is
// resolved as a power cut would leave the disk (unflushed writes kept,
// dropped or torn); the image is reopened, must open cleanly, and every
// byte must hold a value the guest could see: what was acknowledged before
// the last completed flush, or one of the values written since.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backends/memory.h"
#include "engine/loop.h"
#include "engine/sync.h"
#include "formats/fvd.h"
#include "tests/fault_layer.h"
#include "tests/helpers.h"
#include "uri/open.h"

using namespace coblk;
using namespace coblk::test;

namespace {

constexpr uint64_t kSector = 512;

uint64_t hash_sector(const unsigned char* p)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < kSector; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

// What the device may hold after a crash. Writes since the last completed
// flush may each be lost or kept (the fault layer decides write by write),
// so a byte may hold its value at that flush or the value of any write to
// it since. Sectors are first checked against the values they passed
// through (fast), then byte by byte.
struct Model {
    struct Write {
        uint64_t off = 0;
        std::vector<unsigned char> data;
    };
    std::vector<unsigned char> bytes;     // what the guest sees now
    std::vector<unsigned char> settled;   // at the last completed flush
    std::vector<Write> unflushed;
    std::vector<std::vector<uint64_t>> allowed;

    explicit Model(std::vector<unsigned char> initial) : bytes(std::move(initial))
    {
        allowed.resize(bytes.size() / kSector);
        settle();
    }
    // A flush completed: only the current values remain possible.
    void settle()
    {
        settled = bytes;
        unflushed.clear();
        for (size_t s = 0; s < allowed.size(); s++)
            allowed[s].assign(1, hash_sector(bytes.data() + s * kSector));
    }
    // A write (maybe) happened; `durable` when it completed with FUA.
    void wrote(uint64_t off, const unsigned char* data, uint64_t len, bool durable)
    {
        if (data)
            std::memcpy(bytes.data() + off, data, len);
        else
            std::memset(bytes.data() + off, 0, len);
        if (durable)
            std::memcpy(settled.data() + off, bytes.data() + off, len);
        else
            unflushed.push_back({off, std::vector<unsigned char>(bytes.begin() + off,
                                                                 bytes.begin() + off + len)});
        for (uint64_t s = off / kSector; s <= (off + len - 1) / kSector; s++) {
            uint64_t h = hash_sector(bytes.data() + s * kSector);
            if (durable)
                allowed[s].assign(1, h);
            else if (std::find(allowed[s].begin(), allowed[s].end(), h) == allowed[s].end())
                allowed[s].push_back(h);
        }
    }
    // The first byte of sector `s` of `got` that no write could explain, or
    // -1.
    long bad_byte(size_t s, const unsigned char* got) const
    {
        uint64_t h = hash_sector(got);
        if (std::find(allowed[s].begin(), allowed[s].end(), h) != allowed[s].end())
            return -1;
        for (uint64_t x = s * kSector; x < (s + 1) * kSector; x++) {
            unsigned char v = got[x - s * kSector];
            if (v == settled[x])
                continue;
            bool ok = false;
            for (const Write& w : unflushed)
                if (x >= w.off && x < w.off + w.data.size() && w.data[x - w.off] == v) {
                    ok = true;
                    break;
                }
            if (!ok)
                return long(x);
        }
        return -1;
    }
};

struct Req {
    enum Kind { Read, Write, Zero } kind = Read;
    uint64_t off = 0, len = 0;
    unsigned flags = 0;
    std::vector<unsigned char> buf;
    int result = 1;
};

Task<void> run_req(Layer& l, Req& r)
{
    switch (r.kind) {
    case Req::Read: r.result = co_await l.pread(r.off, r.buf.data(), r.len); break;
    case Req::Write: r.result = co_await l.pwrite(r.off, r.buf.data(), r.len, r.flags); break;
    case Req::Zero: r.result = co_await l.write_zeroes(r.off, r.len, r.flags); break;
    }
}

Task<void> run_all(std::vector<Task<void>>& reqs)
{
    TaskGroup g;
    for (auto& t : reqs)
        g.spawn(std::move(t));
    co_await g.join();
}

struct Shape {
    bool compact = true;
    bool base = false;
    uint32_t block = 4096;
};

constexpr uint64_t kSize = 2 << 20;
const char* kBase = "memory://fvd-crash-base";

// Makes the base (when the shape has one) and an empty FVD image in the
// memory store `store`; returns the initial guest view.
std::vector<unsigned char> make_image(Loop& L, const std::string& store, const Shape& sh)
{
    MemoryLayer::drop(store.substr(9));
    std::vector<unsigned char> initial(kSize, 0);
    CreateOptions c;
    c.format = "fvd";
    c.size = kSize;
    c.options = {{"compact", sh.compact ? "on" : "off"},
                 {"block_size", std::to_string(sh.block)},
                 {"chunk_size", "64k"},
                 {"journal_size", "12k"}};
    if (sh.base) {
        MemoryLayer::drop("fvd-crash-base");
        auto b = must(MemoryLayer::open({{"size", std::to_string(kSize * 3 / 4)},
                                         {"name", "fvd-crash-base"}}, false));
        auto data = pattern(kSize * 3 / 4, 4242);
        REQUIRE(sync_pwrite(L, *b, 0, data.data(), data.size()) == 0);
        close_layer(L, *b);
        std::memcpy(initial.data(), data.data(), data.size());
        c.options.emplace_back("backing_file", kBase);
        c.options.emplace_back("backing_fmt", "raw");
    }
    must(sync_wait(L, create_image(L, store, c)));
    return initial;
}

// Opens the FVD image of `store` over a fault layer.
std::unique_ptr<Layer> open_over_fault(Loop& L, const std::string& store, FaultConfig cfg,
                                       FaultLayer*& fault)
{
    auto spec = must(uri::parse(store));
    OpenOptions po;
    auto child = must(sync_wait(L, open_protocol(L, spec, po)));
    auto fl = std::make_unique<FaultLayer>(std::move(child), cfg);
    fault = fl.get();
    FvdBaseOpener opener = [&L](std::string name,
                                std::string format) -> Task<Result<std::unique_ptr<Layer>>> {
        OpenOptions bo;
        bo.read_only = true;
        bo.format = format;
        co_return co_await open_device(L, name, bo);
    };
    std::string name = store;
    auto f = must(sync_wait(L, FvdLayer::open(std::move(fl), name, false, &opener)));
    return std::unique_ptr<Layer>(std::move(f));
}

struct Outcome {
    uint64_t write_points = 0;
    bool crashed = false;
};

// Runs the seeded workload on `l` until it ends or the fault layer crashes,
// keeping `m` up to date.
void workload(Loop& L, Layer& l, FaultLayer& fault, Model& m, uint32_t seed, int batches)
{
    std::mt19937_64 rng(seed);
    for (int bi = 0; bi < batches && !fault.crashed(); bi++) {
        int kind = int(rng() % 10);
        if (kind == 0) {   // a flush, alone
            int r = sync_wait(L, l.flush());
            if (r == 0)
                m.settle();
            else
                REQUIRE(fault.crashed());
            continue;
        }
        bool fua_batch = kind == 1;   // one FUA write, alone
        std::vector<Req> reqs(fua_batch ? 1 : size_t(1 + rng() % 6));
        std::vector<std::pair<uint64_t, uint64_t>> taken;
        for (auto& r : reqs) {
            int k = int(rng() % 10);
            r.kind = fua_batch ? Req::Write : k < 3 ? Req::Read : k < 9 ? Req::Write : Req::Zero;
            if (fua_batch)
                r.flags = kReqFua;
            for (int attempt = 0; attempt < 20 && r.len == 0; attempt++) {
                uint64_t len = 1 + rng() % (40 * 1024);
                if (rng() % 2)
                    len = (len + 511) / 512 * 512;
                uint64_t off = rng() % (kSize - len + 1);
                if (rng() % 2)
                    off = off / 512 * 512;
                bool clash = false;
                for (auto [a, b] : taken)   // disjoint in sectors
                    clash |= off / kSector <= (b - 1) / kSector &&
                             a / kSector <= (off + len - 1) / kSector;
                if (!clash) {
                    r.off = off;
                    r.len = len;
                    taken.emplace_back(off, off + len);
                }
            }
            if (r.len == 0) {
                r.kind = Req::Read;
                r.off = 0;
                r.len = 512;
            }
            if (r.kind == Req::Write)
                r.buf = pattern(r.len, uint32_t(rng()), r.off);
            else if (r.kind == Req::Read)
                r.buf.assign(r.len, 0xEE);
        }
        std::vector<Task<void>> tasks;
        for (auto& r : reqs)
            tasks.push_back(run_req(l, r));
        sync_wait(L, run_all(tasks));
        for (auto& r : reqs) {
            INFO("seed " << seed << " batch " << bi << " kind " << r.kind << " off " << r.off
                         << " len " << r.len << " result " << r.result);
            if (r.result != 0) {
                // Only the crash may fail requests; a failed write may
                // still have landed in part.
                REQUIRE(fault.crashed());
                if (r.kind != Req::Read)
                    m.wrote(r.off, r.kind == Req::Write ? r.buf.data() : nullptr, r.len, false);
                continue;
            }
            if (r.kind == Req::Read)
                CHECK_BYTES(r.buf.data(), m.bytes.data() + r.off, r.len, r.off);
            else
                m.wrote(r.off, r.kind == Req::Write ? r.buf.data() : nullptr, r.len,
                        r.flags & kReqFua);
        }
    }
}

// Reopens the image after a crash and checks every sector against `m`.
void verify_after_crash(Loop& L, const std::string& store, const Model& m, uint32_t seed)
{
    auto r = sync_wait(L, open_device(L, store, OpenOptions{}));
    if (!r.ok())
        FAIL("seed " << seed << ": the image does not open after the crash: "
                     << r.error().message);
    auto l = std::move(r).value();
    auto got = layer_read(L, *l, 0, kSize);
    size_t bad = 0;
    for (size_t s = 0; s < m.allowed.size(); s++) {
        long x = m.bad_byte(s, got.data() + s * kSector);
        if (x >= 0 && bad++ == 0)
            UNSCOPED_INFO("seed " << seed << ": byte " << x << " holds "
                                  << int(got[size_t(x)]) << ", a value no write put there");
    }
    CHECK(bad == 0);
    // The image keeps working: a write, a flush, a clean close and reopen.
    auto data = pattern(9000, seed);
    REQUIRE(sync_pwrite(L, *l, 12345, data.data(), data.size(), kReqFua) == 0);
    close_layer(L, *l);
    auto again = must(sync_wait(L, open_device(L, store, OpenOptions{})));
    auto back = layer_read(L, *again, 12345, data.size());
    CHECK_BYTES(back.data(), data.data(), data.size(), 12345);
    CHECK(again->size() == kSize);
    close_layer(L, *again);
}

// One run: workload with a crash at write point `crash_at` (none when
// UINT64_MAX), resolution, reopen and verification. Returns what happened.
Outcome crash_run(Loop& L, const Shape& sh, uint32_t seed, uint64_t crash_at, double keep,
                  bool tear)
{
    std::string store = "memory://fvd-crash";
    auto initial = make_image(L, store, sh);
    Model m(initial);
    FaultConfig cfg;
    cfg.seed = seed;
    cfg.close_child = false;
    FaultLayer* fault = nullptr;
    auto l = open_over_fault(L, store, cfg, fault);
    if (crash_at != UINT64_MAX)
        fault->crash_at(crash_at);
    workload(L, *l, *fault, m, seed, 40);
    Outcome out;
    out.crashed = fault->crashed();
    if (!out.crashed)
        fault->crash_now();
    REQUIRE(sync_wait(L, fault->resolve_crash(keep, tear)) == 0);
    out.write_points = fault->write_points();
    close_layer(L, *l);   // its writes fail: the machine is gone
    verify_after_crash(L, store, m, seed);
    return out;
}

} // namespace

TEST_CASE("fvd crash: every write point of a workload, in every image shape", "[fvd-crash]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    Shape sh;
    sh.compact = GENERATE(true, false);
    sh.base = GENERATE(false, true);
    sh.block = GENERATE(4096u, 16384u);
    INFO("compact " << sh.compact << " base " << sh.base << " block " << sh.block);
    const uint32_t seed = 17;
    // A run without a crash counts the write points.
    uint64_t points = crash_run(L, sh, seed, UINT64_MAX, 1.0, false).write_points;
    REQUIRE(points > 20);
    for (uint64_t n = 0; n < points; n++) {
        INFO("crash at write point " << n << " of " << points);
        Outcome o = crash_run(L, sh, seed, n, double(n % 3) / 2, n % 4 == 1);
        REQUIRE(o.crashed);
    }
    MemoryLayer::drop("fvd-crash");
    MemoryLayer::drop("fvd-crash-base");
}

TEST_CASE("fvd crash: random crash points across many seeds", "[fvd-crash]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    int runs = 0, crashed = 0;
    // COBLK_CRASH_SEED=N replays one seed.
    uint32_t first = 1000, last = 2000;
    if (const char* one = std::getenv("COBLK_CRASH_SEED"))
        first = uint32_t(std::stoul(one)), last = first + 1;
    for (uint32_t seed = first; seed < last; seed++) {
        std::mt19937_64 rng(seed);
        Shape sh;
        sh.compact = rng() % 2;
        sh.base = rng() % 2;
        sh.block = rng() % 2 ? 4096 : 16384;
        INFO("seed " << seed << " compact " << sh.compact << " base " << sh.base << " block "
                     << sh.block);
        uint64_t at = rng() % 400;
        double keep = double(rng() % 5) / 4;
        bool tear = rng() % 2;
        Outcome o = crash_run(L, sh, seed, at, keep, tear);
        runs++;
        crashed += o.crashed;
    }
    CHECK(runs == int(last - first));
    // Most runs reach their crash point (a run with fewer write points ends
    // with a crash after its last request instead).
    CHECK(crashed > runs / 2);
    MemoryLayer::drop("fvd-crash");
    MemoryLayer::drop("fvd-crash-base");
}
