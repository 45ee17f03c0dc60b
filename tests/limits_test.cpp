// Resource limits, each on the real thing: a file descriptor table that is
// full (RLIMIT_NOFILE lowered, then filled), an address space that is full
// (RLIMIT_AS a little above current use, then filled), and a small tmpfs
// that runs out of space under raw and FVD images (needs root: mount).
// Each case: the request or open that hits the limit fails with a clear
// errno (and message), and the images already open keep serving.
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "coblk.h"
#include "formats/fvd.h"
#include "helpers.h"
#include "uri/open.h"

using namespace coblk;
using namespace coblk::test;
using Catch::Matchers::Contains;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COBLK_LIMITS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define COBLK_LIMITS_SANITIZED 1
#endif
#endif

namespace {

// Lowers the soft limit of `resource` to `soft` for the scope's life.
class RlimitScope {
public:
    RlimitScope(int resource, rlim_t soft) : resource_(resource)
    {
        REQUIRE(getrlimit(resource_, &saved_) == 0);
        rlimit r = saved_;
        r.rlim_cur = soft;
        REQUIRE(setrlimit(resource_, &r) == 0);
    }
    ~RlimitScope() { setrlimit(resource_, &saved_); }
    RlimitScope(const RlimitScope&) = delete;
    RlimitScope& operator=(const RlimitScope&) = delete;

private:
    int resource_;
    rlimit saved_{};
};

// Opens /dev/null until the table is full (EMFILE); closes them all at
// scope exit or on release().
class FdHog {
public:
    FdHog()
    {
        for (;;) {
            int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                err_ = errno;
                break;
            }
            fds_.push_back(fd);
        }
    }
    ~FdHog() { release(); }
    void release()
    {
        for (int fd : fds_)
            ::close(fd);
        fds_.clear();
    }
    int error() const { return err_; }
    size_t count() const { return fds_.size(); }

private:
    std::vector<int> fds_;
    int err_ = 0;
};

// Allocates with malloc, in ever smaller pieces, until not even 16 bytes
// can be had; frees it all on release() or at scope exit.
class MemoryHog {
public:
    MemoryHog()
    {
        for (size_t piece = size_t(1) << 20; piece >= 16; piece /= 4) {
            while (void* p = std::malloc(piece)) {
                *static_cast<void**>(p) = head_;
                head_ = p;
                bytes_ += piece;
            }
        }
    }
    ~MemoryHog() { release(); }
    void release()
    {
        while (head_) {
            void* next = *static_cast<void**>(head_);
            std::free(head_);
            head_ = next;
        }
    }
    size_t bytes() const { return bytes_; }

private:
    void* head_ = nullptr;
    size_t bytes_ = 0;
};

// This process's address space in bytes (VmSize).
uint64_t address_space_bytes()
{
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmSize:", 0) == 0)
            return std::stoull(line.substr(7)) * 1024;
    FAIL("no VmSize in /proc/self/status");
    return 0;
}

Result<std::unique_ptr<Layer>> try_open(Loop& L, const std::string& name, OpenOptions o = {})
{
    return sync_wait(L, open_device(L, name, o));
}

// Writes `len` bytes through a C API queue and waits for the completion:
// the submission's error, or the completion's result.
int capi_write(coblk_queue* q, uint64_t off, const void* buf, size_t len)
{
    int r = coblk_queue_write(q, off, buf, len, nullptr, 0);
    if (r < 0)
        return r;
    coblk_completion c{};
    int n = coblk_queue_do_io(q, &c, 1, 1, nullptr);
    return n == 1 ? c.ret : (n < 0 ? n : -EIO);
}

int capi_read(coblk_queue* q, uint64_t off, void* buf, size_t len)
{
    int r = coblk_queue_read(q, off, buf, len, nullptr, 0);
    if (r < 0)
        return r;
    coblk_completion c{};
    int n = coblk_queue_do_io(q, &c, 1, 1, nullptr);
    return n == 1 ? c.ret : (n < 0 ? n : -EIO);
}

// A started C API device, destroyed (closed) at scope exit.
struct CapiDevice {
    coblk_device* dev = nullptr;
    ~CapiDevice()
    {
        if (dev)
            coblk_destroy(dev);
    }
    // 0 or -errno from create/set/start.
    int start(const std::string& uri, const char* cache)
    {
        int r = coblk_create(uri.c_str(), &dev);
        if (r == 0 && cache)
            r = coblk_set_str(dev, "cache", cache);
        return r ? r : coblk_start(dev);
    }
    coblk_queue* queue() { return coblk_get_queue(dev, 0); }
};

} // namespace

TEST_CASE("limits: with the fd table full, opens fail with EMFILE naming the image and open "
          "images keep serving", "[limits]")
{
    ScratchDir dir;
    const std::string a = dir.file("a.img"), b = dir.file("b.img"), c = dir.file("c.img");
    for (const auto& p : {a, b, c})
        make_sparse_file(p, 4 << 20);
    auto L = make_loop();
    auto la = must(try_open(*L, a), "open_device(a.img)");
    CapiDevice cdev;
    REQUIRE(cdev.start(c, "none") == 0);
    coblk_queue* cq = cdev.queue();
    REQUIRE(cq);
    auto data = pattern(65536, 1);
    auto data2 = pattern(65536, 2);

    int open_err = 0, loop_err = 0, capi_err = 0, create_err = 0;
    std::string open_msg, loop_msg, capi_msg, create_msg;
    int write_a = 1, read_a = 1, write_c = 1, read_c = 1;
    std::vector<unsigned char> back_a(data.size()), back_c(data.size());
    size_t hogged = 0;
    int hog_err = 0;
    {
        // The soft limit is lowered so that filling the table takes few
        // opens whatever the hard limit; it is restored at scope exit.
        RlimitScope nofile(RLIMIT_NOFILE, 1024);
        FdHog hog;
        hogged = hog.count();
        hog_err = hog.error();

        auto ob = try_open(*L, b);
        if (!ob) {
            open_err = ob.error().code;
            open_msg = ob.error().message;
        }
        auto loop = Loop::create();
        if (!loop) {
            loop_err = loop.error().code;
            loop_msg = loop.error().message;
        }
        CapiDevice bdev;
        capi_err = bdev.start(b, nullptr);
        capi_msg = coblk_get_error_msg();
        CreateOptions co;
        co.size = 1 << 20;
        auto cr = sync_wait(*L, create_image(*L, dir.file("new.img"), co));
        if (!cr) {
            create_err = cr.error().code;
            create_msg = cr.error().message;
        }

        write_a = sync_pwrite(*L, *la, 4096, data.data(), data.size());
        read_a = sync_pread(*L, *la, 4096, back_a.data(), back_a.size());
        write_c = capi_write(cq, 8192, data2.data(), data2.size());
        read_c = capi_read(cq, 8192, back_c.data(), back_c.size());
    }
    INFO("fds opened to fill the table: " << hogged);
    CHECK(hog_err == EMFILE);
    CHECK(open_err == EMFILE);
    CHECK_THAT(open_msg, Contains("b.img"));
    CHECK(loop_err == EMFILE);
    CHECK_THAT(loop_msg, Contains("loop"));
    CHECK(capi_err == -EMFILE);
    CHECK_THAT(capi_msg, Contains("b.img"));
    CHECK(create_err == EMFILE);
    CHECK_THAT(create_msg, Contains("new.img"));
    CHECK(write_a == 0);
    CHECK(read_a == 0);
    CHECK_BYTES(back_a.data(), data.data(), data.size(), 4096);
    CHECK(write_c == 0);
    CHECK(read_c == 0);
    CHECK_BYTES(back_c.data(), data2.data(), data2.size(), 8192);

    // With descriptors free again, the same opens work.
    auto lb = must(try_open(*L, b), "open_device(b.img) after the fds were freed");
    close_layer(*L, *lb);
    CHECK(must(Loop::create(), "Loop::create after the fds were freed"));
    CapiDevice bdev;
    CHECK(bdev.start(b, nullptr) == 0);
    close_layer(*L, *la);
}

TEST_CASE("limits: out of memory, a request whose buffer or frame cannot be had fails with "
          "ENOMEM and smaller ones still work", "[limits]")
{
#ifdef COBLK_LIMITS_SANITIZED
    WARN("skipped: RLIMIT_AS cannot bound a process under ASan/TSan (their shadow memory "
         "reserves terabytes of address space)");
    return;
#else
    ScratchDir dir;
    const std::string a = dir.file("a.img"), c = dir.file("c.img");
    make_sparse_file(a, 256 << 20);  // room for the large request
    make_sparse_file(c, 8 << 20);
    auto L = make_loop();
    OpenOptions none;
    none.cache = "none";
    auto la = must(try_open(*L, a, none), "open_device(a.img, cache=none)");
    REQUIRE(la->limits().request_alignment > 1);  // O_DIRECT is in effect: bounces happen

    CapiDevice cdev;
    REQUIRE(cdev.start(c, "none") == 0);
    coblk_queue* cq = cdev.queue();
    REQUIRE(cq);
    auto small = pattern(4096, 3);
    auto small2 = pattern(4096, 4);
    REQUIRE(capi_write(cq, 0, small.data(), small.size()) == 0);  // a warm queue

    // The caller's buffer of a large request: reserved address space that
    // reads as zeros, mapped before the limit.
    const size_t big_len = size_t(192) << 20;
    void* big = mmap(nullptr, big_len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
    REQUIRE(big != MAP_FAILED);

    int big_write = 1, small_write = 1, small_read = 1;
    std::vector<unsigned char> back(small.size());
    int submitted = 0, refused = 0, other_submit = 0, completed = 0, completed_ok = 0,
        completed_enomem = 0, completed_other = 0, after_write = 1;
    char refuse_msg[600] = "";  // no allocation while memory is exhausted
    size_t hogged = 0;
    {
        RlimitScope as(RLIMIT_AS, address_space_bytes() + (48u << 20));

        // Unaligned under O_DIRECT: needs a bounce buffer as large as the
        // request, which the limit cannot give.
        big_write = sync_pwrite(*L, *la, 1, big, big_len);
        // A small unaligned request's bounce buffer fits.
        small_write = sync_pwrite(*L, *la, 1, small.data(), small.size());
        small_read = sync_pread(*L, *la, 1, back.data(), back.size());

        // A thread that never ran a coroutine has no frames cached: with
        // the address space full, a C API request's frame cannot be had.
        std::thread t([&] {
            MemoryHog hog;
            hogged = hog.bytes();
            for (int i = 0; i < 32; i++) {
                int r = coblk_queue_write(cq, 4096 * uint64_t(i), small2.data(), small2.size(),
                                          nullptr, 0);
                if (r == 0) {
                    submitted++;
                } else if (r == -ENOMEM) {
                    if (refused++ == 0)
                        std::snprintf(refuse_msg, sizeof refuse_msg, "%s", coblk_get_error_msg());
                } else {
                    other_submit++;
                }
            }
            // Collect what was accepted: every request gets its completion,
            // out of memory or not.
            coblk_completion cs[32];
            auto collect = [&](int n) {
                for (int k = 0; k < n; k++) {
                    completed++;
                    if (cs[k].ret == 0)
                        completed_ok++;
                    else if (cs[k].ret == -ENOMEM)
                        completed_enomem++;
                    else
                        completed_other++;
                }
            };
            for (int tries = 0; tries < 100 && coblk_queue_in_flight(cq) > 0; tries++) {
                int n = coblk_queue_do_io(cq, cs, 0, 32, nullptr);
                if (n > 0)
                    collect(n);
            }
            hog.release();
            while (coblk_queue_in_flight(cq) > 0) {
                int n = coblk_queue_do_io(cq, cs, 1, 32, nullptr);
                if (n < 0)
                    break;
                collect(n);
            }
            after_write = capi_write(cq, 0, small2.data(), small2.size());
        });
        t.join();
    }
    munmap(big, big_len);

    CHECK(big_write == -ENOMEM);
    CHECK(small_write == 0);
    CHECK(small_read == 0);
    CHECK_BYTES(back.data(), small.data(), small.size(), 1);
    CHECK(read_file(a, 1, small.size()) == small);

    INFO("bytes taken to fill the address space: " << hogged << "; submitted " << submitted
         << ", refused " << refused << ", completed " << completed << " (ok " << completed_ok
         << ", ENOMEM " << completed_enomem << ", other " << completed_other << ")");
    CHECK(refused > 0);
    CHECK(other_submit == 0);
    CHECK_THAT(std::string(refuse_msg), Contains("memory"));
    CHECK(completed == submitted);  // none lost
    CHECK(completed_other == 0);
    CHECK(coblk_queue_in_flight(cq) == 0);
    CHECK(after_write == 0);
    CHECK(read_file(c, 0, small2.size()) == small2);
    close_layer(*L, *la);
#endif
}

namespace {

// A tmpfs of `bytes` mounted on a new directory under /tmp, unmounted and
// removed at scope exit. Needs root; fails the test saying so otherwise.
class SmallTmpfs {
public:
    explicit SmallTmpfs(size_t bytes)
    {
        if (geteuid() != 0)
            FAIL("the ENOSPC tests need root to mount a small tmpfs (CI runs them as root)");
        char tmpl[] = "/tmp/coblk-limits-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path_ = tmpl;
        std::string opts = "size=" + std::to_string(bytes);
        if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
            int e = errno;
            ::rmdir(path_.c_str());
            FAIL("mount -t tmpfs -o " << opts << " on " << path_ << ": " << std::strerror(e));
        }
    }
    ~SmallTmpfs()
    {
        // io_uring may hold a closed file for a moment: retry, then detach.
        for (int i = 0; i < 100 && ::umount2(path_.c_str(), 0) != 0 && errno == EBUSY; i++)
            std::this_thread::yield();
        ::umount2(path_.c_str(), MNT_DETACH);
        ::rmdir(path_.c_str());
    }
    SmallTmpfs(const SmallTmpfs&) = delete;
    SmallTmpfs& operator=(const SmallTmpfs&) = delete;
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

struct Shape {
    const char* name;
    const char* format;   // for create_image
    const char* cache;
    const char* compact;  // FVD only
};

} // namespace

TEST_CASE("limits: a full file system fails writes with ENOSPC, keeps acknowledged data and "
          "serves the rest", "[limits]")
{
    const Shape shapes[] = {
        {"raw, cache=none", "raw", "none", nullptr},
        {"raw, cache=writeback", "raw", "writeback", nullptr},
        {"fvd compact, cache=none", "fvd", "none", "on"},
        {"fvd not compact, cache=writeback", "fvd", "writeback", "off"},
    };
    const Shape& s = shapes[GENERATE(0, 1, 2, 3)];
    INFO("shape: " << s.name);
    SmallTmpfs fs(8 << 20);
    const std::string img = fs.file("img");
    const size_t kChunk = 256 << 10, kChunks = 64;  // 16 MiB of guest space on 8 MiB
    auto L = make_loop();
    CreateOptions co;
    co.format = s.format;
    co.size = kChunk * kChunks;
    if (s.compact)
        co.options = {{"compact", s.compact}};
    must(sync_wait(*L, create_image(*L, img, co)), "create_image");
    OpenOptions oo;
    oo.cache = s.cache;
    auto l = must(try_open(*L, img, oo), "open_device");

    std::vector<std::vector<unsigned char>> ref(kChunks);
    std::vector<int> res(kChunks, 1);
    size_t acked = 0, nospc = 0, other = 0;
    for (size_t i = 0; i < kChunks; i++) {
        auto d = pattern(kChunk, uint32_t(10 + i));
        res[i] = sync_pwrite(*L, *l, i * kChunk, d.data(), d.size());
        if (res[i] == 0) {
            ref[i] = std::move(d);
            acked++;
        } else if (res[i] == -ENOSPC) {
            nospc++;
        } else {
            other++;
            UNSCOPED_INFO("chunk " << i << ": " << res[i]);
        }
    }
    INFO(acked << " chunks acknowledged, " << nospc << " ENOSPC, " << other << " other");
    REQUIRE(acked > 0);
    CHECK(nospc > 0);
    CHECK(other == 0);

    // Overwrites of space already allocated still work: a whole chunk, and
    // an unaligned piece (read-modify-write under cache=none).
    auto over = pattern(kChunk, 1000);
    CHECK(sync_pwrite(*L, *l, 0, over.data(), over.size()) == 0);
    ref[0] = over;
    auto piece = pattern(1000, 1001);
    CHECK(sync_pwrite(*L, *l, 1, piece.data(), piece.size()) == 0);
    std::memcpy(ref[0].data() + 1, piece.data(), piece.size());

    std::vector<unsigned char> back(kChunk);
    for (size_t i = 0; i < kChunks; i++) {
        if (ref[i].empty())
            continue;
        INFO("reading chunk " << i << " on the open image");
        REQUIRE(sync_pread(*L, *l, i * kChunk, back.data(), kChunk) == 0);
        CHECK_BYTES(back.data(), ref[i].data(), kChunk, i * kChunk);
    }
    int fr = sync_wait(*L, l->flush());
    INFO("flush: " << fr);
    CHECK(fr == 0);
    close_layer(*L, *l);
    l.reset();

    // After reopening, every acknowledged write reads back.
    auto l2 = must(try_open(*L, img, oo), "reopen after ENOSPC");
    for (size_t i = 0; i < kChunks; i++) {
        if (ref[i].empty())
            continue;
        INFO("reading chunk " << i << " after reopening");
        REQUIRE(sync_pread(*L, *l2, i * kChunk, back.data(), kChunk) == 0);
        CHECK_BYTES(back.data(), ref[i].data(), kChunk, i * kChunk);
    }
    close_layer(*L, *l2);
    l2.reset();

    if (std::string(s.format) == "fvd") {
        const char* tool = std::getenv("COBLK_IMG");
        if (!tool)
            FAIL("COBLK_IMG is not set (meson test 'limits' sets it to coblk-img's path)");
        auto r = shell(std::string(tool) + " check " + img + " 2>&1");
        INFO("coblk-img check: " << r.out);
        CHECK(r.status == 0);
    }
}

TEST_CASE("limits: a full file system gives C API completions -ENOSPC", "[limits]")
{
    SmallTmpfs fs(4 << 20);
    const std::string img = fs.file("img");
    make_sparse_file(img, 8 << 20);
    CapiDevice dev;
    REQUIRE(dev.start(img, "none") == 0);
    coblk_queue* q = dev.queue();
    REQUIRE(q);
    const size_t kChunk = 128 << 10, kChunks = 64;
    std::vector<std::vector<unsigned char>> ref(kChunks);
    size_t acked = 0, nospc = 0, other = 0;
    for (size_t i = 0; i < kChunks; i++) {
        auto d = pattern(kChunk, uint32_t(50 + i));
        int r = capi_write(q, i * kChunk, d.data(), d.size());
        if (r == 0) {
            ref[i] = std::move(d);
            acked++;
        } else if (r == -ENOSPC) {
            nospc++;
        } else {
            other++;
            UNSCOPED_INFO("chunk " << i << ": " << r << " " << coblk_get_error_msg());
        }
    }
    INFO(acked << " acknowledged, " << nospc << " ENOSPC, " << other << " other");
    REQUIRE(acked > 0);
    CHECK(nospc > 0);
    CHECK(other == 0);
    auto over = pattern(kChunk, 2000);
    CHECK(capi_write(q, 0, over.data(), over.size()) == 0);
    ref[0] = over;
    std::vector<unsigned char> back(kChunk);
    for (size_t i = 0; i < kChunks; i++) {
        if (ref[i].empty())
            continue;
        INFO("chunk " << i);
        REQUIRE(capi_read(q, i * kChunk, back.data(), kChunk) == 0);
        CHECK_BYTES(back.data(), ref[i].data(), kChunk, i * kChunk);
        CHECK(read_file(img, off_t(i * kChunk), kChunk) == ref[i]);
    }
}
