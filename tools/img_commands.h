// The commands of coblk-img. Each takes its own argv (argv[0] is the command
// name), prints its output and errors, and returns the process exit status.
#pragma once

namespace coblk::img {

int cmd_create(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_convert(int argc, char** argv);
int cmd_compare(int argc, char** argv);
int cmd_check(int argc, char** argv);
int cmd_map(int argc, char** argv);
int cmd_rebase(int argc, char** argv);
int cmd_commit(int argc, char** argv);
int cmd_snapshot(int argc, char** argv);

} // namespace coblk::img
