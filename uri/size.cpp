// Sizes ("64K", "1.5M", "4KiB") and booleans ("on", "no") given as text.
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "uri/uri.h"

namespace coblk::uri {
namespace {

using std::string_view;

constexpr uint64_t kMaxSize = std::numeric_limits<int64_t>::max();
constexpr string_view kSizeForm = "a byte count such as 4096, 64K, 1.5M or 1GiB";

bool is_digit(char c) { return c >= '0' && c <= '9'; }

char to_lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

std::string lowered(string_view s)
{
    std::string out(s);
    for (char& c : out)
        c = to_lower(c);
    return out;
}

Error size_error(string_view what, string_view text, string_view why)
{
    return make_error(EINVAL, "invalid {} '{}': {}; expected {}", what, text, why, kSizeForm);
}

// The binary shift of unit `unit`: "" or "B" is 0, "K", "KB" or "KiB" is 10,
// and so on up to "E" (60), case-insensitive; nullopt for anything else.
std::optional<unsigned> unit_shift(string_view unit)
{
    std::string u = lowered(unit);
    if (u.empty() || u == "b")
        return 0u;
    size_t index = string_view("kmgtpe").find(u[0]);
    string_view tail = string_view(u).substr(1);
    if (index == string_view::npos || !(tail.empty() || tail == "b" || tail == "ib"))
        return std::nullopt;
    return unsigned(10 * (index + 1));
}

// The value of the decimal digits `digits`; nullopt when it overflows 64 bits.
std::optional<uint64_t> parse_digits(string_view digits)
{
    uint64_t value = 0;
    for (char c : digits) {
        unsigned d = unsigned(c - '0');
        if (value > (std::numeric_limits<uint64_t>::max() - d) / 10)
            return std::nullopt;
        value = value * 10 + d;
    }
    return value;
}

// The number 0.`digits` times 2^shift, or nullopt when that is not whole.
// Doubles the decimal fraction `shift` times, collecting the carries.
std::optional<uint64_t> scaled_fraction(string_view digits, unsigned shift)
{
    std::vector<unsigned> frac;
    for (char c : digits)
        frac.push_back(unsigned(c - '0'));
    uint64_t whole = 0;
    for (unsigned s = 0; s < shift; ++s) {
        unsigned carry = 0;
        for (size_t k = frac.size(); k-- > 0;) {
            unsigned v = frac[k] * 2 + carry;
            frac[k] = v % 10;
            carry = v / 10;
        }
        whole = whole * 2 + carry;
    }
    for (unsigned d : frac)
        if (d != 0)
            return std::nullopt;
    return whole;
}

size_t count_digits(string_view s)
{
    size_t n = 0;
    while (n < s.size() && is_digit(s[n]))
        ++n;
    return n;
}

} // namespace

Result<uint64_t> parse_size(std::string_view text, std::string_view what)
{
    if (text.empty())
        return size_error(what, text, "it is empty");
    if (text[0] == '-')
        return size_error(what, text, "a size cannot be negative");
    size_t int_len = count_digits(text);
    if (int_len == 0)
        return size_error(what, text, "it does not start with a digit");
    string_view int_part = text.substr(0, int_len);
    string_view frac_part;
    string_view rest = text.substr(int_len);
    if (rest.starts_with('.')) {
        frac_part = rest.substr(1, count_digits(rest.substr(1)));
        if (frac_part.empty())
            return size_error(what, text, "no digits after '.'");
        rest = rest.substr(1 + frac_part.size());
    }
    auto shift = unit_shift(rest);
    if (!shift)
        return size_error(what, text, fmt::format("unknown unit '{}' (use K, M, G, T, P or E, "
                                                  "optionally followed by B or iB)", rest));
    std::string too_large = fmt::format("it exceeds the maximum of {} bytes", kMaxSize);
    auto whole = parse_digits(int_part);
    if (!whole || *whole > (kMaxSize >> *shift))
        return size_error(what, text, too_large);
    uint64_t bytes = *whole << *shift;
    auto frac = scaled_fraction(frac_part, *shift);
    if (!frac)
        return size_error(what, text, "it is not a whole number of bytes");
    if (*frac > kMaxSize - bytes)
        return size_error(what, text, too_large);
    return bytes + *frac;
}

Result<bool> parse_bool(std::string_view text, std::string_view what)
{
    std::string t = lowered(text);
    if (t == "on" || t == "true" || t == "yes" || t == "1")
        return true;
    if (t == "off" || t == "false" || t == "no" || t == "0")
        return false;
    return make_error(EINVAL, "invalid {} '{}': not a boolean; expected on, off, true, "
                      "false, yes, no, 1 or 0", what, text);
}

} // namespace coblk::uri
