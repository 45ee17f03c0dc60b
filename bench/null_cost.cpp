// null-cost: the engine's own cost per request. Runs COUNT 4 KiB reads
// (sequential offsets, wrapping, as `qemu-img bench` does) at queue depth
// DEPTH against a device (default null://) on one loop, and prints requests
// per second and nanoseconds per request. The fio-style harness is
// coblk-bench; this is the minimal loop behind its engine-cost figure.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/loop.h"
#include "engine/sync.h"
#include "uri/open.h"

using namespace coblk;

namespace {

struct Job {
    Layer* dev;
    uint64_t count;
    uint64_t issued = 0;
    uint64_t next_off = 0;
    int error = 0;
};

Task<void> worker(Job& job, char* buf)
{
    const uint64_t bs = 4096;
    while (job.issued < job.count && job.error == 0) {
        job.issued++;
        uint64_t off = job.next_off;
        job.next_off = off + bs >= job.dev->size() ? 0 : off + bs;
        int r = co_await job.dev->pread(off, buf, bs);
        if (r < 0)
            job.error = r;
    }
}

Task<int> run(Loop& loop, std::string uri, unsigned depth, uint64_t count)
{
    OpenOptions options;
    auto dev = co_await open_device(loop, uri, options);
    if (!dev) {
        std::fprintf(stderr, "null-cost: %s\n", dev.error().message.c_str());
        co_return 1;
    }
    Job job{dev->get(), count};
    std::string bufs(size_t(depth) * 4096, '\0');
    auto t0 = std::chrono::steady_clock::now();
    TaskGroup group;
    for (unsigned i = 0; i < depth; i++)
        group.spawn(worker(job, bufs.data() + size_t(i) * 4096));
    co_await group.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    co_await (*dev)->close();
    if (job.error) {
        std::fprintf(stderr, "null-cost: read failed: %d\n", job.error);
        co_return 1;
    }
    std::printf("uri=%s depth=%u requests=%llu seconds=%.3f iops=%.0f ns_per_request=%.1f\n",
                uri.c_str(), depth, (unsigned long long)count, secs, double(count) / secs,
                secs * 1e9 / double(count));
    co_return 0;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc > 1 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) {
        std::puts("usage: null-cost [DEPTH [COUNT [URI]]]  (defaults: 1 2000000 null://)");
        return 0;
    }
    unsigned depth = argc > 1 ? unsigned(std::strtoul(argv[1], nullptr, 10)) : 1;
    uint64_t count = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 2000000;
    std::string uri = argc > 3 ? argv[3] : "null://";
    if (depth == 0 || count == 0) {
        std::fputs("null-cost: DEPTH and COUNT must be positive numbers\n", stderr);
        return 2;
    }
    auto loop = Loop::create();
    if (!loop) {
        std::fprintf(stderr, "null-cost: %s\n", loop.error().message.c_str());
        return 1;
    }
    return sync_wait(**loop, run(**loop, uri, depth, count));
}
