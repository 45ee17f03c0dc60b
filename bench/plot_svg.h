// --plot FILE.svg: two charts in one hand-written SVG document. The first
// is the completion-latency distribution of every job together (a CDF from
// the histogram buckets, logarithmic latency axis, p50 and p99 marked), per
// direction; the second is IOPS over time, summed over the jobs from their
// 100 ms samples.
#pragma once

#include <string>
#include <vector>

#include "bench/job_runner.h"

namespace coblk::bench {

// One point of the IOPS-over-time chart.
struct IopsPoint {
    double t_s;       // middle of the slot, seconds after the first job started
    double iops[2];   // read, write
};

// The summed IOPS of `results` per sampling slot. Slots where no job ran for
// at least a tenth of the slot are left out. Any thread.
std::vector<IopsPoint> iops_over_time(const std::vector<const JobResult*>& results);

// The SVG document. `title` heads it. Any thread.
std::string plot_svg(const std::vector<const JobResult*>& results, const std::string& title);

} // namespace coblk::bench
