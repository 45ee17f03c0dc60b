// The -p progress meter of convert and compare: "    (42.00/100%)" on
// stderr, redrawn in place at most every 100 ms, ending with 100% and a
// newline. It prints nothing when disabled.
#pragma once

#include <chrono>
#include <cstdint>

namespace coblk::img {

class Progress {
public:
    // `total` bytes of work; nothing is printed unless `enabled`.
    Progress(bool enabled, uint64_t total);
    // Counts `bytes` more as done and redraws if the last draw is old enough.
    void add(uint64_t bytes);
    // Draws 100% and ends the line (only if the meter was started).
    void finish();
    // Ends the line where the meter stands, for an error to follow.
    void stop();

private:
    void draw(double percent);

    bool enabled_;
    uint64_t total_;
    uint64_t done_ = 0;
    std::chrono::steady_clock::time_point last_draw_{};
};

} // namespace coblk::img
