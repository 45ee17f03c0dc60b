// coblk-img convert [-f FMT] [-O FMT] [-p] [-q] [-n] [-t CACHE] [-T SRC_CACHE]
//                   [-o OPTIONS] [-m N] [-S SIZE] [-W] [-U] SRC DST
#include <charconv>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "tools/img_commands.h"
#include "tools/img_common.h"
#include "tools/img_copy.h"
#include "tools/img_progress.h"

namespace coblk::img {
namespace {

constexpr const char* kHelp = R"(Usage: coblk-img convert [-f FMT] [-O FMT] [-p] [-q] [-n] [-t CACHE] [-T SRC_CACHE]
                         [-o OPTIONS] [-m N] [-S SIZE] [-W] [-U] SRC DST

Copies the image SRC to DST; both are paths or any coblk URIs. Unless -n is
given, DST is created first with SRC's size.

  -f FMT            format of SRC (default: probe)
  -O FMT            format of DST (default: raw)
  -o OPTIONS        format options for creating DST, key=value[,key=value...]
  -n                DST exists: do not create it (ranges of zeros are then
                    written with write-zeroes, since DST may hold old data)
  --target-is-zero  with -n: DST already reads as zeros, skip zero ranges
  -t CACHE          cache mode of DST: none (O_DIRECT) or writeback (default)
  -T SRC_CACHE      cache mode of SRC: none or writeback (default)
  -m N              requests in flight, 1 to 16 (default: 8)
  -S SIZE           smallest run of zeros left out of DST (default: 4K);
                    0 writes every byte, fully allocating DST
  -W                accepted for qemu-img compatibility (writes always go
                    out of order)
  -U, --force-share do not take SRC's file lock
  -p                show progress on stderr
  -q                quiet (no progress)
  -h, --help        print this help
)";

constexpr uint64_t kChunk = 2 << 20;
constexpr unsigned kMaxWorkers = 16;

enum { kOptTargetIsZero = 256 };

struct ConvertArgs {
    bool help = false;
    bool progress = false;
    bool quiet = false;
    bool no_create = false;
    bool target_is_zero = false;
    bool force_share = false;
    std::string src_format;
    std::string out_format = "raw";
    std::string cache;
    std::string src_cache;
    uri::Options create_options;
    unsigned workers = 8;
    uint64_t sparse = 4096;
    std::string src;
    std::string dst;
};

// Parses convert's arguments; fails naming the unknown option, the bad
// value or the missing file name.
Result<ConvertArgs> parse_args(int argc, char** argv)
{
    static const option kLong[] = {{"help", no_argument, nullptr, 'h'},
                                   {"force-share", no_argument, nullptr, 'U'},
                                   {"target-is-zero", no_argument, nullptr, kOptTargetIsZero},
                                   {}};
    OptionParser p(argc, argv, "hf:O:o:nt:T:m:S:WUpq", kLong);
    ConvertArgs a;
    for (int c; (c = p.next()) != -1;) {
        switch (c) {
        case 0:
            return p.error();
        case 'h':
            a.help = true;
            return a;
        case 'f':
            a.src_format = p.arg();
            break;
        case 'O':
            a.out_format = p.arg();
            break;
        case 'o':
            if (auto r = append_option_list(a.create_options, p.arg()); !r)
                return r.error();
            break;
        case 'n':
            a.no_create = true;
            break;
        case kOptTargetIsZero:
            a.target_is_zero = true;
            break;
        case 't':
            a.cache = p.arg();
            break;
        case 'T':
            a.src_cache = p.arg();
            break;
        case 'm': {
            std::string_view text = p.arg();
            unsigned n = 0;
            auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
            if (ec != std::errc() || end != text.data() + text.size() || n < 1 ||
                n > kMaxWorkers)
                return make_error(EINVAL, "-m must be a number from 1 to {}, not '{}'",
                                  kMaxWorkers, text);
            a.workers = n;
            break;
        }
        case 'S': {
            auto n = uri::parse_size(p.arg(), "sparse size (-S)");
            if (!n)
                return n.error();
            if (*n % 512 != 0 || *n > kChunk)
                return make_error(EINVAL, "-S must be a multiple of 512 up to {}, not '{}'",
                                  human_size(kChunk), p.arg());
            a.sparse = *n;
            break;
        }
        case 'W':
            break;
        case 'U':
            a.force_share = true;
            break;
        case 'p':
            a.progress = true;
            break;
        case 'q':
            a.quiet = true;
            break;
        }
    }
    auto args = p.positional();
    if (args.size() < 2)
        return make_error(EINVAL, "missing {}", args.empty() ? "SRC and DST" : "DST");
    if (args.size() > 2)
        return make_error(EINVAL, "unexpected argument '{}' (one SRC and one DST only)",
                          args[2]);
    if (a.target_is_zero && !a.no_create)
        return make_error(EINVAL, "--target-is-zero needs -n");
    if (a.no_create && !a.create_options.empty())
        return make_error(EINVAL, "-o needs a target to create, which -n rules out");
    a.src = args[0];
    a.dst = args[1];
    return a;
}

// Whether a device of protocol `protocol` reads as zeros right after
// create_image made it. Files, Gluster files and RBD images are new; block
// devices and the other backends keep what they held.
bool created_zeroed(std::string_view protocol)
{
    return protocol == "file" || protocol == "gluster" || protocol == "rbd";
}

// The whole of convert once the arguments are known: opens SRC, creates and
// opens DST, copies, flushes, closes. Prints any error; returns the exit status.
Task<int> convert(Loop& loop, const ConvertArgs& a, const OpenOptions& src_opts,
                  const OpenOptions& dst_opts)
{
    auto src = co_await open_device(loop, a.src, src_opts);
    if (!src) {
        print_error(src.error().message);
        co_return kExitFailure;
    }
    uint64_t size = (*src)->size();
    if (!a.no_create) {
        CreateOptions c{a.out_format, size, a.create_options};
        auto created = co_await create_image(loop, a.dst, c);
        if (!created) {
            print_error(created.error().message);
            co_await (*src)->close();
            co_return kExitFailure;
        }
    }
    auto dst = co_await open_device(loop, a.dst, dst_opts);
    if (!dst) {
        print_error(dst.error().message);
        co_await (*src)->close();
        co_return kExitFailure;
    }

    Result<void> result;
    if ((*dst)->size() < size) {
        result = make_error(ENOSPC, "target '{}' is smaller than the source ({} < {} bytes)",
                            a.dst, (*dst)->size(), size);
    } else {
        CopyConfig cfg;
        cfg.chunk = kChunk;
        cfg.workers = a.workers;
        cfg.sparse = a.sparse;
        cfg.target_zeroed = a.target_is_zero ||
                            (!a.no_create && created_zeroed((*dst)->protocol()));
        Progress progress(a.progress && !a.quiet, size);
        Copier copier(**src, a.src, **dst, a.dst, cfg, progress);
        result = co_await copier.run();
        if (result) {
            int r = co_await (*dst)->flush();
            if (r < 0)
                result = make_error(-r, "error flushing '{}': {}", a.dst, std::strerror(-r));
        }
        if (result)
            progress.finish();
        else
            progress.stop();
    }
    co_await (*dst)->close();
    co_await (*src)->close();
    if (!result) {
        print_error(result.error().message);
        co_return kExitFailure;
    }
    co_return kExitOk;
}

} // namespace

int cmd_convert(int argc, char** argv)
{
    auto args = parse_args(argc, argv);
    if (!args)
        return usage_error("convert", args.error(), kExitFailure);
    if (args->help) {
        std::fputs(kHelp, stdout);
        return kExitOk;
    }
    auto src_opts = open_options(args->src, args->src_format, args->src_cache, true,
                                 args->force_share);
    if (!src_opts) {
        print_error(src_opts.error().message);
        return kExitFailure;
    }
    auto dst_opts = open_options(args->dst, args->out_format, args->cache, false, false);
    if (!dst_opts) {
        print_error(dst_opts.error().message);
        return kExitFailure;
    }
    auto loop = make_loop();
    if (!loop)
        return kExitFailure;
    return sync_wait(*loop, convert(*loop, *args, *src_opts, *dst_opts));
}

} // namespace coblk::img
