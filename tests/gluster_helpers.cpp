#include "tests/gluster_helpers.h"

#include <unistd.h>

#include <cstdlib>

#include "tests/helpers.h"
#include "uri/open.h"

namespace coblk::test::gluster {

std::string volume_uri()
{
    const char* v = std::getenv("COBLK_GLUSTER_URI");
    if (!v || !*v)
        FAIL("COBLK_GLUSTER_URI is not set: run the gluster tests under "
             "tests/services/with-gluster.sh, which starts a GlusterFS volume on 127.0.0.1 "
             "and sets it (e.g. COBLK_GLUSTER_URI=gluster://127.0.0.1/coblk)");
    std::string s(v);
    while (!s.empty() && s.back() == '/')
        s.pop_back();
    return s;
}

std::string image_uri(const std::string& name)
{
    return fmt::format("{}/coblk-test-{}-{}", volume_uri(), getpid(), name);
}

uri::GlusterSpec server_spec()
{
    auto s = must(uri::parse(volume_uri() + "/x"), "parse COBLK_GLUSTER_URI");
    REQUIRE(s.protocol == uri::Protocol::Gluster);
    return s.gluster;
}

Result<std::unique_ptr<Layer>> try_open(Loop& L, const std::string& name, bool read_only)
{
    OpenOptions o;
    o.format = "gluster";  // the bare protocol layer
    o.read_only = read_only;
    return sync_wait(L, open_device(L, name, o));
}

std::unique_ptr<Layer> open_ok(Loop& L, const std::string& name)
{
    return must(try_open(L, name), "open_device(" + name + ")");
}

void create_ok(Loop& L, const std::string& name, uint64_t size)
{
    CreateOptions o;
    o.format = "raw";
    o.size = size;
    must(sync_wait(L, create_image(L, name, o)), "create_image(" + name + ")");
}

} // namespace coblk::test::gluster
