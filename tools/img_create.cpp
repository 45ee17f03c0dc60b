// coblk-img create [-f FMT] [-o OPTIONS] [-b BASE [-F BASE_FMT]] [-q] FILENAME [SIZE]
#include <cstdio>

#include <fmt/format.h>

#include "tools/img_commands.h"
#include "tools/img_common.h"
#include "uri/options.h"

namespace coblk::img {
namespace {

constexpr const char* kHelp = R"(Usage: coblk-img create [-f FMT] [-o OPTIONS] [-b BASE [-F BASE_FMT]] [-q] FILENAME [SIZE]

Creates an image of SIZE bytes at FILENAME (a path or any coblk URI). For a
device that cannot be created (a block device, null://, memory://), checks
that it holds at least SIZE bytes.

  -f FMT        image format (default: raw)
  -o OPTIONS    format options, key=value[,key=value...]; size=SIZE stands
                for the SIZE argument
  -b BASE       base (backing) image (passed to the format as backing_file=)
  -F BASE_FMT   format of the backing file (backing_fmt=)
  -q            quiet: do not print what is created
  -h, --help    print this help

SIZE is a byte count with an optional K, M, G, T, P or E suffix (powers of 1024);
with -b it may be left out to take the base image's size.

fvd options (-f fvd):
  block_size=SIZE     copy-on-write unit, a power of two from 4K to 1M (64K)
  chunk_size=SIZE     allocation unit of a compact image (1M)
  compact=on|off      allocate chunks on first write (on) or store data at
                      its virtual offset in a sparse file (off)
  journal_size=SIZE   metadata journal (4M)
  copy_on_read=on|off, prefetch=on|off   defaults recorded in the image
A relative BASE is relative to the directory of FILENAME.
)";

struct CreateArgs {
    bool help = false;
    bool quiet = false;
    std::string filename;
    CreateOptions create;
};

// Parses create's arguments; fails naming the unknown option, the missing
// argument or the bad size.
Result<CreateArgs> parse_args(int argc, char** argv)
{
    static const option kLong[] = {{"help", no_argument, nullptr, 'h'}, {}};
    OptionParser p(argc, argv, "hf:o:b:F:q", kLong);
    CreateArgs a;
    std::optional<std::string> size_text;
    for (int c; (c = p.next()) != -1;) {
        switch (c) {
        case 0:
            return p.error();
        case 'h':
            a.help = true;
            return a;
        case 'f':
            a.create.format = p.arg();
            break;
        case 'o':
            if (auto r = append_option_list(a.create.options, p.arg()); !r)
                return r.error();
            break;
        case 'b':
            a.create.options.emplace_back("backing_file", p.arg());
            break;
        case 'F':
            a.create.options.emplace_back("backing_fmt", p.arg());
            break;
        case 'q':
            a.quiet = true;
            break;
        }
    }
    // As with qemu-img, -o size= is an alternative to the SIZE argument, and
    // the argument wins when both are given.
    uri::Options rest;
    for (auto& kv : a.create.options) {
        if (kv.first == "size")
            size_text = kv.second;
        else
            rest.push_back(std::move(kv));
    }
    a.create.options = std::move(rest);
    auto args = p.positional();
    if (args.empty())
        return make_error(EINVAL, "missing FILENAME");
    if (args.size() > 2)
        return make_error(EINVAL, "unexpected argument '{}'", args[2]);
    a.filename = args[0];
    if (args.size() == 2)
        size_text = args[1];
    // With a base image, the size may come from the base.
    if (!size_text && uri::find_option(a.create.options, "backing_file"))
        return a;
    if (!size_text)
        return make_error(EINVAL, "missing SIZE (give it as an argument or as -o size=SIZE)");
    auto size = uri::parse_size(*size_text, "image size");
    if (!size)
        return size.error();
    a.create.size = *size;
    return a;
}

// Creates the image; prints any error. Returns the exit status.
Task<int> create(Loop& loop, const CreateArgs& a)
{
    auto r = co_await create_image(loop, a.filename, a.create);
    if (!r) {
        print_error(r.error().message);
        co_return kExitFailure;
    }
    co_return kExitOk;
}

} // namespace

int cmd_create(int argc, char** argv)
{
    auto args = parse_args(argc, argv);
    if (!args)
        return usage_error("create", args.error(), kExitFailure);
    if (args->help) {
        std::fputs(kHelp, stdout);
        return kExitOk;
    }
    auto loop = make_loop();
    if (!loop)
        return kExitFailure;
    if (!args->quiet) {
        std::string extra;
        for (const auto& [k, v] : args->create.options)
            extra += fmt::format(" {}={}", k, v);
        fmt::print("Formatting '{}', fmt={} size={}{}\n", args->filename, args->create.format,
                   args->create.size, extra);
        std::fflush(stdout);
    }
    return sync_wait(*loop, create(*loop, *args));
}

} // namespace coblk::img
