// FVD with Ceph RBD (a real cluster, from COBLK_CEPH_CONF/COBLK_CEPH_POOL,
// set by tests/services/with-ceph.sh): an FVD image on an RBD image, and the
// FVD paper's cloud case, a local overlay over a base on RBD that
// copy-on-read and prefetch bring to local disk.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "engine/loop.h"
#include "formats/fvd.h"
#include "tests/helpers.h"
#include "tests/workload.h"
#include "uri/open.h"

using namespace coblk;
using namespace coblk::test;

namespace {

std::string rbd_image(const std::string& name)
{
    const char* conf = std::getenv("COBLK_CEPH_CONF");
    const char* pool = std::getenv("COBLK_CEPH_POOL");
    if (!conf || !*conf)
        FAIL("COBLK_CEPH_CONF is not set: run under tests/services/with-ceph.sh");
    return fmt::format("rbd:{}/coblk-fvd-{}-{}:conf={}", pool && *pool ? pool : "rbd", getpid(),
                       name, conf);
}

std::unique_ptr<Layer> open_ok(Loop& L, const std::string& name, uri::Options opts = {})
{
    OpenOptions o;
    o.options = std::move(opts);
    return must(sync_wait(L, open_device(L, name, o)), "open_device(" + name + ")");
}

} // namespace

TEST_CASE("rbd: an FVD image on an RBD image reads back random workloads", "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    std::string img = rbd_image("fvd");
    const uint64_t size = 24 << 20;
    CreateOptions c;
    c.format = "fvd";
    c.size = size;
    c.options = {{"journal_size", "16k"}, {"chunk_size", "256k"}};
    must(sync_wait(L, create_image(L, img, c)));
    std::vector<unsigned char> model(size, 0);
    for (int round = 0; round < 2; round++) {
        auto l = open_ok(L, img);
        REQUIRE(std::string(l->kind()) == "fvd");
        REQUIRE(std::string(l->protocol()) == "rbd");
        check_all(L, *l, model);
        random_workload(L, *l, model, 500 + round, 20, 16);
        close_layer(L, *l);
    }
}

TEST_CASE("rbd: a local FVD overlay copies its RBD base in (copy-on-read, prefetch)", "[rbd]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    const uint64_t size = 16 << 20;
    std::string base = rbd_image("base");
    CreateOptions c;
    c.size = size;
    must(sync_wait(L, create_image(L, base, c)));
    auto data = pattern(size, 61);
    {
        auto b = open_ok(L, base);
        REQUIRE(sync_pwrite(L, *b, 0, data.data(), data.size()) == 0);
        close_layer(L, *b);
    }
    std::string img = dir.file("local.fvd");
    CreateOptions o;
    o.format = "fvd";
    o.options = {{"backing_file", base}, {"backing_fmt", "raw"}, {"copy_on_read", "on"},
                 {"prefetch", "on"}};
    must(sync_wait(L, create_image(L, img, o)));

    std::vector<unsigned char> model = data;
    auto l = open_ok(L, img, {{"prefetch_delay", "0"}, {"prefetch_idle", "5"}});
    auto& f = dynamic_cast<FvdLayer&>(*l);
    REQUIRE(f.base() != nullptr);
    CHECK(std::string(f.base()->protocol()) == "rbd");
    random_workload(L, *l, model, 62, 20, 8);
    // Idle now: the prefetcher finishes (bounded wait, not a timing check).
    for (int i = 0; i < 3000 && f.prefetching(); i++)
        sync_wait(L, [](Loop& lp) -> Task<void> {
            co_await lp.sleep_for(std::chrono::milliseconds(10));
        }(L));
    CHECK_FALSE(f.prefetching());
    CHECK(f.base_copied());
    check_all(L, *l, model);
    close_layer(L, *l);
    // The image stands alone: the next open does not touch the cluster.
    auto again = open_ok(L, img);
    CHECK(dynamic_cast<FvdLayer&>(*again).base() == nullptr);
    check_all(L, *again, model);
    close_layer(L, *again);
}
