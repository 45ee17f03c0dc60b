// Numbers as fio prints them in its normal output: at most four digits
// before a unit prefix ("5062", "256k", "19.8MiB/s", "3888KiB"), and the
// latency unit chosen from the range of the values.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

namespace coblk::bench {

// `v` scaled by 1000 (decimal) or 1024 (binary) until it has at most four
// integer digits, with the prefix appended ("k"/"M"... or "Ki"/"Mi"...).
// An unscaled `integral` value prints without decimals. Any thread.
std::string format_scaled(double v, bool binary, bool integral);

// "3888KiB", "1024KiB" (fio prints 1 MiB so).
std::string format_bytes_binary(uint64_t bytes);
// "3981kB".
std::string format_bytes_decimal(uint64_t bytes);
// "19.8MiB/s" and "20.7MB/s" from bytes per second.
std::string format_rate_binary(double bytes_per_s);
std::string format_rate_decimal(double bytes_per_s);

// The unit fio would print latencies in given their minimum and maximum
// in nanoseconds: returns the divisor (1, 1000 or 1000000) and sets
// `name` to "nsec", "usec" or "msec".
uint64_t latency_unit(uint64_t min_ns, uint64_t max_ns, const char** name);

// `when` as ctime(3) prints it, without the newline (fio's run headers).
std::string ctime_string(std::time_t when);

} // namespace coblk::bench
