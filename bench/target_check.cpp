#include "bench/target_check.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#include "bench/prng.h"
#include "bench/report_units.h"
#include "uri/open.h"
#include "uri/uri.h"

namespace coblk::bench {
namespace {

// "--bs=3k" as the user wrote it, or "job 'x': bs=4096 (default)".
std::string said(const JobSpec& s, std::string_view key, uint64_t value)
{
    return s.describe(key, std::to_string(value));
}

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

// Fills [0, len) of the new file `path` with pseudo-random data, 1 MiB at
// a time, so that reads measure real data rather than holes. 0 or -errno.
Task<Result<void>> lay_out(Loop& loop, std::string path, uint64_t len)
{
    OpenOptions oo;
    oo.format = "raw";
    auto dev = co_await open_device(loop, path, oo);
    if (!dev)
        co_return dev.error();
    constexpr size_t kChunk = 1 << 20;
    std::unique_ptr<unsigned char, FreeDeleter> buf(
        static_cast<unsigned char*>(std::aligned_alloc(4096, kChunk)));
    Prng rng(len);
    for (size_t i = 0; i < kChunk; i += 8) {
        uint64_t v = rng.next() | 0x0101010101010101ull;
        std::memcpy(buf.get() + i, &v, 8);
    }
    int r = 0;
    for (uint64_t off = 0; off < len && r == 0; off += kChunk) {
        size_t n = size_t(std::min<uint64_t>(kChunk, len - off));
        buf.get()[0] = static_cast<unsigned char>(off >> 20) | 1;
        r = co_await (*dev)->pwrite(off, buf.get(), n);
    }
    if (r == 0)
        r = co_await (*dev)->flush();
    co_await (*dev)->close();
    if (r < 0)
        co_return make_error(-r, "cannot lay out '{}': {}", path, std::strerror(-r));
    co_return Result<void>{};
}

// Opens `job`'s target as its clones will, checks the job against it and
// closes it again. Fails naming the job and the option at fault.
Task<Result<void>> check_target(Loop& loop, PreparedJob& job)
{
    std::string name = job.spec.filename;
    OpenOptions oo = job.open;
    auto dev = co_await open_device(loop, name, oo);
    if (!dev)
        co_return make_error(dev.error().code, "job '{}': {}", job.spec.name,
                             dev.error().message);
    Layer& l = **dev;
    std::string what = fmt::format("'{}'{}", name,
                                   l.limits().request_alignment > 1 ? " (cache=none)" : "");
    job.mem_align = std::max<uint32_t>(l.limits().memory_alignment, 4096);
    auto r = check_against_target(job, l.size(), l.limits().request_alignment, l.growable(),
                                  what);
    co_await l.close();
    co_return r;
}

} // namespace

Result<void> check_against_target(PreparedJob& job, uint64_t target_size, uint32_t align,
                                  bool growable, const std::string& what)
{
    const JobSpec& s = job.spec;
    // Only a job that never reads may go past the end of a file (it grows).
    bool may_grow = growable && !rw_reads(s.rw);
    if (!may_grow && s.offset >= target_size)
        return make_error(EINVAL, "{}: at or past the end of {} ({} bytes)",
                          said(s, "offset", s.offset), what, target_size);
    uint64_t size = s.size ? *s.size : target_size - std::min(s.offset, target_size);
    if (s.size && !may_grow && (s.offset + size > target_size || s.offset + size < size)) {
        return make_error(EINVAL, "{}: {}{} bytes, more than {} holds ({} bytes); a job that "
                          "reads cannot go past the end", said(s, "size", size),
                          s.offset ? "offset + size is " : "", s.offset + size, what,
                          target_size);
    }
    if (size < s.bs)
        return make_error(EINVAL, "{}: the region ({} bytes of {}) is smaller than one block "
                          "(bs={})", s.size ? said(s, "size", size) : said(s, "offset", s.offset),
                          size, what, s.bs);
    if (s.bs % align)
        return make_error(EINVAL, "{}: not a multiple of the request alignment of {} ({} "
                          "bytes); use a multiple of {}", said(s, "bs", s.bs), what, align,
                          align);
    if (s.offset % align)
        return make_error(EINVAL, "{}: not a multiple of the request alignment of {} ({} "
                          "bytes)", said(s, "offset", s.offset), what, align);
    // Each block is a slot of blockalign bytes (bs when not given) holding
    // one request of bs bytes at its start.
    uint64_t stride = s.blockalign ? s.blockalign : s.bs;
    job.nblocks = (size - s.bs) / stride + 1;
    job.size = (job.nblocks - 1) * stride + s.bs;
    if (s.verify && job.nblocks <= s.iodepth)
        return make_error(EINVAL, "job '{}': verify=crc32c needs more blocks than iodepth "
                          "(size/bs = {}, iodepth={}), so that no two requests share a block",
                          s.name, job.nblocks, s.iodepth);
    return {};
}

Task<Result<std::vector<PreparedJob>>> prepare_jobs(Loop& loop, const RunConfig& cfg,
                                                    std::vector<std::string>& notes)
{
    std::vector<PreparedJob> jobs;
    unsigned threads = 0;
    for (const JobSpec& s : cfg.jobs)
        threads += s.numjobs;

    // Files to create: path -> bytes needed, and whether a job reads them.
    struct NewFile {
        uint64_t size = 0;
        bool read = false;
        std::string first_job;
    };
    std::map<std::string, NewFile> new_files;
    std::vector<bool> is_new;

    unsigned group = 0;
    for (const JobSpec& s : cfg.jobs) {
        PreparedJob job;
        job.spec = s;
        if (!jobs.empty() && (s.stonewall || s.new_group))
            group++;
        job.group = group;
        auto spec = uri::parse(s.filename);
        if (!spec)
            co_return make_error(EINVAL, "job '{}': filename={}: {}", s.name, s.filename,
                                 spec.error().message);
        job.open.read_only = !rw_writes(s.rw);
        job.open.format = s.format;
        if (s.direct)
            job.open.cache = "none";
        bool local = spec->protocol == uri::Protocol::File ||
                     spec->protocol == uri::Protocol::HostDevice;
        // Clones open the target once each: the whole-file lock that keeps
        // two writers apart would refuse our own second open.
        if (local && threads > 1 && !spec->option("locking"))
            job.open.options.emplace_back("locking", "off");
        bool missing = false;
        struct stat st {};
        if (spec->protocol == uri::Protocol::File) {
            if (::stat(spec->path.c_str(), &st) < 0 && errno == ENOENT) {
                missing = true;
                if (!s.size)
                    co_return make_error(ENOENT, "job '{}': filename={}: no such file; give "
                                         "size= to have it created", s.name, s.filename);
                NewFile& nf = new_files[spec->path];
                nf.size = std::max(nf.size, s.offset + *s.size);
                nf.read |= rw_reads(s.rw);
                if (nf.first_job.empty())
                    nf.first_job = s.name;
            }
        }
        is_new.push_back(missing);
        jobs.push_back(std::move(job));
    }

    for (size_t i = 0; i < jobs.size(); i++) {
        if (is_new[i])
            continue;
        auto r = co_await check_target(loop, jobs[i]);
        if (!r)
            co_return r.error();
    }
    if (new_files.empty())
        co_return std::move(jobs);

    std::vector<std::string> created;
    auto remove_created = [&] {
        for (const auto& p : created)
            ::unlink(p.c_str());
    };
    for (const auto& [path, nf] : new_files) {
        CreateOptions co;
        co.size = nf.size;
        std::string p = path;
        auto r = co_await create_image(loop, p, co);
        if (!r) {
            remove_created();
            co_return make_error(r.error().code, "job '{}': {}", nf.first_job,
                                 r.error().message);
        }
        created.push_back(path);
    }
    for (size_t i = 0; i < jobs.size(); i++) {
        if (!is_new[i])
            continue;
        auto r = co_await check_target(loop, jobs[i]);
        if (!r) {
            remove_created();
            co_return r.error();
        }
    }
    for (const auto& [path, nf] : new_files) {
        if (!nf.read)
            continue;
        notes.push_back(fmt::format("{}: Laying out IO file (1 file / {})", nf.first_job,
                                    nf.size % (1 << 20) ? format_bytes_binary(nf.size)
                                                        : fmt::format("{}MiB", nf.size >> 20)));
        auto r = co_await lay_out(loop, path, nf.size);
        if (!r) {
            remove_created();
            co_return r.error();
        }
    }
    co_return std::move(jobs);
}

} // namespace coblk::bench
