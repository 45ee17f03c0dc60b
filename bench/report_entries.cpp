// Turning clone results into report entries (merging for group_reporting)
// and the lines printed before a run.
#include <algorithm>

#include <fmt/format.h>

#include "bench/report.h"

namespace coblk::bench {

std::vector<double> slot_iops(const JobResult& r, int d)
{
    std::vector<double> out;
    const uint64_t w = r.slot_ns;
    if (w == 0 || r.end_ns <= r.start_ns)
        return out;
    const uint64_t from = r.start_ns + r.job->spec.ramp_ns;
    const auto& v = r.slots[d];
    for (size_t k = 0; k < v.size(); k++) {
        uint64_t s = r.epoch_ns + k * w, e = s + w;
        if (s >= from && e <= r.end_ns)
            out.push_back(double(v[k]) * 1e9 / double(w));
    }
    return out;
}

namespace {

void merge_into(ReportEntry& e, const JobResult& r)
{
    for (int d = 0; d < 2; d++) {
        e.dir[d].lat.merge(r.dir[d].lat);
        e.dir[d].runtime_ns = std::max(e.dir[d].runtime_ns, r.dir[d].runtime_ns);
        e.bytes[d] += r.bytes(d);
        auto samples = slot_iops(r, d);
        auto& into = e.iops_samples[d];
        // Clones run side by side: add their rates slot by slot.
        if (into.size() < samples.size())
            into.resize(samples.size(), 0.0);
        for (size_t i = 0; i < samples.size(); i++)
            into[i] += samples[i];
    }
    e.sync.merge(r.sync);
    e.usr_s += r.usr_s;
    e.sys_s += r.sys_s;
    e.ctx += r.ctx;
    e.majf += r.majf;
    e.minf += r.minf;
    if (r.end_ns > r.start_ns)
        e.job_runtime_ns = std::max(e.job_runtime_ns, r.end_ns - r.start_ns);
    if (e.error == 0)
        e.error = r.error;
}

} // namespace

std::vector<ReportEntry> make_report_entries(const std::vector<const JobResult*>& results)
{
    std::vector<ReportEntry> entries;
    int merging_group = -1;  // the group whose merged entry is entries.back()
    for (const JobResult* r : results) {
        const PreparedJob& job = *r->job;
        if (job.spec.group_reporting && merging_group == int(job.group)) {
            entries.back().jobs++;
            merge_into(entries.back(), *r);
            continue;
        }
        ReportEntry e;
        e.name = job.spec.name;
        e.group = job.group;
        e.tid = r->tid;
        e.job = &job;
        merge_into(e, *r);
        entries.push_back(std::move(e));
        merging_group = job.spec.group_reporting ? int(job.group) : -1;
    }
    return entries;
}

std::string report_header(const std::vector<PreparedJob>& jobs)
{
    std::string out;
    unsigned threads = 0;
    for (const PreparedJob& j : jobs) {
        const JobSpec& s = j.spec;
        out += fmt::format("{}: (g={}): rw={}, bs=(R) {}B-{}B, (W) {}B-{}B, (T) {}B-{}B, "
                           "ioengine=coblk, iodepth={}\n", s.name, j.group, rw_name(s.rw), s.bs,
                           s.bs, s.bs, s.bs, s.bs, s.bs, s.iodepth);
        if (s.numjobs > 1)
            out += "...\n";
        threads += s.numjobs;
    }
    out += fmt::format("{}\nStarting {} thread{}\n", kBenchVersion, threads,
                       threads == 1 ? "" : "s");
    return out;
}

} // namespace coblk::bench
