// fvd-prefetch IMAGE SECONDS: how FVD's prefetcher shares the disk with a
// guest. Opens the FVD overlay IMAGE (cache=none) three times over:
//   1. prefetch off: a guest job (4 KiB random reads, queue depth 1) for
//      SECONDS, its IOPS the baseline;
//   2. prefetch on, no delay: the same guest job for SECONDS, IOPS compared
//      with the baseline, and the blocks the prefetcher copied meanwhile;
//   3. then no guest I/O until the prefetcher has copied the whole base:
//      the time it took and its rate.
// Prints one line of figures. Exits 1 when a step fails or the prefetcher
// does not finish within 600 s.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "engine/loop.h"
#include "formats/fvd.h"
#include "uri/open.h"

using namespace coblk;
using Clock = std::chrono::steady_clock;

namespace {

// Random 4 KiB reads at depth 1 for `secs`; returns IOPS, or -1 on error.
Task<double> guest(Layer& dev, double secs)
{
    void* p = nullptr;
    if (posix_memalign(&p, 4096, 4096) != 0)
        co_return -1;
    std::unique_ptr<void, decltype(&std::free)> buf(p, &std::free);
    std::mt19937_64 rng(42);
    uint64_t blocks = dev.size() / 4096, n = 0;
    auto t0 = Clock::now();
    auto end = t0 + std::chrono::duration<double>(secs);
    while (Clock::now() < end) {
        if (co_await dev.pread(rng() % blocks * 4096, buf.get(), 4096) < 0)
            co_return -1;
        n++;
    }
    co_return double(n) / std::chrono::duration<double>(Clock::now() - t0).count();
}

Task<int> run(Loop& loop, std::string image, double secs)
{
    OpenOptions off;
    off.cache = "none";
    off.options = {{"prefetch", "off"}};
    auto a = co_await open_device(loop, image, off);
    if (!a) {
        std::fprintf(stderr, "fvd-prefetch: %s\n", a.error().message.c_str());
        co_return 1;
    }
    double alone = co_await guest(**a, secs);
    co_await (*a)->close();

    OpenOptions on;
    on.cache = "none";
    on.options = {{"prefetch", "on"}, {"prefetch_delay", "0"}};
    auto b = co_await open_device(loop, image, on);
    if (!b) {
        std::fprintf(stderr, "fvd-prefetch: %s\n", b.error().message.c_str());
        co_return 1;
    }
    auto* f = dynamic_cast<FvdLayer*>(b->get());
    if (!f || !f->base()) {
        std::fprintf(stderr, "fvd-prefetch: '%s' is not an FVD overlay\n", image.c_str());
        co_return 1;
    }
    double with = co_await guest(**b, secs);
    uint64_t during = f->blocks_prefetched();
    auto t0 = Clock::now();
    while (f->prefetching() && Clock::now() - t0 < std::chrono::seconds(600))
        co_await loop.sleep_for(std::chrono::milliseconds(5));
    double idle_s = std::chrono::duration<double>(Clock::now() - t0).count();
    uint64_t bs = f->header().block_size;
    uint64_t copied = f->blocks_prefetched() - during;
    bool done = f->base_copied();
    co_await (*b)->close();
    if (alone < 0 || with < 0) {
        std::fprintf(stderr, "fvd-prefetch: a guest read failed\n");
        co_return 1;
    }
    std::printf("guest alone %.0f IOPS, during prefetch %.0f IOPS (ratio %.3f); prefetched "
                "during the guest job %llu MiB; idle: %llu MiB in %.2f s (%.0f MiB/s); base "
                "copied: %s\n",
                alone, with, with / alone, (unsigned long long)(during * bs >> 20),
                (unsigned long long)(copied * bs >> 20), idle_s,
                double(copied * bs >> 20) / idle_s, done ? "yes" : "no");
    co_return done ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 3) {
        std::fprintf(stderr, "usage: fvd-prefetch IMAGE SECONDS\n");
        return 2;
    }
    auto loop = Loop::create();
    if (!loop) {
        std::fprintf(stderr, "fvd-prefetch: %s\n", loop.error().message.c_str());
        return 1;
    }
    return sync_wait(**loop, run(**loop, argv[1], std::atof(argv[2])));
}
