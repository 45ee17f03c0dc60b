// Soak with faults: for COBLK_SOAK_SECONDS (default 60) cycles through image
// shapes (raw; FVD compact or not, with or without a base, with or without
// copy-on-read; on memory or on a file), each a seeded mixed workload over
// the fault-injecting layer, which fails, delays (reorders) and shortens
// requests at random and crashes at a random write point. After each crash
// the image is reopened without faults, every byte is checked against what
// the guest may see, and the image must keep working. Prints requests done,
// faults injected, crashes survived and bytes verified; any mismatch fails.
// COBLK_SOAK_SEED sets the first seed (each cycle uses the next);
// COBLK_SOAK_CYCLES=N runs N cycles whatever the time. soak() runs the
// same cycles on an image on GlusterFS or RBD (tests/soak.h).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "backends/memory.h"
#include "engine/loop.h"
#include "formats/fvd.h"
#include "formats/raw.h"
#include "tests/crash_workload.h"
#include "tests/fault_layer.h"
#include "tests/helpers.h"
#include "tests/soak.h"
#include "uri/open.h"

using namespace coblk;
using namespace coblk::test;

namespace {

constexpr uint64_t kSize = 4 << 20;

uint64_t env_number(const char* name, uint64_t dflt)
{
    const char* v = std::getenv(name);
    return v && *v ? std::stoull(v) : dflt;
}

struct Totals {
    uint64_t cycles = 0, requests = 0, failed = 0, faults = 0, crashes = 0, bytes = 0;
    uint64_t open_failures = 0;   // opens that met an injected fault
    uint64_t mismatches = 0;
};

// One cycle: make the image, run the workload over faults until the crash,
// resolve it, reopen, verify. Adds to `t`.
void cycle(Loop& L, const ScratchDir& dir, const SoakSite& site, uint32_t seed, Totals& t)
{
    std::mt19937_64 rng(seed);
    bool fvd = rng() % 4 != 0;
    bool on_file = rng() % 2;  // drawn on a remote site too: same shapes per seed
    bool compact = rng() % 2, with_base = rng() % 2, cor = rng() % 2;
    bool remote = !site.image.empty();
    std::string name = remote ? site.image : on_file ? dir.file("soak.img") : "memory://soak";
    INFO("seed " << seed << (fvd ? " fvd " : " raw ")
                 << (remote ? name : on_file ? "file" : "memory") << (compact ? " compact" : "")
                 << (with_base ? " base" : "") << (cor ? " cor" : ""));
    if (remote && site.clear)
        site.clear(L, name);
    else if (!remote && !on_file)
        MemoryLayer::drop("soak");
    std::vector<unsigned char> initial(kSize, 0);
    CreateOptions c;
    c.size = kSize;
    if (fvd) {
        c.format = "fvd";
        c.options = {{"compact", compact ? "on" : "off"},
                     {"block_size", rng() % 2 ? "4k" : "64k"},
                     {"chunk_size", "256k"},
                     {"journal_size", "16k"},
                     {"copy_on_read", cor ? "on" : "off"}};
        if (with_base) {
            std::string base = dir.file("base.raw");
            auto data = pattern(kSize / 2, seed);
            write_file(base, data.data(), data.size(), 0, true);
            std::memcpy(initial.data(), data.data(), data.size());
            c.options.emplace_back("backing_file", base);
        }
    }
    must(sync_wait(L, create_image(L, name, c)));

    FaultConfig cfg;
    cfg.seed = seed;
    cfg.fail_rate = 0.01 * double(rng() % 4);
    cfg.fail_errno = rng() % 2 ? EIO : ENOSPC;
    cfg.delay_rate = 0.2;
    cfg.max_delay_us = 300;
    cfg.short_rate = 0.1;
    cfg.close_child = false;
    auto spec = must(uri::parse(name));
    OpenOptions po;
    auto child = must(sync_wait(L, open_protocol(L, spec, po)));
    auto fl = std::make_unique<FaultLayer>(std::move(child), cfg);
    FaultLayer* fault = fl.get();
    fault->crash_at(20 + rng() % 400);
    std::unique_ptr<Layer> top;
    if (fvd) {
        FvdBaseOpener opener = [&L](std::string n,
                                    std::string f) -> Task<Result<std::unique_ptr<Layer>>> {
            OpenOptions bo;
            bo.read_only = true;
            bo.format = f;
            co_return co_await open_device(L, n, bo);
        };
        auto r = sync_wait(L, FvdLayer::open(std::move(fl), name, false, &opener));
        if (!r.ok()) {
            // The open itself met an injected fault (it must say so, and
            // release everything): the next cycle starts afresh.
            // The injected errno, never a corruption verdict.
            INFO(r.error().message);
            CHECK((r.error().code == EIO || r.error().code == ENOSPC));
            t.open_failures++;
            return;
        }
        top = std::move(r).value();
    } else {
        RawOptions ro;
        top = must(RawLayer::open(std::move(fl), ro));
    }
    CrashModel m(initial);
    CrashWorkloadStats st;
    crash_workload(
        L, *top, m, kSize, seed, 200, [] { return true; }, [&] { return fault->crashed(); },
        &st);
    bool crashed = fault->crashed();
    if (!crashed)
        fault->crash_now();
    REQUIRE(sync_wait(L, fault->resolve_crash(double(rng() % 5) / 4, rng() % 2)) == 0);
    t.faults += fault->faults_injected();
    close_layer(L, *top);
    if (auto ch = fault->release_child())
        close_layer(L, *ch);   // the file and its lock
    top.reset();

    OpenOptions o;
    if (!fvd)
        o.format = "raw";
    auto again = sync_wait(L, open_device(L, name, o));
    if (!again.ok() && std::getenv("COBLK_SOAK_DEBUG"))
        std::system(("ls -l /proc/" + std::to_string(getpid()) + "/fd").c_str());
    if (!again.ok())
        FAIL("the image does not open after the crash: " << again.error().message);
    uint64_t bad = verify_against(L, **again, m, seed);
    t.mismatches += bad;
    CHECK(bad == 0);
    auto data = pattern(5000, seed);
    REQUIRE(sync_pwrite(L, **again, 777, data.data(), data.size(), kReqFua) == 0);
    close_layer(L, **again);

    t.cycles++;
    t.requests += st.requests;
    t.failed += st.failed;
    t.crashes += 1;
    t.bytes += st.bytes_checked + kSize;
}

} // namespace

void coblk::test::soak(const SoakSite& site)
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    uint64_t seconds = env_number("COBLK_SOAK_SECONDS", 60);
    uint32_t seed = uint32_t(env_number("COBLK_SOAK_SEED", 1));
    Totals t;
    // COBLK_SOAK_CYCLES=N runs exactly N cycles instead (to replay a seed).
    uint64_t cycles = env_number("COBLK_SOAK_CYCLES", 0);
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    for (uint64_t n = 0; cycles ? n < cycles : std::chrono::steady_clock::now() < end; n++)
        cycle(L, dir, site, seed++, t);
    MemoryLayer::drop("soak");
    if (site.clear && !site.image.empty())
        site.clear(L, site.image);
    std::printf("%s: %llu s, %llu cycles, %llu requests (%llu failed by injected faults), "
                "%llu faults injected, %llu crashes survived, %llu bytes verified, %llu opens "
                "failed cleanly, %llu mismatches\n",
                site.label.c_str(), (unsigned long long)seconds, (unsigned long long)t.cycles,
                (unsigned long long)t.requests, (unsigned long long)t.failed,
                (unsigned long long)t.faults, (unsigned long long)t.crashes,
                (unsigned long long)t.bytes, (unsigned long long)t.open_failures,
                (unsigned long long)t.mismatches);
    CHECK(t.cycles > 0);
    CHECK(t.faults > 0);
}

TEST_CASE("soak: mixed workloads over injected faults and crashes, every byte verified",
          "[soak]")
{
    soak(SoakSite{});
}
