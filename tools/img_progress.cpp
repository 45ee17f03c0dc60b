#include "tools/img_progress.h"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

namespace coblk::img {

namespace {
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);
}

Progress::Progress(bool enabled, uint64_t total) : enabled_(enabled), total_(total)
{
    if (enabled_)
        draw(0);
}

void Progress::add(uint64_t bytes)
{
    done_ += bytes;
    if (!enabled_)
        return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_draw_ < kRedrawInterval)
        return;
    double percent = total_ ? 100.0 * double(std::min(done_, total_)) / double(total_) : 100.0;
    // 100% is for finish(): the work is not over until the target is flushed.
    draw(std::min(percent, 99.99));
}

void Progress::finish()
{
    if (!enabled_)
        return;
    draw(100);
    std::fputc('\n', stderr);
    std::fflush(stderr);
    enabled_ = false;
}

void Progress::stop()
{
    if (!enabled_)
        return;
    std::fputc('\n', stderr);
    std::fflush(stderr);
    enabled_ = false;
}

void Progress::draw(double percent)
{
    last_draw_ = std::chrono::steady_clock::now();
    fmt::print(stderr, "    ({:.2f}/100%)\r", percent);
    std::fflush(stderr);
}

} // namespace coblk::img
