#include "bench/report_units.h"

#include <ctime>

#include <fmt/format.h>

namespace coblk::bench {

std::string format_scaled(double v, bool binary, bool integral)
{
    static const char* const kDecimal[] = {"", "k", "M", "G", "T", "P", "E"};
    static const char* const kBinary[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    if (v <= 0)
        return "0";
    const double base = binary ? 1024.0 : 1000.0;
    int i = 0;
    while (v >= 9999.5 && i < 6) {
        v /= base;
        i++;
    }
    const char* prefix = binary ? kBinary[i] : kDecimal[i];
    if (integral && i == 0)
        return fmt::format("{:.0f}{}", v, prefix);
    int decimals = v >= 99.95 ? 0 : v >= 9.995 ? 1 : 2;
    return fmt::format("{:.{}f}{}", v, decimals, prefix);
}

std::string format_bytes_binary(uint64_t bytes)
{
    return bytes ? format_scaled(double(bytes), true, true) + "B" : "0B";
}

std::string format_bytes_decimal(uint64_t bytes)
{
    return bytes ? format_scaled(double(bytes), false, true) + "B" : "0B";
}

std::string format_rate_binary(double bytes_per_s)
{
    return format_scaled(bytes_per_s, true, false) + "B/s";
}

std::string format_rate_decimal(double bytes_per_s)
{
    return format_scaled(bytes_per_s, false, false) + "B/s";
}

uint64_t latency_unit(uint64_t min_ns, uint64_t max_ns, const char** name)
{
    if (min_ns > 2000000 && max_ns > 99999999) {
        *name = "msec";
        return 1000000;
    }
    if (min_ns > 2000 && max_ns > 99999) {
        *name = "usec";
        return 1000;
    }
    *name = "nsec";
    return 1;
}

std::string ctime_string(std::time_t when)
{
    char buf[64];
    std::tm tm{};
    localtime_r(&when, &tm);
    std::strftime(buf, sizeof buf, "%a %b %e %H:%M:%S %Y", &tm);
    return buf;
}

} // namespace coblk::bench
