// fio's option names that coblk-bench accepts without acting on them, so
// that existing fio job files and command lines run: each is acknowledged
// with a one-line note saying why it is ignored. Names that are neither
// these nor coblk-bench's own options are refused by the option parser.
#pragma once

#include <string_view>

namespace coblk::bench {

// Why the fio job option `key` is ignored ("coblk uses its own engine", ...),
// or null when fio has no such job option. Any thread.
const char* fio_ignored_job_option(std::string_view key) noexcept;

// The same for fio's command-line-only options ("--minimal", ...), given
// without the dashes; null when fio has no such command-line option.
const char* fio_ignored_cli_option(std::string_view key) noexcept;

} // namespace coblk::bench
