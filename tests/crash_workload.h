// A workload for crash and fault tests: what a device may hold after writes
// that were not flushed, failed or were cut by a crash (CrashModel), and a
// seeded mixed workload that keeps such a model while requests fail
// (crash_workload). Used by the FVD crash test and by coblk-soak.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/layer.h"
#include "engine/loop.h"

namespace coblk::test {

constexpr uint64_t kModelSector = 512;

// What the device may hold. Writes since the last completed flush may each
// be lost or kept (a power cut decides write by write), and a failed write
// may have landed in part, so a byte may hold its value at that flush or
// the value of any write to it since. `bytes` is the best guess of the
// current content: exact while no write has failed.
struct CrashModel {
    struct Write {
        uint64_t off = 0;
        std::vector<unsigned char> data;
    };
    std::vector<unsigned char> bytes;
    std::vector<unsigned char> settled;   // at the last completed flush
    std::vector<Write> unflushed;
    std::vector<std::vector<uint64_t>> allowed;   // per sector: hashes it passed through

    explicit CrashModel(std::vector<unsigned char> initial);
    // A flush completed: the current content is durable.
    void settle();
    // A write of `len` bytes at `off` (zeros when `data` is null) happened,
    // or may have; `durable` for a completed FUA write.
    void wrote(uint64_t off, const unsigned char* data, uint64_t len, bool durable);
    // The first byte in [off, off+len) of `got` (which holds those bytes)
    // that no write could explain, or -1.
    long bad_byte(uint64_t off, const unsigned char* got, uint64_t len) const;
    // Takes `got` (read from the device, and explainable) as the content.
    void adopt(uint64_t off, const unsigned char* got, uint64_t len);
};

struct CrashWorkloadStats {
    uint64_t requests = 0;   // requests that completed, successfully or not
    uint64_t failed = 0;
    uint64_t bytes_checked = 0;   // bytes read and checked while running
};

// Runs `batches` batches from `seed` on `l` (size `size`): a flush alone, a
// FUA write alone, or up to 6 concurrent reads/writes/write-zeroes on
// disjoint sectors, lengths 1 byte to 40 KiB. Keeps `m` current. A request
// may fail only while `may_fail()` says so (the test fails otherwise); a
// failed write is read back and the model adopts what it finds. Stops early
// when `stop()` says so (a crash).
void crash_workload(Loop& L, Layer& l, CrashModel& m, uint64_t size, uint32_t seed,
                    int batches, const std::function<bool()>& may_fail,
                    const std::function<bool()>& stop, CrashWorkloadStats* st = nullptr);

// Checks the whole of `l` against `m` after a crash; returns the number of
// sectors holding a byte no write explains (0 is the pass), noting the
// first in the test log.
size_t verify_against(Loop& L, Layer& l, const CrashModel& m, uint32_t seed);

} // namespace coblk::test
