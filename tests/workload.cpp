#include "tests/workload.h"

#include <cstring>
#include <random>

#include "engine/sync.h"
#include "tests/helpers.h"

namespace coblk::test {

Task<void> run_all(std::vector<Task<void>>& reqs)
{
    TaskGroup g;
    for (auto& t : reqs)
        g.spawn(std::move(t));
    co_await g.join();
}

Task<void> run_req(Layer& l, Req& r)
{
    switch (r.kind) {
    case Req::Read: r.result = co_await l.pread(r.off, r.buf.data(), r.len); break;
    case Req::Write: r.result = co_await l.pwrite(r.off, r.buf.data(), r.len); break;
    case Req::Zero: r.result = co_await l.write_zeroes(r.off, r.len); break;
    case Req::Flush: r.result = co_await l.flush(); break;
    }
}

// Mirrors a random workload on `l` into `model` (the bytes the device must
// hold): batches of up to `depth` requests on disjoint ranges run at once,
// so concurrent requests share blocks but never bytes. Reads are checked
// against the model as it was when they were issued.
void random_workload(Loop& L, Layer& l, std::vector<unsigned char>& model, uint32_t seed,
                     int batches, int depth)
{
    std::mt19937_64 rng(seed);
    uint64_t size = l.size();
    for (int bi = 0; bi < batches; bi++) {
        std::vector<Req> reqs(size_t(1 + rng() % depth));
        std::vector<std::pair<uint64_t, uint64_t>> taken;
        for (auto& r : reqs) {
            int k = int(rng() % 20);
            r.kind = k < 8 ? Req::Read : k < 17 ? Req::Write : k < 19 ? Req::Zero : Req::Flush;
            for (int attempt = 0; attempt < 20; attempt++) {
                uint64_t len = rng() % 3 == 0 ? 4096 : 1 + rng() % (192 * 1024);
                if (rng() % 2)
                    len = (len + 511) / 512 * 512;
                len = std::min(len, size);
                uint64_t off = rng() % (size - len + 1);
                if (rng() % 2)
                    off = off / 512 * 512;
                bool clash = false;
                for (auto [a, b] : taken)
                    clash |= off < b && a < off + len;
                if (!clash) {
                    r.off = off;
                    r.len = len;
                    taken.emplace_back(off, off + len);
                    break;
                }
            }
            if (r.len == 0)
                r.kind = Req::Flush;
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
            INFO("batch " << bi << " kind " << r.kind << " off " << r.off << " len " << r.len);
            REQUIRE(r.result == 0);
            if (r.kind == Req::Read)
                CHECK_BYTES(r.buf.data(), model.data() + r.off, r.len, r.off);
            else if (r.kind == Req::Write)
                std::memcpy(model.data() + r.off, r.buf.data(), r.len);
            else if (r.kind == Req::Zero)
                std::memset(model.data() + r.off, 0, r.len);
        }
    }
}

// Checks the whole device against the model.
void check_all(Loop& L, Layer& l, const std::vector<unsigned char>& model)
{
    REQUIRE(l.size() == model.size());
    for (uint64_t off = 0; off < model.size(); off += 1 << 20) {
        size_t n = size_t(std::min<uint64_t>(1 << 20, model.size() - off));
        auto got = layer_read(L, l, off, n);
        CHECK_BYTES(got.data(), model.data() + off, n, off);
    }
}

} // namespace coblk::test
