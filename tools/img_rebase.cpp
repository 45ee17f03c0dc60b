// coblk-img rebase [-f FMT] -b BASE [-F BASE_FMT] [-u] FILENAME
// coblk-img commit [-f FMT] FILENAME
// Both change which data lives in an FVD image and which in its base.
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "formats/fvd.h"
#include "tools/img_commands.h"
#include "tools/img_common.h"

namespace coblk::img {
namespace {

constexpr const char* kRebaseHelp = R"(Usage: coblk-img rebase [-f FMT] -b BASE [-F BASE_FMT] [-u] FILENAME

Makes BASE the base image of the FVD image FILENAME. Unless -u is given, every
block not in FILENAME whose content differs between the old base and BASE is
first copied into FILENAME, so that what the guest sees does not change. An
empty BASE (-b "") removes the base: all base data is copied in.

  -f FMT          format of FILENAME (default: probe; must be fvd)
  -b BASE         the new base; relative names are relative to FILENAME's
                  directory
  -F BASE_FMT     format of the new base (default: probe)
  -u              unsafe: only change the reference, copy nothing
  -h, --help      print this help
)";

constexpr const char* kCommitHelp = R"(Usage: coblk-img commit [-f FMT] FILENAME

Writes the data of the FVD image FILENAME (the blocks it holds itself) into
its base image, which must be writable. FILENAME is left as it is: it still
reads the same, now with the same data in the base.

  -f FMT          format of FILENAME (default: probe; must be fvd)
  -h, --help      print this help
)";

struct Args {
    bool help = false;
    bool unsafe = false;
    bool have_base = false;
    std::string format, base, base_format, filename;
};

Result<Args> parse_args(int argc, char** argv, bool rebase)
{
    static const option kLong[] = {{"help", no_argument, nullptr, 'h'}, {}};
    OptionParser p(argc, argv, rebase ? "hf:b:F:u" : "hf:", kLong);
    Args a;
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
        case 'b':
            a.base = p.arg();
            a.have_base = true;
            break;
        case 'F':
            a.base_format = p.arg();
            break;
        case 'u':
            a.unsafe = true;
            break;
        }
    }
    auto args = p.positional();
    if (args.empty())
        return make_error(EINVAL, "missing FILENAME");
    if (args.size() > 1)
        return make_error(EINVAL, "unexpected argument '{}'", args[1]);
    if (rebase && !a.have_base)
        return make_error(EINVAL, "missing -b BASE (give -b \"\" to remove the base)");
    if (!a.base_format.empty() && a.base.empty())
        return make_error(EINVAL, "-F without a base");
    a.filename = args[0];
    return a;
}

// Opens `a.filename` and checks it is an FVD image; `without_base` leaves
// its base closed. Fails with a message.
Task<Result<std::unique_ptr<Layer>>> open_fvd(Loop& loop, const Args& a, bool read_only,
                                              bool without_base = false)
{
    auto o = open_options(a.filename, a.format, "", read_only, false);
    if (!o)
        co_return o.error();
    if (without_base) {
        auto spec = uri::parse(a.filename);
        if (!spec)
            co_return spec.error();
        auto child = co_await open_protocol(loop, *spec, *o);
        if (!child)
            co_return child.error();
        FvdOptions fo;
        fo.without_base = true;
        std::string name = a.filename;
        auto f = co_await FvdLayer::open(std::move(child).value(), name, read_only, nullptr, fo);
        if (!f)
            co_return f.error();
        co_return std::unique_ptr<Layer>(std::move(f).value());
    }
    auto dev = co_await open_device(loop, a.filename, *o);
    if (!dev)
        co_return dev.error();
    if (!dynamic_cast<FvdLayer*>(dev->get())) {
        std::string kind = (*dev)->kind();
        co_await (*dev)->close();
        co_return make_error(ENOTSUP, "'{}' is a {} image; only fvd images have a base",
                             a.filename, kind);
    }
    co_return std::move(dev).value();
}

constexpr uint64_t kPiece = 1 << 20;

// Copies into `f` every block it does not hold whose bytes differ between
// what it reads now and `next` (zeros past next's end, or without one).
// 0 or -errno; `what` says where it failed.
Task<int> copy_differences(FvdLayer& f, Layer* next, std::string& what)
{
    const fvd::Header& h = f.header();
    Buffer cur = make_buffer(kPiece), nb = make_buffer(kPiece);
    if (!cur || !nb)
        co_return -ENOMEM;
    for (uint64_t off = 0; off < h.virtual_size; off += kPiece) {
        uint64_t len = std::min(kPiece, h.virtual_size - off);
        int r = co_await f.pread(off, cur.get(), len);
        if (r < 0) {
            what = fmt::format("reading the image at offset {}", off);
            co_return r;
        }
        std::memset(nb.get(), 0, len);
        uint64_t have = next && off < next->size() ? std::min(len, next->size() - off) : 0;
        if (have && (r = co_await next->pread(off, nb.get(), have)) < 0) {
            what = fmt::format("reading the new base at offset {}", off);
            co_return r;
        }
        for (uint64_t at = 0; at < len; at += h.block_size) {
            uint64_t b = (off + at) / h.block_size;
            uint64_t n = std::min<uint64_t>(h.block_size, len - at);
            if (f.where(b) == FvdLayer::Where::Image ||
                std::memcmp(cur.get() + at, nb.get() + at, n) == 0)
                continue;
            if ((r = co_await f.pwrite(off + at, cur.get() + at, n)) < 0) {
                what = fmt::format("writing the image at offset {}", off + at);
                co_return r;
            }
        }
    }
    co_return 0;
}

Task<int> rebase(Loop& loop, const Args& a)
{
    auto dev = co_await open_fvd(loop, a, false);
    if (!dev) {
        print_error(dev.error().message);
        co_return kExitFailure;
    }
    auto& f = static_cast<FvdLayer&>(**dev);
    std::unique_ptr<Layer> next;
    if (!a.base.empty()) {
        OpenOptions bo;
        bo.read_only = true;
        bo.format = a.base_format;
        std::string resolved = resolve_base_name(a.filename, a.base);
        auto b = co_await open_device(loop, resolved, bo);
        if (!b) {
            co_await f.close();
            print_error(fmt::format("cannot open the new base: {}", b.error().message));
            co_return kExitFailure;
        }
        next = std::move(b).value();
    }
    int r = 0;
    std::string what = "changing the base reference";
    if (!a.unsafe)
        r = co_await copy_differences(f, next.get(), what);
    if (r == 0)
        r = co_await f.set_base(a.base, a.base_format, next ? next->size() : 0);
    if (next)
        co_await next->close();
    co_await f.close();
    if (r < 0) {
        print_error(fmt::format("rebase of '{}' failed {}: {}", a.filename, what,
                                std::strerror(-r)));
        co_return kExitFailure;
    }
    co_return kExitOk;
}

Task<int> commit(Loop& loop, const Args& a)
{
    auto dev = co_await open_fvd(loop, a, true, true);
    if (!dev) {
        print_error(dev.error().message);
        co_return kExitFailure;
    }
    auto& f = static_cast<FvdLayer&>(**dev);
    const fvd::Header& h = f.header();
    if (h.base_name.empty()) {
        co_await f.close();
        print_error(fmt::format("'{}' has no base image to commit into", a.filename));
        co_return kExitFailure;
    }
    OpenOptions bo;
    bo.format = h.base_format;
    std::string resolved = resolve_base_name(a.filename, h.base_name);
    auto b = co_await open_device(loop, resolved, bo);
    if (!b) {
        co_await f.close();
        print_error(fmt::format("cannot open the base '{}' for writing: {}", resolved,
                                b.error().message));
        co_return kExitFailure;
    }
    Layer& base = **b;
    Buffer buf = make_buffer(kPiece);
    int r = buf ? 0 : -ENOMEM;
    std::string what;
    for (uint64_t blk = 0; r == 0 && blk < h.blocks();) {
        if (f.where(blk) != FvdLayer::Where::Image) {
            blk++;
            continue;
        }
        uint64_t n = 1;
        while (blk + n < h.blocks() && n * h.block_size < kPiece &&
               f.where(blk + n) == FvdLayer::Where::Image)
            n++;
        uint64_t off = blk * h.block_size;
        uint64_t len = std::min(n * h.block_size, h.virtual_size - off);
        if ((r = co_await f.pread(off, buf.get(), len)) < 0) {
            what = fmt::format("reading the image at offset {}", off);
        } else if (!base.growable() && off + len > base.size()) {
            r = -ENOSPC;
            what = fmt::format("at offset {}: the base holds only {} bytes", off, base.size());
        } else if ((r = co_await base.pwrite(off, buf.get(), len)) < 0) {
            what = fmt::format("writing the base at offset {}", off);
        }
        blk += n;
    }
    if (r == 0 && (r = co_await base.flush()) < 0)
        what = "flushing the base";
    co_await base.close();
    co_await f.close();
    if (r < 0) {
        print_error(fmt::format("commit of '{}' failed {}: {}", a.filename, what,
                                std::strerror(-r)));
        co_return kExitFailure;
    }
    fmt::print("Image committed.\n");
    co_return kExitOk;
}

int run(int argc, char** argv, bool is_rebase)
{
    auto args = parse_args(argc, argv, is_rebase);
    if (!args)
        return usage_error(is_rebase ? "rebase" : "commit", args.error(), kExitFailure);
    if (args->help) {
        std::fputs(is_rebase ? kRebaseHelp : kCommitHelp, stdout);
        return kExitOk;
    }
    auto loop = make_loop();
    if (!loop)
        return kExitFailure;
    if (is_rebase)
        return sync_wait(*loop, rebase(*loop, *args));
    return sync_wait(*loop, commit(*loop, *args));
}

} // namespace

int cmd_rebase(int argc, char** argv) { return run(argc, argv, true); }
int cmd_commit(int argc, char** argv) { return run(argc, argv, false); }

} // namespace coblk::img
