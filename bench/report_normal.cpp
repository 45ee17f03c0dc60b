// fio's normal (human) report: per job, IOPS and bandwidth per direction,
// completion latency with percentiles, CPU; then one summary per group.
#include <algorithm>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "bench/report.h"
#include "bench/report_units.h"

namespace coblk::bench {
namespace {

const char* const kDirName[2] = {"read", "write"};

// "    clat (usec): min=25, max=4126, avg=83.89, stdev=368.63"
std::string latency_line(const char* label, const LatencyHistogram& h)
{
    const char* unit;
    uint64_t div = latency_unit(h.min(), h.max(), &unit);
    return fmt::format("{} ({}): min={}, max={}, avg={:.2f}, stdev={:.2f}\n", label, unit,
                       h.min() / div, h.max() / div, h.mean() / double(div),
                       h.stddev() / double(div));
}

// The bracketed percentile table, four to a line.
std::string percentile_table(const LatencyHistogram& h, const std::vector<double>& ps)
{
    std::vector<uint64_t> values = h.percentiles(ps);
    uint64_t lo = *std::min_element(values.begin(), values.end());
    uint64_t hi = *std::max_element(values.begin(), values.end());
    const char* unit;
    uint64_t div = latency_unit(lo, hi, &unit);
    std::string out = fmt::format("    clat percentiles ({}):\n", unit);
    for (size_t i = 0; i < ps.size(); i++) {
        if (i % 4 == 0)
            out += "     |";
        out += fmt::format(" {:5.2f}th=[{:5}]", ps[i], values[i] / div);
        if (i + 1 < ps.size())
            out += ",";
        if (i % 4 == 3 || i + 1 == ps.size())
            out += "\n";
    }
    return out;
}

double rate(uint64_t amount, uint64_t ns) { return ns ? double(amount) * 1e9 / double(ns) : 0; }

std::string direction(const ReportEntry& e, int d)
{
    const LatencyHistogram& h = e.dir[d].lat;
    uint64_t rt = e.dir[d].runtime_ns;
    double bw = rate(e.bytes[d], rt);
    std::string out = fmt::format(
        "  {}: IOPS={}, BW={} ({})({}/{}msec)\n", kDirName[d],
        format_scaled(double(uint64_t(rate(h.count(), rt) + 0.5)), false, true),
        format_rate_binary(bw), format_rate_decimal(bw), format_bytes_binary(e.bytes[d]),
        (rt + 500000) / 1000000);
    if (h.count() == 0)
        return out;
    out += latency_line("    clat", h);
    out += latency_line("     lat", h);
    out += percentile_table(h, e.job->spec.percentiles);
    return out;
}

std::string entry_text(const ReportEntry& e, std::time_t when)
{
    const JobSpec& s = e.job->spec;
    std::string out = fmt::format("{}: (groupid={}, jobs={}): err={:2}: pid={}: {}\n", e.name,
                                  e.group, e.jobs, e.error, e.tid, ctime_string(when));
    for (int d = 0; d < 2; d++)
        if (e.dir[d].lat.count() > 0 || (d == kRead ? rw_reads(s.rw) : rw_writes(s.rw)))
            out += direction(e, d);
    if (e.sync.count() > 0) {
        out += "  fsync/fdatasync/sync_file_range:\n";
        out += latency_line("    sync", e.sync);
    }
    // CPU time relative to wall time, per clone as fio does (the merged
    // entry's threads ran side by side).
    double wall = double(e.job_runtime_ns) / 1e9 * e.jobs;
    double usr = wall > 0 ? e.usr_s / wall * 100 : 0, sys = wall > 0 ? e.sys_s / wall * 100 : 0;
    out += fmt::format("  cpu          : usr={:.2f}%, sys={:.2f}%, ctx={}, majf={}, minf={}\n",
                       usr, sys, e.ctx, e.majf, e.minf);
    out += fmt::format("     issued rwts: total={},{},0,{} short=0,0,0,0 dropped=0,0,0,0\n",
                       e.dir[kRead].lat.count(), e.dir[kWrite].lat.count(), e.sync.count());
    out += fmt::format("     latency   : target=0, window=0, percentile=100.00%, depth={}\n\n",
                       s.iodepth);
    return out;
}

// "   READ: bw=19.8MiB/s (20.7MB/s), 19.8MiB/s-19.8MiB/s (...), io=... (...), run=192-192msec"
std::string group_summary(unsigned group, const std::vector<const JobResult*>& results)
{
    std::string out = fmt::format("Run status group {} (all jobs):\n", group);
    for (int d = 0; d < 2; d++) {
        uint64_t bytes = 0, rt_max = 0, rt_min = UINT64_MAX;
        double bw_min = 0, bw_max = 0;
        bool any = false;
        for (const JobResult* r : results) {
            if (r->job->group != group || r->dir[d].lat.count() == 0)
                continue;
            uint64_t rt = r->dir[d].runtime_ns;
            double bw = rate(r->bytes(d), rt);
            bw_min = any ? std::min(bw_min, bw) : bw;
            bw_max = any ? std::max(bw_max, bw) : bw;
            any = true;
            bytes += r->bytes(d);
            rt_max = std::max(rt_max, rt);
            rt_min = std::min(rt_min, rt);
        }
        if (!any)
            continue;
        double agg = rate(bytes, rt_max);
        out += fmt::format("{:>7}: bw={} ({}), {}-{} ({}-{}), io={} ({}), run={}-{}msec\n",
                           d == kRead ? "READ" : "WRITE", format_rate_binary(agg),
                           format_rate_decimal(agg), format_rate_binary(bw_min),
                           format_rate_binary(bw_max), format_rate_decimal(bw_min),
                           format_rate_decimal(bw_max), format_bytes_binary(bytes),
                           format_bytes_decimal(bytes), (rt_min + 500000) / 1000000,
                           (rt_max + 500000) / 1000000);
    }
    return out;
}

} // namespace

std::string report_normal(const std::vector<ReportEntry>& entries,
                          const std::vector<const JobResult*>& results, std::time_t when)
{
    std::string out;
    for (const ReportEntry& e : entries)
        out += entry_text(e, when);
    std::vector<unsigned> groups;
    for (const JobResult* r : results)
        if (std::find(groups.begin(), groups.end(), r->job->group) == groups.end())
            groups.push_back(r->job->group);
    for (unsigned g : groups)
        out += group_summary(g, results);
    return out;
}

} // namespace coblk::bench
