// Tests of the coroutine synchronisation primitives: Mutex, RangeLock,
// WaitGroup and TaskGroup. Suspensions are loop-turn yields, not timers, so
// the interleavings are deterministic.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "engine/loop.h"
#include "engine/sync.h"
#include "engine/task.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::test;
using namespace std::chrono_literals;

namespace {

using Events = std::vector<std::string>;

// Position of `e` in `ev`, or -1.
long pos(const Events& ev, const std::string& e)
{
    auto it = std::find(ev.begin(), ev.end(), e);
    return it == ev.end() ? -1 : long(it - ev.begin());
}

struct MutexState {
    std::vector<int> order;
    bool inside = false;
    int violations = 0;
};

Task<void> mutex_user(Loop& L, Mutex& m, MutexState& s, int id)
{
    auto g = co_await m.lock();
    s.order.push_back(id);
    if (s.inside)
        s.violations++;
    s.inside = true;
    // Suspend while holding the lock, in different ways.
    for (int k = 0; k < 1 + id % 3; k++)
        co_await yield(L);
    if (id % 4 == 0)
        co_await L.sleep_for(100us);
    s.inside = false;
}

} // namespace

TEST_CASE("Mutex: mutual exclusion across suspensions, granted in FIFO order", "[sync]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    Mutex m;
    MutexState s;
    sync_wait(L, [](Loop& l, Mutex& mu, MutexState& st) -> Task<void> {
        TaskGroup tg;
        for (int i = 0; i < 20; i++)
            tg.spawn(mutex_user(l, mu, st, i));
        co_await tg.join();
    }(L, m, s));
    CHECK(s.violations == 0);
    std::vector<int> want(20);
    for (int i = 0; i < 20; i++)
        want[size_t(i)] = i;
    CHECK(s.order == want);
    CHECK_FALSE(m.locked());
}

TEST_CASE("Mutex: unlock hands over to the oldest waiter, no barging", "[sync]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    Mutex m;
    Events ev;
    sync_wait(L, [](Loop& l, Mutex& mu, Events& e) -> Task<void> {
        TaskGroup tg;
        tg.spawn([](Loop& lp, Mutex& mx, Events& es) -> Task<void> {
            auto g = co_await mx.lock();
            es.push_back("A1");
            co_await yield(lp);
            co_await yield(lp);
            g.release();
            // Re-locking at once must queue behind B, who has been waiting.
            auto g2 = co_await mx.lock();
            es.push_back("A2");
        }(l, mu, e));
        tg.spawn([](Mutex& mx, Events& es) -> Task<void> {
            auto g = co_await mx.lock();
            es.push_back("B");
        }(mu, e));
        co_await tg.join();
    }(L, m, ev));
    CHECK(ev == Events{"A1", "B", "A2"});
    CHECK_FALSE(m.locked());
}

TEST_CASE("Mutex: an unlocked mutex is taken without suspending", "[sync]")
{
    Mutex m;
    auto aw = m.lock();
    CHECK(aw.await_ready());  // takes it
    CHECK(m.locked());
    {
        auto g = aw.await_resume();
        CHECK(m.locked());
    }
    CHECK_FALSE(m.locked());
}

namespace {

// Holds [off, off+len) for `yields` loop turns, logging "<name>+" on
// acquisition and "<name>-" on release; logs the number of ranges held at
// acquisition in `held_at`.
Task<void> range_user(Loop& L, RangeLock& rl, Events& ev, std::string name, uint64_t off,
                      uint64_t len, int yields, size_t* held_at = nullptr)
{
    auto g = co_await rl.lock(off, len);
    ev.push_back(name + "+");
    if (held_at)
        *held_at = rl.held();
    for (int i = 0; i < yields; i++)
        co_await yield(L);
    ev.push_back(name + "-");
}

} // namespace

TEST_CASE("RangeLock excludes overlapping ranges", "[sync]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    RangeLock rl;
    Events ev;
    sync_wait(L, [](Loop& l, RangeLock& r, Events& e) -> Task<void> {
        TaskGroup tg;
        tg.spawn(range_user(l, r, e, "A", 0, 100, 5));
        tg.spawn(range_user(l, r, e, "B", 50, 100, 0));   // overlaps A's tail
        tg.spawn(range_user(l, r, e, "C", 99, 1, 0));     // A's last byte
        co_await tg.join();
    }(L, rl, ev));
    INFO("events: " << Catch::Detail::stringify(ev));
    REQUIRE(ev.size() == 6);
    CHECK(pos(ev, "A-") < pos(ev, "B+"));
    CHECK(pos(ev, "A-") < pos(ev, "C+"));
    CHECK(pos(ev, "B-") < pos(ev, "C+"));  // B and C overlap too; B came first
    CHECK(rl.held() == 0);
}

TEST_CASE("RangeLock lets disjoint ranges run concurrently", "[sync]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    RangeLock rl;
    Events ev;
    size_t held_when_b = 0;
    sync_wait(L, [](Loop& l, RangeLock& r, Events& e, size_t* hb) -> Task<void> {
        TaskGroup tg;
        tg.spawn(range_user(l, r, e, "A", 0, 100, 5));
        tg.spawn(range_user(l, r, e, "B", 100, 100, 0, hb));  // adjacent, not overlapping
        co_await tg.join();
    }(L, rl, ev, &held_when_b));
    INFO("events: " << Catch::Detail::stringify(ev));
    CHECK(pos(ev, "B+") < pos(ev, "A-"));
    CHECK(held_when_b == 2);
}

TEST_CASE("RangeLock is FIFO among overlapping waiters: a big range is not starved", "[sync]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    RangeLock rl;
    Events ev;
    sync_wait(L, [](Loop& l, RangeLock& r, Events& e) -> Task<void> {
        TaskGroup tg;
        tg.spawn(range_user(l, r, e, "S1", 0, 10, 5));
        tg.spawn(range_user(l, r, e, "Big", 0, 1000, 2));
        // S2..S9 do not overlap S1 (held) but do overlap Big (waiting): they
        // must queue behind Big instead of overtaking it.
        for (int i = 2; i < 10; i++)
            tg.spawn(range_user(l, r, e, "S" + std::to_string(i), uint64_t(i) * 100, 10, 1));
        // D overlaps nothing: it runs at once.
        tg.spawn(range_user(l, r, e, "D", 5000, 10, 0));
        co_await tg.join();
    }(L, rl, ev));
    INFO("events: " << Catch::Detail::stringify(ev));
    REQUIRE(ev.size() == 22);
    CHECK(pos(ev, "D+") < pos(ev, "S1-"));
    CHECK(pos(ev, "S1-") < pos(ev, "Big+"));
    for (int i = 2; i < 10; i++) {
        INFO("S" << i);
        CHECK(pos(ev, "Big-") < pos(ev, "S" + std::to_string(i) + "+"));
    }
    // Once Big is gone, the disjoint small ones run together.
    CHECK(pos(ev, "S9+") < pos(ev, "S2-"));
    CHECK(rl.held() == 0);
}

TEST_CASE("RangeLock: a zero length locks one byte", "[sync]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    RangeLock rl;
    Events ev;
    sync_wait(L, [](Loop& l, RangeLock& r, Events& e) -> Task<void> {
        TaskGroup tg;
        tg.spawn(range_user(l, r, e, "Z", 5, 0, 3));
        tg.spawn(range_user(l, r, e, "Same", 5, 1, 0));
        tg.spawn(range_user(l, r, e, "Next", 6, 1, 0));
        co_await tg.join();
    }(L, rl, ev));
    INFO("events: " << Catch::Detail::stringify(ev));
    CHECK(pos(ev, "Z-") < pos(ev, "Same+"));
    CHECK(pos(ev, "Next+") < pos(ev, "Z-"));
}

TEST_CASE("RangeLock: random overlapping holders never share a byte", "[sync]")
{
    constexpr int kUsers = 300;
    constexpr uint64_t kSpace = 1000;
    auto loop = make_loop();
    Loop& L = *loop;
    RangeLock rl;
    std::vector<int> owners(kSpace, 0);
    int violations = 0, finished = 0;
    std::mt19937 rng(12345);
    struct Req {
        uint64_t off, len;
        int yields;
    };
    std::vector<Req> reqs;
    for (int i = 0; i < kUsers; i++) {
        uint64_t off = rng() % kSpace;
        uint64_t len = 1 + rng() % std::min<uint64_t>(200, kSpace - off);
        reqs.push_back({off, len, int(rng() % 4)});
    }
    sync_wait(L, [](Loop& l, RangeLock& r, std::vector<int>& own, int& viol, int& fin,
                    const std::vector<Req>& rq) -> Task<void> {
        TaskGroup tg;
        for (const Req& q : rq)
            tg.spawn([](Loop& lp, RangeLock& rr, std::vector<int>& ow, int& v, int& f,
                        Req req) -> Task<void> {
                auto g = co_await rr.lock(req.off, req.len);
                for (uint64_t b = req.off; b < req.off + req.len; b++)
                    if (ow[b]++ != 0)
                        v++;
                for (int k = 0; k < req.yields; k++)
                    co_await yield(lp);
                for (uint64_t b = req.off; b < req.off + req.len; b++)
                    ow[b]--;
                f++;
            }(l, r, own, viol, fin, q));
        co_await tg.join();
    }(L, rl, owners, violations, finished, reqs));
    CHECK(violations == 0);
    CHECK(finished == kUsers);
    CHECK(rl.held() == 0);
}

TEST_CASE("WaitGroup wakes every waiter when the count reaches zero", "[sync]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    WaitGroup wg;
    int finished = 0;
    std::vector<int> seen_by_waiters;
    sync_wait(L, [](Loop& l, WaitGroup& w, int& fin, std::vector<int>& seen) -> Task<void> {
        TaskGroup tg;
        w.add(3);
        CHECK(w.count() == 3);
        for (int i = 0; i < 3; i++)
            tg.spawn([](Loop& lp, WaitGroup& ww, int& f, int k) -> Task<void> {
                for (int j = 0; j <= k * 2; j++)
                    co_await yield(lp);
                f++;
                ww.done();
            }(l, w, fin, i));
        for (int i = 0; i < 2; i++)
            tg.spawn([](WaitGroup& ww, int& f, std::vector<int>& s) -> Task<void> {
                co_await ww.wait();
                s.push_back(f);
            }(w, fin, seen));
        co_await w.wait();
        seen.push_back(fin);
        co_await tg.join();
    }(L, wg, finished, seen_by_waiters));
    CHECK(finished == 3);
    CHECK(seen_by_waiters == std::vector<int>{3, 3, 3});
    CHECK(wg.count() == 0);
}

TEST_CASE("WaitGroup::wait at zero does not suspend", "[sync]")
{
    WaitGroup wg;
    CHECK(wg.wait().await_ready());
    wg.add();
    CHECK_FALSE(wg.wait().await_ready());
}

TEST_CASE("TaskGroup::join waits for every spawned task", "[sync]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    int started = 0, finished = 0;
    size_t running_after_spawn = 0, running_after_join = 99;
    sync_wait(L, [](Loop& l, int& st, int& fin, size_t& ras, size_t& raj) -> Task<void> {
        TaskGroup tg;
        co_await tg.join();  // empty: returns at once
        for (int i = 0; i < 10; i++)
            tg.spawn([](Loop& lp, int& s, int& f, int k) -> Task<void> {
                s++;
                for (int j = 0; j < k; j++)
                    co_await yield(lp);
                if (k % 2)
                    co_await lp.sleep_for(200us);
                f++;
            }(l, st, fin, i));
        ras = tg.running();
        co_await tg.join();
        raj = tg.running();
    }(L, started, finished, running_after_spawn, running_after_join));
    CHECK(started == 10);
    CHECK(finished == 10);
    CHECK(running_after_spawn == 9);  // task 0 finished inside spawn
    CHECK(running_after_join == 0);
}
