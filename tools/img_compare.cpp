// coblk-img compare [-f FMT] [-F FMT] [-T CACHE] [-p] [-q] [-s] [-U] A B
//
// Exit status as qemu-img's: 0 identical, 1 different, 2 error.
#include <algorithm>
#include <cstdio>
#include <limits>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "engine/sync.h"
#include "tools/img_commands.h"
#include "tools/img_common.h"
#include "tools/img_progress.h"

namespace coblk::img {
namespace {

constexpr const char* kHelp = R"(Usage: coblk-img compare [-f FMT] [-F FMT] [-T CACHE] [-p] [-q] [-s] [-U] A B

Compares the contents of images A and B (paths or any coblk URIs, opened
read-only). Where one image is larger, its excess must read as zeros, unless
-s is given, in which case sizes must match.

  -f FMT             format of A (default: probe)
  -F FMT             format of B (default: probe)
  -T CACHE           cache mode of both: none (O_DIRECT) or writeback (default)
  -s                 strict: a size mismatch is a difference
  -U, --force-share  do not take the images' file locks
  -p                 show progress on stderr
  -q                 quiet: print nothing, only set the exit status
  -h, --help         print this help

Exit status: 0 if the images are identical, 1 if they differ, 2 on error.
)";

constexpr int kExitSame = 0;
constexpr int kExitDifferent = 1;
constexpr int kExitError = 2;

constexpr uint64_t kChunk = 2 << 20;
constexpr unsigned kWorkers = 4;

struct CompareArgs {
    bool help = false;
    bool progress = false;
    bool quiet = false;
    bool strict = false;
    bool force_share = false;
    std::string format_a;
    std::string format_b;
    std::string cache;
    std::string a;
    std::string b;
};

// Parses compare's arguments; fails naming the unknown option or the
// missing file name.
Result<CompareArgs> parse_args(int argc, char** argv)
{
    static const option kLong[] = {{"help", no_argument, nullptr, 'h'},
                                   {"force-share", no_argument, nullptr, 'U'},
                                   {}};
    OptionParser p(argc, argv, "hf:F:T:psqU", kLong);
    CompareArgs a;
    for (int c; (c = p.next()) != -1;) {
        switch (c) {
        case 0:
            return p.error();
        case 'h':
            a.help = true;
            return a;
        case 'f':
            a.format_a = p.arg();
            break;
        case 'F':
            a.format_b = p.arg();
            break;
        case 'T':
            a.cache = p.arg();
            break;
        case 'p':
            a.progress = true;
            break;
        case 's':
            a.strict = true;
            break;
        case 'q':
            a.quiet = true;
            break;
        case 'U':
            a.force_share = true;
            break;
        }
    }
    auto args = p.positional();
    if (args.size() < 2)
        return make_error(EINVAL, "expected two image names, got {}", args.size());
    if (args.size() > 2)
        return make_error(EINVAL, "unexpected argument '{}'", args[2]);
    a.a = args[0];
    a.b = args[1];
    return a;
}

// One of the two images under comparison.
struct Side {
    Layer& layer;
    std::string_view name;
    uint64_t size;
};

// Compares two layers over the size of the larger one, a missing tail
// counting as zeros. Several coroutines work on consecutive pieces; the
// lowest differing offset found wins, and no piece past it is started.
class Comparer {
public:
    Comparer(Side a, Side b, Progress& progress)
        : a_(a), b_(b), end_(std::max(a.size, b.size)), progress_(progress)
    {
    }

    // The offset of the first differing byte, nullopt when none differs.
    // Fails with the first I/O error ("error reading 'URI' at offset N: ...").
    Task<Result<std::optional<uint64_t>>> run()
    {
        std::vector<Buffer> buffers;
        for (unsigned i = 0; i < 2 * kWorkers; i++) {
            buffers.push_back(make_buffer(kChunk));
            if (!buffers.back())
                co_return make_error(ENOMEM, "cannot allocate {} bytes of I/O buffers",
                                     2 * kWorkers * kChunk);
        }
        TaskGroup group;
        for (unsigned i = 0; i < kWorkers; i++)
            group.spawn(worker(buffers[2 * i].get(), buffers[2 * i + 1].get()));
        co_await group.join();
        if (failure_)
            co_return *failure_;
        co_return mismatch_;
    }

private:
    // A range where each side is either known to read as zeros or must be
    // read. len == 0: nothing left.
    struct Piece {
        uint64_t off = 0;
        uint64_t len = 0;
        bool zero_a = false;
        bool zero_b = false;
    };

    // How far from `off` side `s` keeps one status, and whether that status
    // reads as zeros. 0 or -errno (recorded).
    Task<int> extent_at(const Side& s, uint64_t off, uint64_t* len, bool* zero)
    {
        if (off >= s.size) {  // past the end: zeros, as far as the other side goes
            *len = std::numeric_limits<uint64_t>::max();
            *zero = true;
            co_return 0;
        }
        Extent e{s.size - off, true, false};
        int r = co_await s.layer.block_status(off, s.size - off, &e);
        if (r == -ENOTSUP) {
            e = Extent{s.size - off, true, false};
        } else if (r < 0) {
            fail(s, off, r);
            co_return r;
        }
        *len = e.len == 0 ? s.size - off : std::min(e.len, s.size - off);
        *zero = e.zero || !e.data;
        co_return 0;
    }

    // Takes the next piece from the cursor. 0 or -errno (recorded).
    Task<int> claim(Piece* out)
    {
        auto guard = co_await lock_.lock();
        *out = Piece{cursor_};
        if (failure_ || cursor_ >= end_ || (mismatch_ && cursor_ >= *mismatch_))
            co_return 0;
        uint64_t len_a, len_b;
        int r = co_await extent_at(a_, cursor_, &len_a, &out->zero_a);
        if (r < 0)
            co_return r;
        r = co_await extent_at(b_, cursor_, &len_b, &out->zero_b);
        if (r < 0)
            co_return r;
        out->len = std::min({len_a, len_b, end_ - cursor_});
        // Pieces that need reading end on chunk boundaries.
        if (!(out->zero_a && out->zero_b))
            out->len = std::min(out->len, kChunk - cursor_ % kChunk);
        cursor_ += out->len;
        co_return 0;
    }

    // Reads what must be read of `p` and records the first difference.
    // 0 or -errno (recorded).
    Task<int> compare_piece(const Piece& p, uint8_t* buf_a, uint8_t* buf_b)
    {
        const uint8_t* a = nullptr;
        const uint8_t* b = nullptr;
        if (!p.zero_a) {
            int r = co_await a_.layer.pread(p.off, buf_a, p.len);
            if (r < 0) {
                fail(a_, p.off, r);
                co_return r;
            }
            a = buf_a;
        }
        if (!p.zero_b) {
            int r = co_await b_.layer.pread(p.off, buf_b, p.len);
            if (r < 0) {
                fail(b_, p.off, r);
                co_return r;
            }
            b = buf_b;
        }
        // One side zeros: look for the other's first non-zero byte.
        size_t i = a && b ? first_difference(a, b, p.len)
                          : first_difference(nullptr, a ? a : b, p.len);
        if (i < p.len && (!mismatch_ || p.off + i < *mismatch_))
            mismatch_ = p.off + i;
        co_return 0;
    }

    // Claims and compares pieces until none is left or something failed.
    Task<void> worker(uint8_t* buf_a, uint8_t* buf_b)
    {
        while (!failure_) {
            Piece p;
            int r = co_await claim(&p);
            if (r < 0 || p.len == 0)
                break;
            if (!(p.zero_a && p.zero_b)) {
                r = co_await compare_piece(p, buf_a, buf_b);
                if (r < 0)
                    break;
            }
            progress_.add(p.len);
        }
    }

    // Records the first read failure; later ones are dropped.
    void fail(const Side& s, uint64_t off, int err)
    {
        if (!failure_)
            failure_ = Error{-err, io_error("reading", s.name, off, err)};
    }

    Side a_, b_;
    uint64_t end_;
    Progress& progress_;
    Mutex lock_;
    uint64_t cursor_ = 0;
    std::optional<uint64_t> mismatch_;
    std::optional<Error> failure_;
};

// The whole of compare once the arguments are known: opens both images,
// compares them, prints the verdict or error. Returns the exit status.
Task<int> compare(Loop& loop, const CompareArgs& a, const OpenOptions& opts_a,
                  const OpenOptions& opts_b)
{
    auto dev_a = co_await open_device(loop, a.a, opts_a);
    if (!dev_a) {
        print_error(dev_a.error().message);
        co_return kExitError;
    }
    auto dev_b = co_await open_device(loop, a.b, opts_b);
    if (!dev_b) {
        print_error(dev_b.error().message);
        co_await (*dev_a)->close();
        co_return kExitError;
    }
    Side side_a{**dev_a, a.a, (*dev_a)->size()};
    Side side_b{**dev_b, a.b, (*dev_b)->size()};

    int status = kExitSame;
    std::string verdict;
    if (side_a.size != side_b.size && a.strict) {
        status = kExitDifferent;
        verdict = "Strict mode: Image size mismatch!";
    } else {
        if (side_a.size != side_b.size && !a.quiet)
            fmt::print("Warning: Image size mismatch!\n");
        Progress progress(a.progress && !a.quiet, std::max(side_a.size, side_b.size));
        Comparer comparer(side_a, side_b, progress);
        auto r = co_await comparer.run();
        if (!r) {
            progress.stop();
            print_error(r.error().message);
            status = kExitError;
        } else if (*r) {
            progress.stop();
            status = kExitDifferent;
            verdict = fmt::format("Content mismatch at offset {}!", **r);
        } else {
            progress.finish();
            verdict = "Images are identical.";
        }
    }
    co_await (*dev_b)->close();
    co_await (*dev_a)->close();
    if (!verdict.empty() && !a.quiet)
        fmt::print("{}\n", verdict);
    co_return status;
}

} // namespace

int cmd_compare(int argc, char** argv)
{
    auto args = parse_args(argc, argv);
    if (!args)
        return usage_error("compare", args.error(), kExitError);
    if (args->help) {
        std::fputs(kHelp, stdout);
        return kExitOk;
    }
    auto opts_a = open_options(args->a, args->format_a, args->cache, true, args->force_share);
    auto opts_b = open_options(args->b, args->format_b, args->cache, true, args->force_share);
    for (auto* o : {&opts_a, &opts_b}) {
        if (!*o) {
            print_error(o->error().message);
            return kExitError;
        }
    }
    auto loop = make_loop();
    if (!loop)
        return kExitError;
    return sync_wait(*loop, compare(*loop, *args, *opts_a, *opts_b));
}

} // namespace coblk::img
