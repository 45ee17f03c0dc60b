#include "bench/plot_svg.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "bench/latency_histogram.h"
#include "bench/report_units.h"

namespace coblk::bench {
namespace {

constexpr double kWidth = 900;
constexpr double kChartHeight = 340;
constexpr double kLeft = 80, kRight = 30, kTop = 50, kBottom = 50;
const char* const kColor[2] = {"#1f77b4", "#e6550d"};
const char* const kDirLabel[2] = {"read", "write"};

std::string xml_text(std::string_view s)
{
    std::string out;
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
        }
    }
    return out;
}

// "250ns", "1us", "41.2us", "10ms", "2s" for a latency in nanoseconds:
// three significant digits at most.
std::string latency_label(double ns)
{
    const char* unit = "ns";
    double v = ns;
    if (ns >= 1e9) {
        v = ns / 1e9;
        unit = "s";
    } else if (ns >= 1e6) {
        v = ns / 1e6;
        unit = "ms";
    } else if (ns >= 1e3) {
        v = ns / 1e3;
        unit = "us";
    }
    return fmt::format("{:.3g}{}", v, unit);
}

// A "nice" tick step (1, 2 or 5 times a power of ten) for about 5 ticks.
double tick_step(double range)
{
    if (range <= 0)
        return 1;
    double raw = range / 5;
    double p = std::pow(10.0, std::floor(std::log10(raw)));
    double m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

struct Frame {
    double x0, y0, w, h;  // plot area in SVG units
};

void frame_and_title(std::string& svg, const Frame& f, std::string_view title,
                     std::string_view xlabel, std::string_view ylabel)
{
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
                       "fill=\"white\" stroke=\"#444\"/>\n", f.x0, f.y0, f.w, f.h);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" "
                       "font-size=\"15\" font-weight=\"bold\">{}</text>\n", f.x0 + f.w / 2,
                       f.y0 - 24, xml_text(title));
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" "
                       "font-size=\"12\">{}</text>\n", f.x0 + f.w / 2, f.y0 + f.h + 38,
                       xml_text(xlabel));
    svg += fmt::format("<text transform=\"translate({:.1f},{:.1f}) rotate(-90)\" "
                       "text-anchor=\"middle\" font-size=\"12\">{}</text>\n", f.x0 - 58,
                       f.y0 + f.h / 2, xml_text(ylabel));
}

// A boxed legend in the lower right corner of the plot area (where neither
// a CDF nor an IOPS line usually runs): a colour swatch and `text[d]` for
// each direction present, then the `footer` line if any.
void legend(std::string& svg, const Frame& f, const bool present[2], const std::string text[2],
            std::string_view footer = {})
{
    int lines = int(present[0]) + int(present[1]) + (footer.empty() ? 0 : 1);
    // About 6.8 units per character of 12-unit sans-serif text.
    size_t chars = footer.size();
    for (int d = 0; d < 2; d++)
        if (present[d])
            chars = std::max(chars, text[d].size());
    double bw = 54 + 6.8 * double(chars), bh = 10 + 18 * lines;
    double x = f.x0 + f.w - bw - 10, y = f.y0 + f.h - bh - 10;
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
                       "fill=\"white\" fill-opacity=\"0.9\" stroke=\"#bbb\"/>\n", x, y, bw, bh);
    double ty = y + 20;
    for (int d = 0; d < 2; d++) {
        if (!present[d])
            continue;
        svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
                           "stroke=\"{}\" stroke-width=\"2.5\"/>\n", x + 10, ty - 4, x + 34,
                           ty - 4, kColor[d]);
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"12\">{}</text>\n",
                           x + 42, ty, xml_text(text[d]));
        ty += 18;
    }
    if (!footer.empty())
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" "
                           "fill=\"#555\">{}</text>\n", x + 10, ty, xml_text(footer));
}

void latency_chart(std::string& svg, const Frame& f, const LatencyHistogram h[2])
{
    frame_and_title(svg, f, "Completion latency distribution (CDF)", "latency (log scale)",
                    "requests completed within (%)");
    bool present[2] = {h[0].count() > 0, h[1].count() > 0};
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int d = 0; d < 2; d++) {
        if (!present[d])
            continue;
        lo = std::min(lo, h[d].min());
        hi = std::max(hi, h[d].max());
    }
    if (hi == 0) {
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" "
                           "font-size=\"13\">no requests completed</text>\n",
                           f.x0 + f.w / 2, f.y0 + f.h / 2);
        return;
    }
    double dlo = std::floor(std::log10(double(std::max<uint64_t>(lo, 1))));
    double dhi = std::ceil(std::log10(double(hi) + 1));
    if (dhi <= dlo)
        dhi = dlo + 1;
    auto xpos = [&](double ns) {
        double l = std::log10(std::max(ns, 1.0));
        return f.x0 + (l - dlo) / (dhi - dlo) * f.w;
    };
    auto ypos = [&](double frac) { return f.y0 + f.h - frac * f.h; };
    // Grid: decades on x, 20% steps on y.
    for (double k = dlo; k <= dhi + 1e-9; k++) {
        double x = xpos(std::pow(10.0, k));
        svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" "
                           "stroke=\"#ddd\"/>\n", x, f.y0, f.y0 + f.h);
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" "
                           "font-size=\"11\">{}</text>\n", x, f.y0 + f.h + 16,
                           latency_label(std::pow(10.0, k)));
    }
    for (int p = 0; p <= 100; p += 20) {
        double y = ypos(p / 100.0);
        svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" "
                           "stroke=\"#ddd\"/>\n", f.x0, y, f.x0 + f.w);
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\" "
                           "font-size=\"11\">{}%</text>\n", f.x0 - 6, y + 4, p);
    }
    std::string text[2];
    for (int d = 0; d < 2; d++) {
        if (!present[d])
            continue;
        // A step curve through the upper edge of every non-empty bucket.
        std::string pts = fmt::format("{:.1f},{:.1f}", xpos(double(h[d].min())), ypos(0));
        uint64_t seen = 0;
        for (unsigned i = 0; i < LatencyHistogram::kBuckets; i++) {
            uint64_t n = h[d].bucket_count(i);
            if (!n)
                continue;
            seen += n;
            double edge = double(std::min(LatencyHistogram::bucket_high(i), h[d].max()));
            pts += fmt::format(" {:.1f},{:.1f}", xpos(edge),
                               ypos(double(seen) / double(h[d].count())));
        }
        svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" "
                           "stroke-width=\"2\"/>\n", pts, kColor[d]);
        // p50 and p99: dashed verticals with a short tag, values in the legend.
        const double marks[2] = {50, 99};
        text[d] = kDirLabel[d];
        for (double m : marks) {
            double v = double(h[d].percentile(m));
            double x = xpos(v);
            svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" "
                               "y2=\"{2:.1f}\" stroke=\"{3}\" stroke-dasharray=\"5,4\"/>\n",
                               x, f.y0, f.y0 + f.h, kColor[d]);
            svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" "
                               "text-anchor=\"middle\" fill=\"{}\">p{:g}</text>\n", x,
                               f.y0 - 3 - 9 * d, kColor[d], m);
            text[d] += fmt::format("   p{:g} = {}", m, latency_label(v));
        }
        text[d] += fmt::format("   ({} requests)", format_scaled(double(h[d].count()), false,
                                                                 true));
    }
    legend(svg, f, present, text, "dashed lines: p50 and p99");
}

void iops_chart(std::string& svg, const Frame& f, const std::vector<IopsPoint>& pts)
{
    frame_and_title(svg, f, "IOPS over time (100 ms samples, all jobs)", "time (s)", "IOPS");
    bool present[2] = {false, false};
    double tmax = 0, ymax = 0;
    for (const IopsPoint& p : pts) {
        tmax = std::max(tmax, p.t_s);
        for (int d = 0; d < 2; d++) {
            present[d] |= p.iops[d] > 0;
            ymax = std::max(ymax, p.iops[d]);
        }
    }
    if (pts.empty() || ymax <= 0) {
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" "
                           "font-size=\"13\">too short for a 100 ms sample</text>\n",
                           f.x0 + f.w / 2, f.y0 + f.h / 2);
        return;
    }
    double xstep = tick_step(tmax), ystep = tick_step(ymax);
    double xtop = std::ceil(tmax / xstep) * xstep, ytop = std::ceil(ymax * 1.05 / ystep) * ystep;
    auto xpos = [&](double t) { return f.x0 + t / xtop * f.w; };
    auto ypos = [&](double v) { return f.y0 + f.h - v / ytop * f.h; };
    for (double t = 0; t <= xtop + 1e-9; t += xstep) {
        svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" "
                           "stroke=\"#ddd\"/>\n", xpos(t), f.y0, f.y0 + f.h);
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" "
                           "font-size=\"11\">{:g}</text>\n", xpos(t), f.y0 + f.h + 16, t);
    }
    for (double v = 0; v <= ytop + 1e-9; v += ystep) {
        svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" "
                           "stroke=\"#ddd\"/>\n", f.x0, ypos(v), f.x0 + f.w);
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\" "
                           "font-size=\"11\">{}</text>\n", f.x0 - 6, ypos(v) + 4,
                           format_scaled(v, false, true));
    }
    std::string text[2];
    for (int d = 0; d < 2; d++) {
        if (!present[d])
            continue;
        double sum = 0;
        for (const IopsPoint& p : pts)
            sum += p.iops[d];
        text[d] = fmt::format("{}   mean {} IOPS", kDirLabel[d],
                              format_scaled(sum / double(pts.size()), false, true));
        std::string line;
        for (const IopsPoint& p : pts)
            line += fmt::format("{}{:.1f},{:.1f}", line.empty() ? "" : " ", xpos(p.t_s),
                                ypos(p.iops[d]));
        svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" "
                           "stroke-width=\"2\"/>\n", line, kColor[d]);
    }
    legend(svg, f, present, text);
}

} // namespace

std::vector<IopsPoint> iops_over_time(const std::vector<const JobResult*>& results)
{
    std::vector<IopsPoint> out;
    uint64_t w = 0, epoch = 0, first = UINT64_MAX;
    size_t nslots = 0;
    for (const JobResult* r : results) {
        if (r->end_ns <= r->start_ns)
            continue;
        w = std::max(w, r->slot_ns);
        epoch = r->epoch_ns;
        first = std::min(first, r->start_ns);
    }
    if (w == 0)
        return out;
    for (const JobResult* r : results)
        if (r->end_ns > r->start_ns)
            nslots = std::max<size_t>(nslots, (r->end_ns - epoch) / w + 1);
    for (size_t k = 0; k < nslots; k++) {
        uint64_t s = epoch + k * w, e = s + w;
        IopsPoint p{0, {0, 0}};
        bool any = false;
        for (const JobResult* r : results) {
            if (r->end_ns <= r->start_ns || r->slot_ns == 0)
                continue;
            uint64_t a = std::max(s, r->start_ns), b = std::min(e, r->end_ns);
            if (b <= a || (b - a) * 10 < w)
                continue;  // the job ran for too little of this slot to rate it
            // A coarser common slot holds several of this job's slots.
            uint64_t per = w / r->slot_ns;
            for (int d = 0; d < 2; d++) {
                uint64_t n = 0;
                for (uint64_t j = k * per; j < (k + 1) * per && j < r->slots[d].size(); j++)
                    n += r->slots[d][j];
                p.iops[d] += double(n) * 1e9 / double(b - a);
            }
            any = true;
        }
        if (!any)
            continue;
        p.t_s = (double(s + w / 2) - double(first)) / 1e9;
        if (p.t_s < 0)
            p.t_s = 0;
        out.push_back(p);
    }
    return out;
}

std::string plot_svg(const std::vector<const JobResult*>& results, const std::string& title)
{
    LatencyHistogram h[2];
    for (const JobResult* r : results)
        for (int d = 0; d < 2; d++)
            h[d].merge(r->dir[d].lat);
    double height = 2 * kChartHeight + 60;
    std::string svg = fmt::format(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
        "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\">\n"
        "<rect width=\"100%\" height=\"100%\" fill=\"#fafafa\"/>\n"
        "<text x=\"{2}\" y=\"26\" text-anchor=\"middle\" font-size=\"17\" "
        "font-weight=\"bold\">{3}</text>\n",
        kWidth, height, kWidth / 2, xml_text(title));
    Frame lat{kLeft, 60 + kTop, kWidth - kLeft - kRight, kChartHeight - kTop - kBottom};
    Frame io{kLeft, 60 + kChartHeight + kTop, kWidth - kLeft - kRight,
             kChartHeight - kTop - kBottom};
    latency_chart(svg, lat, h);
    iops_chart(svg, io, iops_over_time(results));
    svg += "</svg>\n";
    return svg;
}

} // namespace coblk::bench
