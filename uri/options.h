// Helpers for key=value options (from a URI's query or from -o): lookup and
// the check that every key is one the consumer knows.
#pragma once

#include <initializer_list>
#include <span>
#include <optional>
#include <string>
#include <string_view>

#include "uri/uri.h"

namespace coblk::uri {

// The last value given for `key`, if any.
std::optional<std::string> find_option(const Options& opts, std::string_view key);

// Fails (EINVAL) naming the first key of `opts` not in `known`, and listing
// the known ones; `owner` names who reads them ("file", "null", ...).
Result<void> check_known_options(const Options& opts, std::span<const std::string_view> known,
                                 std::string_view owner);
inline Result<void> check_known_options(const Options& opts,
                                        std::initializer_list<std::string_view> known,
                                        std::string_view owner)
{
    return check_known_options(opts, std::span(known.begin(), known.size()), owner);
}

// Parses "key=value,key=value" (qemu-img's -o). Fails naming the bad item.
Result<Options> parse_option_list(std::string_view text);

} // namespace coblk::uri
