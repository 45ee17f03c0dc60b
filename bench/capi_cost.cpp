// capi-cost: what the C API (libcoblk.so) costs per request against the C++
// interface it wraps, on null:// (so that nothing but the software path is
// measured), 4 KiB reads at iodepth 32, one thread.
//
// Three ways, run in alternating rounds (medians printed at the end):
//  cxx-workers  32 coroutines each awaiting Layer::preadv in a loop (how
//               coblk-bench drives a layer)
//  cxx-spawn    a coroutine started per request, its completion recorded
//               in a queue and collected in batches (how a C++ VMM would
//               drive a layer: requests arrive one by one from outside)
//  capi         coblk_queue_read + coblk_queue_do_io(min 1, max 32)
//
// Time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID): every way runs
// on one thread that never sleeps (null:// completes at once), so that is
// the cost of a request, without the time other processes of a shared
// machine take the CPU away.
//
// Built twice: capi-cost calls the C API in libcoblk.so, capi-cost-static
// in libcoblk.a, linked like the C++ ways (bench/capi_cost.sh runs both).
//
// Usage: capi-cost [ROUNDS [OPS_PER_ROUND [WAY]]]
// WAY (cxx-workers, cxx-spawn or capi) runs that way alone, for a profiler
// (`perf stat -e instructions:u`) to count what one way costs.
#include <algorithm>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "coblk.h"
#include "engine/layer.h"
#include "engine/loop.h"
#include "uri/open.h"

using namespace coblk;

namespace {

constexpr int kDepth = 32;
constexpr size_t kBlock = 4096;
constexpr uint64_t kSize = 1ull << 30;
// read-zeroes=off: the null backend leaves read buffers alone, so the
// figures are the software path alone, not a 4 KiB memset per request.
const char* const kUri = "null://?size=1G&read-zeroes=off";

double now_s()
{
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

uint64_t offset_of(uint64_t i) { return (i * 2654435761u % (kSize / kBlock)) * kBlock; }

struct Cxx {
    std::unique_ptr<Loop> loop;
    std::unique_ptr<Layer> layer;
    std::vector<char> buf = std::vector<char>(kDepth * kBlock);
};

Task<void> worker(Layer* l, char* buf, uint64_t first, uint64_t ops, int* errors)
{
    iovec iov{buf, kBlock};
    for (uint64_t i = 0; i < ops; i++)
        if (co_await l->preadv(offset_of(first + i), &iov, 1) < 0)
            ++*errors;
}

double run_cxx_workers(Cxx& c, uint64_t ops)
{
    int errors = 0;
    double t0 = now_s();
    for (int w = 0; w < kDepth; w++)
        c.loop->spawn(worker(c.layer.get(), c.buf.data() + w * kBlock, w * (ops / kDepth),
                             ops / kDepth, &errors));
    while (c.layer->in_flight() > 0)
        c.loop->run_once(true);
    double t = now_s() - t0;
    if (errors)
        std::fprintf(stderr, "cxx-workers: %d errors\n", errors);
    return t / double(ops / kDepth * kDepth) * 1e9;
}

struct Done {
    void* user_data;
    int ret;
};

detail::Detached one_request(Layer* l, uint64_t off, iovec iov, void* ud, std::vector<Done>* q)
{
    int r = co_await l->preadv(off, &iov, 1);
    q->push_back(Done{ud, r});
}

double run_cxx_spawn(Cxx& c, uint64_t ops)
{
    std::vector<Done> done, batch;
    done.reserve(kDepth * 2);
    batch.reserve(kDepth * 2);
    uint64_t issued = 0, completed = 0;
    double t0 = now_s();
    auto issue = [&](int slot) {
        CurrentLoopScope scope(c.loop.get());
        one_request(c.layer.get(), offset_of(issued++), iovec{c.buf.data() + slot * kBlock, kBlock},
                    reinterpret_cast<void*>(intptr_t(slot)), &done);
    };
    for (int s = 0; s < kDepth; s++)
        issue(s);
    while (completed < ops) {
        c.loop->run_once(done.empty());
        batch.swap(done);  // requests issued below may complete at once, into `done`
        for (const Done& d : batch) {
            completed++;
            if (issued < ops)
                issue(int(reinterpret_cast<intptr_t>(d.user_data)));
        }
        batch.clear();
    }
    return (now_s() - t0) / double(ops) * 1e9;
}

double run_capi(coblk_queue* q, std::vector<char>& buf, uint64_t ops)
{
    coblk_completion c[kDepth];
    uint64_t issued = 0, completed = 0;
    double t0 = now_s();
    for (int s = 0; s < kDepth; s++)
        coblk_queue_read(q, offset_of(issued++), buf.data() + s * kBlock, kBlock,
                         reinterpret_cast<void*>(intptr_t(s)), 0);
    while (completed < ops) {
        int n = coblk_queue_do_io(q, c, 1, kDepth, nullptr);
        if (n < 0) {
            std::fprintf(stderr, "capi: %s\n", coblk_get_error_msg());
            std::exit(1);
        }
        for (int i = 0; i < n; i++) {
            completed++;
            if (issued < ops)
                coblk_queue_read(q, offset_of(issued++),
                                 buf.data() + reinterpret_cast<intptr_t>(c[i].user_data) * kBlock,
                                 kBlock, c[i].user_data, 0);
        }
    }
    return (now_s() - t0) / double(ops) * 1e9;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv)
{
    int rounds = argc > 1 ? std::atoi(argv[1]) : 21;
    uint64_t ops = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 500000;
    std::string only = argc > 3 ? argv[3] : "";
    if (rounds < 1 || ops < kDepth ||
        (!only.empty() && only != "cxx-workers" && only != "cxx-spawn" && only != "capi")) {
        std::fprintf(stderr, "usage: capi-cost [ROUNDS>=1 [OPS>=%d [cxx-workers|cxx-spawn|capi]]]\n",
                     kDepth);
        return 2;
    }

    Cxx c;
    c.loop = std::move(Loop::create()).value();
    OpenOptions o;
    auto opened = c.loop->run(open_device(*c.loop, kUri, o));
    if (!opened) {
        std::fprintf(stderr, "%s\n", opened.error().message.c_str());
        return 1;
    }
    c.layer = std::move(opened).value();

    coblk_device* dev = nullptr;
    if (coblk_create(kUri, &dev) < 0 || coblk_start(dev) < 0) {
        std::fprintf(stderr, "%s\n", coblk_get_error_msg());
        return 1;
    }
    coblk_queue* q = coblk_get_queue(dev, 0);
    std::vector<char> cbuf(kDepth * kBlock);

    std::vector<double> workers, spawn, capi;
    std::printf("%s, 4 KiB reads, iodepth %d, %llu requests per round; thread CPU ns per "
                "request\n", kUri,
                kDepth, static_cast<unsigned long long>(ops));
    std::printf("round  cxx-workers  cxx-spawn  capi\n");
    if (!only.empty()) {
        for (int r = 0; r < rounds; r++) {
            double t = only == "capi"        ? run_capi(q, cbuf, ops)
                       : only == "cxx-spawn" ? run_cxx_spawn(c, ops)
                                             : run_cxx_workers(c, ops);
            std::printf("%5d  %s %.1f\n", r + 1, only.c_str(), t);
        }
        coblk_destroy(dev);
        c.loop->run(c.layer->close());
        return 0;
    }
    for (int r = 0; r < rounds; r++) {
        // Alternate the order so that neither side always runs first.
        double a, b, d;
        if (r % 2 == 0) {
            a = run_cxx_workers(c, ops);
            b = run_cxx_spawn(c, ops);
            d = run_capi(q, cbuf, ops);
        } else {
            d = run_capi(q, cbuf, ops);
            b = run_cxx_spawn(c, ops);
            a = run_cxx_workers(c, ops);
        }
        workers.push_back(a);
        spawn.push_back(b);
        capi.push_back(d);
        std::printf("%5d  %11.1f  %9.1f  %5.1f\n", r + 1, a, b, d);
    }
    double mw = median(workers), ms = median(spawn), mc = median(capi);
    std::printf("median %11.1f  %9.1f  %5.1f\n", mw, ms, mc);
    std::printf("capi vs cxx-spawn: %+.1f%%   capi vs cxx-workers: %+.1f%%\n",
                (mc / ms - 1) * 100, (mc / mw - 1) * 100);
    coblk_destroy(dev);
    c.loop->run(c.layer->close());
    return 0;
}
