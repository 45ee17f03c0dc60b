#include "bench/job_options.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "bench/fio_compat.h"
#include "uri/uri.h"

namespace coblk::bench {
namespace {

using std::string;
using std::string_view;

string lowered(string_view s)
{
    string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z')
            c = char(c - 'A' + 'a');
    return out;
}

string_view trim(string_view s)
{
    size_t b = s.find_first_not_of(" \t\r\n");
    if (b == string_view::npos)
        return {};
    size_t e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

// fio's aliases of the options coblk-bench implements.
string_view canonical(string_view key)
{
    if (key == "readwrite")
        return "rw";
    if (key == "blocksize")
        return "bs";
    if (key == "ba")
        return "blockalign";
    if (key == "fileoffset")
        return "offset";
    if (key == "timeout")
        return "runtime";
    if (key == "wait_for_previous")
        return "stonewall";
    return key;
}

Error value_error(string_view where, string_view key, string_view value, string_view why)
{
    return make_error(EINVAL, "{}: {}", located(where, key, value), why);
}

// A whole decimal (or 0x hexadecimal) number no larger than `max`.
Result<uint64_t> parse_count(string_view where, string_view key, string_view text, uint64_t max)
{
    string_view digits = text;
    int base = 10;
    if (digits.size() > 2 && (digits.substr(0, 2) == "0x" || digits.substr(0, 2) == "0X")) {
        digits.remove_prefix(2);
        base = 16;
    }
    if (digits.empty())
        return value_error(where, key, text, "expected a whole number");
    uint64_t v = 0;
    for (char c : digits) {
        unsigned d;
        if (c >= '0' && c <= '9')
            d = unsigned(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = unsigned(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = unsigned(c - 'A' + 10);
        else
            return value_error(where, key, text, "expected a whole number");
        if (v > (std::numeric_limits<uint64_t>::max() - d) / unsigned(base))
            return value_error(where, key, text, "the number is too large");
        v = v * unsigned(base) + d;
    }
    if (v > max)
        return value_error(where, key, text, fmt::format("the largest accepted value is {}", max));
    return v;
}

Result<uint64_t> parse_bytes(string_view where, string_view key, string_view text)
{
    if (!text.empty() && text.back() == '%')
        return value_error(where, key, text, "percentages are not supported; give a size "
                           "such as 1G");
    auto r = uri::parse_size(text, key);
    if (!r)
        return value_error(where, key, text, r.error().message);
    return *r;
}

Result<bool> parse_flag(string_view where, string_view key, const std::optional<string>& value)
{
    if (!value)
        return true;  // a bare boolean key turns it on
    auto r = uri::parse_bool(*value, key);
    if (!r)
        return value_error(where, key, *value, "expected 1 or 0");
    return *r;
}

Result<Rw> parse_rw(string_view where, string_view key, string_view text)
{
    string t = lowered(text);
    if (t.find(':') != string::npos)
        return value_error(where, key, text, "offset modifiers (rw=...:N) are not supported");
    if (t == "read")
        return Rw::Read;
    if (t == "write")
        return Rw::Write;
    if (t == "randread")
        return Rw::RandRead;
    if (t == "randwrite")
        return Rw::RandWrite;
    if (t == "rw" || t == "readwrite")
        return Rw::ReadWrite;
    if (t == "randrw")
        return Rw::RandRW;
    return value_error(where, key, text, "expected read, write, randread, randwrite, rw "
                       "(readwrite) or randrw");
}

// "99.5:99.9:..." (fio's percentile_list).
Result<std::vector<double>> parse_percentiles(string_view where, string_view key, string_view text)
{
    std::vector<double> out;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find(':', start);
        if (end == string_view::npos)
            end = text.size();
        string item(trim(text.substr(start, end - start)));
        char* stop = nullptr;
        double p = std::strtod(item.c_str(), &stop);
        if (item.empty() || *stop != '\0' || !(p > 0.0 && p <= 100.0))
            return value_error(where, key, text, "expected percentiles in (0, 100] separated "
                               "by ':'");
        out.push_back(p);
        if (out.size() > 64)
            return value_error(where, key, text, "at most 64 percentiles");
        start = end + 1;
    }
    return out;
}

// Replaces ${NAME} with the environment's value.
Result<string> expand_env(string_view text, string_view file, unsigned line)
{
    string out;
    size_t i = 0;
    while (i < text.size()) {
        size_t open = text.find("${", i);
        if (open == string_view::npos) {
            out.append(text.substr(i));
            break;
        }
        size_t close = text.find('}', open);
        if (close == string_view::npos)
            return make_error(EINVAL, "{}:{}: unterminated '${{' in '{}'", file, line, text);
        out.append(text.substr(i, open - i));
        string var(text.substr(open + 2, close - open - 2));
        const char* v = std::getenv(var.c_str());
        if (!v)
            return make_error(EINVAL, "{}:{}: environment variable '{}' is not set", file, line,
                              var);
        out.append(v);
        i = close + 1;
    }
    return out;
}

bool is_true_cli_option(string_view key)
{
    return key == "output-format" || key == "output" || key == "plot" || key == "eta" ||
           key == "section" || key == "readonly" || key == "parse-only" || key == "help" ||
           key == "version";
}

// A command-line argument split into key and optional value.
struct Arg {
    string key;
    std::optional<string> value;
    string text;
};

} // namespace

const char* rw_name(Rw rw) noexcept
{
    switch (rw) {
    case Rw::Read: return "read";
    case Rw::Write: return "write";
    case Rw::RandRead: return "randread";
    case Rw::RandWrite: return "randwrite";
    case Rw::ReadWrite: return "rw";
    case Rw::RandRW: return "randrw";
    }
    return "?";
}

std::vector<double> default_percentiles()
{
    return {1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9, 99.95, 99.99};
}

string located(string_view where, string_view key, string_view value)
{
    if (where.starts_with("--"))
        return string(where);
    return fmt::format("{}: {}={}", where, key, value);
}

string JobSpec::describe(string_view key, string_view default_value) const
{
    if (const GivenOption* o = origin(key))
        return located(o->where, o->key, o->value);
    return fmt::format("job '{}': {}={} (default)", name, key, default_value);
}

const GivenOption* JobSpec::origin(string_view key) const
{
    for (size_t i = given.size(); i-- > 0;)
        if (canonical(given[i].key) == key)
            return &given[i];
    return nullptr;
}

Result<std::vector<JobFileSection>> parse_job_file(string_view text, string_view file)
{
    std::vector<JobFileSection> sections;
    unsigned lineno = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        string_view raw = text.substr(pos, nl == string_view::npos ? string_view::npos : nl - pos);
        pos = nl == string_view::npos ? text.size() : nl + 1;
        lineno++;
        string_view line = trim(raw);
        if (line.empty() || line[0] == ';' || line[0] == '#')
            continue;
        if (line[0] == '[') {
            size_t close = line.find(']');
            if (close == string_view::npos)
                return make_error(EINVAL, "{}:{}: section header '{}' has no closing ']'", file,
                                  lineno, line);
            string_view name = trim(line.substr(1, close - 1));
            if (name.empty())
                return make_error(EINVAL, "{}:{}: empty section name '[]'", file, lineno);
            if (!trim(line.substr(close + 1)).empty())
                return make_error(EINVAL, "{}:{}: unexpected text after section header '{}'",
                                  file, lineno, line);
            sections.push_back({string(name), lineno, {}});
            continue;
        }
        if (sections.empty())
            return make_error(EINVAL, "{}:{}: '{}' comes before any [section]", file, lineno,
                              line);
        JobFileEntry e;
        e.line = lineno;
        size_t eq = line.find('=');
        string_view key = trim(line.substr(0, eq));
        if (key.empty())
            return make_error(EINVAL, "{}:{}: '{}' has no option name before '='", file, lineno,
                              line);
        e.key = string(key);
        if (eq != string_view::npos) {
            auto v = expand_env(trim(line.substr(eq + 1)), file, lineno);
            if (!v)
                return v.error();
            e.value = std::move(*v);
        }
        sections.back().entries.push_back(std::move(e));
    }
    return sections;
}

Result<void> apply_option(JobSpec& job, string_view key_in, const std::optional<string>& value,
                          string_view where, std::vector<string>& notes)
{
    string_view key = canonical(key_in);
    auto need = [&]() -> Result<string> {
        if (!value || value->empty())
            return make_error(EINVAL, "{}: option '{}' needs a value ({}=VALUE)", where, key_in,
                              key_in);
        return *value;
    };
    auto record = [&]() {
        job.given.push_back({string(key_in), value.value_or(""), string(where)});
    };

    if (key == "name" || key == "filename" || key == "description" || key == "format") {
        auto v = need();
        if (!v)
            return v.error();
        if (key == "name")
            job.name = *v;
        else if (key == "filename")
            job.filename = *v;
        else if (key == "format")
            job.format = *v;  // checked when the target is opened
    } else if (key == "rw") {
        auto v = need();
        if (!v)
            return v.error();
        auto r = parse_rw(where, key_in, *v);
        if (!r)
            return r.error();
        job.rw = *r;
    } else if (key == "rwmixread" || key == "rwmixwrite") {
        auto v = need();
        if (!v)
            return v.error();
        auto n = parse_count(where, key_in, *v, 100);
        if (!n)
            return n.error();
        job.rwmixread = key == "rwmixread" ? unsigned(*n) : unsigned(100 - *n);
    } else if (key == "bs") {
        auto v = need();
        if (!v)
            return v.error();
        if (v->find(',') != string::npos)
            return value_error(where, key_in, *v, "separate read,write block sizes are not "
                               "supported; give one size");
        auto n = parse_bytes(where, key_in, *v);
        if (!n)
            return n.error();
        if (*n == 0)
            return value_error(where, key_in, *v, "the block size must be at least 1 byte");
        if (*n > (uint64_t(1) << 30))
            return value_error(where, key_in, *v, "the block size must be at most 1G");
        job.bs = *n;
    } else if (key == "blockalign") {
        auto v = need();
        if (!v)
            return v.error();
        auto n = parse_bytes(where, key_in, *v);
        if (!n)
            return n.error();
        if (*n > (uint64_t(1) << 30))
            return value_error(where, key_in, *v, "the alignment must be at most 1G");
        job.blockalign = *n;
    } else if (key == "iodepth" || key == "numjobs" || key == "fsync") {
        auto v = need();
        if (!v)
            return v.error();
        uint64_t max = key == "iodepth" ? 4096 : key == "numjobs" ? 1024 : UINT32_MAX;
        auto n = parse_count(where, key_in, *v, max);
        if (!n)
            return n.error();
        if (*n == 0 && key != "fsync")
            return value_error(where, key_in, *v, "must be at least 1");
        if (key == "iodepth")
            job.iodepth = unsigned(*n);
        else if (key == "numjobs")
            job.numjobs = unsigned(*n);
        else
            job.fsync = unsigned(*n);
    } else if (key == "size" || key == "offset") {
        auto v = need();
        if (!v)
            return v.error();
        auto n = parse_bytes(where, key_in, *v);
        if (!n)
            return n.error();
        if (key == "size") {
            if (*n == 0)
                return value_error(where, key_in, *v, "the size must be at least one block");
            job.size = *n;
        } else {
            job.offset = *n;
        }
    } else if (key == "runtime" || key == "ramp_time") {
        auto v = need();
        if (!v)
            return v.error();
        auto t = parse_time_ns(*v, key_in);
        if (!t)
            return value_error(where, key_in, *v, t.error().message);
        (key == "runtime" ? job.runtime_ns : job.ramp_ns) = *t;
    } else if (key == "number_ios") {
        auto v = need();
        if (!v)
            return v.error();
        auto n = parse_count(where, key_in, *v, UINT64_MAX);
        if (!n)
            return n.error();
        job.number_ios = *n;
    } else if (key == "randseed") {
        auto v = need();
        if (!v)
            return v.error();
        auto n = parse_count(where, key_in, *v, UINT64_MAX);
        if (!n)
            return n.error();
        job.randseed = *n;
    } else if (key == "verify") {
        auto v = need();
        if (!v)
            return v.error();
        string t = lowered(*v);
        if (t == "crc32c" || t == "crc32c-intel")
            job.verify = true;
        else if (t == "0" || t == "none")
            job.verify = false;
        else
            return value_error(where, key_in, *v, "coblk-bench verifies with crc32c only "
                               "(verify=crc32c, or verify=0 for none)");
    } else if (key == "percentile_list") {
        auto v = need();
        if (!v)
            return v.error();
        auto p = parse_percentiles(where, key_in, *v);
        if (!p)
            return p.error();
        job.percentiles = std::move(*p);
    } else if (key == "time_based" || key == "direct" || key == "buffered" ||
               key == "randrepeat" || key == "norandommap" || key == "group_reporting" || key == "stonewall" ||
               key == "new_group" || key == "do_verify" || key == "busy_poll") {
        auto b = parse_flag(where, key_in, value);
        if (!b)
            return b.error();
        if (key == "time_based")
            job.time_based = *b;
        else if (key == "direct")
            job.direct = *b;
        else if (key == "buffered")
            job.direct = !*b;
        else if (key == "randrepeat")
            job.randrepeat = *b;
        else if (key == "norandommap")
            job.norandommap = *b;
        else if (key == "group_reporting")
            job.group_reporting = *b;
        else if (key == "stonewall")
            job.stonewall = *b;
        else if (key == "new_group")
            job.new_group = *b;
        else if (key == "busy_poll")
            job.busy_poll = *b;
        else
            job.do_verify = *b;
    } else if (const char* why = fio_ignored_job_option(key)) {
        string note = value ? fmt::format("coblk-bench: note: ignoring fio option '{}={}' ({})",
                                          key_in, *value, why)
                            : fmt::format("coblk-bench: note: ignoring fio option '{}' ({})",
                                          key_in, why);
        if (std::find(notes.begin(), notes.end(), note) == notes.end())
            notes.push_back(std::move(note));
        return {};
    } else {
        return make_error(EINVAL, "{}: unknown option '{}' (neither a coblk-bench nor a fio "
                          "option; see coblk-bench --help)", where, key_in);
    }
    record();
    return {};
}

Result<void> check_job(const JobSpec& job)
{
    if (job.filename.empty())
        return make_error(EINVAL, "job '{}': no filename= given (a path, /dev/..., null://, "
                          "memory://... or any coblk URI)", job.name);
    if (job.time_based && job.runtime_ns == 0)
        return make_error(EINVAL, "job '{}': time_based needs runtime= (how long to run)",
                          job.name);
    if (job.blockalign && (job.blockalign < job.bs || job.blockalign % job.bs))
        return make_error(EINVAL, "job '{}': blockalign={} must be a multiple of bs={} (requests "
                          "may not overlap)", job.name, job.blockalign, job.bs);
    if (job.verify && job.bs < 32)
        return make_error(EINVAL, "job '{}': verify=crc32c needs bs of at least 32 bytes (the "
                          "verify header), not {}", job.name, job.bs);
    if (job.size && *job.size < job.bs) {
        return make_error(EINVAL, "{}: smaller than one block (bs={})",
                          job.describe("size", std::to_string(*job.size)), job.bs);
    }
    return {};
}

Result<uint64_t> parse_time_ns(string_view text, string_view what)
{
    string_view t = trim(text);
    size_t n = 0;
    while (n < t.size() && t[n] >= '0' && t[n] <= '9')
        n++;
    auto bad = [&](string_view why) {
        return make_error(EINVAL, "{}; expected a time such as 30, 10s, 500ms, 2m "
                          "(units d, h, m, s, ms, us) for {}", why, what);
    };
    if (n == 0)
        return bad("not a number");
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return bad("too large");
        v = v * 10 + uint64_t(t[i] - '0');
    }
    string unit = lowered(t.substr(n));
    uint64_t mult;
    if (unit.empty() || unit == "s" || unit == "sec")
        mult = 1000000000ull;
    else if (unit == "ms" || unit == "msec")
        mult = 1000000ull;
    else if (unit == "us" || unit == "usec")
        mult = 1000ull;
    else if (unit == "m" || unit == "min")
        mult = 60ull * 1000000000ull;
    else if (unit == "h")
        mult = 3600ull * 1000000000ull;
    else if (unit == "d")
        mult = 86400ull * 1000000000ull;
    else
        return bad(fmt::format("unknown unit '{}'", t.substr(n)));
    if (v > UINT64_MAX / mult)
        return bad("too large");
    return v * mult;
}

Result<RunConfig> parse_command_line_with(
    const std::vector<string>& args, const std::vector<std::pair<string, string>>& files)
{
    RunConfig cfg;
    std::vector<Arg> common;                     // job options before the first --name
    std::vector<std::vector<Arg>> cli_jobs;      // each starting with its --name
    std::vector<string> job_files;
    std::vector<string> sections;

    for (size_t i = 0; i < args.size(); i++) {
        const string& a = args[i];
        if (a == "-h") {
            cfg.help = true;
            continue;
        }
        if (a == "-v") {
            cfg.version = true;
            continue;
        }
        if (a.size() < 3 || a[0] != '-' || a[1] != '-') {
            if (!a.empty() && a[0] == '-')
                return make_error(EINVAL, "unknown option '{}' (options are --key=value; see "
                                  "--help)", a);
            job_files.push_back(a);
            continue;
        }
        Arg arg;
        arg.text = a;
        size_t eq = a.find('=');
        arg.key = a.substr(2, eq == string::npos ? string::npos : eq - 2);
        if (eq != string::npos)
            arg.value = a.substr(eq + 1);
        // --key VALUE for the run options that always take one, as getopt does.
        bool takes_value = arg.key == "output-format" || arg.key == "output" ||
                           arg.key == "plot" || arg.key == "eta" || arg.key == "section";
        if (takes_value && !arg.value) {
            if (i + 1 >= args.size())
                return make_error(EINVAL, "option '--{}' needs a value", arg.key);
            arg.value = args[++i];
            arg.text += "=" + *arg.value;
        }
        if (is_true_cli_option(arg.key)) {
            const string& v = arg.value.value_or("");
            if (arg.key == "output-format") {
                string f = lowered(v);
                if (f == "normal")
                    cfg.format = OutputFormat::Normal;
                else if (f == "json")
                    cfg.format = OutputFormat::Json;
                else if (f == "json+")
                    cfg.format = OutputFormat::JsonPlus;
                else
                    return make_error(EINVAL, "--output-format={}: expected normal, json or "
                                      "json+ (terse is not supported)", v);
            } else if (arg.key == "output") {
                cfg.output = v;
            } else if (arg.key == "plot") {
                cfg.plot = v;
            } else if (arg.key == "eta") {
                if (v == "auto")
                    cfg.eta = Eta::Auto;
                else if (v == "always")
                    cfg.eta = Eta::Always;
                else if (v == "never")
                    cfg.eta = Eta::Never;
                else
                    return make_error(EINVAL, "--eta={}: expected auto, always or never", v);
            } else if (arg.key == "section") {
                sections.push_back(v);
            } else if (arg.key == "readonly") {
                cfg.readonly = true;
            } else if (arg.key == "parse-only") {
                cfg.parse_only = true;
            } else if (arg.key == "help") {
                cfg.help = true;
            } else {
                cfg.version = true;
            }
            if (v.empty() && (arg.key == "output" || arg.key == "plot" || arg.key == "section"))
                return make_error(EINVAL, "option '--{}' needs a value", arg.key);
            continue;
        }
        if (const char* why = fio_ignored_cli_option(arg.key)) {
            cfg.notes.push_back(fmt::format("coblk-bench: note: ignoring fio option '{}' ({})",
                                            arg.text, why));
            continue;
        }
        if (arg.key == "name") {
            cli_jobs.push_back({std::move(arg)});
            continue;
        }
        (cli_jobs.empty() ? common : cli_jobs.back()).push_back(std::move(arg));
    }
    if (cfg.help || cfg.version)
        return cfg;

    auto apply_args = [&](JobSpec& job, const std::vector<Arg>& list) -> Result<void> {
        for (const Arg& a : list)
            if (auto r = apply_option(job, a.key, a.value, a.text, cfg.notes); !r)
                return r;
        return {};
    };

    if (!job_files.empty()) {
        if (!cli_jobs.empty())
            return make_error(EINVAL, "'{}' with a job file: name the jobs in the file (command-"
                              "line options then apply to every job)", cli_jobs[0][0].text);
        bool first_file = true;
        for (const string& path : job_files) {
            auto it = std::find_if(files.begin(), files.end(),
                                   [&](const auto& f) { return f.first == path; });
            if (it == files.end())
                return make_error(ENOENT, "cannot read job file '{}'", path);
            auto parsed = parse_job_file(it->second, path);
            if (!parsed)
                return parsed.error();
            JobSpec global;
            bool first_job = true;
            for (const JobFileSection& s : *parsed) {
                bool is_global = s.name == "global";
                JobSpec job = global;
                if (!is_global)
                    job.name = s.name;
                JobSpec& target = is_global ? global : job;
                for (const JobFileEntry& e : s.entries) {
                    string where = fmt::format("{}:{}", path, e.line);
                    if (auto r = apply_option(target, e.key, e.value, where, cfg.notes); !r)
                        return r.error();
                }
                if (is_global)
                    continue;
                if (!sections.empty() &&
                    std::find(sections.begin(), sections.end(), s.name) == sections.end())
                    continue;
                if (auto r = apply_args(job, common); !r)
                    return r.error();
                // fio runs the job files one after another, each its own group.
                if (first_job && !first_file)
                    job.stonewall = true;
                first_job = false;
                cfg.jobs.push_back(std::move(job));
            }
            first_file = false;
        }
        if (cfg.jobs.empty())
            return make_error(EINVAL, "no job to run: the job file{} define{} no job section{}",
                              job_files.size() > 1 ? "s" : "", job_files.size() > 1 ? "" : "s",
                              sections.empty() ? "" : " selected by --section");
    } else if (cli_jobs.empty()) {
        if (common.empty())
            return make_error(EINVAL, "nothing to do: give job options (--filename=... "
                              "--rw=...) or a job file; see --help");
        JobSpec job;
        if (auto r = apply_args(job, common); !r)
            return r.error();
        cfg.jobs.push_back(std::move(job));
    } else {
        JobSpec global;
        if (auto r = apply_args(global, common); !r)
            return r.error();
        for (const auto& list : cli_jobs) {
            // --name=global collects common options, as a [global] section.
            if (list[0].value && *list[0].value == "global") {
                std::vector<Arg> rest(list.begin() + 1, list.end());
                if (auto r = apply_args(global, rest); !r)
                    return r.error();
                continue;
            }
            JobSpec job = global;
            if (auto r = apply_args(job, list); !r)
                return r.error();
            cfg.jobs.push_back(std::move(job));
        }
        if (cfg.jobs.empty())
            return make_error(EINVAL, "no job to run: only --name=global was given");
    }
    for (const JobSpec& job : cfg.jobs) {
        if (auto r = check_job(job); !r)
            return r.error();
        if (cfg.readonly && rw_writes(job.rw))
            return make_error(EROFS, "job '{}': rw={} writes, and --readonly was given", job.name,
                              rw_name(job.rw));
    }
    return cfg;
}

Result<RunConfig> parse_command_line(const std::vector<string>& args)
{
    std::vector<std::pair<string, string>> files;
    for (size_t i = 0; i < args.size(); i++) {
        const string& a = args[i];
        // Skip the value of "--key VALUE" run options, as the parser does.
        if ((a == "--output-format" || a == "--output" || a == "--plot" || a == "--eta" ||
             a == "--section") &&
            i + 1 < args.size()) {
            i++;
            continue;
        }
        if (a.empty() || a[0] == '-')
            continue;
        std::ifstream in(a, std::ios::binary);
        if (!in)
            return make_error(ENOENT, "cannot read job file '{}': {}", a, std::strerror(errno));
        std::ostringstream ss;
        ss << in.rdbuf();
        files.emplace_back(a, ss.str());
    }
    return parse_command_line_with(args, files);
}

string usage()
{
    return R"(usage: coblk-bench [OPTIONS] [JOBFILE...]
       coblk-bench --name=NAME --filename=URI --rw=randread --bs=4k --iodepth=32 ...

Runs fio-style I/O jobs against any coblk device (a path, /dev/..., file:...,
null://, memory://..., ...). Options are fio's names and meanings, given as
--key=value (bare --key for booleans) or as key=value lines of a fio job file
([global] and [jobname] sections; lines starting with ; or # are comments).
Command-line job options apply to every job and override the job file.

Job options:
  name=STR          job name; on the command line each --name starts a job
  filename=URI      the device to open (any coblk URI)
  format=FMT        coblk only: raw, or the protocol's name (file, ...) for no
                    format layer; default: probe
  rw=MODE           read, write, randread, randwrite, rw (readwrite), randrw
  rwmixread=PCT     percentage of reads in mixed jobs (default 50)
  rwmixwrite=PCT    percentage of writes in mixed jobs (100 - rwmixread)
  bs=SIZE           block size, with K/M/G suffixes (default 4k)
  iodepth=N         requests in flight per job (default 1)
  numjobs=N         clones of the job, each its own thread and loop (default 1)
  size=SIZE         bytes per job (default: the target's size less offset)
  offset=SIZE       where the job's region starts (default 0)
  runtime=TIME      stop after TIME (10, 10s, 500ms, 2m, 1h)
  time_based        run for runtime even when size is done (wrap around)
  number_ios=N      stop after N requests
  ramp_time=TIME    run TIME before recording statistics
  direct=BOOL       1: open with cache=none (O_DIRECT); buffered=BOOL is the opposite
  fsync=N           flush after every N writes
  randrepeat=BOOL   same random offsets on every run (default 1)
  randseed=N        seed of the random offsets
  norandommap       random offsets may repeat (default: each block once per pass)
  busy_poll=BOOL    while requests are in flight the job's loop yields the CPU
                    and looks again instead of sleeping (fio's rbd option of
                    that name): lower latency for a busy CPU (default 0)
  verify=crc32c     writes carry a checked header; reads verify it; write-only
                    jobs read their region back afterwards (do_verify=0: don't)
  percentile_list=P:P:...  latency percentiles to report
  group_reporting   report all jobs of a group as one
  stonewall         wait for the earlier jobs to finish (starts a new group)
  new_group         start a new reporting group
  description=STR   free text
Other fio job options (ioengine, thread, iodepth_batch, ...) are accepted and
ignored with a note.

Run options:
  --output-format=normal|json|json+   report format (default normal)
  --output=FILE     write the report to FILE
  --plot=FILE.svg   draw the latency distribution and IOPS over time
  --eta=auto|always|never   live progress line on standard error (auto: when a terminal)
  --section=NAME    run only this job file section (repeatable)
  --readonly        refuse jobs that write
  --parse-only      check the options, open nothing, run nothing
  --help, --version

Sizes: K, M, G, T are binary (4k = 4096). Times: seconds by default.
Exit status: 0 when every job succeeded, 1 on any error.
)";
}

} // namespace coblk::bench
