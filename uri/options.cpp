#include "uri/options.h"

namespace coblk::uri {

std::optional<std::string> find_option(const Options& opts, std::string_view key)
{
    std::optional<std::string> v;
    for (const auto& [k, val] : opts)
        if (k == key)
            v = val;
    return v;
}

Result<void> check_known_options(const Options& opts, std::span<const std::string_view> known,
                                 std::string_view owner)
{
    for (const auto& kv : opts) {
        bool ok = false;
        for (auto k : known)
            ok = ok || kv.first == k;
        if (ok)
            continue;
        std::string list;
        for (auto k : known)
            list += (list.empty() ? "" : ", ") + std::string(k);
        return make_error(EINVAL, "unknown {} option '{}' (known: {})", owner, kv.first,
                          list.empty() ? std::string("none") : list);
    }
    return {};
}

Result<Options> parse_option_list(std::string_view text)
{
    Options out;
    while (!text.empty()) {
        size_t comma = text.find(',');
        std::string_view item = text.substr(0, comma);
        size_t eq = item.find('=');
        if (eq == std::string_view::npos || eq == 0)
            return make_error(EINVAL, "option '{}' is not of the form key=value", item);
        out.emplace_back(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
        if (comma == std::string_view::npos)
            break;
        text.remove_prefix(comma + 1);
    }
    return out;
}

} // namespace coblk::uri
