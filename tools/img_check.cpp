// coblk-img check [-f FMT] [-r leaks|all] [--output=human|json] [-U] FILENAME
#include <cstdio>

#include <fmt/format.h>

#include "formats/fvd.h"
#include "tools/img_commands.h"
#include "tools/img_common.h"

namespace coblk::img {
namespace {

constexpr const char* kHelp = R"(Usage: coblk-img check [-f FMT] [-r leaks|all] [--output=human|json] [-U] FILENAME

Checks an image's metadata: for FVD, the header, the bitmap, the table (no
two chunks in one place, nothing past the end, every block in the image in
an allocated chunk) and the journal (sequence numbers and CRCs), and looks
for leaked space.

  -f FMT               image format (default: probe)
  -r leaks|all         repair: give leaked space back and write the journal's
                       records in place (the image is opened for writing)
  --output=human|json  output style (default: human)
  -U, --force-share    do not take the image's file lock (no repair)
  -h, --help           print this help

Exit status, as qemu-img check's: 0 no problem found (or all repaired),
1 the check could not be done, 2 corruption, 3 leaks only,
63 the format has no metadata to check.
)";

constexpr int kExitCorrupt = 2;
constexpr int kExitLeaks = 3;
constexpr int kExitNoChecks = 63;

struct Report {
    std::string corruption;      // the first corruption found, empty if none
    uint64_t leaked_chunks = 0;  // inside the data area (reused by later writes)
    uint64_t leaked_tail = 0;    // bytes past the last chunk in use
    uint64_t journal_records = 0;
    bool clean = true;
    bool repaired = false;
};

// Opens the image (for writing when repairing) and fills `rep`. Returns the
// exit status.
Task<int> check(Loop& loop, const ImageArgs& a, bool repair, const OpenOptions& o,
                Report& rep)
{
    auto dev = co_await open_device(loop, a.filename, o);
    if (!dev) {
        const Error& e = dev.error();
        if (e.code == EINVAL || e.code == ELOOP) {
            rep.corruption = e.message;
            co_return kExitCorrupt;
        }
        print_error(e.message);
        co_return kExitFailure;
    }
    Layer& l = **dev;
    auto* f = dynamic_cast<FvdLayer*>(&l);
    if (!f) {
        co_await l.close();
        print_error(fmt::format("'{}' is a {} image, which has no metadata to check",
                                a.filename, l.kind()));
        co_return kExitNoChecks;
    }
    rep.leaked_chunks = f->chunks_free_at_open();
    rep.leaked_tail = f->unused_tail_bytes();
    rep.journal_records = f->replayed_records();
    rep.clean = f->header().clean;
    int status = kExitOk;
    if (repair) {
        int r = co_await f->release_unused_tail();
        if (r < 0) {
            print_error(io_error("truncating", a.filename, 0, r));
            status = kExitFailure;
        } else {
            rep.leaked_tail = 0;
            rep.repaired = true;
        }
    } else if (rep.leaked_tail) {
        status = kExitLeaks;
    }
    // A clean close writes the replayed journal in place (when writable).
    co_await l.close();
    co_return status;
}

void print_human(bool repair, const Report& r)
{
    if (!r.corruption.empty()) {
        fmt::print("ERROR: {}\n", r.corruption);
        fmt::print("\n1 errors were found on the image.\nData may be corrupted, or further "
                   "writes to the image may corrupt it.\n");
        return;
    }
    fmt::print("No errors were found on the image.\n");
    if (r.leaked_tail)
        fmt::print("{} bytes past the last chunk in use are leaked (-r leaks gives them "
                   "back).\n", r.leaked_tail);
    if (r.leaked_chunks)
        fmt::print("{} chunks inside the data area are unused; new allocations reuse them.\n",
                   r.leaked_chunks);
    if (r.journal_records)
        fmt::print("{} journal records {}.\n", r.journal_records,
                   repair ? "were written in place" : "will be replayed at the next open");
    if (!r.clean && !repair)
        fmt::print("The image was not closed cleanly (or is in use).\n");
}

void print_json(const ImageArgs& a, const Report& r)
{
    fmt::print("{{\n");
    fmt::print("    \"filename\": {},\n", json_string(a.filename));
    fmt::print("    \"format\": \"fvd\",\n");
    fmt::print("    \"check-errors\": 0,\n");
    fmt::print("    \"corruptions\": {},\n", r.corruption.empty() ? 0 : 1);
    if (!r.corruption.empty())
        fmt::print("    \"corruption\": {},\n", json_string(r.corruption));
    fmt::print("    \"leaks\": {},\n", r.leaked_tail ? 1 : 0);
    fmt::print("    \"leaked-bytes\": {},\n", r.leaked_tail);
    fmt::print("    \"unused-chunks\": {},\n", r.leaked_chunks);
    fmt::print("    \"journal-records\": {},\n", r.journal_records);
    fmt::print("    \"clean-shutdown\": {}\n", r.clean ? "true" : "false");
    fmt::print("}}\n");
}

} // namespace

int cmd_check(int argc, char** argv)
{
    bool repair = false;
    static const std::vector<option> kRepair = {{"repair", required_argument, nullptr, 'r'}, {}};
    auto args = parse_image_args(argc, argv, "r:", kRepair, [&](int c, const char* v) -> Result<void> {
        if (c == 'r' && std::string_view(v) != "leaks" && std::string_view(v) != "all")
            return make_error(EINVAL, "-r must be 'leaks' or 'all', not '{}'", v);
        repair = c == 'r';
        return {};
    });
    if (args && repair && args->force_share)
        args = make_error(EINVAL, "-r needs the image's lock: leave out -U");
    if (!args)
        return usage_error("check", args.error(), kExitFailure);
    if (args->help) {
        std::fputs(kHelp, stdout);
        return kExitOk;
    }
    auto opts = open_options(args->filename, args->format, "", !repair, args->force_share);
    if (!opts) {
        print_error(opts.error().message);
        return kExitFailure;
    }
    auto loop = make_loop();
    if (!loop)
        return kExitFailure;
    Report rep;
    int status = sync_wait(*loop, check(*loop, *args, repair, *opts, rep));
    if (status == kExitOk || status == kExitCorrupt || status == kExitLeaks) {
        if (args->json)
            print_json(*args, rep);
        else
            print_human(repair, rep);
    }
    return status;
}

} // namespace coblk::img
