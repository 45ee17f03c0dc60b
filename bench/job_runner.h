// Running one job clone: its own thread, its own Loop, its own open of the
// target, and `iodepth` worker coroutines that each take the next offset,
// issue a read or write, time it and record it. The per-request path
// allocates nothing, takes no lock and makes no system call of its own;
// the only shared state it touches is the job's own context.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/job_options.h"
#include "bench/latency_histogram.h"
#include "uri/open.h"

namespace coblk::bench {

// A job after its target was checked: what every clone needs to run.
struct PreparedJob {
    JobSpec spec;
    unsigned group = 0;        // reporting group (stonewall / new_group start one)
    uint64_t size = 0;         // bytes of the region, a multiple of bs
    uint64_t nblocks = 0;      // size / bs
    uint32_t mem_align = 4096; // buffer alignment
    OpenOptions open;          // how each clone opens the target
};

enum { kRead = 0, kWrite = 1 };

struct DirStats {
    LatencyHistogram lat;      // completion latency of every recorded request, ns
    uint64_t runtime_ns = 0;   // time this direction was active (after ramp_time)
};

// What one clone measured. Filled by its thread; read by the main thread
// after joining it.
struct JobResult {
    const PreparedJob* job = nullptr;
    unsigned clone = 0;
    int tid = 0;
    int error = 0;              // positive errno of the failure; 0 when none
    std::string error_msg;      // "JOB: read error at offset N: ..." (no prefix)
    DirStats dir[2];
    LatencyHistogram sync;      // fsync=N flushes
    uint64_t start_ns = 0;      // CLOCK_MONOTONIC when I/O started
    uint64_t end_ns = 0;        // ... and when the last request completed
    double usr_s = 0, sys_s = 0;  // CPU time of the job's thread
    uint64_t ctx = 0, majf = 0, minf = 0;
    uint64_t polls = 0;         // loop turns that polled instead of sleeping (busy_poll)
    // Completions per time slot, per direction, counted from the run's
    // epoch; slot k covers [epoch + k*slot_ns, epoch + (k+1)*slot_ns).
    uint64_t epoch_ns = 0;
    uint64_t slot_ns = 0;
    std::vector<uint32_t> slots[2];

    uint64_t bytes(int d) const { return dir[d].lat.count() * job->spec.bs; }
};

// Shared between a running clone and the progress line. The clone writes
// it about every 100 ms, never per request.
struct JobProgress {
    std::atomic<uint64_t> ios[2] = {0, 0};
    std::atomic<uint64_t> done_ios{0};  // counted against the request limit
    std::atomic<char> state{'P'};       // fio's letters: P setup, R/r/W/w/M/m running,
                                        // V verifying, _ done
    std::atomic<uint64_t> start_ns{0};
};

// The first slot width of the IOPS-over-time samples.
constexpr uint64_t kSlotNs = 100'000'000;

// Runs clone `clone` of `job` on the calling thread until it is done, has
// failed, or stop_all_jobs() was called; fills `out` (also on failure:
// partial results and error/error_msg). `epoch_ns` is the run's common
// time origin for the IOPS samples. Any thread; one call per thread at a
// time (the thread gets its own Loop).
void run_job(const PreparedJob& job, unsigned clone, uint64_t epoch_ns, JobProgress& progress,
             JobResult& out);

// Asks every running job to stop at its next 100 ms tick (SIGINT). Async-
// signal-safe.
void stop_all_jobs() noexcept;
// True once stop_all_jobs() was called.
bool stop_requested() noexcept;

} // namespace coblk::bench
