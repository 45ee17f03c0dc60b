// FVD images on a real GlusterFS volume (COBLK_GLUSTER_URI, set by
// tests/services/with-gluster.sh): compact and not, an overlay on the
// volume over a local base, and a local overlay over a base on the volume.
// Images stay on the volume; with-gluster.sh removes the volume afterwards.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstring>
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

std::string gluster_image(const std::string& name)
{
    const char* v = std::getenv("COBLK_GLUSTER_URI");
    if (!v || !*v)
        FAIL("COBLK_GLUSTER_URI is not set: run under tests/services/with-gluster.sh");
    std::string s(v);
    while (!s.empty() && s.back() == '/')
        s.pop_back();
    return fmt::format("{}/coblk-fvd-{}-{}", s, getpid(), name);
}

std::unique_ptr<Layer> open_ok(Loop& L, const std::string& name)
{
    OpenOptions o;
    return must(sync_wait(L, open_device(L, name, o)), "open_device(" + name + ")");
}

void create_fvd(Loop& L, const std::string& name, uint64_t size, uri::Options opts)
{
    CreateOptions c;
    c.format = "fvd";
    c.size = size;
    c.options = std::move(opts);
    must(sync_wait(L, create_image(L, name, c)), "create_image(" + name + ")");
}

} // namespace

TEST_CASE("gluster: FVD images on the volume read back random workloads", "[gluster]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    bool compact = GENERATE(true, false);
    INFO("compact " << compact);
    std::string img = gluster_image(compact ? "c.fvd" : "n.fvd");
    const uint64_t size = 24 << 20;
    create_fvd(L, img, size, {{"compact", compact ? "on" : "off"}, {"journal_size", "16k"}});
    std::vector<unsigned char> model(size, 0);
    for (int round = 0; round < 2; round++) {
        auto l = open_ok(L, img);
        REQUIRE(std::string(l->kind()) == "fvd");
        REQUIRE(std::string(l->protocol()) == "gluster");
        check_all(L, *l, model);
        random_workload(L, *l, model, 300 + round, 25, 16);
        close_layer(L, *l);
    }
}

TEST_CASE("gluster: an FVD overlay on the volume over a local base, and the reverse",
          "[gluster]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    const uint64_t size = 16 << 20;
    auto data = pattern(size, 51);

    SECTION("overlay on gluster, base on a local file") {
        std::string base = dir.file("base.raw");
        write_file(base, data.data(), data.size(), 0, true);
        std::string img = gluster_image("over-local.fvd");
            create_fvd(L, img, 0, {{"backing_file", base}, {"backing_fmt", "raw"}});
        std::vector<unsigned char> model = data;
        auto l = open_ok(L, img);
        auto& f = dynamic_cast<FvdLayer&>(*l);
        REQUIRE(f.base() != nullptr);
        CHECK(std::string(f.base()->protocol()) == "file");
        random_workload(L, *l, model, 77, 25, 16);
        close_layer(L, *l);
        auto again = open_ok(L, img);
        check_all(L, *again, model);
        close_layer(L, *again);
    }
    SECTION("overlay on a local file, base on gluster (with copy-on-read)") {
        std::string base = gluster_image("base.raw");
        CreateOptions c;
        c.size = size;
        must(sync_wait(L, create_image(L, base, c)));
        {
            auto b = open_ok(L, base);
            REQUIRE(sync_pwrite(L, *b, 0, data.data(), data.size()) == 0);
            close_layer(L, *b);
        }
        std::string img = dir.file("over-gluster.fvd");
        create_fvd(L, img, 0, {{"backing_file", base}, {"copy_on_read", "on"}});
        std::vector<unsigned char> model = data;
        auto l = open_ok(L, img);
        auto& f = dynamic_cast<FvdLayer&>(*l);
        REQUIRE(f.base() != nullptr);
        CHECK(std::string(f.base()->protocol()) == "gluster");
        CHECK(f.copy_on_read());
        random_workload(L, *l, model, 78, 25, 16);
        check_all(L, *l, model);
        close_layer(L, *l);
        auto again = open_ok(L, img);
        check_all(L, *again, model);
        close_layer(L, *again);
    }
}
