#include "bench/progress.h"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "bench/clock.h"
#include "bench/report_units.h"

namespace coblk::bench {

std::string progress_text(const ProgressSnapshot& s)
{
    uint64_t eta = std::min<uint64_t>(s.eta_s, 99 * 3600 + 59 * 60 + 59);
    std::string eta_text = eta >= 3600 ? fmt::format("{:02}h:{:02}m:{:02}s", eta / 3600,
                                                     eta / 60 % 60, eta % 60)
                                       : fmt::format("{:02}m:{:02}s", eta / 60, eta % 60);
    return fmt::format("Jobs: {} (f={}): [{}] [{:.1f}% done] [r={},w={} IOPS] [eta {}]",
                       s.running, s.running, s.states, s.percent,
                       format_scaled(double(uint64_t(s.read_iops + 0.5)), false, true),
                       format_scaled(double(uint64_t(s.write_iops + 0.5)), false, true),
                       eta_text);
}

ProgressLine::ProgressLine(bool enabled, std::vector<ProgressSource> sources)
    : enabled_(enabled), sources_(std::move(sources)), last_ns_(now_ns())
{
}

ProgressSnapshot ProgressLine::snapshot(uint64_t now)
{
    ProgressSnapshot s;
    double pct_sum = 0;
    double eta_max = 0;
    uint64_t ios[2] = {0, 0};
    for (const ProgressSource& src : sources_) {
        const JobSpec& spec = src.job->spec;
        char state = src.progress->state.load(std::memory_order_relaxed);
        s.states += state;
        for (int d = 0; d < 2; d++)
            ios[d] += src.progress->ios[d].load(std::memory_order_relaxed);
        if (state == '_') {
            pct_sum += 100;
            continue;
        }
        s.running++;
        uint64_t start = src.progress->start_ns.load(std::memory_order_relaxed);
        if (start == 0 || now <= start)
            continue;
        double elapsed = double(now - start) / 1e9;
        // The larger of the time and the request fractions done.
        double frac = 0, eta = 0;
        if (spec.runtime_ns) {
            double total = double(spec.runtime_ns + spec.ramp_ns) / 1e9;
            frac = std::min(1.0, elapsed / total);
            eta = std::max(0.0, total - elapsed);
        }
        if (!spec.time_based) {
            uint64_t limit = src.job->nblocks;
            if (spec.number_ios)
                limit = std::min(limit, spec.number_ios);
            double done = double(src.progress->done_ios.load(std::memory_order_relaxed));
            double f = limit ? std::min(1.0, done / double(limit)) : 0;
            if (f > frac) {
                frac = f;
                eta = f > 0 ? elapsed * (1 - f) / f : 0;
            }
        }
        if (state == 'V')
            frac = std::min(frac, 0.99);
        pct_sum += frac * 100;
        eta_max = std::max(eta_max, eta);
    }
    s.percent = sources_.empty() ? 100 : pct_sum / double(sources_.size());
    s.eta_s = uint64_t(eta_max + 0.5);
    if (last_ns_ && now > last_ns_) {
        double dt = double(now - last_ns_) / 1e9;
        s.read_iops = double(ios[0] - std::min(ios[0], last_ios_[0])) / dt;
        s.write_iops = double(ios[1] - std::min(ios[1], last_ios_[1])) / dt;
    }
    last_ns_ = now;
    last_ios_[0] = ios[0];
    last_ios_[1] = ios[1];
    return s;
}

void ProgressLine::draw(uint64_t now)
{
    ProgressSnapshot s = snapshot(now);
    if (!enabled_)
        return;
    std::string line = "\r" + progress_text(s) + "\033[K";
    std::fputs(line.c_str(), stderr);
    std::fflush(stderr);
    drawn_ = true;
}

void ProgressLine::clear()
{
    if (!drawn_)
        return;
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    drawn_ = false;
}

} // namespace coblk::bench
