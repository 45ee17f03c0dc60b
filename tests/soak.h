// The soak with faults of tests/soak_test.cpp, for images on any backend:
// the test cases for memory and files, GlusterFS (soak_gluster_test.cpp)
// and RBD (soak_rbd_test.cpp) run the same cycle and print the same totals.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "engine/loop.h"

namespace coblk::test {

// Where a soak's images live.
struct SoakSite {
    std::string label = "soak";  // starts the totals line
    // Empty: memory or a local file, chosen per cycle. Otherwise the name
    // every cycle creates its image at (a gluster:// or rbd: URI).
    std::string image;
    // Called before each cycle creates `image` (an RBD image must not
    // exist yet), and once after the last. Test thread.
    std::function<void(Loop&, const std::string& image)> clear;
};

// Runs cycles for COBLK_SOAK_SECONDS (default 60) or COBLK_SOAK_CYCLES,
// from seed COBLK_SOAK_SEED (default 1), and prints "LABEL: ... totals".
// Fails the test on any mismatch or an image that does not reopen. Test
// thread.
void soak(const SoakSite& site);

} // namespace coblk::test
