// coblk-bench's options: fio's names and meanings, from `--key=value`
// command-line arguments and from fio job files (`[global]` and job
// sections of `key=value` lines). Parsing is pure text work: targets are
// only opened later, by the target checks (target_check.h).
//
// Precedence, lowest first: defaults, the job file's [global] sections above
// a job, the job's own section, then command-line job options, which apply
// to every job (so `coblk-bench --filename=null:// existing.fio` retargets
// an existing job file). Without a job file, command-line options before
// the first --name are common to all jobs and each --name starts a job, as
// with fio; with no --name at all they form one job.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/result.h"

namespace coblk::bench {

enum class Rw { Read, Write, RandRead, RandWrite, ReadWrite, RandRW };

// fio's name of `rw` ("randread", ...).
const char* rw_name(Rw rw) noexcept;
inline bool rw_reads(Rw rw) noexcept { return rw != Rw::Write && rw != Rw::RandWrite; }
inline bool rw_writes(Rw rw) noexcept { return rw != Rw::Read && rw != Rw::RandRead; }
inline bool rw_random(Rw rw) noexcept
{
    return rw == Rw::RandRead || rw == Rw::RandWrite || rw == Rw::RandRW;
}
inline bool rw_mixed(Rw rw) noexcept { return rw == Rw::ReadWrite || rw == Rw::RandRW; }

// fio's default completion-latency percentiles.
std::vector<double> default_percentiles();

// One option as the user gave it, for messages and the JSON "job options".
struct GivenOption {
    std::string key;    // as written (an alias stays an alias)
    std::string value;  // empty for a bare boolean
    std::string where;  // "--bs=4k" or "job.fio:12"
};

struct JobSpec {
    std::string name = "job0";
    std::string filename;
    // coblk's image format: raw, the protocol's name for no format layer
    // (as qemu's -f file), or empty to probe. Not a fio key.
    std::string format;
    Rw rw = Rw::Read;
    unsigned rwmixread = 50;
    uint64_t bs = 4096;
    uint64_t blockalign = 0;        // random offsets at multiples of this; 0: bs
    unsigned iodepth = 1;
    unsigned numjobs = 1;
    std::optional<uint64_t> size;   // per job; default: the target's size less offset
    uint64_t offset = 0;
    uint64_t runtime_ns = 0;        // 0: no time limit
    bool time_based = false;
    uint64_t number_ios = 0;        // 0: no count limit
    uint64_t ramp_ns = 0;
    bool direct = false;            // open with cache=none
    unsigned fsync = 0;             // flush after every N writes; 0: never
    bool randrepeat = true;
    bool norandommap = false;       // random offsets with repeats, not each block once
    bool busy_poll = false;         // the job's loop polls instead of sleeping (Loop::set_polling)
    std::optional<uint64_t> randseed;
    bool verify = false;            // verify=crc32c
    bool do_verify = true;          // verify phase after a write-only job
    bool group_reporting = false;
    bool stonewall = false;         // start after every earlier job ends (a new group)
    bool new_group = false;         // start a new reporting group
    std::vector<double> percentiles = default_percentiles();
    std::vector<GivenOption> given; // in the order applied

    // The last place `key` (canonical name) was set, or null (a default).
    const GivenOption* origin(std::string_view key) const;
    // How to name option `key` in a message: "--bs=3k", "job.fio:7: bs=3k",
    // or "job 'x': bs=4096 (default)" for a value never given.
    std::string describe(std::string_view key, std::string_view default_value) const;
};

enum class OutputFormat { Normal, Json, JsonPlus };
enum class Eta { Auto, Always, Never };

// Everything the command line asks for.
struct RunConfig {
    std::vector<JobSpec> jobs;       // before numjobs cloning
    OutputFormat format = OutputFormat::Normal;
    std::string output;              // --output=FILE; empty: standard output
    std::string plot;                // --plot=FILE.svg; empty: no plot
    Eta eta = Eta::Auto;
    bool help = false;
    bool version = false;
    bool parse_only = false;
    bool readonly = false;           // --readonly: refuse jobs that write
    std::vector<std::string> notes;  // one line each, for standard error
};

// A line of a job file: `key=value` or a bare `key`.
struct JobFileEntry {
    std::string key;
    std::optional<std::string> value;
    unsigned line = 0;
};

struct JobFileSection {
    std::string name;                // "global" for [global]
    unsigned line = 0;
    std::vector<JobFileEntry> entries;
};

// Splits a job file's text into sections. `file` names it in errors, which
// give the line: a key before any section, an unterminated "[name", an
// empty key. ${VAR} in values is replaced from the environment (fio does
// the same); an unset variable is an error. Comments are lines starting
// with ';' or '#'. Any thread.
Result<std::vector<JobFileSection>> parse_job_file(std::string_view text, std::string_view file);

// Applies one option to `job`. `where` says where it came from ("--bs=0",
// "job.fio:7") for errors, which name the key and the value. A fio option
// coblk-bench ignores adds one line to `notes` (no duplicates) and
// succeeds; a key neither knows fails. Any thread.
Result<void> apply_option(JobSpec& job, std::string_view key,
                          const std::optional<std::string>& value, std::string_view where,
                          std::vector<std::string>& notes);

// Checks what only the whole job can tell (a filename, time_based with a
// runtime, size against bs, ...). Fails naming the job and the option.
Result<void> check_job(const JobSpec& job);

// "--bs=0" when `where` is that command-line argument, else "job.fio:7: bs=0".
std::string located(std::string_view where, std::string_view key, std::string_view value);

// Parses the command line (argv without the program name) and reads the
// job files it names. Errors name the argument, or the file and line.
Result<RunConfig> parse_command_line(const std::vector<std::string>& args);

// The same from job file texts already read: `files` holds (name, text).
// For tests. Any thread.
Result<RunConfig> parse_command_line_with(
    const std::vector<std::string>& args,
    const std::vector<std::pair<std::string, std::string>>& files);

// A fio time value: a whole number with an optional unit, d, h, m (minutes),
// s/sec (the default), ms/msec or us/usec, case-insensitive. Fails naming
// `what` and the text.
Result<uint64_t> parse_time_ns(std::string_view text, std::string_view what);

// The --help text.
std::string usage();

} // namespace coblk::bench
