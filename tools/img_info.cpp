// coblk-img info [-f FMT] [--output=human|json] [-U] FILENAME
#include <cstdio>

#include <fmt/format.h>

#include "formats/fvd.h"
#include "tools/img_commands.h"
#include "tools/img_common.h"

namespace coblk::img {
namespace {

constexpr const char* kHelp = R"(Usage: coblk-img info [-f FMT] [--output=human|json] [-U] FILENAME

Prints the format, virtual size, allocated size and protocol of an image
(opened read-only), and its snapshots when the image has any.

  -f FMT               image format (default: probe)
  --output=human|json  output style (default: human)
  -U, --force-share    do not take the image's file lock
  -h, --help           print this help
)";

struct ImageInfo {
    std::string format;
    std::string protocol;
    uint64_t virtual_size = 0;
    int64_t allocated = -ENOTSUP;  // bytes, or -errno when unknown
    std::string backing_file, backing_format;
    // Format-specific fields: name, value, and whether the value is a JSON
    // number/boolean (else a string).
    struct Field {
        std::string name, value;
        bool bare = false;
    };
    std::vector<Field> specific;
    std::vector<SnapshotInfo> snapshots;
};

// What info shows of an FVD image: its geometry, features, journal and how
// much of the base has been copied.
void add_fvd_fields(const FvdLayer& f, ImageInfo& i)
{
    const fvd::Header& h = f.header();
    i.backing_file = h.base_name;
    i.backing_format = h.base_format;
    auto num = [&](const char* name, uint64_t v) {
        i.specific.push_back({name, std::to_string(v), true});
    };
    auto flag = [&](const char* name, bool v) {
        i.specific.push_back({name, v ? "true" : "false", true});
    };
    num("version", h.version);
    num("block-size", h.block_size);
    flag("compact", h.compact());
    if (h.compact()) {
        num("chunk-size", h.chunk_size);
        num("chunks-allocated", f.chunks_allocated());
    }
    num("journal-size", h.journal_size);
    num("journal-records", f.replayed_records());
    flag("clean-shutdown", h.clean);
    flag("copy-on-read", h.compatible & fvd::kCompatCopyOnRead);
    flag("prefetch", h.compatible & fvd::kCompatPrefetch);
    uint64_t in = f.blocks_in_image(), all = h.blocks();
    num("blocks-in-image", in);
    num("blocks", all);
    if (!h.base_name.empty()) {
        // Blocks the base covers, and how many of them the image holds.
        uint64_t base_blocks = (h.base_size + h.block_size - 1) / h.block_size;
        bool copied = (h.compatible & fvd::kCompatBaseCopied) || in >= all;
        i.specific.push_back({"base-copied", copied ? "100%" :
                              fmt::format("{:.1f}%", base_blocks ? 100.0 * std::min(in, base_blocks) /
                                                                       double(base_blocks) : 100.0)});
    }
}

void print_human(const std::string& filename, const ImageInfo& i)
{
    fmt::print("image: {}\n", filename);
    fmt::print("file format: {}\n", i.format);
    fmt::print("virtual size: {} ({} bytes)\n", human_size(i.virtual_size), i.virtual_size);
    if (i.allocated >= 0)
        fmt::print("disk size: {}\n", human_size(uint64_t(i.allocated)));
    else
        fmt::print("disk size: unavailable\n");
    fmt::print("protocol: {}\n", i.protocol);
    if (!i.backing_file.empty())
        fmt::print("backing file: {}\n", i.backing_file);
    if (!i.backing_format.empty())
        fmt::print("backing file format: {}\n", i.backing_format);
    if (!i.specific.empty()) {
        fmt::print("Format specific information:\n");
        for (const auto& f : i.specific)
            fmt::print("    {}: {}\n", f.name, f.value);
    }
    if (i.snapshots.empty())
        return;
    print_snapshot_list(i.snapshots);
}

void print_json(const std::string& filename, const ImageInfo& i)
{
    fmt::print("{{\n");
    fmt::print("    \"virtual-size\": {},\n", i.virtual_size);
    fmt::print("    \"filename\": {},\n", json_string(filename));
    fmt::print("    \"format\": {},\n", json_string(i.format));
    if (i.allocated >= 0)
        fmt::print("    \"actual-size\": {},\n", i.allocated);
    if (!i.backing_file.empty())
        fmt::print("    \"backing-filename\": {},\n", json_string(i.backing_file));
    if (!i.backing_format.empty())
        fmt::print("    \"backing-filename-format\": {},\n", json_string(i.backing_format));
    if (!i.specific.empty()) {
        fmt::print("    \"format-specific\": {{\n");
        for (size_t k = 0; k < i.specific.size(); k++) {
            const auto& f = i.specific[k];
            fmt::print("        {}: {}{}\n", json_string(f.name),
                       f.bare ? f.value : json_string(f.value),
                       k + 1 < i.specific.size() ? "," : "");
        }
        fmt::print("    }},\n");
    }
    if (!i.snapshots.empty()) {
        fmt::print("    \"snapshots\": [\n");
        for (size_t k = 0; k < i.snapshots.size(); k++) {
            const auto& s = i.snapshots[k];
            fmt::print("        {{\"id\": \"{}\", \"name\": {}, \"vm-state-size\": {}, "
                       "\"date-sec\": {}}}{}\n", s.id, json_string(s.name), s.size,
                       s.timestamp, k + 1 < i.snapshots.size() ? "," : "");
        }
        fmt::print("    ],\n");
    }
    fmt::print("    \"protocol\": {}\n", json_string(i.protocol));
    fmt::print("}}\n");
}

// Opens `a.filename` read-only, prints what info shows, and closes it.
// Returns the exit status.
Task<int> info(Loop& loop, const ImageArgs& a, const OpenOptions& o)
{
    auto dev = co_await open_device(loop, a.filename, o);
    if (!dev) {
        print_error(dev.error().message);
        co_return kExitFailure;
    }
    Layer& layer = **dev;
    ImageInfo i{layer.kind(), layer.protocol(), layer.size(), layer.allocated_bytes()};
    if (auto* f = dynamic_cast<FvdLayer*>(&layer))
        add_fvd_fields(*f, i);
    // A stack without snapshot support simply has none to show.
    if (auto snaps = co_await layer.snapshot_list(); snaps)
        i.snapshots = std::move(*snaps);
    co_await layer.close();
    if (a.json)
        print_json(a.filename, i);
    else
        print_human(a.filename, i);
    co_return kExitOk;
}

} // namespace

int cmd_info(int argc, char** argv)
{
    auto args = parse_image_args(argc, argv, "", {}, [](int, const char*) -> Result<void> {
        return {};
    });
    if (!args)
        return usage_error("info", args.error(), kExitFailure);
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
    return sync_wait(*loop, info(*loop, *args, *opts));
}

} // namespace coblk::img
