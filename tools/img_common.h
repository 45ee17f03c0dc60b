// Shared pieces of coblk-img's commands: option parsing on top of
// getopt_long, error printing, aligned buffers, zero scanning, size printing
// and the OpenOptions built from qemu-img style flags.
#pragma once

#include <getopt.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/loop.h"
#include "engine/result.h"
#include "uri/open.h"
#include "uri/uri.h"

namespace coblk::img {

constexpr std::string_view kTool = "coblk-img";

// Exit statuses shared by every command (compare has its own, see there).
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;

// Buffer alignment good for O_DIRECT on any device we meet.
constexpr size_t kBufferAlign = 4096;

// Prints "coblk-img: <message>" on stderr.
void print_error(std::string_view message);

// "error reading 'URI' at offset N: <strerror>" for a -errno `err`;
// `what` is "reading", "writing", "zeroing", ...
std::string io_error(std::string_view what, std::string_view uri, uint64_t off, int err);

// Reports a parse problem of `command` ("coblk-img: convert: <message>") and
// where to look for help. Returns `status` for the caller to exit with.
int usage_error(std::string_view command, const Error& e, int status);

// getopt_long over a command's arguments (argv[0] is the command name).
// next() returns the option character, -1 at the end, or 0 after a problem,
// described then by error() (unknown option, missing argument).
class OptionParser {
public:
    OptionParser(int argc, char** argv, const char* short_opts, const option* long_opts);
    int next();
    const char* arg() const { return optarg; }
    const Error& error() const { return error_; }
    // The arguments after the options.
    std::vector<std::string> positional() const;

private:
    int argc_;
    char** argv_;
    std::string short_opts_;
    const option* long_opts_;
    Error error_;
};

// An aligned, uninitialised byte buffer owned by a unique_ptr.
struct FreeDeleter {
    void operator()(void* p) const noexcept { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t[], FreeDeleter>;

// A kBufferAlign-aligned buffer of `len` bytes, or null on ENOMEM.
Buffer make_buffer(size_t len);

// True when the `len` bytes at `p` are all zero.
bool is_zero(const uint8_t* p, size_t len);

// Index of the first byte where `a` and `b` differ, or `len` when they do not.
// A null `a` stands for zeros (the index of b's first non-zero byte).
size_t first_difference(const uint8_t* a, const uint8_t* b, size_t len);

// "1 GiB", "64 MiB", "1.5 KiB", "512 B": at most three significant digits.
std::string human_size(uint64_t bytes);

// Prints a "Snapshot list:" table (ID, TAG, SIZE, DATE in local time), as
// qemu-img snapshot -l and info do.
void print_snapshot_list(const std::vector<SnapshotInfo>& snaps);

// Options for opening `name` with qemu-img style flags: `format` empty to
// probe, `cache` empty for the default; `force_share` (-U) turns off the
// file lock of a local file. Fails when `name` is not a valid URI.
Result<OpenOptions> open_options(std::string_view name, std::string format, std::string cache,
                                 bool read_only, bool force_share);

// Adds the key=value items of `text` (one -o argument) to `opts`.
Result<void> append_option_list(uri::Options& opts, std::string_view text);

// Creates the loop every command runs its coroutines on; prints the error
// and returns null when io_uring is unavailable.
std::unique_ptr<Loop> make_loop();

// The arguments info, map and check share: [-f FMT] [-U]
// [--output=human|json] [-h] FILENAME, plus a command's own options.
struct ImageArgs {
    bool help = false;
    bool json = false;
    bool force_share = false;
    std::string format;
    std::string filename;
};

// Parses `argv` into `a`: the shared options above, and the command's own
// (`extra_short` in getopt's form, `extra_long` ending with {}), each handed
// to `extra(c, arg)`, which may refuse it. Fails naming the unknown option,
// the bad value, or the missing or extra FILENAME.
Result<ImageArgs> parse_image_args(int argc, char** argv, const std::string& extra_short,
                                   const std::vector<option>& extra_long,
                                   const std::function<Result<void>(int, const char*)>& extra);

// `s` as a JSON string literal, quotes included.
std::string json_string(std::string_view s);

} // namespace coblk::img
