// Helpers shared by the tests that need a real GlusterFS volume
// (gluster_test.cpp, gluster_faults_test.cpp): where the volume is, and
// opening and creating images on it as the bare gluster protocol layer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/layer.h"
#include "engine/loop.h"
#include "engine/result.h"
#include "uri/uri.h"

namespace coblk::test::gluster {

// COBLK_GLUSTER_URI without a trailing slash; fails the test, saying how to
// run it, when it is not set.
std::string volume_uri();

// A per-process image name on the volume: VOLUME/coblk-test-PID-NAME.
std::string image_uri(const std::string& name);

// The server and volume of COBLK_GLUSTER_URI.
uri::GlusterSpec server_spec();

Result<std::unique_ptr<Layer>> try_open(Loop& L, const std::string& name, bool read_only = false);

// try_open, failing the test on error.
std::unique_ptr<Layer> open_ok(Loop& L, const std::string& name);

// Creates a raw image of `size` bytes, failing the test on error.
void create_ok(Loop& L, const std::string& name, uint64_t size);

} // namespace coblk::test::gluster
