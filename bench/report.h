// The reports: fio's normal text and fio-shaped JSON, built from the
// results of every clone. With group_reporting the clones of a reporting
// group are merged into one entry (histograms add up exactly).
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "bench/job_runner.h"

namespace coblk::bench {

// One job as reported: a clone, or a merged group.
struct ReportEntry {
    std::string name;
    unsigned group = 0;
    unsigned jobs = 1;                 // clones merged into this entry
    int error = 0;
    int tid = 0;
    const PreparedJob* job = nullptr;  // the first clone's job (options, bs)
    DirStats dir[2];
    uint64_t bytes[2] = {0, 0};
    LatencyHistogram sync;
    double usr_s = 0, sys_s = 0;
    uint64_t ctx = 0, majf = 0, minf = 0;
    uint64_t job_runtime_ns = 0;       // the longest clone's start to end
    std::vector<double> iops_samples[2];  // IOPS of each whole 100 ms slot
};

// The IOPS of each whole sampling slot of `r` in direction `d` while it
// recorded statistics (partial slots at either end are left out).
std::vector<double> slot_iops(const JobResult& r, int d);

// Builds the entries in result order, merging clones of a group whose job
// asks for group_reporting. Any thread.
std::vector<ReportEntry> make_report_entries(const std::vector<const JobResult*>& results);

// The lines fio prints before starting: one per job, the version line and
// "Starting N threads".
std::string report_header(const std::vector<PreparedJob>& jobs);

// fio's normal report of `entries` and the "Run status group" summaries.
std::string report_normal(const std::vector<ReportEntry>& entries,
                          const std::vector<const JobResult*>& results, std::time_t when);

// fio-shaped JSON: {"fio version", "jobs": [{"jobname", "read": {"iops", "bw",
// "clat_ns": {"percentile": {...}}}, ...}]}. `plus` adds the latency
// buckets ("bins") as fio's json+ does.
std::string report_json(const std::vector<ReportEntry>& entries, bool plus, std::time_t when);

// `s` as a JSON string literal, quotes included.
std::string json_string(std::string_view s);

// The version string of the reports.
constexpr const char* kBenchVersion = "coblk-bench-0.1";

} // namespace coblk::bench
