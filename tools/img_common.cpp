#include "tools/img_common.h"

#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "uri/options.h"

namespace coblk::img {

void print_error(std::string_view message)
{
    fmt::print(stderr, "{}: {}\n", kTool, message);
}

std::string io_error(std::string_view what, std::string_view uri, uint64_t off, int err)
{
    return fmt::format("error {} '{}' at offset {}: {}", what, uri, off, std::strerror(-err));
}

int usage_error(std::string_view command, const Error& e, int status)
{
    fmt::print(stderr, "{}: {}: {}\nTry '{} {} --help' for more information.\n", kTool, command,
               e.message, kTool, command);
    return status;
}

OptionParser::OptionParser(int argc, char** argv, const char* short_opts, const option* long_opts)
    : argc_(argc), argv_(argv), short_opts_(std::string(":") + short_opts), long_opts_(long_opts)
{
    // A leading ':' makes getopt tell a missing argument (':') from an
    // unknown option ('?'); opterr = 0 leaves the wording to us.
    opterr = 0;
    optind = 1;
}

int OptionParser::next()
{
    int c = getopt_long(argc_, argv_, short_opts_.c_str(), long_opts_, nullptr);
    // getopt_long leaves the offending word at argv[optind - 1].
    std::string_view word = optind > 0 && optind <= argc_ ? argv_[optind - 1] : "";
    if (c == '?') {
        std::string name = optopt ? fmt::format("-{}", char(optopt))
                                  : std::string(word.substr(0, word.find('=')));
        error_ = make_error(EINVAL, "unknown option '{}'", name);
        return 0;
    }
    if (c == ':') {
        std::string name = word.starts_with("--") ? std::string(word)
                                                  : fmt::format("-{}", char(optopt));
        error_ = make_error(EINVAL, "option '{}' needs an argument", name);
        return 0;
    }
    return c;
}

std::vector<std::string> OptionParser::positional() const
{
    return std::vector<std::string>(argv_ + optind, argv_ + argc_);
}

Buffer make_buffer(size_t len)
{
    void* p = nullptr;
    if (posix_memalign(&p, kBufferAlign, len ? len : 1) != 0)
        return nullptr;
    return Buffer(static_cast<uint8_t*>(p));
}

bool is_zero(const uint8_t* p, size_t len)
{
    // Block by block, so that data is rejected early; inside a block, whole
    // words OR-ed together (the compiler vectorises this), then the tail.
    constexpr size_t kBlock = 4096;
    size_t pos = 0;
    for (; pos + kBlock <= len; pos += kBlock) {
        uint64_t acc = 0;
        for (size_t i = 0; i < kBlock; i += sizeof acc) {
            uint64_t w;
            std::memcpy(&w, p + pos + i, sizeof w);
            acc |= w;
        }
        if (acc)
            return false;
    }
    for (; pos < len; pos++)
        if (p[pos])
            return false;
    return true;
}

size_t first_difference(const uint8_t* a, const uint8_t* b, size_t len)
{
    // Narrow down block by block with the fast whole-block test, then find
    // the byte inside the first block that differs.
    constexpr size_t kBlock = 4096;
    for (size_t pos = 0; pos < len; pos += kBlock) {
        size_t n = std::min(kBlock, len - pos);
        bool same = a ? std::memcmp(a + pos, b + pos, n) == 0 : is_zero(b + pos, n);
        if (same)
            continue;
        for (size_t i = pos; i < pos + n; i++)
            if ((a ? a[i] : 0) != b[i])
                return i;
    }
    return len;
}

std::string human_size(uint64_t bytes)
{
    static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double value = double(bytes);
    size_t unit = 0;
    // 999.5 and up would print as "1e+03" with three significant digits.
    while (value >= 999.5 && unit + 1 < std::size(kUnits)) {
        value /= 1024;
        unit++;
    }
    return fmt::format("{:.3g} {}", value, kUnits[unit]);
}

void print_snapshot_list(const std::vector<SnapshotInfo>& snaps)
{
    fmt::print("Snapshot list:\n");
    fmt::print("{:<10}{:<20}{:>12} {}\n", "ID", "TAG", "SIZE", "DATE");
    for (const auto& s : snaps) {
        std::string date = "-";
        if (s.timestamp > 0) {
            time_t t = time_t(s.timestamp);
            tm local{};
            localtime_r(&t, &local);
            char buf[32];
            strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &local);
            date = buf;
        }
        fmt::print("{:<10}{:<20}{:>12} {}\n", s.id, s.name, human_size(s.size), date);
    }
}

Result<OpenOptions> open_options(std::string_view name, std::string format, std::string cache,
                                 bool read_only, bool force_share)
{
    auto spec = uri::parse(name);
    if (!spec)
        return spec.error();
    OpenOptions o;
    o.format = std::move(format);
    o.read_only = read_only;
    // qemu-img's "unsafe" skips flushes; the nearest coblk mode is writeback.
    o.cache = cache == "unsafe" ? "writeback" : std::move(cache);
    if (force_share && spec->protocol == uri::Protocol::File)
        o.options.emplace_back("locking", "off");
    return o;
}

Result<void> append_option_list(uri::Options& opts, std::string_view text)
{
    auto parsed = uri::parse_option_list(text);
    if (!parsed)
        return parsed.error();
    opts.insert(opts.end(), parsed->begin(), parsed->end());
    return {};
}

std::unique_ptr<Loop> make_loop()
{
    auto loop = Loop::create();
    if (!loop) {
        print_error(loop.error().message);
        return nullptr;
    }
    return std::move(loop).value();
}

// `s` as a JSON string literal.
std::string json_string(std::string_view s)
{
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\')
            out += fmt::format("\\{}", char(c));
        else if (c < 0x20)
            out += fmt::format("\\u{:04x}", c);
        else
            out += char(c);
    }
    return out + "\"";
}

Result<ImageArgs> parse_image_args(int argc, char** argv, const std::string& extra_short,
                                   const std::vector<option>& extra_long,
                                   const std::function<Result<void>(int, const char*)>& extra)
{
    enum { kOptOutput = 256 };
    std::vector<option> longs = {{"help", no_argument, nullptr, 'h'},
                                 {"output", required_argument, nullptr, kOptOutput},
                                 {"force-share", no_argument, nullptr, 'U'}};
    for (const option& o : extra_long)
        if (o.name)
            longs.push_back(o);
    longs.push_back({});
    std::string shorts = "hf:U" + extra_short;
    OptionParser p(argc, argv, shorts.c_str(), longs.data());
    ImageArgs a;
    for (int c; (c = p.next()) != -1;) {
        switch (c) {
        case 0:
            return p.error();
        case 'h':
            a.help = true;
            return a;
        case 'f':
            a.format = p.arg();
            break;
        case 'U':
            a.force_share = true;
            break;
        case kOptOutput:
            if (std::string_view(p.arg()) == "json")
                a.json = true;
            else if (std::string_view(p.arg()) != "human")
                return make_error(EINVAL, "--output must be 'human' or 'json', not '{}'",
                                  p.arg());
            break;
        default:
            if (auto r = extra(c, p.arg()); !r)
                return r.error();
        }
    }
    auto args = p.positional();
    if (args.empty())
        return make_error(EINVAL, "missing FILENAME");
    if (args.size() > 1)
        return make_error(EINVAL, "unexpected argument '{}'", args[1]);
    a.filename = args[0];
    return a;
}

} // namespace coblk::img
