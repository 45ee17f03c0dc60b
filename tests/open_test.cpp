// Tests of open_device, open_protocol and create_image (uri/open.h).
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstring>
#include <string>
#include <vector>

#include "backends/fd_layer.h"
#include "backends/memory.h"
#include "engine/loop.h"
#include "uri/open.h"
#include "uri/uri.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::test;
using Catch::Matchers::Contains;

namespace {

Result<std::unique_ptr<Layer>> try_open(Loop& L, const std::string& name, OpenOptions o = {})
{
    return sync_wait(L, open_device(L, name, o));
}

std::unique_ptr<Layer> open_ok(Loop& L, const std::string& name, OpenOptions o = {})
{
    return must(try_open(L, name, std::move(o)), "open_device(" + name + ")");
}

// The bottom of a stack.
Layer* bottom(Layer* l)
{
    while (l->child())
        l = l->child();
    return l;
}

Result<void> try_create(Loop& L, const std::string& name, uint64_t size, std::string format = "raw")
{
    CreateOptions o;
    o.format = std::move(format);
    o.size = size;
    return sync_wait(L, create_image(L, name, o));
}

} // namespace

TEST_CASE("open: null://?size=1M", "[open]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    auto d = open_ok(L, "null://?size=1M");
    CHECK(d->size() == 1048576);
    CHECK(std::string(d->protocol()) == "null");
    CHECK(std::string(bottom(d.get())->kind()) == "null");
    std::vector<unsigned char> buf(4096, 0xAA);
    REQUIRE(sync_pread(L, *d, 0, buf.data(), buf.size()) == 0);
    CHECK_ZEROS(buf.data(), buf.size(), 0);
    close_layer(L, *d);
}

TEST_CASE("open: memory://x?size=1M", "[open]")
{
    const std::string store = "coblk-open-test-x";
    MemoryLayer::drop(store);
    auto loop = make_loop();
    Loop& L = *loop;
    auto data = pattern(4096, 1);
    {
        auto d = open_ok(L, "memory://" + store + "?size=1M");
        CHECK(d->size() == 1048576);
        CHECK(std::string(d->protocol()) == "memory");
        REQUIRE(sync_pwrite(L, *d, 8192, data.data(), data.size()) == 0);
        close_layer(L, *d);
    }
    {
        auto d = open_ok(L, "memory://" + store);
        CHECK(d->size() == 1048576);
        auto back = layer_read(L, *d, 8192, 4096);
        CHECK_BYTES(back.data(), data.data(), 4096, 8192);
        close_layer(L, *d);
    }
    MemoryLayer::drop(store);
}

TEST_CASE("open: a plain file path", "[open]")
{
    ScratchDir dir;
    std::string path = dir.file("disk.img");
    auto data = pattern(1 << 20, 2);
    write_file(path, data.data(), data.size(), 0, true);
    auto loop = make_loop();
    Loop& L = *loop;
    auto d = open_ok(L, path);
    CHECK(d->size() == 1 << 20);
    CHECK(std::string(d->protocol()) == "file");
    auto back = layer_read(L, *d, 0, 1 << 20);
    CHECK_BYTES(back.data(), data.data(), 1 << 20, 0);

    auto newer = pattern(4096, 3);
    REQUIRE(sync_pwrite(L, *d, 65536, newer.data(), newer.size()) == 0);
    close_layer(L, *d);
    auto disk = read_file(path, 65536, 4096);
    CHECK_BYTES(disk.data(), newer.data(), 4096, 65536);
}

TEST_CASE("open: file:/abs/path?cache=none opens with O_DIRECT", "[open]")
{
    ScratchDir dir;
    std::string path = dir.file("disk.img");
    auto data = pattern(65536, 4);
    write_file(path, data.data(), data.size(), 0, true);
    auto loop = make_loop();
    Loop& L = *loop;

    SECTION("from the URI")
    {
        auto d = open_ok(L, "file:" + path + "?cache=none");
        auto* fd = dynamic_cast<FdLayer*>(bottom(d.get()));
        REQUIRE(fd);
        CHECK(fd->direct());
        auto back = layer_read(L, *d, 3, 1000);  // unaligned through O_DIRECT
        CHECK_BYTES(back.data(), data.data() + 3, 1000, 3);
        close_layer(L, *d);
    }
    SECTION("from OpenOptions::cache")
    {
        OpenOptions o;
        o.cache = "none";
        auto d = open_ok(L, path, o);
        auto* fd = dynamic_cast<FdLayer*>(bottom(d.get()));
        REQUIRE(fd);
        CHECK(fd->direct());
        close_layer(L, *d);
    }
    SECTION("default is writeback")
    {
        auto d = open_ok(L, "file://" + path);
        auto* fd = dynamic_cast<FdLayer*>(bottom(d.get()));
        REQUIRE(fd);
        CHECK_FALSE(fd->direct());
        close_layer(L, *d);
    }
}

TEST_CASE("open: read_only", "[open]")
{
    ScratchDir dir;
    std::string path = dir.file("disk.img");
    make_sparse_file(path, 1 << 20);
    auto loop = make_loop();
    Loop& L = *loop;
    OpenOptions o;
    o.read_only = true;
    auto d = open_ok(L, path, o);
    CHECK(d->read_only());
    char buf[512] = {1};
    CHECK(sync_pwrite(L, *d, 0, buf, sizeof buf) == -EROFS);
    close_layer(L, *d);
}

TEST_CASE("open: raw options pass to the format", "[open]")
{
    ScratchDir dir;
    std::string path = dir.file("disk.img");
    auto data = pattern(1 << 20, 5);
    write_file(path, data.data(), data.size(), 0, true);
    auto loop = make_loop();
    Loop& L = *loop;
    OpenOptions o;
    o.format = "raw";
    o.options = {{"offset", "4096"}, {"size", "64K"}};
    auto d = open_ok(L, path, o);
    CHECK(d->size() == 65536);
    auto back = layer_read(L, *d, 0, 65536);
    CHECK_BYTES(back.data(), data.data() + 4096, 65536, 4096);
    close_layer(L, *d);
}

TEST_CASE("open: errors", "[open]")
{
    ScratchDir dir;
    std::string path = dir.file("disk.img");
    make_sparse_file(path, 1 << 20);
    auto loop = make_loop();
    Loop& L = *loop;

    SECTION("unknown option key in the URI")
    {
        auto r = try_open(L, "null://?colour=blue");
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("colour"));
    }
    SECTION("unknown option key in OpenOptions")
    {
        OpenOptions o;
        o.options = {{"colour", "blue"}};
        auto r = try_open(L, path, o);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("colour"));
    }
    SECTION("bad cache value in the URI")
    {
        auto r = try_open(L, "file:" + path + "?cache=sometimes");
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("sometimes"));
    }
    SECTION("bad cache value in OpenOptions")
    {
        OpenOptions o;
        o.cache = "sometimes";
        auto r = try_open(L, path, o);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("sometimes"));
    }
    SECTION("unknown format")
    {
        OpenOptions o;
        o.format = "vhdx-ish";
        auto r = try_open(L, path, o);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("vhdx-ish"));
    }
    SECTION("missing file")
    {
        std::string missing = dir.file("missing.img");
        auto r = try_open(L, missing);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == ENOENT);
        CHECK_THAT(r.error().message, Contains(missing));
    }
    SECTION("unparsable name")
    {
        auto r = try_open(L, "gluster://");
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("gluster://"));
    }
}

TEST_CASE("open: a qcow2 image is refused unless opened as raw", "[open]")
{
    ScratchDir dir;
    std::string path = dir.file("image.qcow2");
    ShellResult q = shell("qemu-img create -q -f qcow2 '" + path + "' 1M 2>&1");
    if (q.status != 0)
        FAIL("qemu-img create failed (is qemu-img installed?): " << q.out);
    off_t qsize = file_size(path);
    auto loop = make_loop();
    Loop& L = *loop;

    auto probed = try_open(L, path);
    REQUIRE_FALSE(probed.ok());
    CHECK_THAT(probed.error().message, Contains("qcow2"));
    CHECK_THAT(probed.error().message, Contains(path));

    OpenOptions o;
    o.format = "raw";
    auto d = open_ok(L, path, o);
    CHECK(d->size() == uint64_t(qsize));
    // Its bytes are the file's, magic included.
    auto head = layer_read(L, *d, 0, 4);
    CHECK(head[0] == 'Q');
    CHECK(head[1] == 'F');
    CHECK(head[2] == 'I');
    CHECK(head[3] == 0xfb);
    close_layer(L, *d);
}

TEST_CASE("open: a probed raw file refuses a qcow2 header write", "[open]")
{
    ScratchDir dir;
    std::string path = dir.file("disk.img");
    make_sparse_file(path, 1 << 20);
    auto loop = make_loop();
    Loop& L = *loop;
    auto d = open_ok(L, path);
    std::vector<unsigned char> sector(512, 0);
    // A qcow2 header: magic "QFI\xfb", version 3 (big-endian).
    const unsigned char head[8] = {'Q', 'F', 'I', 0xfb, 0, 0, 0, 3};
    std::memcpy(sector.data(), head, sizeof head);
    CHECK(sync_pwrite(L, *d, 0, sector.data(), sector.size()) == -EPERM);
    close_layer(L, *d);
    auto disk = read_file(path, 0, 512);
    CHECK_ZEROS(disk.data(), 512, 0);
}

TEST_CASE("create_image", "[open]")
{
    ScratchDir dir;
    auto loop = make_loop();
    Loop& L = *loop;

    SECTION("a new file of the requested size")
    {
        std::string path = dir.file("new.img");
        must(try_create(L, path, 10 << 20), "create_image");
        struct stat st;
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK(S_ISREG(st.st_mode));
        CHECK(st.st_size == (10 << 20));
        auto d = open_ok(L, path);
        CHECK(d->size() == 10 << 20);
        close_layer(L, *d);
    }
    SECTION("an existing file is resized")
    {
        std::string path = dir.file("old.img");
        auto data = pattern(3 << 20, 1);
        write_file(path, data.data(), data.size(), 0, true);
        must(try_create(L, path, 1 << 20), "create_image");
        CHECK(file_size(path) == (1 << 20));
    }
    SECTION("a file: URI")
    {
        std::string path = dir.file("uri.img");
        must(try_create(L, "file:" + path, 65536), "create_image");
        CHECK(file_size(path) == 65536);
    }
    SECTION("a device that cannot be created must be large enough")
    {
        must(try_create(L, "null://?size=1M", 512 * 1024), "create_image");
        auto r = try_create(L, "null://?size=1M", 2 << 20);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("null"));
    }
    SECTION("in a missing directory")
    {
        std::string path = dir.file("no/such/dir.img");
        auto r = try_create(L, path, 65536);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains(path));
    }
    SECTION("an unsupported format")
    {
        std::string path = dir.file("x.img");
        auto r = try_create(L, path, 65536, "qcow2");
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains("qcow2"));
    }
}

TEST_CASE("open: the protocol's name as the format opens the bare protocol", "[open]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    std::string path = dir.file("bare.img");
    REQUIRE(try_create(L, path, 1 << 20).ok());

    OpenOptions bare;
    bare.format = "file";
    auto f = open_ok(L, path, bare);
    CHECK(std::string(f->kind()) == "file");
    CHECK(f->child() == nullptr);
    close_layer(L, *f);

    OpenOptions raw;
    raw.format = "raw";
    auto r = open_ok(L, path, raw);
    CHECK(std::string(r->kind()) == "raw");
    REQUIRE(r->child() != nullptr);
    CHECK(std::string(r->child()->kind()) == "file");
    close_layer(L, *r);

    // Another protocol's name is not a format for this one; raw's window
    // options do not apply to a bare protocol.
    OpenOptions wrong;
    wrong.format = "null";
    auto w = try_open(L, path, wrong);
    REQUIRE_FALSE(w.ok());
    CHECK_THAT(w.error().message, Contains("unknown format 'null'") && Contains("'file'"));
    OpenOptions window = bare;
    window.options.emplace_back("offset", "4096");
    auto ww = try_open(L, path, window);
    REQUIRE_FALSE(ww.ok());
    CHECK_THAT(ww.error().message, Contains("offset"));
}

TEST_CASE("open: a plain /dev path naming a regular file opens as a file", "[open]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    char tmpl[] = "/dev/shm/coblk-open-test.XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, 1 << 20) == 0);
    close(fd);
    std::string path = tmpl;
    auto d = try_open(L, path);
    bool opened = d.ok();
    std::string kind = opened ? bottom(d->get())->kind() : "";
    uint64_t size = opened ? (*d)->size() : 0;
    if (opened)
        close_layer(L, **d);
    auto dev = try_open(L, "host_device:" + path);
    unlink(path.c_str());
    REQUIRE(opened);
    CHECK(kind == "file");
    CHECK(size == 1 << 20);
    // An explicit host_device: still insists on a block device.
    REQUIRE_FALSE(dev.ok());
    CHECK_THAT(dev.error().message, Contains("not a block device"));
}
