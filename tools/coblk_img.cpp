// coblk-img: qemu-img's commands and flags over coblk devices.
// `coblk-img COMMAND [options] ...`; each command lives in its own file.
#include <cstdio>
#include <exception>
#include <string_view>

#include <fmt/format.h>

#include "tools/img_commands.h"
#include "tools/img_common.h"

#ifndef COBLK_VERSION
#define COBLK_VERSION "unknown"
#endif

namespace {

using namespace coblk::img;

struct Command {
    std::string_view name;
    int (*run)(int argc, char** argv);
    std::string_view summary;
    int error_status;  // exit status when the command fails unexpectedly
};

constexpr Command kCommands[] = {
    {"create", cmd_create, "create [-f FMT] [-o OPTIONS] FILENAME [SIZE]", kExitFailure},
    {"info", cmd_info, "info [-f FMT] [--output=human|json] FILENAME", kExitFailure},
    {"convert", cmd_convert,
     "convert [-f FMT] [-O FMT] [-p] [-n] [-t CACHE] [-T SRC_CACHE] [-o OPTIONS] SRC DST",
     kExitFailure},
    {"compare", cmd_compare, "compare [-f FMT] [-F FMT] [-T CACHE] [-p] [-q] [-s] A B", 2},
    {"check", cmd_check, "check [-f FMT] [-r leaks|all] [--output=human|json] FILENAME", 1},
    {"map", cmd_map, "map [-f FMT] [--output=human|json] FILENAME", kExitFailure},
    {"rebase", cmd_rebase, "rebase [-f FMT] -b BASE [-F BASE_FMT] [-u] FILENAME", kExitFailure},
    {"commit", cmd_commit, "commit [-f FMT] FILENAME", kExitFailure},
    {"snapshot", cmd_snapshot, "snapshot [-l | -c NAME | -d NAME | -a NAME] [-f FMT] FILENAME",
     kExitFailure},
};

void print_help()
{
    fmt::print("Usage: coblk-img COMMAND [options] ...\n\n"
               "Creates, inspects, converts and compares block device images. FILENAME,\n"
               "SRC, DST, A and B are local paths or coblk URIs (file:, /dev/..., null://,\n"
               "memory://, gluster://, rbd:...). Flags and exit statuses follow qemu-img's.\n\n"
               "Commands:\n");
    for (const auto& c : kCommands)
        fmt::print("  {}\n", c.summary);
    fmt::print("\nSizes take K, M, G, T, P or E suffixes (powers of 1024).\n"
               "'coblk-img COMMAND --help' describes a command.\n"
               "  -h, --help      print this help\n"
               "  -V, --version   print the version\n");
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2) {
        print_error("missing command; try 'coblk-img --help'");
        return kExitFailure;
    }
    std::string_view word = argv[1];
    if (word == "-h" || word == "--help" || word == "help") {
        print_help();
        return kExitOk;
    }
    if (word == "-V" || word == "--version") {
        fmt::print("coblk-img version {}\n", COBLK_VERSION);
        return kExitOk;
    }
    for (const auto& c : kCommands) {
        if (c.name != word)
            continue;
        try {
            return c.run(argc - 1, argv + 1);
        } catch (const std::exception& e) {
            print_error(fmt::format("{}: {}", c.name, e.what()));
            return c.error_status;
        }
    }
    if (word.starts_with("-"))
        print_error(fmt::format("unknown option '{}' (the command comes first); try "
                                "'coblk-img --help'", word));
    else
        print_error(fmt::format("unknown command '{}'; try 'coblk-img --help'", word));
    return kExitFailure;
}
