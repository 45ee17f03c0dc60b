// coblk-img map [-f FMT] [--output=human|json] [-U] FILENAME
#include <cstdio>

#include <fmt/format.h>

#include "formats/fvd.h"
#include "tools/img_commands.h"
#include "tools/img_common.h"

namespace coblk::img {
namespace {

constexpr const char* kHelp = R"(Usage: coblk-img map [-f FMT] [--output=human|json] [-U] FILENAME

Prints where an image's data is, as ranges of virtual bytes: in the image
itself, in its base image, or nowhere (reads as zeros). For a format with no
base (raw), ranges are data or zero as the protocol reports them.

  -f FMT               image format (default: probe)
  --output=human|json  output style (default: human)
  -U, --force-share    do not take the image's file lock
  -h, --help           print this help

JSON: a list of {"start", "length", "depth", "data", "zero"} objects as
qemu-img map prints them: depth 0 is the image, 1 its base.
)";

struct Range {
    uint64_t start = 0, length = 0;
    int depth = 0;
    bool data = false, zero = false;
    const char* where = "";
};

// Ranges of an FVD image, merged block by block.
std::vector<Range> fvd_ranges(const FvdLayer& f)
{
    std::vector<Range> out;
    const fvd::Header& h = f.header();
    bool has_base = f.base() != nullptr;
    for (uint64_t b = 0; b < h.blocks(); b++) {
        Range r;
        r.start = b * h.block_size;
        r.length = std::min<uint64_t>(h.block_size, h.virtual_size - r.start);
        switch (f.where(b)) {
        case FvdLayer::Where::Image: r = {r.start, r.length, 0, true, false, "image"}; break;
        case FvdLayer::Where::Base: r = {r.start, r.length, 1, true, false, "base"}; break;
        case FvdLayer::Where::Zero:
            r = {r.start, r.length, has_base ? 1 : 0, false, true, "zero"};
            break;
        }
        if (!out.empty() && out.back().where == r.where &&
            out.back().start + out.back().length == r.start)
            out.back().length += r.length;
        else
            out.push_back(r);
    }
    return out;
}

// Ranges of any other layer, from block_status. Fails with -errno.
Task<int> status_ranges(Layer& l, std::vector<Range>& out)
{
    for (uint64_t off = 0; off < l.size();) {
        Extent e;
        int r = co_await l.block_status(off, l.size() - off, &e);
        if (r < 0)
            co_return r;
        uint64_t len = std::max<uint64_t>(1, std::min(e.len, l.size() - off));
        const char* where = e.zero ? "zero" : "data";
        if (!out.empty() && out.back().where == where)
            out.back().length += len;
        else
            out.push_back({off, len, 0, !e.zero, e.zero, where});
        off += len;
    }
    co_return 0;
}

Task<int> map(Loop& loop, const ImageArgs& a, const OpenOptions& o)
{
    auto dev = co_await open_device(loop, a.filename, o);
    if (!dev) {
        print_error(dev.error().message);
        co_return kExitFailure;
    }
    Layer& l = **dev;
    std::vector<Range> ranges;
    int r = 0;
    if (auto* f = dynamic_cast<FvdLayer*>(&l))
        ranges = fvd_ranges(*f);
    else
        r = co_await status_ranges(l, ranges);
    co_await l.close();
    if (r < 0) {
        print_error(io_error("mapping", a.filename, 0, r));
        co_return kExitFailure;
    }
    if (a.json) {
        fmt::print("[");
        for (size_t i = 0; i < ranges.size(); i++) {
            const Range& x = ranges[i];
            fmt::print("{}{{ \"start\": {}, \"length\": {}, \"depth\": {}, \"data\": {}, "
                       "\"zero\": {} }}", i ? ",\n" : "", x.start, x.length, x.depth,
                       x.data ? "true" : "false", x.zero ? "true" : "false");
        }
        fmt::print("]\n");
    } else {
        fmt::print("{:<20}{:<20}{}\n", "Offset", "Length", "Where");
        for (const Range& x : ranges)
            fmt::print("{:<#20x}{:<#20x}{}\n", x.start, x.length, x.where);
    }
    co_return kExitOk;
}

} // namespace

int cmd_map(int argc, char** argv)
{
    auto args = parse_image_args(argc, argv, "", {}, [](int, const char*) -> Result<void> {
        return {};
    });
    if (!args)
        return usage_error("map", args.error(), kExitFailure);
    if (args->help) {
        std::fputs(kHelp, stdout);
        return kExitOk;
    }
    auto opts = open_options(args->filename, args->format, "", true, args->force_share);
    if (!opts) {
        print_error(opts.error().message);
        return kExitFailure;
    }
    auto loop = make_loop();
    if (!loop)
        return kExitFailure;
    return sync_wait(*loop, map(*loop, *args, *opts));
}

} // namespace coblk::img
