// coblk-bench: fio-style benchmark of any coblk device. Parses fio options
// and job files (job_options.h), checks every job against its target before
// any I/O (target_check.h), runs each job clone on its own thread and loop
// (job_runner.h) in waves separated by stonewall, shows a progress line on a
// terminal, and prints fio's normal or JSON report, optionally with an SVG
// plot. Exit status 0 when every job succeeded, 1 otherwise.
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/clock.h"
#include "bench/job_options.h"
#include "bench/job_runner.h"
#include "bench/plot_svg.h"
#include "bench/progress.h"
#include "bench/report.h"
#include "bench/target_check.h"
#include "engine/loop.h"

using namespace coblk;
using namespace coblk::bench;

namespace {

void on_interrupt(int) { stop_all_jobs(); }

// Runs the clones of `wave` side by side, each on its own thread, drawing
// the progress line while they run; appends their results to `results`.
void run_wave(const std::vector<const PreparedJob*>& wave, uint64_t epoch, bool show_progress,
              std::vector<std::unique_ptr<JobResult>>& results)
{
    std::vector<std::unique_ptr<JobProgress>> progress;
    std::vector<ProgressSource> sources;
    std::vector<JobResult*> mine;
    for (const PreparedJob* job : wave)
        for (unsigned c = 0; c < job->spec.numjobs; c++) {
            progress.push_back(std::make_unique<JobProgress>());
            results.push_back(std::make_unique<JobResult>());
            results.back()->job = job;
            mine.push_back(results.back().get());
            sources.push_back({job, progress.back().get()});
        }

    std::mutex mu;
    std::condition_variable cv;
    size_t remaining = mine.size();
    std::vector<std::thread> threads;
    size_t k = 0;
    for (const PreparedJob* job : wave)
        for (unsigned c = 0; c < job->spec.numjobs; c++, k++)
            threads.emplace_back([&, job, c, k] {
                run_job(*job, c, epoch, *progress[k], *mine[k]);
                std::lock_guard g(mu);
                remaining--;
                cv.notify_all();
            });

    ProgressLine line(show_progress, sources);
    uint64_t next_draw = now_ns() + 1'000'000'000;
    {
        std::unique_lock lk(mu);
        while (remaining > 0) {
            cv.wait_for(lk, std::chrono::milliseconds(250));
            uint64_t now = now_ns();
            if (remaining > 0 && now >= next_draw) {
                lk.unlock();
                line.draw(now);
                lk.lock();
                next_draw = now + 1'000'000'000;
            }
        }
    }
    line.clear();
    for (auto& t : threads)
        t.join();
}

std::string plot_title(const std::vector<PreparedJob>& jobs)
{
    const JobSpec& s = jobs[0].spec;
    unsigned clones = 0;
    for (const PreparedJob& j : jobs)
        clones += j.spec.numjobs;
    std::string t = fmt::format("coblk-bench {}: {} bs={} iodepth={} on {}", s.name,
                                rw_name(s.rw), s.bs, s.iodepth, s.filename);
    if (clones > 1)
        t += fmt::format(" ({} jobs)", clones);
    return t;
}

int run(const RunConfig& cfg)
{
    auto loop = Loop::create();
    if (!loop) {
        std::fprintf(stderr, "coblk-bench: %s\n", loop.error().message.c_str());
        return 1;
    }
    std::vector<std::string> notes;
    auto prepared = sync_wait(**loop, prepare_jobs(**loop, cfg, notes));
    for (const auto& n : notes)
        std::fprintf(stderr, "%s\n", n.c_str());
    if (!prepared) {
        std::fprintf(stderr, "coblk-bench: %s\n", prepared.error().message.c_str());
        return 1;
    }
    const std::vector<PreparedJob>& jobs = *prepared;

    FILE* out = stdout;
    if (!cfg.output.empty()) {
        out = std::fopen(cfg.output.c_str(), "w");
        if (!out) {
            std::fprintf(stderr, "coblk-bench: cannot write --output=%s: %s\n",
                         cfg.output.c_str(), std::strerror(errno));
            return 1;
        }
    }
    if (cfg.format == OutputFormat::Normal) {
        std::fputs(report_header(jobs).c_str(), out);
        std::fflush(out);
    }

    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C ends the process at once
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    bool show_progress = cfg.eta == Eta::Always || (cfg.eta == Eta::Auto && isatty(2));
    uint64_t epoch = now_ns();
    std::vector<std::unique_ptr<JobResult>> results;
    // Waves: a stonewall job waits for every job before it.
    for (size_t i = 0; i < jobs.size() && !stop_requested();) {
        std::vector<const PreparedJob*> wave{&jobs[i++]};
        while (i < jobs.size() && !jobs[i].spec.stonewall)
            wave.push_back(&jobs[i++]);
        run_wave(wave, epoch, show_progress, results);
    }
    std::time_t when = std::time(nullptr);

    int status = 0;
    std::vector<const JobResult*> all;
    for (const auto& r : results) {
        all.push_back(r.get());
        if (r->error) {
            std::fprintf(stderr, "coblk-bench: %s\n", r->error_msg.c_str());
            status = 1;
        }
    }
    std::vector<ReportEntry> entries = make_report_entries(all);
    std::string report = cfg.format == OutputFormat::Normal
                             ? "\n" + report_normal(entries, all, when)
                             : report_json(entries, cfg.format == OutputFormat::JsonPlus, when);
    std::fputs(report.c_str(), out);
    if (out != stdout && std::fclose(out) != 0) {
        std::fprintf(stderr, "coblk-bench: cannot write --output=%s: %s\n", cfg.output.c_str(),
                     std::strerror(errno));
        status = 1;
    }
    if (!cfg.plot.empty()) {
        std::string svg = plot_svg(all, plot_title(jobs));
        FILE* f = std::fopen(cfg.plot.c_str(), "w");
        if (!f || std::fputs(svg.c_str(), f) < 0 || std::fclose(f) != 0) {
            std::fprintf(stderr, "coblk-bench: cannot write --plot=%s: %s\n", cfg.plot.c_str(),
                         std::strerror(errno));
            status = 1;
        }
    }
    return status;
}

} // namespace

int main(int argc, char** argv)
{
    std::vector<std::string> args(argv + 1, argv + argc);
    auto cfg = parse_command_line(args);
    if (!cfg) {
        std::fprintf(stderr, "coblk-bench: %s\n", cfg.error().message.c_str());
        return 1;
    }
    if (cfg->help) {
        std::fputs(usage().c_str(), stdout);
        return 0;
    }
    if (cfg->version) {
        std::printf("%s\n", kBenchVersion);
        return 0;
    }
    for (const auto& n : cfg->notes)
        std::fprintf(stderr, "%s\n", n.c_str());
    if (cfg->parse_only)
        return 0;
    return run(*cfg);
}
