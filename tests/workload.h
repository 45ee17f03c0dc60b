// A random workload mirrored into a plain buffer, for tests of any layer:
// batches of concurrent requests on disjoint byte ranges (so requests share
// blocks but never bytes), reads checked against the buffer.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/layer.h"
#include "engine/loop.h"
#include "engine/task.h"

namespace coblk::test {

// One request of a workload: what it does and its result.
struct Req {
    enum Kind { Read, Write, Zero, Flush } kind = Read;
    uint64_t off = 0, len = 0;
    std::vector<unsigned char> buf;
    int result = 1;
};

// Runs `r` on `l`, storing its result.
Task<void> run_req(Layer& l, Req& r);
// Runs the tasks concurrently on the loop and waits for all.
Task<void> run_all(std::vector<Task<void>>& reqs);

// `batches` batches of up to `depth` concurrent requests (reads, writes,
// write-zeroes, flushes) at random offsets and lengths (1 byte to 192 KiB,
// aligned or not) from `seed`, mirrored into `model`, which holds what `l`
// must read as. Fails the test on an error or a wrong read.
void random_workload(Loop& L, Layer& l, std::vector<unsigned char>& model, uint32_t seed,
                     int batches, int depth);
// Reads all of `l` and compares it with `model`.
void check_all(Loop& L, Layer& l, const std::vector<unsigned char>& model);

} // namespace coblk::test
