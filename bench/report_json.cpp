// fio-shaped JSON output. The member names and nesting follow fio's
// --output-format=json, so that tools written for fio (jq paths such as
// .jobs[].read.iops, .bw, .clat_ns.percentile["99.000000"]) read it.
#include <cmath>

#include <fmt/format.h>

#include "bench/report.h"
#include "bench/report_units.h"

namespace coblk::bench {

std::string json_string(std::string_view s)
{
    std::string out = "\"";
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20)
                out += fmt::format("\\u{:04x}", c);
            else
                out += ch;
        }
    }
    return out + "\"";
}

namespace {

// A minimal pretty-printing JSON writer: objects, and members whose values
// are numbers, strings or nested objects. fio's layout: two spaces per
// level, " : " between name and value.
class JsonWriter {
public:
    void open(std::string_view name = {}) { start(name, "{"); push(); }
    void open_array(std::string_view name) { start(name, "["); push(); }
    void close() { pop("}"); }
    void close_array() { pop("]"); }
    void num(std::string_view name, uint64_t v) { start(name, fmt::format("{}", v)); }
    void num(std::string_view name, int64_t v) { start(name, fmt::format("{}", v)); }
    void num(std::string_view name, int v) { num(name, int64_t(v)); }
    void num(std::string_view name, unsigned v) { num(name, uint64_t(v)); }
    void real(std::string_view name, double v)
    {
        start(name, std::isfinite(v) ? fmt::format("{:.6f}", v) : std::string("0"));
    }
    void str(std::string_view name, std::string_view v) { start(name, json_string(v)); }
    std::string take() { return std::move(out_) + "\n"; }

private:
    void start(std::string_view name, std::string_view value)
    {
        if (!first_.empty()) {
            if (!first_.back())
                out_ += ",";
            first_.back() = false;
            out_ += "\n" + std::string(2 * first_.size(), ' ');
        }
        if (!name.empty())
            out_ += json_string(name) + " : ";
        out_ += value;
    }
    void push() { first_.push_back(true); }
    void pop(std::string_view closer)
    {
        bool empty = first_.back();
        first_.pop_back();
        if (!empty)
            out_ += "\n" + std::string(2 * first_.size(), ' ');
        out_ += closer;
    }

    std::string out_;
    std::vector<bool> first_;  // per open level: no member written yet
};

void latency_object(JsonWriter& w, std::string_view name, const LatencyHistogram& h,
                    const std::vector<double>* percentiles, bool bins)
{
    w.open(name);
    w.num("min", h.min());
    w.num("max", h.max());
    w.real("mean", h.mean());
    w.real("stddev", h.stddev());
    w.num("N", h.count());
    if (percentiles && h.count() > 0) {
        std::vector<uint64_t> v = h.percentiles(*percentiles);
        w.open("percentile");
        for (size_t i = 0; i < v.size(); i++)
            w.num(fmt::format("{:.6f}", (*percentiles)[i]), v[i]);
        w.close();
    }
    if (bins && h.count() > 0) {
        w.open("bins");
        for (unsigned i = 0; i < LatencyHistogram::kBuckets; i++)
            if (h.bucket_count(i))
                w.num(fmt::format("{}", LatencyHistogram::bucket_value(i)), h.bucket_count(i));
        w.close();
    }
    w.close();
}

struct SampleStats {
    double min = 0, max = 0, mean = 0, stddev = 0;
    size_t n = 0;
};

SampleStats sample_stats(const std::vector<double>& v)
{
    SampleStats s;
    s.n = v.size();
    if (v.empty())
        return s;
    s.min = s.max = v[0];
    double sum = 0;
    for (double x : v) {
        s.min = std::min(s.min, x);
        s.max = std::max(s.max, x);
        sum += x;
    }
    s.mean = sum / double(v.size());
    if (v.size() > 1) {
        double q = 0;
        for (double x : v)
            q += (x - s.mean) * (x - s.mean);
        s.stddev = std::sqrt(q / double(v.size() - 1));
    }
    return s;
}

void direction_object(JsonWriter& w, std::string_view name, const ReportEntry& e, int d,
                      bool plus)
{
    static const LatencyHistogram kEmpty;
    const LatencyHistogram& h = d < 0 ? kEmpty : e.dir[d].lat;
    uint64_t bytes = d < 0 ? 0 : e.bytes[d];
    uint64_t rt = d < 0 ? 0 : e.dir[d].runtime_ns;
    double secs = double(rt) / 1e9;
    double bw_bytes = secs > 0 ? double(bytes) / secs : 0;
    w.open(name);
    w.num("io_bytes", bytes);
    w.num("io_kbytes", bytes / 1024);
    w.num("bw_bytes", uint64_t(bw_bytes));
    w.num("bw", uint64_t(bw_bytes / 1024));
    w.real("iops", secs > 0 ? double(h.count()) / secs : 0);
    w.num("runtime", (rt + 500000) / 1000000);
    w.num("total_ios", h.count());
    w.num("short_ios", 0);
    w.num("drop_ios", 0);
    latency_object(w, "slat_ns", kEmpty, nullptr, false);  // no separate submission step
    latency_object(w, "clat_ns", h, &e.job->spec.percentiles, plus);
    latency_object(w, "lat_ns", h, nullptr, false);
    // Bandwidth and IOPS samples: one per whole 100 ms slot.
    SampleStats s = sample_stats(d < 0 ? std::vector<double>{} : e.iops_samples[d]);
    double kib = double(e.job->spec.bs) / 1024.0;
    w.num("bw_min", uint64_t(s.min * kib));
    w.num("bw_max", uint64_t(s.max * kib));
    w.real("bw_agg", s.n ? 100.0 : 0.0);
    w.real("bw_mean", s.mean * kib);
    w.real("bw_dev", s.stddev * kib);
    w.num("bw_samples", uint64_t(s.n));
    w.num("iops_min", uint64_t(s.min));
    w.num("iops_max", uint64_t(s.max));
    w.real("iops_mean", s.mean);
    w.real("iops_stddev", s.stddev);
    w.num("iops_samples", uint64_t(s.n));
    w.close();
}

} // namespace

std::string report_json(const std::vector<ReportEntry>& entries, bool plus, std::time_t when)
{
    JsonWriter w;
    w.open();
    w.str("fio version", kBenchVersion);
    w.num("timestamp", uint64_t(when));
    w.num("timestamp_ms", uint64_t(when) * 1000);
    w.str("time", ctime_string(when));
    w.open_array("jobs");
    for (const ReportEntry& e : entries) {
        const JobSpec& s = e.job->spec;
        w.open();
        w.str("jobname", e.name);
        w.num("groupid", e.group);
        w.num("error", e.error);
        w.num("eta", 0);
        w.num("elapsed", (e.job_runtime_ns + 500000000) / 1000000000);
        w.open("job options");
        for (size_t i = 0; i < s.given.size(); i++) {
            const GivenOption& o = s.given[i];
            bool overridden = false;  // a later setting of the same key wins
            for (size_t j = i + 1; j < s.given.size(); j++)
                overridden |= s.given[j].key == o.key;
            if (!overridden)
                w.str(o.key, o.value.empty() ? "1" : o.value);
        }
        w.close();
        direction_object(w, "read", e, kRead, plus);
        direction_object(w, "write", e, kWrite, plus);
        direction_object(w, "trim", e, -1, plus);
        w.open("sync");
        w.num("total_ios", e.sync.count());
        latency_object(w, "lat_ns", e.sync, nullptr, false);
        w.close();
        w.num("job_runtime", (e.job_runtime_ns + 500000) / 1000000);
        double wall = double(e.job_runtime_ns) / 1e9 * e.jobs;
        w.real("usr_cpu", wall > 0 ? e.usr_s / wall * 100 : 0);
        w.real("sys_cpu", wall > 0 ? e.sys_s / wall * 100 : 0);
        w.num("ctx", e.ctx);
        w.num("majf", e.majf);
        w.num("minf", e.minf);
        w.close();
    }
    w.close_array();
    w.close();
    return w.take();
}

} // namespace coblk::bench
