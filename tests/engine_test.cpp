// Tests of the engine: Task, Loop (timers, spawn, batching, CQ budget),
// foreign-thread completions, run_blocking and the frame pool.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/blocking.h"
#include "engine/frame_pool.h"
#include "engine/inbox.h"
#include "engine/loop.h"
#include "engine/sync.h"
#include "engine/task.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::test;
using namespace std::chrono_literals;

namespace {

Task<int> forty_two() { co_return 42; }

Task<int> add_one(Task<int> t) { co_return co_await std::move(t) + 1; }

Task<std::unique_ptr<std::string>> make_owned(std::string s)
{
    co_return std::make_unique<std::string>(std::move(s));
}

Task<int> throws_now() { throw std::runtime_error("boom now"); co_return 0; }

Task<void> throws_after_sleep(Loop& L)
{
    co_await L.sleep_for(1ms);
    throw std::runtime_error("boom later");
}

Task<int> passes_through(Loop& L)
{
    co_await throws_after_sleep(L);
    co_return 1;  // never reached
}

Task<int> catches(Loop& L)
{
    try {
        co_await throws_after_sleep(L);
    } catch (const std::runtime_error& e) {
        co_return std::string(e.what()) == "boom later" ? 7 : -1;
    }
    co_return 0;
}

// Counts its depth: each level awaits the next, so the chain is n awaits deep.
Task<uint64_t> nest(Loop* L, uint64_t n)
{
    if (n == 0) {
        if (L)
            co_await L->sleep_for(0ns);  // suspend at the bottom: resumed from the loop
        co_return 0;
    }
    co_return 1 + co_await nest(L, n - 1);
}

struct DeepResult {
    uint64_t sync_depth = 0;
    uint64_t suspended_depth = 0;
    bool loop_ok = false;
};

// Runs two 100k-deep chains: one that never suspends and one whose bottom
// suspends on the loop, so the chain is finished from the loop's turn.
void* deep_chain_thread(void* arg)
{
    auto* out = static_cast<DeepResult*>(arg);
    auto loop = Loop::create(64);
    if (!loop.ok())
        return nullptr;
    out->loop_ok = true;
    Loop& L = **loop;
    out->sync_depth = sync_wait(L, nest(nullptr, 100000));
    out->suspended_depth = sync_wait(L, nest(&L, 100000));
    return nullptr;
}

Task<void> sleeper(Loop& L, std::vector<int>& order, std::vector<int>& results, int id,
                   std::chrono::milliseconds d)
{
    int r = co_await L.sleep_for(d);
    results.push_back(r);
    order.push_back(id);
}

} // namespace

TEST_CASE("Task returns its value", "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    CHECK(sync_wait(L, forty_two()) == 42);
    CHECK(sync_wait(L, add_one(add_one(forty_two()))) == 44);
    auto owned = sync_wait(L, make_owned("move-only"));
    REQUIRE(owned);
    CHECK(*owned == "move-only");
}

TEST_CASE("Task<void> runs its body once", "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    int runs = 0;
    Task<void> t = [](int& n) -> Task<void> {
        n++;
        co_return;
    }(runs);
    CHECK(runs == 0);  // lazy: nothing runs before it is awaited
    sync_wait(L, std::move(t));
    CHECK(runs == 1);
}

TEST_CASE("exceptions propagate through awaits", "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    CHECK_THROWS_WITH(sync_wait(L, add_one(throws_now())), "boom now");
    CHECK_THROWS_WITH(sync_wait(L, passes_through(L)), "boom later");
    CHECK_THROWS_WITH(sync_wait(L, throws_after_sleep(L)), "boom later");
    CHECK(sync_wait(L, catches(L)) == 7);
    // The loop is still usable afterwards.
    CHECK(sync_wait(L, forty_two()) == 42);
}

TEST_CASE("Loop::current is the running loop inside its coroutines", "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    CHECK(Loop::current() == nullptr);
    Loop* inside = sync_wait(L, [](Loop& l) -> Task<Loop*> {
        co_await l.sleep_for(0ns);
        co_return Loop::current();
    }(L));
    CHECK(inside == &L);
    CHECK(Loop::current() == nullptr);
}

// The chains run on a thread whose 64 MiB stack is painted beforehand; the
// deepest byte touched gives the stack used. A chain that recursed natively
// (a frame or more per level) would use megabytes; with symmetric transfer
// it needs a few kilobytes whatever the depth. Measuring instead of running
// on a tiny stack keeps a failure a failure, not a crash of the test binary.
TEST_CASE("100k nested awaits do not grow the stack", "[engine]")
{
    constexpr size_t kStack = 64 << 20;
    constexpr unsigned char kPaint = 0xA5;
    auto stack = aligned_alloc_bytes(4096, kStack);
    std::memset(stack.get(), kPaint, kStack);
    DeepResult res;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    REQUIRE(pthread_attr_setstack(&attr, stack.get(), kStack) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, &attr, deep_chain_thread, &res) == 0);
    pthread_attr_destroy(&attr);
    pthread_join(th, nullptr);
    size_t untouched = 0;
    while (untouched < kStack && stack.get()[untouched] == kPaint)
        untouched++;
    size_t used = kStack - untouched;
    REQUIRE(res.loop_ok);
    CHECK(res.sync_depth == 100000);
    CHECK(res.suspended_depth == 100000);
    INFO("stack used by the thread (TLS included): " << used << " bytes");
    CHECK(used < (1u << 20));
}

TEST_CASE("sleeps complete in the order of their deadlines", "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::vector<int> order, results;
    sync_wait(L, [](Loop& l, std::vector<int>& o, std::vector<int>& r) -> Task<void> {
        TaskGroup tg;
        tg.spawn(sleeper(l, o, r, 0, 60ms));
        tg.spawn(sleeper(l, o, r, 1, 1ms));
        tg.spawn(sleeper(l, o, r, 2, 25ms));
        tg.spawn(sleeper(l, o, r, 3, 0ms));
        co_await tg.join();
    }(L, order, results));
    CHECK(order == std::vector<int>{3, 1, 2, 0});
    CHECK(results == std::vector<int>{0, 0, 0, 0});
}

TEST_CASE("spawn runs to the first suspension and the loop finishes it", "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    int stage = 0;
    WaitGroup wg;
    wg.add();
    L.spawn([](Loop& l, int& st, WaitGroup& w) -> Task<void> {
        st = 1;
        co_await l.sleep_for(1ms);
        st = 2;
        w.done();
    }(L, stage, wg));
    CHECK(stage == 1);  // ran up to the sleep, no further
    sync_wait(L, [](WaitGroup& w) -> Task<void> { co_await w.wait(); }(wg));
    CHECK(stage == 2);
}

TEST_CASE("a failed io_uring operation gives -errno", "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    char buf[16];
    iovec v{buf, sizeof buf};
    int r = sync_wait(L, [](Loop& l, iovec* iov) -> Task<int> {
        co_return co_await l.readv(-1, iov, 1, 0);
    }(L, &v));
    CHECK(r == -EBADF);
}

TEST_CASE("await_foreign completed from another thread", "[engine]")
{
    auto delay = GENERATE(0, 5);  // ms before the worker completes
    INFO("worker delay " << delay << " ms");
    auto loop = make_loop();
    Loop& L = *loop;
    const auto main_id = std::this_thread::get_id();
    std::thread worker;
    std::thread::id completer, resumed;
    int64_t v = sync_wait(L, [](Loop& l, std::thread& w, std::thread::id& comp,
                                std::thread::id& res, int d) -> Task<int64_t> {
        int64_t r = co_await await_foreign(l, [&w, &comp, d](ForeignCompletion* c) {
            w = std::thread([c, &comp, d] {
                std::this_thread::sleep_for(std::chrono::milliseconds(d));
                comp = std::this_thread::get_id();
                c->complete(99);
            });
        });
        res = std::this_thread::get_id();
        co_return r;
    }(L, worker, completer, resumed, delay));
    worker.join();
    CHECK(v == 99);
    CHECK(completer != main_id);
    CHECK(resumed == main_id);
}

TEST_CASE("await_foreign completed synchronously inside start", "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    int resumes = 0;
    int64_t v = sync_wait(L, [](Loop& l, int& n) -> Task<int64_t> {
        int64_t total = 0;
        for (int i = 1; i <= 100; i++) {
            total += co_await await_foreign(l, [i](ForeignCompletion* c) { c->complete(i); });
            n++;
        }
        co_return total;
    }(L, resumes));
    CHECK(v == 5050);
    CHECK(resumes == 100);
}

namespace {

// How many waiters were not resumed exactly once, and how many did not get
// their own result (waiter i completes with i + 1), in the foreign tests.
int resumed_not_once(const std::vector<int>& resumes)
{
    int bad = 0;
    for (int r : resumes)
        bad += r != 1;
    return bad;
}

int results_not_their_own(const std::vector<int64_t>& results)
{
    int bad = 0;
    for (size_t i = 0; i < results.size(); i++)
        bad += results[i] != int64_t(i) + 1;
    return bad;
}

// Notes that waiter i resumed with `r`, and whether on the loop's thread.
template <typename Ctx>
void record_resume(Ctx& c, int i, int64_t r)
{
    if (std::this_thread::get_id() != c.loop_thread)
        c.wrong_thread++;
    c.resumes[size_t(i)]++;
    c.results[size_t(i)] = r;
}

struct ForeignCtx {
    std::vector<ForeignCompletion*> pending;
    std::vector<int> resumes;
    std::vector<int64_t> results;
    std::thread::id loop_thread;
    int wrong_thread = 0;
};

Task<void> foreign_waiter(Loop& L, ForeignCtx& c, int i)
{
    int64_t r = co_await await_foreign(L, [&c](ForeignCompletion* fc) { c.pending.push_back(fc); });
    record_resume(c, i, r);
}

} // namespace

TEST_CASE("await_foreign: 8 threads x 1000 completions resume each waiter once",
          "[engine]")
{
    constexpr int kThreads = 8, kPerThread = 1000, kTotal = kThreads * kPerThread;
    auto loop = make_loop();
    Loop& L = *loop;
    ForeignCtx c;
    c.resumes.assign(kTotal, 0);
    c.results.assign(kTotal, -1);
    c.loop_thread = std::this_thread::get_id();
    std::vector<std::thread> threads;
    sync_wait(L, [](Loop& l, ForeignCtx& ctx, std::vector<std::thread>& ths) -> Task<void> {
        TaskGroup tg;
        for (int i = 0; i < kTotal; i++)
            tg.spawn(foreign_waiter(l, ctx, i));
        // Every waiter has suspended and handed over its completion.
        if (ctx.pending.size() != size_t(kTotal))
            throw std::logic_error("not every waiter started");
        // Thread t completes items t, t+8, t+16, ...: neighbours finish on
        // different threads at about the same time.
        for (int t = 0; t < kThreads; t++)
            ths.emplace_back([&ctx, t] {
                for (int k = 0; k < kPerThread; k++) {
                    int i = k * kThreads + t;
                    ctx.pending[size_t(i)]->complete(i + 1);
                }
            });
        co_await tg.join();
    }(L, c, threads));
    for (auto& t : threads)
        t.join();
    CHECK(c.wrong_thread == 0);
    CHECK(resumed_not_once(c.resumes) == 0);
    CHECK(results_not_their_own(c.results) == 0);
}

namespace {

// Completions handed to worker threads while waiters are still being
// started, so that pushes to the inbox race the loop's turns.
struct StreamCtx {
    std::mutex m;
    std::condition_variable cv;
    std::deque<std::pair<ForeignCompletion*, int64_t>> q;
    bool closed = false;
    int next = 0;  // the next waiter number, for waiters that go on
    std::vector<int> resumes;
    std::vector<int64_t> results;
    std::thread::id loop_thread;
    int wrong_thread = 0;

    // Expects `total` waiters, resumed on the calling (loop) thread.
    explicit StreamCtx(int total)
        : resumes(size_t(total), 0), results(size_t(total), -1),
          loop_thread(std::this_thread::get_id())
    {
    }
    // Lets the workers return once the queue is empty.
    void close()
    {
        {
            std::lock_guard<std::mutex> g(m);
            closed = true;
        }
        cv.notify_all();
    }
};

Task<void> stream_waiter(Loop& L, StreamCtx& c, int i)
{
    int64_t r = co_await await_foreign(L, [&c, i](ForeignCompletion* fc) {
        {
            std::lock_guard<std::mutex> g(c.m);
            c.q.emplace_back(fc, i + 1);
        }
        c.cv.notify_one();
    });
    record_resume(c, i, r);
}

// Completes queued operations in order until the context is closed; with
// `pace`, sleeps that long after each (a server's pace, for gathering).
void stream_worker(StreamCtx& c, std::chrono::microseconds pace = 0us)
{
    std::unique_lock<std::mutex> g(c.m);
    for (;;) {
        c.cv.wait(g, [&] { return c.closed || !c.q.empty(); });
        if (c.q.empty())
            return;
        auto [fc, v] = c.q.front();
        c.q.pop_front();
        g.unlock();
        fc->complete(v);
        if (pace.count())
            std::this_thread::sleep_for(pace);
        g.lock();
    }
}

} // namespace

TEST_CASE("await_foreign: completions racing the loop's turns", "[engine]")
{
    constexpr int kTotal = 8000;
    auto loop = make_loop();
    Loop& L = *loop;
    StreamCtx c(kTotal);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; t++)
        threads.emplace_back([&c] { stream_worker(c); });
    sync_wait(L, [](Loop& l, StreamCtx& ctx) -> Task<void> {
        TaskGroup tg;
        for (int i = 0; i < kTotal; i++) {
            tg.spawn(stream_waiter(l, ctx, i));
            if (i % 64 == 63)
                co_await yield(l);  // let the loop take in what has arrived
        }
        co_await tg.join();
    }(L, c));
    c.close();
    for (auto& t : threads)
        t.join();
    CHECK(c.wrong_thread == 0);
    CHECK(resumed_not_once(c.resumes) == 0);
    CHECK(results_not_their_own(c.results) == 0);
}

namespace {

constexpr int kGatherDepth = 32, kGatherTotal = 1500;

// Keeps one operation that allows gathering in flight until kGatherTotal
// have been started.
Task<void> gather_waiter(Loop& L, StreamCtx& c)
{
    while (c.next < kGatherTotal) {
        int i = c.next++;
        int64_t r = co_await await_foreign(L, [&c, i](ForeignCompletion* fc) {
            {
                std::lock_guard<std::mutex> g(c.m);
                c.q.emplace_back(fc, i + 1);
            }
            c.cv.notify_one();
        }, 2000);
        record_resume(c, i, r);
    }
}

} // namespace

TEST_CASE("gathered foreign completions: each waiter resumes once, and the loop gathers",
          "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    StreamCtx c(kGatherTotal);
    // One completer, in order, at its own pace: the pace only decides how
    // many completions each gathering window holds, never the outcome.
    std::thread completer([&c] { stream_worker(c, 100us); });
    sync_wait(L, [](Loop& l, StreamCtx& ctx) -> Task<void> {
        TaskGroup tg;
        for (int k = 0; k < kGatherDepth; k++)
            tg.spawn(gather_waiter(l, ctx));
        co_await tg.join();
    }(L, c));
    c.close();
    completer.join();
    CHECK(c.wrong_thread == 0);
    CHECK(resumed_not_once(c.resumes) == 0);
    CHECK(results_not_their_own(c.results) == 0);
    // With 32 in flight and completions at most 10 per millisecond, the
    // window (an eighth of their latency, at least 400 us) is well over the
    // minimum: the loop must have gathered. Without io_uring it waits in
    // ppoll and never gathers.
    if (L.uses_io_uring())
        CHECK(L.gather_waits() > 0);
    else
        CHECK(L.gather_waits() == 0);
}

TEST_CASE("the inbox wait: one multishot poll for many wake-ups, or a read re-armed after each",
          "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    if (!L.uses_io_uring())
        return;  // worker loops wait in ppoll (tests/no_uring_test.cpp)
    constexpr int kTotal = 200;
    StreamCtx c(kTotal);
    std::thread completer([&c] { stream_worker(c); });
    // One at a time: each completion finds the inbox empty and signals it.
    sync_wait(L, [](Loop& l, StreamCtx& ctx) -> Task<void> {
        for (int i = 0; i < kTotal; i++)
            co_await stream_waiter(l, ctx, i);
    }(L, c));
    c.close();
    completer.join();
    CHECK(resumed_not_once(c.resumes) == 0);
    CHECK(results_not_their_own(c.results) == 0);
    CHECK(L.inbox_wakeups() > 0);
    const char* wait = std::getenv("COBLK_INBOX_WAIT");
    if (wait && std::string(wait) == "read")
        CHECK_FALSE(L.inbox_waits_by_poll());
    if (L.inbox_waits_by_poll()) {
        CHECK(L.inbox_wait_arms() == 1);  // armed at create, never again
    } else {
        // Armed at create and after every wake-up (the newest still waits).
        CHECK(L.inbox_wait_arms() == L.inbox_wakeups() + 1);
    }
}

TEST_CASE("a polling loop yields and looks again instead of sleeping", "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    CHECK_FALSE(L.polling());

    SECTION("a foreign completion is taken without entering the kernel")
    {
        L.set_polling(true);
        std::atomic<ForeignCompletion*> handed{nullptr};
        // Completes only once the loop has polled: the loop was then idle
        // with the operation in flight, and must not have slept.
        std::thread completer([&L, &handed] {
            ForeignCompletion* fc;
            while (!(fc = handed.load()))
                std::this_thread::yield();
            auto give_up = std::chrono::steady_clock::now() + 10s;  // a loop that sleeps
            while (L.polls() == 0 && std::chrono::steady_clock::now() < give_up)
                std::this_thread::yield();
            fc->complete(4242);
        });
        L.run_once(false);  // the first turn puts the inbox wait into the kernel
        uint64_t calls0 = L.syscalls();
        int64_t r = sync_wait(L, [](Loop& l, std::atomic<ForeignCompletion*>& h) -> Task<int64_t> {
            co_return co_await await_foreign(l, [&h](ForeignCompletion* fc) { h.store(fc); });
        }(L, handed));
        completer.join();
        CHECK(r == 4242);
        CHECK(L.polls() > 0);
        // With io_uring nothing but the inbox was waited on, so a polling
        // loop made no system call for I/O; a worker loop reads its
        // eventfd once the completion's signal is there.
        if (L.uses_io_uring())
            CHECK(L.syscalls() == calls0);
    }

    SECTION("ring operations complete while it polls")
    {
        ScratchDir dir;
        std::string path = dir.file("data");
        auto data = pattern(64 * 1024, 3);
        write_file(path, data.data(), data.size());
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        L.set_polling(true);
        std::vector<unsigned char> got(data.size(), 0);
        uint64_t polls0 = L.polls();
        auto t0 = std::chrono::steady_clock::now();
        int r = sync_wait(L, [](Loop& l, int f, std::vector<unsigned char>& g) -> Task<int> {
            co_await l.sleep_for(2ms);  // in flight for 2 ms at least: the loop must poll
            iovec v{g.data(), g.size()};
            co_return co_await l.readv(f, &v, 1, 0);
        }(L, fd, got));
        ::close(fd);
        CHECK(std::chrono::steady_clock::now() - t0 >= 2ms);
        CHECK(r == int(data.size()));
        CHECK_BYTES(got.data(), data.data(), data.size(), 0);
        CHECK(L.polls() > polls0);
    }

    SECTION("off again, it sleeps")
    {
        L.set_polling(true);
        L.set_polling(false);
        CHECK_FALSE(L.polling());
        uint64_t polls0 = L.polls();
        sync_wait(L, [](Loop& l) -> Task<void> { co_await l.sleep_for(1ms); }(L));
        CHECK(L.polls() == polls0);
    }
}

TEST_CASE("a bad COBLK_INBOX_WAIT is refused naming it", "[engine]")
{
    std::optional<std::string> saved;
    if (const char* old = std::getenv("COBLK_INBOX_WAIT"))
        saved = old;
    ::setenv("COBLK_INBOX_WAIT", "sometimes", 1);
    auto r = Loop::create(32);
    if (saved)
        ::setenv("COBLK_INBOX_WAIT", saved->c_str(), 1);
    else
        ::unsetenv("COBLK_INBOX_WAIT");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == EINVAL);
    CHECK(r.error().message.find("COBLK_INBOX_WAIT='sometimes'") != std::string::npos);
}

TEST_CASE("run_blocking runs fn on another thread and returns its value", "[engine]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    const auto main_id = std::this_thread::get_id();
    std::thread::id ran_on, resumed_on;
    int64_t v = sync_wait(L, [](Loop& l, std::thread::id& ran, std::thread::id& res) -> Task<int64_t> {
        int64_t r = co_await run_blocking(l, [&ran] {
            ran = std::this_thread::get_id();
            return int64_t(424242);
        });
        res = std::this_thread::get_id();
        co_return r;
    }(L, ran_on, resumed_on));
    CHECK(v == 424242);
    CHECK(ran_on != main_id);
    CHECK(resumed_on == main_id);

    CHECK(sync_wait(L, run_blocking(L, [] { return int64_t(-EIO); })) == -EIO);
}

TEST_CASE("run_blocking: many at once each return their own value", "[engine]")
{
    constexpr int kN = 32;
    auto loop = make_loop();
    Loop& L = *loop;
    std::vector<int64_t> got(kN, -1);
    int wrong_thread = 0;
    const auto main_id = std::this_thread::get_id();
    sync_wait(L, [](Loop& l, std::vector<int64_t>& g, int& wrong, std::thread::id id) -> Task<void> {
        TaskGroup tg;
        for (int i = 0; i < kN; i++)
            tg.spawn([](Loop& lp, std::vector<int64_t>& gg, int& w, std::thread::id mid,
                        int k) -> Task<void> {
                gg[size_t(k)] = co_await run_blocking(lp, [k] {
                    std::this_thread::sleep_for(1ms);
                    return int64_t(k) * 3;
                });
                if (std::this_thread::get_id() != mid)
                    w++;
            }(l, g, wrong, id, i));
        co_await tg.join();
    }(L, got, wrong_thread, main_id));
    CHECK(wrong_thread == 0);
    for (int i = 0; i < kN; i++)
        CHECK(got[size_t(i)] == int64_t(i) * 3);
}

TEST_CASE("frame pool hands a freed frame out again", "[engine]")
{
    SECTION("same size, same thread")
    {
        void* p = frame_alloc(200);
        REQUIRE(p != nullptr);
        std::memset(p, 0xAB, 200);  // the whole size is usable
        frame_free(p, 200);
        void* q = frame_alloc(200);
        CHECK(q == p);
        frame_free(q, 200);
    }
    SECTION("several frames come back")
    {
        std::set<void*> first;
        std::vector<void*> v;
        for (int i = 0; i < 8; i++)
            v.push_back(frame_alloc(96));
        first.insert(v.begin(), v.end());
        CHECK(first.size() == 8);
        for (void* p : v)
            frame_free(p, 96);
        std::set<void*> second;
        for (int i = 0; i < 8; i++)
            second.insert(frame_alloc(96));
        CHECK(second == first);
        for (void* p : second)
            frame_free(p, 96);
    }
    SECTION("a frame from an exiting thread is as large as its class")
    {
        // A thread past its reaper allocates from the heap; a frame it
        // hands to another thread is cached there and may come back for
        // any frame of its class, so it must have the class's full size.
        void* p = nullptr;
        std::thread t([&] {
            detail::frame_pool.gone = true;  // as after the reaper ran
            p = frame_alloc(65);             // class 1: frames of 65..128 bytes
        });
        t.join();
        REQUIRE(p != nullptr);
        CHECK(malloc_usable_size(p) >= 128);
        frame_free(p, 65);
        void* q = frame_alloc(128);
        std::memset(q, 0xCD, 128);
        frame_free(q, 128);
    }
    SECTION("a frame freed on another thread joins that thread's list")
    {
        void* p = frame_alloc(300);
        void* again = nullptr;
        std::thread t([&] {
            frame_free(p, 300);
            again = frame_alloc(300);
            frame_free(again, 300);
        });
        t.join();
        CHECK(again == p);
    }
    SECTION("large frames work")
    {
        void* p = frame_alloc(1 << 20);
        REQUIRE(p != nullptr);
        std::memset(p, 0x11, 1 << 20);
        frame_free(p, 1 << 20);
    }
}

TEST_CASE("more sleeps in flight than the completion ring holds", "[engine]")
{
    constexpr int kN = 4096;
    auto loop = make_loop(8);
    Loop& L = *loop;
    int done = 0, bad = 0;
    sync_wait(L, [](Loop& l, int& d, int& b) -> Task<void> {
        TaskGroup tg;
        for (int i = 0; i < kN; i++)
            tg.spawn([](Loop& lp, int& dd, int& bb) -> Task<void> {
                int r = co_await lp.sleep_for(50us);
                bb += r != 0;
                dd++;
            }(l, d, b));
        co_await tg.join();
    }(L, done, bad));
    CHECK(done == kN);
    CHECK(bad == 0);
}

TEST_CASE("more reads in flight than the completion ring holds", "[engine]")
{
    constexpr int kN = 4096;
    constexpr size_t kBlock = 512;
    ScratchDir dir;
    std::string path = dir.file("data");
    auto data = pattern(kN * kBlock, 7);
    write_file(path, data.data(), data.size());
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);

    auto loop = make_loop(8);
    Loop& L = *loop;
    std::vector<unsigned char> got(kN * kBlock, 0);
    std::vector<int> res(kN, -12345);
    sync_wait(L, [](Loop& l, int f, std::vector<unsigned char>& g, std::vector<int>& rs) -> Task<void> {
        TaskGroup tg;
        for (int i = 0; i < kN; i++)
            tg.spawn([](Loop& lp, int fdd, unsigned char* buf, int& r, uint64_t off) -> Task<void> {
                iovec v{buf, kBlock};
                r = co_await lp.readv(fdd, &v, 1, off);
            }(l, f, g.data() + size_t(i) * kBlock, rs[size_t(i)], uint64_t(i) * kBlock));
        co_await tg.join();
    }(L, fd, got, res));
    ::close(fd);
    int bad = 0;
    for (int r : res)
        bad += r != int(kBlock);
    CHECK(bad == 0);
    CHECK_BYTES(got.data(), data.data(), data.size(), 0);
}

TEST_CASE("concurrent reads are submitted in batches", "[engine]")
{
    constexpr int kN = 256;
    constexpr size_t kBlock = 4096;
    ScratchDir dir;
    std::string path = dir.file("data");
    auto data = pattern(kN * kBlock, 11);
    write_file(path, data.data(), data.size());
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);

    auto loop = make_loop(256);
    Loop& L = *loop;
    std::vector<unsigned char> got(kN * kBlock, 0);
    std::vector<int> res(kN, -12345);
    uint64_t before = L.syscalls();
    sync_wait(L, [](Loop& l, int f, std::vector<unsigned char>& g, std::vector<int>& rs) -> Task<void> {
        TaskGroup tg;
        for (int i = 0; i < kN; i++)
            tg.spawn([](Loop& lp, int fdd, unsigned char* buf, int& r, uint64_t off) -> Task<void> {
                iovec v{buf, kBlock};
                r = co_await lp.readv(fdd, &v, 1, off);
            }(l, f, g.data() + size_t(i) * kBlock, rs[size_t(i)], uint64_t(i) * kBlock));
        co_await tg.join();
    }(L, fd, got, res));
    uint64_t used = L.syscalls() - before;
    ::close(fd);
    int bad = 0;
    for (int r : res)
        bad += r != int(kBlock);
    CHECK(bad == 0);
    CHECK_BYTES(got.data(), data.data(), data.size(), 0);
    INFO("io_uring_enter calls for " << kN << " reads: " << used);
    CHECK(used >= 1);
    // Batching is the ring's: without io_uring (COBLK_IO_URING=off) each
    // read is a worker's system call and the loop's count follows how the
    // completions happen to arrive, so only the ring has a bound to check.
    if (L.uses_io_uring())
        CHECK(used <= 32);
}

TEST_CASE("Inbox hands items over oldest first, each once", "[engine]")
{
    Inbox inbox;
    CHECK(inbox.empty());
    CHECK(inbox.eventfd() >= 0);
    InboxItem items[5];
    for (auto& it : items)
        inbox.push(&it);
    CHECK_FALSE(inbox.empty());
    std::vector<InboxItem*> got;
    for (InboxItem* it = inbox.take_all(); it; it = it->next)
        got.push_back(it);
    CHECK(got == std::vector<InboxItem*>{&items[0], &items[1], &items[2], &items[3], &items[4]});
    CHECK(inbox.empty());
    CHECK(inbox.take_all() == nullptr);
}
