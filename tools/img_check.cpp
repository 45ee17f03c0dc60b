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

enum { kOptOutput = 256 };
constexpr int kExitCorrupt = 2;
constexpr int kExitLeaks = 3;
constexpr int kExitNoChecks = 63;

struct CheckArgs {
    bool help = false;
    bool json = false;
    bool repair = false;
    bool force_share = false;
    std::string format;
    std::string filename;
};

Result<CheckArgs> parse_args(int argc, char** argv)
{
    static const option kLong[] = {{"help", no_argument, nullptr, 'h'},
                                   {"output", required_argument, nullptr, kOptOutput},
                                   {"repair", required_argument, nullptr, 'r'},
                                   {"force-share", no_argument, nullptr, 'U'},
                                   {}};
    OptionParser p(argc, argv, "hf:r:U", kLong);
    CheckArgs a;
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
        case 'r':
            if (std::string_view(p.arg()) != "leaks" && std::string_view(p.arg()) != "all")
                return make_error(EINVAL, "-r must be 'leaks' or 'all', not '{}'", p.arg());
            a.repair = true;
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
        }
    }
    auto args = p.positional();
    if (args.empty())
        return make_error(EINVAL, "missing FILENAME");
    if (args.size() > 1)
        return make_error(EINVAL, "unexpected argument '{}'", args[1]);
    if (a.repair && a.force_share)
        return make_error(EINVAL, "-r needs the image's lock: leave out -U");
    a.filename = args[0];
    return a;
}

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
Task<int> check(Loop& loop, const CheckArgs& a, const OpenOptions& o, Report& rep)
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
    if (a.repair) {
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

void print_human(const CheckArgs& a, const Report& r)
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
                   a.repair ? "were written in place" : "will be replayed at the next open");
    if (!r.clean && !a.repair)
        fmt::print("The image was not closed cleanly (or is in use).\n");
}

void print_json(const CheckArgs& a, const Report& r)
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
    auto args = parse_args(argc, argv);
    if (!args)
        return usage_error("check", args.error(), kExitFailure);
    if (args->help) {
        std::fputs(kHelp, stdout);
        return kExitOk;
    }
    auto opts = open_options(args->filename, args->format, "", !args->repair, args->force_share);
    if (!opts) {
        print_error(opts.error().message);
        return kExitFailure;
    }
    auto loop = make_loop();
    if (!loop)
        return kExitFailure;
    Report rep;
    int status = sync_wait(*loop, check(*loop, *args, *opts, rep));
    if (status == kExitOk || status == kExitCorrupt || status == kExitLeaks) {
        if (args->json)
            print_json(*args, rep);
        else
            print_human(*args, rep);
    }
    return status;
}

} // namespace coblk::img
