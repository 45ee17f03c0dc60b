// FvdSiblings for local files: hard links, rename and directory syncs on
// the worker pool.
#include "uri/fvd_siblings.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "engine/blocking.h"

namespace coblk {
namespace {

// Makes the directory `dir` durable (its entries). 0 or -errno.
int sync_dir(const std::string& dir)
{
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = ::fsync(fd) < 0 ? -errno : 0;
    ::close(fd);
    return r;
}

class FileSiblings : public FvdSiblings {
public:
    FileSiblings(Loop& loop, std::string path, OpenOptions o)
        : loop_(loop), path_(std::move(path)), o_(std::move(o))
    {
        size_t slash = path_.rfind('/');
        dir_ = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
        prefix_ = slash == std::string::npos ? "" : path_.substr(0, slash + 1);
    }

    Result<void> supported() const override { return {}; }

    Task<Result<std::unique_ptr<Layer>>> create(const std::string& rel, uint64_t size) override
    {
        std::string full = prefix_ + rel;
        CreateOptions co;
        co.format = "raw";
        co.size = size;
        auto made = co_await create_image(loop_, full, co);
        if (!made)
            co_return made.error();
        co_return co_await open_device(loop_, full, o_);
    }

    Task<Result<void>> link_image(const std::string& rel) override
    {
        std::string full = prefix_ + rel;
        int64_t r = co_await run_blocking(loop_, [&]() -> int64_t {
            if (::link(path_.c_str(), full.c_str()) < 0) {
                if (errno != EEXIST)
                    return -errno;
                struct stat a {}, b {};
                if (::stat(path_.c_str(), &a) < 0 || ::stat(full.c_str(), &b) < 0)
                    return -errno;
                if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
                    return -EEXIST;
            }
            return sync_dir(dir_);
        });
        if (r == -EEXIST)
            co_return make_error(EEXIST, "the snapshot file '{}' exists already", full);
        if (r < 0)
            co_return make_error(int(-r), "cannot link '{}' to '{}': {}", path_, full,
                                 std::strerror(int(-r)));
        co_return Result<void>{};
    }

    Task<Result<void>> replace_image(const std::string& rel, bool& renamed) override
    {
        std::string full = prefix_ + rel;
        bool moved = false;
        int64_t r = co_await run_blocking(loop_, [&]() -> int64_t {
            if (::rename(full.c_str(), path_.c_str()) < 0)
                return -errno;
            moved = true;
            return sync_dir(dir_);
        });
        renamed = moved;
        if (r < 0 && !moved)
            co_return make_error(int(-r), "cannot rename '{}' to '{}': {}", full, path_,
                                 std::strerror(int(-r)));
        if (r < 0)
            co_return make_error(int(-r), "syncing the directory '{}' failed: {}", dir_,
                                 std::strerror(int(-r)));
        co_return Result<void>{};
    }

    Task<Result<void>> remove(const std::string& rel) override
    {
        std::string full = prefix_ + rel;
        int64_t r = co_await run_blocking(loop_, [&]() -> int64_t {
            return ::unlink(full.c_str()) < 0 && errno != ENOENT ? -errno : 0;
        });
        if (r < 0)
            co_return make_error(int(-r), "cannot remove '{}': {}", full, std::strerror(int(-r)));
        co_return Result<void>{};
    }

private:
    Loop& loop_;
    std::string path_, dir_, prefix_;
    OpenOptions o_;
};

// Every other protocol: snapshots are refused, naming it.
class NoSiblings : public FvdSiblings {
public:
    NoSiblings(std::string image, std::string protocol)
        : image_(std::move(image)), protocol_(std::move(protocol)) {}

    Result<void> supported() const override
    {
        return make_error(ENOTSUP, "FVD snapshots are taken on local files only, and '{}' is "
                          "on {}", image_, protocol_);
    }
    Task<Result<std::unique_ptr<Layer>>> create(const std::string&, uint64_t) override
    {
        co_return supported().error();
    }
    Task<Result<void>> link_image(const std::string&) override { co_return supported(); }
    Task<Result<void>> replace_image(const std::string&, bool& renamed) override
    {
        renamed = false;
        co_return supported();
    }
    Task<Result<void>> remove(const std::string&) override { co_return supported(); }

private:
    std::string image_, protocol_;
};

} // namespace

std::shared_ptr<FvdSiblings> make_fvd_siblings(Loop& loop, const uri::Spec& spec,
                                               const OpenOptions& o,
                                               const uri::Options& proto_opts)
{
    if (spec.protocol != uri::Protocol::File)
        return std::make_shared<NoSiblings>(spec.text,
                                            std::string(uri::protocol_name(spec.protocol)));
    OpenOptions so;
    so.format = "file";
    so.cache = o.cache;
    so.options = proto_opts;
    return std::make_shared<FileSiblings>(loop, spec.path, std::move(so));
}

} // namespace coblk
