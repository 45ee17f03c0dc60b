// Checking every job against its target before any benchmark I/O: each
// target is opened (as each clone will open it) to learn its size and
// request alignment, so that bad values (bs=3k against a 4096-byte O_DIRECT
// alignment, size= past the end of a target a job reads, ...) are refused
// with a message naming the key and value before anything runs. A plain
// file that does not exist is created at offset+size, and filled with data
// when a job reads it, as fio lays out its files.
#pragma once

#include <string>
#include <vector>

#include "bench/job_options.h"
#include "bench/job_runner.h"
#include "engine/loop.h"
#include "engine/result.h"

namespace coblk::bench {

// Prepares `cfg.jobs` in order, assigning reporting groups. Notes (files
// being laid out) go to `notes`. Fails with the first problem found, naming
// the job and the option; files it created for the run are then removed.
// Loop thread.
Task<Result<std::vector<PreparedJob>>> prepare_jobs(Loop& loop, const RunConfig& cfg,
                                                    std::vector<std::string>& notes);

// The checks that need the opened target, as a pure function for tests:
// `target_size` and `align` are the target's size and request alignment,
// `growable` whether writes may extend it (a file), `what` names the target
// in messages ("'/dev/shm/f' (cache=none)"). Fills `job.size` and
// `job.nblocks`.
Result<void> check_against_target(PreparedJob& job, uint64_t target_size, uint32_t align,
                                  bool growable, const std::string& what);

} // namespace coblk::bench
