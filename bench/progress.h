// The live progress line on standard error while jobs run:
//   Jobs: 2 (f=2): [rr] [42.0% done] [r=123k,w=0 IOPS] [eta 00m:07s]
// redrawn in place about once a second, and erased at the end. The main
// thread draws it from what the job threads publish every 100 ms.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/job_runner.h"

namespace coblk::bench {

// One running clone as the progress line sees it.
struct ProgressSource {
    const PreparedJob* job;
    const JobProgress* progress;
};

// What a progress line shows, for formatting.
struct ProgressSnapshot {
    unsigned running = 0;
    std::string states;       // one fio letter per clone
    double percent = 0;       // of the whole wave
    double read_iops = 0, write_iops = 0;
    uint64_t eta_s = 0;
};

// "Jobs: 2 (f=2): [rr] [42.0% done] [r=123k,w=0 IOPS] [eta 00m:07s]"
std::string progress_text(const ProgressSnapshot& s);

class ProgressLine {
public:
    // Draws nothing unless `enabled` (standard error is a terminal, or
    // --eta=always).
    ProgressLine(bool enabled, std::vector<ProgressSource> sources);
    // Redraws the line from the sources' state at `now_ns`. Main thread.
    void draw(uint64_t now_ns);
    // Erases the line (when one was drawn).
    void clear();

private:
    ProgressSnapshot snapshot(uint64_t now_ns);

    bool enabled_;
    bool drawn_ = false;
    std::vector<ProgressSource> sources_;
    uint64_t last_ns_ = 0;
    uint64_t last_ios_[2] = {0, 0};
};

} // namespace coblk::bench
