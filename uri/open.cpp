// Building a device stack from a name: protocol backend first, then the
// format layer on top of it.
#include "uri/open.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "backends/file.h"
#ifdef COBLK_HAVE_GLUSTER
#include "backends/gluster.h"
#endif
#include "backends/memory.h"
#include "backends/null.h"
#ifdef COBLK_HAVE_RBD
#include "backends/rbd.h"
#endif
#include "engine/blocking.h"
#include "formats/probe.h"
#include "formats/raw.h"
#include "uri/options.h"

namespace coblk {
namespace {

using LayerResult = Result<std::unique_ptr<Layer>>;

using Keys = std::span<const std::string_view>;
constexpr std::string_view kFileKeys[] = {"cache", "aio", "locking"};
constexpr std::string_view kNullKeys[] = {"size", "latency-ns", "read-zeroes"};
constexpr std::string_view kMemoryKeys[] = {"size", "name"};
constexpr std::string_view kGlusterKeys[] = {"log-level", "log-file", "ping-timeout",
                                             "connect-timeout", "debug"};
constexpr std::string_view kRawKeys[] = {"offset", "size"};

// The option keys each protocol reads (from the URI's query or from -o).
Keys protocol_keys(uri::Protocol p)
{
    switch (p) {
    case uri::Protocol::File:
    case uri::Protocol::HostDevice: return kFileKeys;
    case uri::Protocol::Null: return kNullKeys;
    case uri::Protocol::Memory: return kMemoryKeys;
    case uri::Protocol::Gluster: return kGlusterKeys;
    case uri::Protocol::Rbd: return {};
    }
    return {};
}

bool has_key(Keys keys, std::string_view k)
{
    for (auto key : keys)
        if (key == k)
            return true;
    return false;
}

// Splits -o options between the protocol and the format; a key neither
// reads is refused.
Result<std::pair<uri::Options, uri::Options>> split_options(const uri::Spec& spec,
                                                           const uri::Options& opts,
                                                           std::string_view format)
{
    uri::Options proto = spec.options, fmt_opts;
    Keys pkeys = protocol_keys(spec.protocol);
    for (const auto& kv : opts) {
        if (has_key(pkeys, kv.first))
            proto.push_back(kv);
        else if ((format.empty() || format == "raw") && has_key(kRawKeys, kv.first))
            fmt_opts.push_back(kv);
        else
            return make_error(EINVAL, "unknown option '{}' for {} (protocol {} reads: {}; "
                              "format raw reads: offset, size)", kv.first, spec.text,
                              uri::protocol_name(spec.protocol), fmt::join(pkeys, ", "));
    }
    return std::pair{std::move(proto), std::move(fmt_opts)};
}

// Reads the file/host_device options: cache, aio, locking.
Result<FileOpenOptions> file_options(const uri::Options& opts, const OpenOptions& o)
{
    FileOpenOptions f;
    f.read_only = o.read_only;
    std::string cache = o.cache;
    if (auto v = uri::find_option(opts, "cache"); v && cache.empty())
        cache = *v;
    if (!cache.empty()) {
        auto c = parse_cache_mode(cache);
        if (!c)
            return c.error();
        f.cache = *c;
    }
    if (auto v = uri::find_option(opts, "aio"); v && *v != "io_uring")
        return make_error(EINVAL, "invalid aio '{}': coblk does local I/O through io_uring "
                          "only (aio=io_uring)", *v);
    if (auto v = uri::find_option(opts, "locking"); v && *v != "auto") {
        auto b = uri::parse_bool(*v, "locking");
        if (!b)
            return b.error();
        f.locking = *b;
    }
    return f;
}

template <typename T>
LayerResult upcast(Result<std::unique_ptr<T>> r)
{
    if (!r)
        return r.error();
    return std::unique_ptr<Layer>(std::move(r).value());
}

// Opens the protocol layer of `spec` with its options `opts`. Loop thread.
Task<LayerResult> open_backend(Loop& loop, const uri::Spec& spec, const uri::Options& opts,
                               const OpenOptions& o)
{
    switch (spec.protocol) {
    case uri::Protocol::File:
    case uri::Protocol::HostDevice: {
        if (auto r = uri::check_known_options(opts, kFileKeys, uri::protocol_name(spec.protocol));
            !r)
            co_return r.error();
        auto f = file_options(opts, o);
        if (!f)
            co_return f.error();
        if (spec.protocol == uri::Protocol::File)
            co_return upcast(FileLayer::open(loop, spec.path, *f));
        co_return upcast(HostDeviceLayer::open(loop, spec.path, *f));
    }
    case uri::Protocol::Null:
        co_return upcast(NullLayer::open(loop, opts, o.read_only));
    case uri::Protocol::Memory:
        co_return upcast(MemoryLayer::open(opts, o.read_only));
    case uri::Protocol::Gluster:
#ifdef COBLK_HAVE_GLUSTER
    {
        auto g = co_await GlusterLayer::open(loop, spec.gluster, opts, o.read_only);
        co_return upcast(std::move(g));
    }
#else
        break;
#endif
    case uri::Protocol::Rbd:
#ifdef COBLK_HAVE_RBD
    {
        // Connection options come with the name (rbd:pool/img:key=value);
        // -o adds to them. As in QEMU, cache=none turns librbd's cache off
        // unless the name sets rbd_cache itself.
        uri::Options rbd_opts = opts;
        bool named = false;
        for (const auto& kv : spec.rbd.options)
            named = named || kv.first == "rbd_cache";
        if (o.cache == "none" && !named)
            rbd_opts.emplace_back("rbd_cache", "false");
        auto r = co_await RbdLayer::open(loop, spec.rbd, rbd_opts, o.read_only);
        co_return upcast(std::move(r));
    }
#else
        break;
#endif
    }
    co_return make_error(ENOTSUP, "'{}': the {} protocol is not available in this build",
                         spec.text, uri::protocol_name(spec.protocol));
}

// A plain path under /dev that names a regular file (on /dev/shm, say) is a
// file: only an explicit host_device: insists on a block device.
void resolve_plain_dev_path(uri::Spec& spec)
{
    struct stat st {};
    if (spec.protocol == uri::Protocol::HostDevice && spec.text == spec.path &&
        ::stat(spec.path.c_str(), &st) == 0 && S_ISREG(st.st_mode))
        spec.protocol = uri::Protocol::File;
}

// Probes the format from the first bytes of `proto`.
Task<Result<std::string>> probe(Layer& proto, const std::string& name)
{
    unsigned char head[kProbeBytes] = {};
    uint64_t n = std::min<uint64_t>(kProbeBytes, proto.size());
    if (n > 0) {
        int r = co_await proto.pread(0, head, n);
        if (r < 0)
            co_return make_error(-r, "cannot read the header of '{}' to probe its format: {}",
                                 name, std::strerror(-r));
    }
    co_return std::string(probe_format(head, n));
}

} // namespace

Task<Result<std::unique_ptr<Layer>>> open_protocol(Loop& loop, const uri::Spec& spec_in,
                                                   const OpenOptions& o)
{
    uri::Spec spec = spec_in;
    resolve_plain_dev_path(spec);
    auto split = split_options(spec, o.options, o.format);
    if (!split)
        co_return split.error();
    co_return co_await open_backend(loop, spec, split->first, o);
}

Task<Result<std::unique_ptr<Layer>>> open_device(Loop& loop, std::string_view name,
                                                 const OpenOptions& o)
{
    auto spec = uri::parse(name);
    if (!spec)
        co_return spec.error();
    resolve_plain_dev_path(*spec);
    // As with qemu's `-f file`, the protocol's own name as the format opens
    // the bare protocol layer, with no format layer above it.
    bool bare = o.format == uri::protocol_name(spec->protocol);
    if (!o.format.empty() && !bare && !format_supported(o.format))
        co_return make_error(EINVAL, "unknown format '{}' for '{}' (this build opens: raw, or "
                             "'{}' for the bare protocol)", o.format, name,
                             uri::protocol_name(spec->protocol));
    auto split = split_options(*spec, o.options, o.format);
    if (!split)
        co_return split.error();
    auto proto = co_await open_backend(loop, *spec, split->first, o);
    if (!proto || bare)
        co_return proto;
    std::unique_ptr<Layer> child = std::move(proto).value();

    std::string format = o.format;
    if (format.empty()) {
        std::string name_copy(name);
        auto probed = co_await probe(*child, name_copy);
        if (probed && !format_supported(*probed))
            probed = make_error(EMEDIUMTYPE, "'{}' is a {} image, which this build does not "
                                "open (give format raw to access its bytes as they are)",
                                name, *probed);
        if (!probed) {
            co_await child->close();
            co_return probed.error();
        }
    }
    auto raw_opts = parse_raw_options(split->second);
    if (!raw_opts) {
        co_await child->close();
        co_return raw_opts.error();
    }
    raw_opts->probed = format.empty();
    auto raw = RawLayer::open(std::move(child), *raw_opts);
    if (!raw)
        co_return make_error(raw.error().code, "'{}': {}", name, raw.error().message);
    co_return std::unique_ptr<Layer>(std::move(raw).value());
}

namespace {

// Creates or truncates the regular file `path` to `size` bytes, refusing a
// file another process holds open through coblk or QEMU (its lock).
// preallocation: "off" (sparse) or "falloc". Runs on a worker thread.
int64_t create_file(const std::string& path, uint64_t size, bool falloc, std::string& why)
{
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        why = fmt::format("cannot create '{}': {}", path, std::strerror(errno));
        return -errno;
    }
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    int r = 0;
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
        r = -errno;
        why = fmt::format("cannot create '{}': it is in use (locked) by another process", path);
    } else if (ftruncate(fd, 0) < 0 || ftruncate(fd, off_t(size)) < 0) {
        r = -errno;
        why = fmt::format("cannot size '{}' to {} bytes: {}", path, size, std::strerror(errno));
    } else if (falloc && size > 0 && (r = -posix_fallocate(fd, 0, off_t(size))) < 0) {
        why = fmt::format("cannot preallocate {} bytes for '{}': {}", size, path,
                          std::strerror(-r));
    }
    ::close(fd);
    return r;
}

} // namespace

Task<Result<void>> create_image(Loop& loop, std::string_view name, const CreateOptions& o)
{
    if (o.format != "raw")
        co_return make_error(EINVAL, "cannot create '{}': unknown format '{}' (this build "
                             "creates: raw)", name, o.format);
    bool falloc = false;
    for (const auto& [k, v] : o.options) {
        if (k == "preallocation" && (v == "off" || v == "falloc")) {
            falloc = v == "falloc";
        } else if (k == "preallocation") {
            co_return make_error(EINVAL, "invalid preallocation '{}' (expected off or falloc)", v);
        } else if (k != "size") {
            co_return make_error(EINVAL, "unknown option '{}' for creating a raw image "
                                 "(known: size, preallocation)", k);
        }
    }
    auto spec = uri::parse(name);
    if (!spec)
        co_return spec.error();
    if (spec->protocol == uri::Protocol::File) {
        std::string why;
        std::string path = spec->path;
        uint64_t size = o.size;
        int64_t r = co_await run_blocking(
            loop, [&]() -> int64_t { return create_file(path, size, falloc, why); });
        if (r < 0)
            co_return Error{int(-r), why};
        co_return Result<void>{};
    }
#ifdef COBLK_HAVE_GLUSTER
    if (spec->protocol == uri::Protocol::Gluster) {
        auto gl = co_await GlusterLayer::create(loop, spec->gluster, spec->options, o.size,
                                                falloc);
        if (!gl)
            co_return gl.error();
        co_return Result<void>{};
    }
#endif
#ifdef COBLK_HAVE_RBD
    if (spec->protocol == uri::Protocol::Rbd) {
        if (falloc)
            co_return make_error(EINVAL, "cannot create '{}': preallocation=falloc is not "
                                 "supported on rbd", name);
        uri::Options none;
        auto rb = co_await RbdLayer::create(loop, spec->rbd, none, o.size);
        if (!rb)
            co_return rb.error();
        co_return Result<void>{};
    }
#endif
    // Devices that exist already: check that they are big enough.
    OpenOptions oo;
    oo.read_only = true;
    if (spec->protocol == uri::Protocol::Memory && !spec->option("size"))
        oo.options.emplace_back("size", std::to_string(o.size));
    auto dev = co_await open_protocol(loop, *spec, oo);
    if (!dev)
        co_return dev.error();
    uint64_t have = (*dev)->size();
    co_await (*dev)->close();
    if (have < o.size)
        co_return make_error(ENOSPC, "'{}' holds {} bytes, less than the {} requested", name, have,
                             o.size);
    co_return Result<void>{};
}

} // namespace coblk
