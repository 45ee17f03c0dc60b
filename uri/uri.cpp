// Device name parsing: picks the protocol from the text's prefix, then a
// per-protocol parser splits the rest into a Spec. Parsers report a bare
// problem; in_context() adds the quoted input and the accepted form.
#include "uri/uri.h"

#include <array>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace coblk::uri {
namespace {

using std::string_view;
using Keys = std::span<const string_view>;
constexpr size_t npos = string_view::npos;

// How a kind of name is called in errors, and the syntax it accepts.
struct Form {
    string_view kind;
    string_view syntax;
};

constexpr Form kAnyForm{
    "device name",
    "a plain path or one of file:/path, host_device:/dev/name, null://, null-co://, "
    "memory://[name], gluster[+tcp|+unix|+rdma]://server[:port]/volname/image, "
    "rbd:pool[/namespace]/image[@snap][:key=value...]"};
constexpr Form kFileForm{
    "file URI",
    "file:/abs/path, file:///abs/path or file://localhost/abs/path"
    "[?key=value&...] (keys: cache, aio, locking)"};
constexpr Form kHostDeviceForm{
    "host_device URI",
    "host_device:/dev/name or host_device:///dev/name[?key=value&...] (keys: cache, aio)"};
constexpr Form kNullForm{
    "null URI",
    "null://[?key=value&...] or null-co://[?key=value&...] "
    "(keys: size, latency-ns, read-zeroes)"};
constexpr Form kMemoryForm{
    "memory URI", "memory://[name][?key=value&...] (keys: size, name)"};
constexpr Form kGlusterForm{
    "gluster URI",
    "gluster[+tcp|+unix|+rdma]://server[:port]/volname/image[?transport=...|?socket=...]"};
constexpr Form kRbdForm{
    "rbd name", "rbd:pool[/namespace]/image[@snap][:key=value[:key=value...]]"};

constexpr std::array<string_view, 3> kFileKeys{"cache", "aio", "locking"};
constexpr std::array<string_view, 2> kHostDeviceKeys{"cache", "aio"};
constexpr std::array<string_view, 3> kNullKeys{"size", "latency-ns", "read-zeroes"};
constexpr std::array<string_view, 2> kMemoryKeys{"size", "name"};
constexpr std::array<string_view, 9> kGlusterKeys{
    "transport", "socket", "log-level", "log-file", "ping-timeout", "connect-timeout", "debug",
    "gather-us", "client-io-threads"};
// The rbd keys coblk itself reads; every other key goes to librados
// (rados_conf_set), which names the ones it does not know at open.
constexpr std::array<string_view, 8> kRbdKeys{
    "conf", "id", "user", "name", "keyring", "key", "mon_host", "auth_supported"};

// A problem found inside a name; in_context() adds the input and the form.
template <typename... Args>
Error problem(fmt::format_string<Args...> f, Args&&... args)
{
    return make_error(EINVAL, f, std::forward<Args>(args)...);
}

// Passes `r` through, or rewrites its bare problem into a message that quotes
// `text` and shows the syntax of `form`.
Result<Spec> in_context(Result<Spec> r, string_view text, const Form& form)
{
    if (r)
        return r;
    return make_error(EINVAL, "invalid {} '{}': {}; expected {}", form.kind, text,
                      r.error().message, form.syntax);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_alnum(char c) { return is_digit(c) || is_lower(c) || (c >= 'A' && c <= 'Z'); }

bool contains(Keys keys, string_view key)
{
    for (string_view k : keys)
        if (k == key)
            return true;
    return false;
}

// The value of hex digit `c`, or -1.
int hex_value(char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// Decodes %XX escapes. Fails on a '%' without two hex digits after it and on
// an escape that decodes to a NUL byte.
Result<std::string> percent_decode(string_view s)
{
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        string_view esc = s.substr(i, 3);
        int hi = esc.size() == 3 ? hex_value(esc[1]) : -1;
        int lo = esc.size() == 3 ? hex_value(esc[2]) : -1;
        if (hi < 0 || lo < 0)
            return problem("bad percent escape '{}' (want '%' and two hex digits)", esc);
        if (hi == 0 && lo == 0)
            return problem("percent escape '%00' decodes to a NUL byte");
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return out;
}

// Splits `s` at every `sep`; an empty `s` gives one empty piece.
std::vector<string_view> split(string_view s, char sep)
{
    std::vector<string_view> out;
    for (;;) {
        size_t p = s.find(sep);
        out.push_back(s.substr(0, p));
        if (p == npos)
            return out;
        s.remove_prefix(p + 1);
    }
}

// Splits "locator?query" at the first '?'; no query without a '?'.
std::pair<string_view, std::optional<string_view>> split_query(string_view s)
{
    size_t q = s.find('?');
    if (q == npos)
        return {s, std::nullopt};
    return {s.substr(0, q), s.substr(q + 1)};
}

// Parses one "key=value" query item against `known`, percent-decoding the
// value. Fails on an empty item or key, a missing '=', an unknown key or a
// bad escape.
Result<std::pair<std::string, std::string>> parse_query_item(string_view item, Keys known)
{
    if (item.empty())
        return problem("empty option between '&'s or at an end of the query");
    size_t eq = item.find('=');
    if (eq == npos)
        return problem("option '{}' has no '=value'", item);
    string_view key = item.substr(0, eq);
    if (key.empty())
        return problem("empty option name in '{}'", item);
    if (!contains(known, key))
        return problem("unknown option '{}' (known options: {})", key, fmt::join(known, ", "));
    auto value = percent_decode(item.substr(eq + 1));
    if (!value)
        return value.error();
    return std::pair{std::string(key), std::move(*value)};
}

// Parses an optional "key=value&..." query. Fails on an empty query, a second
// '?' or a bad item.
Result<Options> parse_query(std::optional<string_view> query, Keys known)
{
    Options out;
    if (!query)
        return out;
    if (query->empty())
        return problem("nothing follows '?'");
    if (query->find('?') != npos)
        return problem("second '?' in query '{}'", *query);
    for (string_view item : split(*query, '&')) {
        auto kv = parse_query_item(item, known);
        if (!kv)
            return kv.error();
        out.push_back(std::move(*kv));
    }
    return out;
}

// Parses what follows "file:" or "host_device:": "[//[localhost]]/abs/path"
// and an optional query.
Result<Spec> local_body(string_view rest, Protocol protocol, Keys known)
{
    auto [locator, query] = split_query(rest);
    string_view path = locator;
    if (locator.starts_with("//")) {
        string_view after = locator.substr(2);
        size_t slash = after.find('/');
        string_view host = after.substr(0, slash);
        if (!host.empty() && host != "localhost")
            return problem("host '{}' is not supported (only an empty host or 'localhost'; "
                           "use a plain path for a relative path)", host);
        path = slash == npos ? string_view{} : after.substr(slash);
    }
    if (path.empty())
        return problem("empty path");
    if (path[0] != '/')
        return problem("path '{}' is not absolute", path);
    auto decoded = percent_decode(path);
    if (!decoded)
        return decoded.error();
    auto options = parse_query(query, known);
    if (!options)
        return options.error();
    Spec spec;
    spec.protocol = protocol;
    spec.path = std::move(*decoded);
    spec.options = std::move(*options);
    return spec;
}

// Parses what follows "null://" (or "null-co://"): nothing but a query.
Result<Spec> null_body(string_view rest)
{
    auto [locator, query] = split_query(rest);
    if (!locator.empty())
        return problem("null:// takes no host or path, got '{}'", locator);
    auto options = parse_query(query, kNullKeys);
    if (!options)
        return options.error();
    Spec spec;
    spec.protocol = Protocol::Null;
    spec.options = std::move(*options);
    return spec;
}

// Parses what follows "memory://": an optional name, stored as option
// "name", and a query.
Result<Spec> memory_body(string_view rest)
{
    auto [locator, query] = split_query(rest);
    auto name = percent_decode(locator);
    if (!name)
        return name.error();
    if (name->find('/') != npos)
        return problem("memory name '{}' contains '/'", *name);
    auto options = parse_query(query, kMemoryKeys);
    if (!options)
        return options.error();
    Spec spec;
    spec.protocol = Protocol::Memory;
    spec.options = std::move(*options);
    if (!name->empty()) {
        if (spec.option("name"))
            return problem("name given twice: '{}' before the query and ?name={}",
                           *name, *spec.option("name"));
        spec.options.insert(spec.options.begin(), {"name", std::move(*name)});
    }
    return spec;
}

// "tcp", "unix" or "rdma" for a ?transport= value ("socket" is QEMU's
// name for tcp); nullopt for anything else.
std::optional<string_view> query_transport(string_view value)
{
    if (value == "socket" || value == "tcp")
        return "tcp";
    // Literals, never `value`: the caller's string dies before the choice does.
    if (value == "unix")
        return "unix";
    if (value == "rdma")
        return "rdma";
    return std::nullopt;
}

// The transport chosen so far and what chose it, for contradiction errors.
struct TransportChoice {
    std::optional<string_view> name;
    std::string origin;
};

// Applies ?transport=`value` to `choice`. Fails on an unknown transport or
// one that contradicts an earlier choice.
Result<void> choose_transport(TransportChoice& choice, string_view value)
{
    auto t = query_transport(value);
    if (!t)
        return problem("unknown transport '{}' (known: socket, tcp, unix, rdma)", value);
    if (choice.name && *choice.name != *t)
        return problem("?transport={} contradicts transport '{}' given by {}", value,
                       *choice.name, choice.origin);
    choice.name = t;
    choice.origin = fmt::format("?transport={}", value);
    return {};
}

// Applies the gluster query: ?transport= updates `choice`, ?socket= goes to
// `spec.gluster`, the rest to `spec.options`.
Result<void> gluster_query(std::optional<string_view> query, TransportChoice& choice, Spec& spec)
{
    auto options = parse_query(query, kGlusterKeys);
    if (!options)
        return options.error();
    for (auto& [key, value] : *options) {
        if (key == "transport") {
            if (auto r = choose_transport(choice, value); !r)
                return r;
        } else if (key == "socket") {
            if (value.empty())
                return problem("?socket= has an empty path");
            spec.gluster.socket = value;
        } else {
            spec.options.emplace_back(key, value);
        }
    }
    return {};
}

// Parses a decimal port 0..65535.
Result<uint16_t> parse_port(string_view text)
{
    if (text.empty())
        return problem("empty port after ':'");
    unsigned value = 0;
    for (char c : text) {
        if (!is_digit(c))
            return problem("port '{}' is not a decimal number", text);
        if (value <= 65535)
            value = value * 10 + unsigned(c - '0');
    }
    if (value > 65535)
        return problem("port '{}' is out of range 0-65535", text);
    return static_cast<uint16_t>(value);
}

// Checks a host name: letters, digits, '-', '.', '_'.
Result<void> check_hostname(string_view host)
{
    for (char c : host)
        if (!is_alnum(c) && c != '-' && c != '.' && c != '_')
            return problem("hostname '{}' contains invalid character '{}'", host, c);
    return {};
}

// Checks the text between brackets: hex digits, ':' and '.', at least one
// ':', and an optional non-empty "%zone".
Result<void> check_ipv6(string_view host)
{
    size_t pct = host.find('%');
    string_view addr = host.substr(0, pct);
    if (addr.empty())
        return problem("empty IPv6 address in '[{}]'", host);
    for (char c : addr)
        if (hex_value(c) < 0 && c != ':' && c != '.')
            return problem("IPv6 address '{}' contains invalid character '{}'", host, c);
    if (addr.find(':') == npos)
        return problem("IPv6 address '{}' contains no ':'", host);
    if (pct == npos)
        return {};
    string_view zone = host.substr(pct + 1);
    if (zone.empty())
        return problem("empty zone after '%' in IPv6 address '{}'", host);
    for (char c : zone)
        if (!is_alnum(c) && c != '-' && c != '_' && c != '.')
            return problem("IPv6 zone '{}' contains invalid character '{}'", zone, c);
    return {};
}

struct Authority {
    std::string host;
    std::optional<uint16_t> port;
};

// Parses "[ipv6][:port]" (brackets stripped from the host).
Result<Authority> bracketed_authority(string_view text)
{
    size_t close = text.find(']');
    if (close == npos)
        return problem("IPv6 address '{}' has no closing ']'", text);
    Authority a{std::string(text.substr(1, close - 1)), std::nullopt};
    if (auto r = check_ipv6(a.host); !r)
        return r.error();
    string_view after = text.substr(close + 1);
    if (after.empty())
        return a;
    if (after[0] != ':')
        return problem("unexpected '{}' after IPv6 address '{}'", after, text.substr(0, close + 1));
    auto port = parse_port(after.substr(1));
    if (!port)
        return port.error();
    a.port = *port;
    return a;
}

// Parses "host[:port]" or "[ipv6][:port]"; the host may be empty.
Result<Authority> parse_authority(string_view text)
{
    if (text.starts_with('['))
        return bracketed_authority(text);
    size_t colon = text.find(':');
    Authority a{std::string(text.substr(0, colon)), std::nullopt};
    if (colon != npos && text.find(':', colon + 1) != npos)
        return problem("server '{}' has more than one ':' (put an IPv6 address in brackets)",
                       text);
    if (auto r = check_hostname(a.host); !r)
        return r.error();
    if (colon == npos)
        return a;
    auto port = parse_port(text.substr(colon + 1));
    if (!port)
        return port.error();
    a.port = *port;
    return a;
}

// Checks the server against the transport: unix takes neither host nor port
// and needs ?socket=; tcp and rdma need a host and take no ?socket=.
Result<void> check_server(const Authority& a, const GlusterSpec& g)
{
    if (g.transport == "unix") {
        if (!a.host.empty())
            return problem("the unix transport takes no server, got '{}'", a.host);
        if (a.port)
            return problem("the unix transport takes no port, got '{}'", *a.port);
        if (g.socket.empty())
            return problem("the unix transport needs ?socket=/path/to/socket");
        return {};
    }
    if (!g.socket.empty())
        return problem("?socket= is only valid with the unix transport, not with '{}'",
                       g.transport);
    if (a.host.empty())
        return problem("missing server for the {} transport", g.transport);
    return {};
}

// Splits "volname/path/to/image" into volume and image path ("/path/to/image").
Result<void> gluster_path(string_view path, GlusterSpec& g)
{
    size_t slash = path.find('/');
    string_view volume = path.substr(0, slash);
    if (volume.empty())
        return problem("empty volume name");
    if (slash == npos || slash + 1 == path.size())
        return problem("missing image path after volume '{}'", volume);
    auto vol = percent_decode(volume);
    if (!vol)
        return vol.error();
    auto image = percent_decode(path.substr(slash));
    if (!image)
        return image.error();
    g.volume = std::move(*vol);
    g.path = std::move(*image);
    return {};
}

// The transport named by "gluster[+transport]", with no value for plain
// "gluster". Fails on an unknown "+transport".
Result<TransportChoice> scheme_transport(string_view scheme)
{
    TransportChoice choice;
    if (scheme == "gluster")
        return choice;
    string_view t = scheme.substr(scheme.find('+') + 1);
    if (t != "tcp" && t != "unix" && t != "rdma")
        return problem("unknown transport '{}' in scheme '{}' (known: tcp, unix, rdma)", t,
                       scheme);
    choice.name = t;
    choice.origin = fmt::format("the scheme '{}'", scheme);
    return choice;
}

// Parses what follows "gluster[+transport]://": server, volume, image, query.
Result<Spec> gluster_body(string_view scheme, string_view rest)
{
    auto choice = scheme_transport(scheme);
    if (!choice)
        return choice.error();
    Spec spec;
    spec.protocol = Protocol::Gluster;
    auto [locator, query] = split_query(rest);
    if (auto r = gluster_query(query, *choice, spec); !r)
        return r.error();
    spec.gluster.transport = std::string(choice->name.value_or("tcp"));

    size_t slash = locator.find('/');
    if (slash == npos)
        return problem("missing '/volname/image' after the server '{}'", locator);
    auto authority = parse_authority(locator.substr(0, slash));
    if (!authority)
        return authority.error();
    if (auto r = check_server(*authority, spec.gluster); !r)
        return r.error();
    if (auto r = gluster_path(locator.substr(slash + 1), spec.gluster); !r)
        return r.error();
    spec.gluster.host = std::move(authority->host);
    spec.gluster.port = authority->port.value_or(0);
    return spec;
}

// Position of the first `delim` in `s` not escaped by a backslash, or npos.
size_t find_unescaped(string_view s, char delim)
{
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\')
            ++i;
        else if (s[i] == delim)
            return i;
    }
    return npos;
}

// Splits `s` at every `delim` not escaped by a backslash; escapes stay in.
std::vector<string_view> split_unescaped(string_view s, char delim)
{
    std::vector<string_view> out;
    for (;;) {
        size_t p = find_unescaped(s, delim);
        out.push_back(s.substr(0, p));
        if (p == npos)
            return out;
        s.remove_prefix(p + 1);
    }
}

// True when `s` ends in a backslash that escapes nothing.
bool has_dangling_backslash(string_view s)
{
    for (size_t i = 0; i < s.size(); ++i)
        if (s[i] == '\\' && ++i == s.size())
            return true;
    return false;
}

// Removes backslash escapes: "\x" becomes "x".
std::string rbd_unescape(string_view s)
{
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 1 < s.size())
            ++i;
        out += s[i];
    }
    return out;
}

// Parses "pool[/namespace]/image[@snap]" into `rbd`.
Result<void> rbd_name(string_view name, RbdSpec& rbd)
{
    auto at = split_unescaped(name, '@');
    if (at.size() > 2)
        return problem("more than one '@' in '{}'", name);
    auto parts = split_unescaped(at[0], '/');
    if (parts[0].empty())
        return problem("empty pool name");
    if (parts.size() == 1)
        return problem("missing '/image' after pool '{}'", rbd_unescape(parts[0]));
    if (parts.size() > 3)
        return problem("too many '/' in '{}' (at most pool/namespace/image)", at[0]);
    if (parts.size() == 3 && parts[1].empty())
        return problem("empty namespace name");
    if (parts.back().empty())
        return problem("empty image name");
    if (at.size() == 2 && at[1].empty())
        return problem("empty snapshot name after '@'");
    rbd.pool = rbd_unescape(parts[0]);
    rbd.ns = parts.size() == 3 ? rbd_unescape(parts[1]) : "";
    rbd.image = rbd_unescape(parts.back());
    rbd.snap = at.size() == 2 ? rbd_unescape(at[1]) : "";
    return {};
}

// True for a name librados could know: [a-z0-9_-] (Ceph spells its
// options in lower case; '-' stands for '_').
bool rbd_key_allowed(string_view key)
{
    for (char c : key)
        if (!is_lower(c) && !is_digit(c) && c != '_' && c != '-')
            return false;
    return true;
}

// Parses one "key=value" field of an rbd name and appends it to `options`.
Result<void> rbd_option(string_view field, Options& options)
{
    if (field.empty())
        return problem("empty option after ':'");
    size_t eq = find_unescaped(field, '=');
    if (eq == npos)
        return problem("option '{}' has no '=value'", rbd_unescape(field));
    std::string key = rbd_unescape(field.substr(0, eq));
    std::string value = rbd_unescape(field.substr(eq + 1));
    if (key.empty())
        return problem("empty option name in '{}'", field);
    if (!rbd_key_allowed(key))
        return problem("invalid rbd option name '{}' (coblk reads {}; any other key is a "
                       "librados option, spelt in [a-z0-9_])",
                       key, fmt::join(kRbdKeys, ", "));
    if (value.empty() && (key == "conf" || key == "id" || key == "keyring"))
        return problem("option '{}' has an empty value", key);
    options.emplace_back(std::move(key), std::move(value));
    return {};
}

// Parses what follows "rbd:".
Result<Spec> rbd_body(string_view body)
{
    if (body.empty())
        return problem("missing pool and image after 'rbd:'");
    if (body.starts_with("//"))
        return problem("'rbd:' takes no '//'");
    if (has_dangling_backslash(body))
        return problem("trailing '\\' escapes nothing");
    auto fields = split_unescaped(body, ':');
    Spec spec;
    spec.protocol = Protocol::Rbd;
    if (auto r = rbd_name(fields[0], spec.rbd); !r)
        return r.error();
    for (size_t i = 1; i < fields.size(); ++i)
        if (auto r = rbd_option(fields[i], spec.rbd.options); !r)
            return r.error();
    return spec;
}

// The scheme of "scheme://...", matching [a-z][a-z0-9+.-]*, or an empty view.
string_view url_scheme(string_view text)
{
    if (text.empty() || !is_lower(text[0]))
        return {};
    size_t i = 1;
    while (i < text.size() && (is_lower(text[i]) || is_digit(text[i]) || text[i] == '+' ||
                               text[i] == '.' || text[i] == '-'))
        ++i;
    if (!text.substr(i).starts_with("://"))
        return {};
    return text.substr(0, i);
}

// Parses a name with a "scheme://" prefix other than file://.
Result<Spec> parse_scheme(string_view text, string_view scheme)
{
    string_view rest = text.substr(scheme.size() + 3);
    if (scheme == "null" || scheme == "null-co")
        return in_context(null_body(rest), text, kNullForm);
    if (scheme == "memory")
        return in_context(memory_body(rest), text, kMemoryForm);
    if (scheme == "gluster" || scheme.starts_with("gluster+"))
        return in_context(gluster_body(scheme, rest), text, kGlusterForm);
    return make_error(EINVAL, "unknown protocol '{}' in '{}'; expected {}", scheme, text,
                      kAnyForm.syntax);
}

// A path with no recognised prefix: /dev/... is a host device, anything
// else a file; '?' and ':' are part of the name.
Spec plain_path(string_view text)
{
    Spec spec;
    spec.protocol = text.starts_with("/dev/") ? Protocol::HostDevice : Protocol::File;
    spec.path = std::string(text);
    return spec;
}

Result<Spec> dispatch(string_view text)
{
    if (text.empty())
        return in_context(problem("it is empty"), text, kAnyForm);
    if (text.find('\0') != npos)
        return in_context(problem("it contains a NUL byte"), text, kAnyForm);
    if (text.starts_with("rbd:"))
        return in_context(rbd_body(text.substr(4)), text, kRbdForm);
    if (text.starts_with("file:"))
        return in_context(local_body(text.substr(5), Protocol::File, kFileKeys), text,
                          kFileForm);
    if (text.starts_with("host_device:"))
        return in_context(local_body(text.substr(12), Protocol::HostDevice, kHostDeviceKeys),
                          text, kHostDeviceForm);
    if (string_view scheme = url_scheme(text); !scheme.empty())
        return parse_scheme(text, scheme);
    return plain_path(text);
}

} // namespace

const char* protocol_name(Protocol p)
{
    switch (p) {
    case Protocol::File: return "file";
    case Protocol::HostDevice: return "host_device";
    case Protocol::Null: return "null";
    case Protocol::Memory: return "memory";
    case Protocol::Gluster: return "gluster";
    case Protocol::Rbd: return "rbd";
    }
    return "unknown";
}

std::optional<std::string> Spec::option(std::string_view key) const
{
    for (auto it = options.rbegin(); it != options.rend(); ++it)
        if (it->first == key)
            return it->second;
    return std::nullopt;
}

Result<Spec> parse(std::string_view text)
{
    Result<Spec> r = dispatch(text);
    if (r)
        r->text = std::string(text);
    return r;
}

} // namespace coblk::uri
