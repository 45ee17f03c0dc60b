// Tests of the `host_device` backend on a loop device over a sparse file.
// They need root (losetup); CI runs as root, elsewhere they fail saying so.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "backends/file.h"
#include "engine/loop.h"
#include "tests/helpers.h"
#include "tests/workload.h"
#include "uri/open.h"

using namespace coblk;
using namespace coblk::test;
using Catch::Matchers::Contains;

namespace {

constexpr uint64_t kDevSize = 64 << 20;

// A loop device over a 64 MiB sparse file, detached at scope exit whatever
// happens in between. The guard holds the device open with the kernel's
// autoclear flag set, so that even a crashed test run (no destructors)
// leaves no device behind: the last close detaches it.
class LoopDevice {
public:
    explicit LoopDevice(const ScratchDir& dir)
    {
        if (::geteuid() != 0)
            FAIL("the host_device tests need root to run losetup (CI runs them as root)");
        backing_ = dir.file("backing.img");
        make_sparse_file(backing_, off_t(kDevSize));
        ShellResult r = shell("losetup -f --show '" + backing_ + "' 2>&1");
        if (r.status != 0 || r.out.rfind("/dev/", 0) != 0)
            FAIL("losetup -f --show " << backing_ << " failed (status " << r.status << "): " << r.out);
        dev_ = r.out;
        hold_ = ::open(dev_.c_str(), O_RDONLY | O_CLOEXEC);
        loop_info64 info{};
        if (hold_ >= 0 && ::ioctl(hold_, LOOP_GET_STATUS64, &info) == 0) {
            info.lo_flags |= LO_FLAGS_AUTOCLEAR;
            ::ioctl(hold_, LOOP_SET_STATUS64, &info);
        }
    }
    ~LoopDevice()
    {
        if (!dev_.empty())
            shell("losetup -d '" + dev_ + "' 2>&1");
        if (hold_ >= 0)
            ::close(hold_);
    }
    LoopDevice(const LoopDevice&) = delete;
    LoopDevice& operator=(const LoopDevice&) = delete;

    const std::string& dev() const { return dev_; }
    const std::string& backing() const { return backing_; }

private:
    std::string backing_, dev_;
    int hold_ = -1;
};

const char* mode_name(CacheMode m) { return m == CacheMode::None ? "cache=none" : "cache=writeback"; }

std::unique_ptr<HostDeviceLayer> open_dev(Loop& L, const std::string& dev, CacheMode mode)
{
    FileOpenOptions o;
    o.cache = mode;
    return must(HostDeviceLayer::open(L, dev, o), "HostDeviceLayer::open(" + dev + ")");
}

// Reads the device node with plain pread(2) on an O_DIRECT descriptor, so
// that no stale page cache of the block device hides what reached it.
std::vector<unsigned char> read_device(const std::string& dev, off_t off, size_t len)
{
    int fd = ::open(dev.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    REQUIRE(fd >= 0);
    off_t lo = off / 4096 * 4096;
    size_t span = (size_t(off - lo) + len + 4095) / 4096 * 4096;
    auto buf = aligned_alloc_bytes(4096, span);
    ssize_t n = ::pread(fd, buf.get(), span, lo);
    ::close(fd);
    REQUIRE(n == ssize_t(span));
    return std::vector<unsigned char>(buf.get() + (off - lo), buf.get() + (off - lo) + len);
}

} // namespace

TEST_CASE("host_device: size, block size and kind", "[host_device]")
{
    ScratchDir dir;
    LoopDevice ld(dir);
    auto loop = make_loop();
    Loop& L = *loop;
    auto d = open_dev(L, ld.dev(), CacheMode::Writeback);
    CHECK(d->size() == kDevSize);
    CHECK(std::string(d->kind()) == "host_device");
    CHECK_FALSE(d->growable());

    int fd = ::open(ld.dev().c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    int ss = 0;
    REQUIRE(::ioctl(fd, BLKSSZGET, &ss) == 0);
    ::close(fd);
    CHECK(d->logical_block_size() == uint32_t(ss));
    close_layer(L, *d);
}

TEST_CASE("host_device: read and write", "[host_device]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    LoopDevice ld(dir);
    auto loop = make_loop();
    Loop& L = *loop;
    auto d = open_dev(L, ld.dev(), mode);
    CHECK(d->direct() == (mode == CacheMode::None));

    // Aligned, then unaligned at an odd buffer address.
    auto a = aligned_alloc_bytes(4096, 1 << 20);
    fill_pattern(a.get(), 1 << 20, 1, 0);
    REQUIRE(sync_pwrite(L, *d, 8 << 20, a.get(), 1 << 20) == 0);
    std::vector<unsigned char> u(3001);
    fill_pattern(u.data() + 1, 3000, 2, 0);
    REQUIRE(sync_pwrite(L, *d, (16 << 20) + 777, u.data() + 1, 3000) == 0);
    // The very last bytes of the device.
    std::vector<unsigned char> tail(11);
    fill_pattern(tail.data(), 11, 3, 0);
    REQUIRE(sync_pwrite(L, *d, kDevSize - 11, tail.data(), 11) == 0);
    REQUIRE(sync_wait(L, d->flush()) == 0);

    auto r1 = layer_read(L, *d, 8 << 20, 1 << 20);
    CHECK_BYTES(r1.data(), a.get(), 1 << 20, 8 << 20);
    auto r2 = layer_read(L, *d, (16 << 20) + 777, 3000);
    CHECK_BYTES(r2.data(), u.data() + 1, 3000, (16 << 20) + 777);
    auto r3 = layer_read(L, *d, kDevSize - 11, 11);
    CHECK_BYTES(r3.data(), tail.data(), 11, kDevSize - 11);
    // Bytes around the unaligned write are still zero.
    auto around = layer_read(L, *d, 16 << 20, 777);
    CHECK_ZEROS(around.data(), 777, 16 << 20);

    // Past the end of a device: refused, not grown.
    char buf[512] = {};
    CHECK(sync_pread(L, *d, kDevSize - 256, buf, 512) == -EINVAL);
    CHECK(sync_pwrite(L, *d, kDevSize, buf, 512) == -EINVAL);
    CHECK(d->size() == kDevSize);
    close_layer(L, *d);

    auto disk1 = read_device(ld.dev(), 8 << 20, 1 << 20);
    CHECK_BYTES(disk1.data(), a.get(), 1 << 20, 8 << 20);
    auto disk2 = read_device(ld.dev(), (16 << 20) + 777, 3000);
    CHECK_BYTES(disk2.data(), u.data() + 1, 3000, (16 << 20) + 777);
    auto disk3 = read_device(ld.dev(), kDevSize - 11, 11);
    CHECK_BYTES(disk3.data(), tail.data(), 11, kDevSize - 11);
}

TEST_CASE("host_device: discard and write_zeroes read back zeros", "[host_device]")
{
    auto mode = GENERATE(CacheMode::Writeback, CacheMode::None);
    INFO(mode_name(mode));
    ScratchDir dir;
    LoopDevice ld(dir);
    auto loop = make_loop();
    Loop& L = *loop;
    auto d = open_dev(L, ld.dev(), mode);

    constexpr size_t kLen = 4 << 20;
    auto data = aligned_alloc_bytes(4096, kLen);
    fill_pattern(data.get(), kLen, 5, 0);
    REQUIRE(sync_pwrite(L, *d, 0, data.get(), kLen) == 0);
    REQUIRE(sync_wait(L, d->flush()) == 0);

    std::vector<unsigned char> want(data.get(), data.get() + kLen);
    REQUIRE(sync_wait(L, d->write_zeroes(64 * 1024, 64 * 1024, 0)) == 0);
    std::fill(want.begin() + 64 * 1024, want.begin() + 128 * 1024, 0);
    REQUIRE(sync_wait(L, d->write_zeroes(256 * 1024, 128 * 1024, kReqNoUnmap)) == 0);
    std::fill(want.begin() + 256 * 1024, want.begin() + 384 * 1024, 0);
    REQUIRE(sync_wait(L, d->write_zeroes(1000, 3000, 0)) == 0);  // unaligned
    std::fill(want.begin() + 1000, want.begin() + 4000, 0);
    // A loop device implements discard by punching a hole in its backing
    // file, so discarded sectors read back as zeros.
    REQUIRE(sync_wait(L, d->discard(1 << 20, 1 << 20)) == 0);
    std::fill(want.begin() + (1 << 20), want.begin() + (2 << 20), 0);
    REQUIRE(sync_wait(L, d->flush()) == 0);

    auto now = layer_read(L, *d, 0, kLen);
    CHECK_BYTES(now.data(), want.data(), kLen, 0);
    close_layer(L, *d);
    auto disk = read_device(ld.dev(), 0, kLen);
    CHECK_BYTES(disk.data(), want.data(), kLen, 0);
}

TEST_CASE("host_device: opening a regular file fails clearly", "[host_device]")
{
    ScratchDir dir;
    std::string path = dir.file("plain.img");
    make_sparse_file(path, 1 << 20);
    auto loop = make_loop();
    Loop& L = *loop;
    FileOpenOptions o;
    auto r = HostDeviceLayer::open(L, path, o);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Contains(path));
    CHECK_THAT(r.error().message, Contains("block device", Catch::CaseSensitive::No));

    auto missing = HostDeviceLayer::open(L, dir.file("nope"), o);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == ENOENT);
    CHECK_THAT(missing.error().message, Contains(dir.file("nope")));
}

TEST_CASE("host_device: an FVD image on a loop device reads back a random workload",
          "[host_device]")
{
    auto loop = make_loop();
    Loop& L = *loop;
    ScratchDir dir;
    LoopDevice dev(dir);
    // A base file with a pattern over half of the image.
    const uint64_t size = 40 << 20;
    std::string base = dir.file("base.raw");
    auto data = pattern(size / 2, 31);
    write_file(base, data.data(), data.size(), 0, true);
    std::vector<unsigned char> model(size, 0);
    std::memcpy(model.data(), data.data(), data.size());

    CreateOptions c;
    c.format = "fvd";
    c.size = size;
    c.options = {{"backing_file", base}, {"block_size", "16k"}, {"chunk_size", "256k"},
                 {"journal_size", "32k"}};
    must(sync_wait(L, create_image(L, dev.dev(), c)));
    for (const char* cache : {"none", "writeback"}) {
        INFO(cache);
        OpenOptions o;
        o.cache = cache;
        auto l = must(sync_wait(L, open_device(L, dev.dev(), o)));
        REQUIRE(std::string(l->kind()) == "fvd");
        check_all(L, *l, model);
        random_workload(L, *l, model, cache[0], 40, 12);
        close_layer(L, *l);
    }
    auto l = must(sync_wait(L, open_device(L, dev.dev(), OpenOptions{})));
    check_all(L, *l, model);
    close_layer(L, *l);
}
