// libFuzzer target: coblk-bench's fio job-file and option parser. The input
// is a job file's text, parsed as `coblk-bench job.fio` would parse it
// (sections, keys, values, ${VAR}, every option's value parser, the
// whole-job checks). Must never crash or hang; a refusal says why.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "bench/job_options.h"

using namespace coblk;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string text(reinterpret_cast<const char*>(data), size);
    auto r = bench::parse_command_line_with({"job.fio"}, {{"job.fio", text}});
    if (!r && r.error().message.empty())
        std::abort();
    return 0;
}
