#include "tests/crash_workload.h"

#include <algorithm>
#include <cstring>
#include <random>

#include "engine/sync.h"
#include "tests/helpers.h"

namespace coblk::test {
namespace {

uint64_t hash_sector(const unsigned char* p)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < kModelSector; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

struct CrashReq {
    enum Kind { Read, Write, Zero } kind = Read;
    uint64_t off = 0, len = 0;
    unsigned flags = 0;
    std::vector<unsigned char> buf;
    int result = 1;
};

Task<void> run_one(Layer& l, CrashReq& r)
{
    switch (r.kind) {
    case CrashReq::Read: r.result = co_await l.pread(r.off, r.buf.data(), r.len); break;
    case CrashReq::Write: r.result = co_await l.pwrite(r.off, r.buf.data(), r.len, r.flags); break;
    case CrashReq::Zero: r.result = co_await l.write_zeroes(r.off, r.len, r.flags); break;
    }
}

Task<void> run_batch(Layer& l, std::vector<CrashReq>& reqs)
{
    TaskGroup g;
    for (auto& r : reqs)
        g.spawn(run_one(l, r));
    co_await g.join();
}

} // namespace

CrashModel::CrashModel(std::vector<unsigned char> initial) : bytes(std::move(initial))
{
    allowed.resize(bytes.size() / kModelSector);
    settle();
}

void CrashModel::settle()
{
    settled = bytes;
    unflushed.clear();
    for (size_t s = 0; s < allowed.size(); s++)
        allowed[s].assign(1, hash_sector(bytes.data() + s * kModelSector));
}

void CrashModel::wrote(uint64_t off, const unsigned char* data, uint64_t len, bool durable)
{
    if (data)
        std::memcpy(bytes.data() + off, data, len);
    else
        std::memset(bytes.data() + off, 0, len);
    if (durable)
        std::memcpy(settled.data() + off, bytes.data() + off, len);
    else
        unflushed.push_back({off, std::vector<unsigned char>(bytes.begin() + long(off),
                                                             bytes.begin() + long(off + len))});
    for (uint64_t s = off / kModelSector; s <= (off + len - 1) / kModelSector; s++) {
        uint64_t h = hash_sector(bytes.data() + s * kModelSector);
        if (durable)
            allowed[s].assign(1, h);
        else if (std::find(allowed[s].begin(), allowed[s].end(), h) == allowed[s].end())
            allowed[s].push_back(h);
    }
}

long CrashModel::bad_byte(uint64_t off, const unsigned char* got, uint64_t len) const
{
    for (uint64_t x = off; x < off + len; x++) {
        unsigned char v = got[x - off];
        if (v == settled[x] || v == bytes[x])
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

void CrashModel::adopt(uint64_t off, const unsigned char* got, uint64_t len)
{
    std::memcpy(bytes.data() + off, got, len);
    for (uint64_t s = off / kModelSector; s <= (off + len - 1) / kModelSector; s++) {
        uint64_t h = hash_sector(bytes.data() + s * kModelSector);
        if (std::find(allowed[s].begin(), allowed[s].end(), h) == allowed[s].end())
            allowed[s].push_back(h);
    }
}

void crash_workload(Loop& L, Layer& l, CrashModel& m, uint64_t size, uint32_t seed,
                    int batches, const std::function<bool()>& may_fail,
                    const std::function<bool()>& stop, CrashWorkloadStats* st)
{
    CrashWorkloadStats local;
    if (!st)
        st = &local;
    std::mt19937_64 rng(seed);
    for (int bi = 0; bi < batches && !stop(); bi++) {
        int kind = int(rng() % 10);
        if (kind == 0) {   // a flush, alone
            int r = sync_wait(L, l.flush());
            st->requests++;
            if (r == 0) {
                m.settle();
            } else {
                INFO("seed " << seed << " batch " << bi << ": flush failed: " << r);
                REQUIRE(may_fail());
                st->failed++;
            }
            continue;
        }
        bool fua_batch = kind == 1;   // one FUA write, alone
        std::vector<CrashReq> reqs(fua_batch ? 1 : size_t(1 + rng() % 6));
        std::vector<std::pair<uint64_t, uint64_t>> taken;
        for (auto& r : reqs) {
            int k = int(rng() % 10);
            r.kind = fua_batch ? CrashReq::Write
                     : k < 3   ? CrashReq::Read
                     : k < 9   ? CrashReq::Write
                               : CrashReq::Zero;
            if (fua_batch)
                r.flags = kReqFua;
            for (int attempt = 0; attempt < 20 && r.len == 0; attempt++) {
                uint64_t len = 1 + rng() % (40 * 1024);
                if (rng() % 2)
                    len = (len + 511) / 512 * 512;
                len = std::min(len, size);
                uint64_t off = rng() % (size - len + 1);
                if (rng() % 2)
                    off = off / 512 * 512;
                bool clash = false;
                for (auto [a, b] : taken)   // disjoint in sectors
                    clash |= off / kModelSector <= (b - 1) / kModelSector &&
                             a / kModelSector <= (off + len - 1) / kModelSector;
                if (!clash) {
                    r.off = off;
                    r.len = len;
                    taken.emplace_back(off, off + len);
                }
            }
            if (r.len == 0) {
                r.kind = CrashReq::Read;
                r.off = 0;
                r.len = 512;
            }
            if (r.kind == CrashReq::Write)
                r.buf = pattern(r.len, uint32_t(rng()), r.off);
            else if (r.kind == CrashReq::Read)
                r.buf.assign(r.len, 0xEE);
        }
        sync_wait(L, run_batch(l, reqs));
        for (auto& r : reqs) {
            INFO("seed " << seed << " batch " << bi << " kind " << r.kind << " off " << r.off
                         << " len " << r.len << " result " << r.result);
            st->requests++;
            if (r.result != 0) {
                REQUIRE(may_fail());
                st->failed++;
                if (r.kind == CrashReq::Read)
                    continue;
                // A failed write may have landed in part: it joins the
                // possible values, and what the device now holds is read
                // back and checked (when it still answers).
                m.wrote(r.off, r.kind == CrashReq::Write ? r.buf.data() : nullptr, r.len, false);
                std::vector<unsigned char> back(r.len);
                for (int tries = 0; tries < 4 && !stop(); tries++) {
                    if (sync_wait(L, l.pread(r.off, back.data(), r.len)) != 0)
                        continue;
                    long bad = m.bad_byte(r.off, back.data(), r.len);
                    if (bad >= 0)
                        FAIL("after a failed write, byte " << bad << " holds "
                                                           << int(back[size_t(bad) - r.off])
                                                           << ", which no write put there");
                    m.adopt(r.off, back.data(), r.len);
                    st->bytes_checked += r.len;
                    break;
                }
                continue;
            }
            if (r.kind == CrashReq::Read) {
                CHECK_BYTES(r.buf.data(), m.bytes.data() + r.off, r.len, r.off);
                st->bytes_checked += r.len;
            } else {
                m.wrote(r.off, r.kind == CrashReq::Write ? r.buf.data() : nullptr, r.len,
                        r.flags & kReqFua);
            }
        }
    }
}

size_t verify_against(Loop& L, Layer& l, const CrashModel& m, uint32_t seed)
{
    auto got = layer_read(L, l, 0, m.bytes.size());
    size_t bad = 0;
    for (size_t s = 0; s < m.allowed.size(); s++) {
        const unsigned char* p = got.data() + s * kModelSector;
        const auto& a = m.allowed[s];
        if (std::find(a.begin(), a.end(), hash_sector(p)) != a.end())
            continue;
        long x = m.bad_byte(s * kModelSector, p, kModelSector);
        if (x >= 0 && bad++ == 0)
            UNSCOPED_INFO("seed " << seed << ": byte " << x << " holds " << int(got[size_t(x)])
                                  << ", a value no write put there");
    }
    return bad;
}

} // namespace coblk::test
