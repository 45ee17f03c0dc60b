// coblk-img snapshot [-l | -c NAME | -d NAME | -a NAME] [-f FMT] [-q] [-U] FILENAME
#include <cstdio>

#include <fmt/format.h>

#include "tools/img_commands.h"
#include "tools/img_common.h"

namespace coblk::img {
namespace {

constexpr const char* kHelp = R"(Usage: coblk-img snapshot [-l | -c NAME | -d NAME | -a NAME] [-f FMT] [-q] [-U] FILENAME

Lists, creates, deletes or applies (reverts to) snapshots of an image, as
qemu-img snapshot does. The snapshots are the image stack's own: an RBD
image's snapshots for rbd:pool/image; for an FVD image on a local file,
external ones: the file becomes IMAGE.snap-NAME and a new overlay over it
keeps the image's name (-a reverts to the latest snapshot only; -d merges
the latest snapshot into the image and removes its file).

  -l            list the snapshots (the default when no action is given)
  -c NAME       create snapshot NAME of the image as it is now
  -d NAME       delete snapshot NAME
  -a NAME       apply snapshot NAME: revert the image to it
  -f FMT        image format (default: probe)
  -q            quiet: print nothing on success (listing still prints)
  -U, --force-share  do not take the image's file lock
  -h, --help    print this help
)";

enum class Action { List, Create, Delete, Apply };

struct SnapshotArgs {
    bool help = false;
    bool quiet = false;
    bool force_share = false;
    Action action = Action::List;
    bool action_given = false;
    std::string name;
    std::string format;
    std::string filename;
};

// Parses snapshot's arguments; fails naming the unknown option, a second
// action, or the missing FILENAME.
Result<SnapshotArgs> parse_args(int argc, char** argv)
{
    static const option kLong[] = {{"help", no_argument, nullptr, 'h'},
                                   {"force-share", no_argument, nullptr, 'U'},
                                   {}};
    OptionParser p(argc, argv, "hlc:d:a:f:qU", kLong);
    SnapshotArgs a;
    for (int c; (c = p.next()) != -1;) {
        Action act = Action::List;
        switch (c) {
        case 0:
            return p.error();
        case 'h':
            a.help = true;
            return a;
        case 'f':
            a.format = p.arg();
            continue;
        case 'q':
            a.quiet = true;
            continue;
        case 'U':
            a.force_share = true;
            continue;
        case 'l': act = Action::List; break;
        case 'c': act = Action::Create; break;
        case 'd': act = Action::Delete; break;
        case 'a': act = Action::Apply; break;
        }
        if (a.action_given)
            return make_error(EINVAL, "give only one of -l, -c, -d and -a");
        a.action_given = true;
        a.action = act;
        if (act != Action::List) {
            a.name = p.arg();
            if (a.name.empty())
                return make_error(EINVAL, "-{} needs a snapshot name", char(c));
        }
    }
    auto args = p.positional();
    if (args.empty())
        return make_error(EINVAL, "missing FILENAME");
    if (args.size() > 1)
        return make_error(EINVAL, "unexpected argument '{}'", args[1]);
    a.filename = args[0];
    return a;
}

// Opens the image, runs the action, closes it. Returns the exit status.
Task<int> snapshot(Loop& loop, const SnapshotArgs& a, const OpenOptions& o)
{
    auto dev = co_await open_device(loop, a.filename, o);
    if (!dev) {
        print_error(dev.error().message);
        co_return kExitFailure;
    }
    Layer& layer = **dev;
    int status = kExitOk;
    if (a.action == Action::List) {
        auto list = co_await layer.snapshot_list();
        if (list)
            print_snapshot_list(*list);
        else {
            print_error(list.error().message);
            status = kExitFailure;
        }
    } else {
        Result<void> r;
        const std::string& n = a.name;
        if (a.action == Action::Create)
            r = co_await layer.snapshot_create(n);
        else if (a.action == Action::Delete)
            r = co_await layer.snapshot_delete(n);
        else
            r = co_await layer.snapshot_revert(n);
        if (!r) {
            print_error(r.error().message);
            status = kExitFailure;
        }
    }
    co_await layer.close();
    co_return status;
}

} // namespace

int cmd_snapshot(int argc, char** argv)
{
    auto args = parse_args(argc, argv);
    if (!args)
        return usage_error("snapshot", args.error(), kExitFailure);
    if (args->help) {
        std::fputs(kHelp, stdout);
        return kExitOk;
    }
    bool read_only = args->action == Action::List;
    auto opts = open_options(args->filename, args->format, "", read_only, args->force_share);
    if (!opts) {
        print_error(opts.error().message);
        return kExitFailure;
    }
    auto loop = make_loop();
    if (!loop)
        return kExitFailure;
    return sync_wait(*loop, snapshot(*loop, *args, *opts));
}

} // namespace coblk::img
