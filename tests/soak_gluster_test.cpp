// The soak with faults (tests/soak.h) on an image on a real GlusterFS
// volume (COBLK_GLUSTER_URI, set by tests/services/with-gluster.sh). FVD
// shapes with a base keep the base in a local file.
#include <catch2/catch.hpp>

#include "tests/gluster_helpers.h"
#include "tests/helpers.h"
#include "tests/soak.h"

using namespace coblk;
using namespace coblk::test;

TEST_CASE("soak: the mixed workload over faults and crashes on a GlusterFS volume",
          "[soak-gluster]")
{
    auto loop = make_loop();
    // An image held open for the whole run keeps the volume's connection
    // (glfs_t): without it each cycle would wait for glfs_fini and glfs_init.
    std::string keeper = gluster::image_uri("soak-keeper");
    gluster::create_ok(*loop, keeper, 4096);
    auto hold = gluster::open_ok(*loop, keeper);
    SoakSite site;
    site.label = "soak-gluster";
    site.image = gluster::image_uri("soak");  // create truncates it every cycle
    soak(site);
    close_layer(*loop, *hold);
}
