// The soak with faults (tests/soak.h) on a real RBD image (COBLK_CEPH_CONF
// and COBLK_CEPH_POOL, set by tests/services/with-ceph.sh). FVD shapes with
// a base keep the base in a local file.
#include <catch2/catch.hpp>

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "backends/rbd_connection.h"
#include "tests/helpers.h"
#include "tests/soak.h"

using namespace coblk;
using namespace coblk::test;

namespace {

std::string env_or_fail(const char* name)
{
    const char* v = std::getenv(name);
    if (!v || !*v)
        FAIL(name << " is not set: run the [soak-rbd] test under tests/services/with-ceph.sh");
    return v;
}

} // namespace

TEST_CASE("soak: the mixed workload over faults and crashes on an RBD image", "[soak-rbd]")
{
    auto loop = make_loop();
    std::string conf = env_or_fail("COBLK_CEPH_CONF");
    const char* p = std::getenv("COBLK_CEPH_POOL");
    std::string pool = p && *p ? p : "rbd";
    std::string img = fmt::format("coblk-soak-{}", getpid());
    // The cluster handle the images share (same options as their URI),
    // held for the whole run and used to remove the image between cycles.
    RbdConnectOptions o;
    o.conf = conf;
    auto conn = must(sync_wait(*loop, rbd_connect(*loop, o)), "rbd_connect(" + conf + ")");
    rados_ioctx_t io = nullptr;
    REQUIRE(rados_ioctx_create(conn.cluster(), pool.c_str(), &io) == 0);
    SoakSite site;
    site.label = "soak-rbd";
    site.image = fmt::format("rbd:{}/{}:conf={}", pool, img, conf);
    // rbd_create refuses an existing image: remove the last cycle's first.
    site.clear = [&](Loop&, const std::string&) {
        int r = rbd_remove(io, img.c_str());
        INFO("rbd_remove(" << img << "): " << std::strerror(-r));
        REQUIRE((r == 0 || r == -ENOENT));
    };
    soak(site);
    rados_ioctx_destroy(io);
}
