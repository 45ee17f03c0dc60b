// Building a device stack from a name: protocol backend first, then the
// format layer on top of it.
#include "uri/open.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
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
#include "formats/fvd.h"
#include "formats/probe.h"
#include "formats/raw.h"
#include "uri/fvd_siblings.h"
#include "uri/options.h"

namespace coblk {
namespace {

using LayerResult = Result<std::unique_ptr<Layer>>;

using Keys = std::span<const std::string_view>;
constexpr std::string_view kFileKeys[] = {"cache", "aio", "locking"};
constexpr std::string_view kNullKeys[] = {"size", "latency-ns", "read-zeroes"};
constexpr std::string_view kMemoryKeys[] = {"size", "name"};
constexpr std::string_view kGlusterKeys[] = {"log-level", "log-file", "ping-timeout",
                                             "connect-timeout", "debug", "gather-us",
                                             "client-io-threads"};
constexpr std::string_view kRawKeys[] = {"offset", "size"};
constexpr std::string_view kFvdKeys[] = {"copy_on_read", "prefetch", "prefetch_delay",
                                         "prefetch_idle", "prefetch_min_mbps", "cor_budget"};

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
        else if ((format.empty() || format == "fvd") && has_key(kFvdKeys, kv.first))
            fmt_opts.push_back(kv);
        else
            return make_error(EINVAL, "unknown option '{}' for {} (protocol {} reads: {}; "
                              "format raw reads: offset, size; format fvd reads: {})", kv.first,
                              spec.text, uri::protocol_name(spec.protocol),
                              fmt::join(pkeys, ", "), fmt::join(kFvdKeys, ", "));
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

namespace {

constexpr size_t kMaxChainDepth = 16;

// A name that identifies an image in a base chain, for finding loops: the
// real path of a local file, the URI text otherwise.
std::string chain_key(const std::string& name)
{
    auto spec = uri::parse(name);
    if (!spec || spec->protocol != uri::Protocol::File)
        return name;
    char buf[PATH_MAX];
    if (::realpath(spec->path.c_str(), buf))
        return buf;
    return spec->path;
}

} // namespace

std::string resolve_base_name(std::string_view image, const std::string& base)
{
    auto b = uri::parse(base);
    if (!b || b->protocol != uri::Protocol::File || base.starts_with("file:") ||
        base.starts_with("/"))
        return base;
    auto im = uri::parse(image);
    if (!im)
        return base;
    if (im->protocol == uri::Protocol::File) {
        size_t slash = im->path.rfind('/');
        return slash == std::string::npos ? base : im->path.substr(0, slash + 1) + base;
    }
    if (im->protocol == uri::Protocol::Gluster) {
        std::string text = im->text.substr(0, im->text.find('?'));
        std::string query = im->text.find('?') == std::string::npos
                                ? "" : im->text.substr(im->text.find('?'));
        return text.substr(0, text.rfind('/') + 1) + base + query;
    }
    return base;
}

namespace {

// open_device, for an image that is `chain.size()` levels below the one the
// caller asked for; `chain` holds the keys of the images above it.
Task<LayerResult> open_in_chain(Loop& loop, std::string_view name, const OpenOptions& o,
                                std::vector<std::string>& chain)
{
    auto spec = uri::parse(name);
    if (!spec)
        co_return spec.error();
    resolve_plain_dev_path(*spec);
    // As with qemu's `-f file`, the protocol's own name as the format opens
    // the bare protocol layer, with no format layer above it.
    bool bare = o.format == uri::protocol_name(spec->protocol);
    if (!o.format.empty() && !bare && !format_supported(o.format))
        co_return make_error(EINVAL, "unknown format '{}' for '{}' (this build opens: raw, fvd, "
                             "or '{}' for the bare protocol)", o.format, name,
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
        if (*probed == "fvd")
            format = "fvd";
    }
    if (format == "fvd") {
        auto fvd_opts = parse_fvd_options(split->second);
        if (!fvd_opts) {
            co_await child->close();
            co_return make_error(EINVAL, "'{}': {}", name, fvd_opts.error().message);
        }
        std::string image(name);
        chain.push_back(chain_key(image));
        std::string cache = o.cache;
        FvdBaseOpener opener = [&loop, &chain, image, cache](std::string base,
                                                             std::string base_format)
            -> Task<LayerResult> {
            std::string resolved = resolve_base_name(image, base);
            if (chain.size() >= kMaxChainDepth)
                co_return make_error(ELOOP, "the base chain is deeper than {} images",
                                     kMaxChainDepth);
            std::string key = chain_key(resolved);
            for (const std::string& k : chain)
                if (k == key)
                    co_return make_error(ELOOP, "the base chain loops: '{}' is already in it",
                                         resolved);
            // The base is read with the image's cache mode, as QEMU's
            // backing files inherit it.
            OpenOptions bo;
            bo.read_only = true;
            bo.format = base_format;
            bo.cache = cache;
            co_return co_await open_in_chain(loop, resolved, bo, chain);
        };
        FvdOptions fo = *fvd_opts;
        // The image the caller opened for writing may take snapshots beside
        // itself; its bases are read-only and never do.
        std::shared_ptr<FvdSiblings> siblings;
        if (!o.read_only && chain.size() == 1)
            siblings = make_fvd_siblings(loop, *spec, o, split->first);
        auto fvd = co_await FvdLayer::open(std::move(child), image, o.read_only, &opener, fo,
                                           siblings);
        chain.pop_back();
        co_return upcast(std::move(fvd));
    }
    for (const auto& kv : split->second)
        if (has_key(kFvdKeys, kv.first)) {
            co_await child->close();
            co_return make_error(EINVAL, "option '{}' is for fvd images, and '{}' is raw",
                                 kv.first, name);
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

} // namespace

Task<Result<std::unique_ptr<Layer>>> open_device(Loop& loop, std::string_view name,
                                                 const OpenOptions& o)
{
    std::vector<std::string> chain;
    co_return co_await open_in_chain(loop, name, o, chain);
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

namespace {

// Reads fvd's creation options into a geometry and header fields. Fails
// naming the option.
Result<fvd::Header> fvd_create_header(std::string_view name, const CreateOptions& o,
                                      uint64_t base_size)
{
    fvd::Geometry g;
    fvd::Header extra;
    for (const auto& [k, v] : o.options) {
        if (k == "block_size" || k == "chunk_size" || k == "journal_size") {
            auto n = uri::parse_size(v, k);
            if (!n)
                return n.error();
            if (k == "journal_size")
                g.journal_size = *n;
            else if (*n > UINT32_MAX)
                return make_error(EINVAL, "{} {} is out of range", k, *n);
            else
                (k == "block_size" ? g.block_size : g.chunk_size) = uint32_t(*n);
        } else if (k == "compact" || k == "copy_on_read" || k == "prefetch") {
            auto b = uri::parse_bool(v, k);
            if (!b)
                return b.error();
            if (k == "compact")
                g.compact = *b;
            else if (*b)
                extra.compatible |= k == "prefetch" ? fvd::kCompatPrefetch
                                                    : fvd::kCompatCopyOnRead;
        } else if (k == "backing_file") {
            extra.base_name = v;
        } else if (k == "backing_fmt") {
            extra.base_format = v;
        } else {
            return make_error(EINVAL, "unknown option '{}' for creating an fvd image (known: "
                              "block_size, chunk_size, compact, journal_size, copy_on_read, "
                              "prefetch, backing_file, backing_fmt)", k);
        }
    }
    if (extra.base_name.size() > fvd::kMaxStringLen ||
        extra.base_format.size() > fvd::kMaxStringLen)
        return make_error(EINVAL, "the base image name is over {} bytes", fvd::kMaxStringLen);
    if (extra.base_name.empty() && !extra.base_format.empty())
        return make_error(EINVAL, "backing_fmt without backing_file");
    g.virtual_size = o.size ? o.size : base_size;
    if (g.virtual_size == 0)
        return make_error(EINVAL, "cannot create '{}': no size given and no base image to "
                          "take it from", name);
    auto h = fvd::layout(g);
    if (!h)
        return make_error(h.error().code, "cannot create '{}': {}", name, h.error().message);
    h->compatible = extra.compatible;
    h->base_name = extra.base_name;
    h->base_format = extra.base_format;
    h->base_size = extra.base_name.empty() ? 0 : base_size;
    return h;
}

// Creates an FVD image: checks and sizes its base, lays out the regions,
// creates the storage and writes the empty metadata.
Task<Result<void>> create_fvd(Loop& loop, std::string_view name, const CreateOptions& o)
{
    uint64_t base_size = 0;
    std::string base_name = uri::find_option(o.options, "backing_file").value_or("");
    if (!base_name.empty()) {
        OpenOptions bo;
        bo.read_only = true;
        bo.format = uri::find_option(o.options, "backing_fmt").value_or("");
        std::string resolved = resolve_base_name(name, base_name);
        auto base = co_await open_device(loop, resolved, bo);
        if (!base)
            co_return make_error(base.error().code, "cannot create '{}': cannot open its base "
                                 "image: {}", name, base.error().message);
        base_size = (*base)->size();
        co_await (*base)->close();
    }
    auto h = fvd_create_header(name, o, base_size);
    if (!h)
        co_return h.error();
    CreateOptions storage;
    storage.size = h->data_offset + (h->compact() ? 0 : h->virtual_size);
    auto made = co_await create_image(loop, name, storage);
    if (!made)
        co_return made.error();
    auto spec = uri::parse(name);
    if (!spec)
        co_return spec.error();
    OpenOptions po;
    if (spec->protocol == uri::Protocol::Memory && !spec->option("size"))
        po.options.emplace_back("size", std::to_string(storage.size));
    auto dev = co_await open_protocol(loop, *spec, po);
    if (!dev)
        co_return dev.error();
    int r = co_await FvdLayer::format(**dev, *h);
    co_await (*dev)->close();
    if (r < 0)
        co_return make_error(-r, "cannot write the FVD metadata of '{}': {}", name,
                             std::strerror(-r));
    co_return Result<void>{};
}

} // namespace

Task<Result<void>> create_image(Loop& loop, std::string_view name, const CreateOptions& o)
{
    if (o.format == "fvd")
        co_return co_await create_fvd(loop, name, o);
    if (o.format != "raw")
        co_return make_error(EINVAL, "cannot create '{}': unknown format '{}' (this build "
                             "creates: raw, fvd)", name, o.format);
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
