#include "tests/foreign_stress.h"

#include <latch>
#include <memory>
#include <mutex>
#include <thread>

#include "engine/loop.h"
#include "engine/sync.h"
#include "tests/helpers.h"
#include "uri/open.h"

namespace coblk::test {

namespace {

// What one loop thread saw; read by the caller only after the join.
struct LoopTally {
    std::thread::id thread;
    std::vector<int> resumes;   // per slot of this loop
    uint64_t requests = 0, failed = 0, mismatched = 0, wrong_thread = 0;
    int in_flight_after_start = 0;
    std::string error;
};

Task<void> slot_rounds(Layer& l, const StressConfig& c, LoopTally& t, int local, int slot)
{
    std::vector<unsigned char> out(c.len), back(c.len);
    uint64_t off = uint64_t(slot) * c.stride;
    for (int round = 0; round < c.rounds; round++) {
        fill_pattern(out.data(), out.size(), stress_seed(slot, round), off);
        int r = co_await l.pwrite(off, out.data(), out.size());
        t.resumes[size_t(local)]++;
        t.wrong_thread += std::this_thread::get_id() != t.thread;
        t.requests++;
        t.failed += r != 0;
        r = co_await l.pread(off, back.data(), back.size());
        t.resumes[size_t(local)]++;
        t.wrong_thread += std::this_thread::get_id() != t.thread;
        t.requests++;
        t.failed += r != 0;
        t.mismatched += r == 0 && back != out;
    }
}

Task<void> all_slots(Layer& l, const StressConfig& c, LoopTally& t, int first_slot)
{
    TaskGroup g;
    for (int i = 0; i < c.per_loop; i++)
        g.spawn(slot_rounds(l, c, t, i, first_slot + i));
    // Nothing completes before the loop turns: every request is in flight.
    t.in_flight_after_start = int(l.in_flight());
    co_await g.join();
}

// One loop thread: opens the image, waits for the others, runs its slots.
void loop_thread(const StressConfig& c, int index, std::latch& opened, LoopTally& t,
                 size_t& connections)
{
    t.thread = std::this_thread::get_id();
    t.resumes.assign(size_t(c.per_loop), 0);
    std::unique_ptr<Loop> loop;
    std::unique_ptr<Layer> dev;
    if (auto lr = Loop::create(512); !lr.ok()) {
        t.error = "Loop::create: " + lr.error().message;
    } else {
        loop = std::move(lr).value();
        OpenOptions o;
        o.format = c.format;
        auto d = sync_wait(*loop, open_device(*loop, c.name, o));
        if (d.ok())
            dev = std::move(d).value();
        else
            t.error = "open " + c.name + ": " + d.error().message;
    }
    opened.arrive_and_wait();
    if (!dev)
        return;
    if (index == 0 && c.connections)
        connections = c.connections();
    sync_wait(*loop, all_slots(*dev, c, t, index * c.per_loop));
    sync_wait(*loop, dev->close());
}

} // namespace

StressResult foreign_stress(const StressConfig& c)
{
    std::vector<LoopTally> tallies(size_t(c.loops));
    std::latch opened(c.loops);
    StressResult res;
    {
        std::vector<std::jthread> threads;
        for (int i = 0; i < c.loops; i++)
            threads.emplace_back(loop_thread, std::cref(c), i, std::ref(opened),
                                 std::ref(tallies[size_t(i)]),
                                 std::ref(res.connections_while_open));
    }
    res.min_in_flight = c.per_loop;
    for (const LoopTally& t : tallies) {
        if (!t.error.empty())
            res.errors.push_back(t.error);
        res.requests += t.requests;
        res.failed += t.failed;
        res.mismatched += t.mismatched;
        res.wrong_thread += t.wrong_thread;
        res.min_in_flight = std::min(res.min_in_flight, t.in_flight_after_start);
        for (int n : t.resumes)
            res.bad_resume_counts += n != 2 * c.rounds;
    }
    return res;
}

void check_foreign_stress(Loop& loop, const StressConfig& c)
{
    size_t before = c.connections ? c.connections() : 0;
    StressResult r = foreign_stress(c);
    for (const std::string& e : r.errors)
        FAIL_CHECK(e);
    REQUIRE(r.errors.empty());
    INFO(c.loops << " loops x " << c.per_loop << " requests in flight, " << r.requests
                 << " requests");
    CHECK(r.requests == uint64_t(c.loops) * uint64_t(c.per_loop) * uint64_t(c.rounds) * 2);
    CHECK(r.failed == 0);
    CHECK(r.mismatched == 0);
    CHECK(r.wrong_thread == 0);
    CHECK(r.bad_resume_counts == 0);
    CHECK(r.min_in_flight == c.per_loop);
    if (c.connections)
        CHECK(r.connections_while_open == before + 1);

    OpenOptions o;
    o.format = c.format;
    auto dev = must(sync_wait(loop, open_device(loop, c.name, o)), "open_device(" + c.name + ")");
    for (int slot = 0; slot < c.loops * c.per_loop; slot++) {
        uint64_t off = uint64_t(slot) * c.stride;
        auto want = pattern(c.len, stress_seed(slot, c.rounds - 1), off);
        auto got = layer_read(loop, *dev, off, c.len);
        INFO("slot " << slot);
        CHECK_BYTES(got.data(), want.data(), c.len, off);
    }
    close_layer(loop, *dev);
}

} // namespace coblk::test
