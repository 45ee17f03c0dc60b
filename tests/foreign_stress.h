// Many requests in flight on several loops at once against one image on a
// backend whose completions come from a library's threads (gluster, rbd):
// the cross-thread completion path under load, for the TSan build.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/loop.h"

namespace coblk::test {

struct StressConfig {
    std::string name;          // the image; at least loops * per_loop * stride bytes
    std::string format;        // OpenOptions::format ("gluster", "rbd")
    int loops = 4;             // loop threads, each opening `name` itself
    int per_loop = 64;         // requests in flight on each loop
    int rounds = 4;            // write + read-back rounds per request slot
    uint64_t stride = 20480;   // bytes between the slots' regions
    size_t len = 16384 + 3;    // bytes per request (odd: not sector-aligned)
    // The number of library connections (glfs_t, rados_t) in the process,
    // sampled while every loop has the image open.
    std::function<size_t()> connections;
};

struct StressResult {
    std::vector<std::string> errors;  // open or close failures, per loop
    uint64_t requests = 0;            // completed requests
    uint64_t failed = 0;              // requests that returned an error
    uint64_t mismatched = 0;          // read-backs that differ from the write
    uint64_t wrong_thread = 0;        // resumptions off the slot's loop thread
    uint64_t bad_resume_counts = 0;   // slots not resumed exactly 2 * rounds times
    int min_in_flight = 0;            // least in flight on a loop after starting all
    size_t connections_while_open = 0;
};

// Runs the stress on config.loops new threads, each with a loop of its
// own, which all open the image before any starts its config.per_loop
// requests. Each request slot writes its pattern and reads it back
// config.rounds times, counting every resumption and the thread it
// happened on. Returns the tallies; joins every thread first. Any thread
// (it makes no Catch2 assertions, which are not thread-safe).
StressResult foreign_stress(const StressConfig& config);

// Runs foreign_stress and checks, with Catch2, that every slot was resumed
// exactly 2 * rounds times on its own loop's thread with no error or
// mismatch, that all loops shared one connection, and that the image,
// opened afresh on `loop`, holds each slot's last round. Test thread.
void check_foreign_stress(Loop& loop, const StressConfig& config);

// The pattern seed of slot `slot` (0 .. loops * per_loop - 1) in round `round`.
inline uint32_t stress_seed(int slot, int round) { return uint32_t(slot * 16 + round + 1); }

} // namespace coblk::test
