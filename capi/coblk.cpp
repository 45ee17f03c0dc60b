// The C API (include/coblk.h) over the C++ engine: devices, properties,
// queues. Each queue owns a Loop (a ring any thread may run, one at a time)
// and its own opened layer stack, so a request is started and completed on
// the thread that calls the queue, with no hand-over between threads.
//
// Every entry point catches every exception: none may cross into C.
#include "coblk.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "capi/error.h"
#include "engine/layer.h"
#include "engine/loop.h"
#include "uri/open.h"
#include "uri/options.h"
#include "uri/uri.h"

using namespace coblk;
using coblk::capi::fail;

namespace {

enum class State { Created, Started, Closed };

enum class Op { Read, Write, Flush, Discard, WriteZeroes };

constexpr unsigned kRingEntries = 256;

} // namespace

struct coblk_queue {
    struct coblk_device* dev = nullptr;
    int index = 0;
    std::unique_ptr<Loop> loop;
    std::unique_ptr<Layer> layer;
    // Completions not yet collected: slots [head, tail) of `done`. Room for
    // every request in flight is kept after `tail` (make_room), so that
    // completing a request never allocates.
    std::vector<coblk_completion> done;
    uint32_t head = 0, tail = 0;
    uint32_t room = 0;  // done.size(), kept where the request path reads it
    int inflight = 0;
    bool closed = false;  // set with the device's Closed state
};

struct coblk_device {
    std::string uri;
    uri::Spec spec;
    State state = State::Created;
    OpenOptions opts;
    int num_queues = 1;
    std::vector<std::unique_ptr<coblk_queue>> queues;
};

namespace {

#define COBLK_GUARD_BEGIN try {
#define COBLK_GUARD_END                                                          \
    }                                                                            \
    catch (const std::bad_alloc&)                                                \
    {                                                                            \
        return fail(ENOMEM, "out of memory");                                    \
    }                                                                            \
    catch (const std::exception& e)                                              \
    {                                                                            \
        return fail(EIO, "internal error: {}", e.what());                        \
    }                                                                            \
    catch (...)                                                                  \
    {                                                                            \
        return fail(EIO, "internal error: unknown exception");                   \
    }

// -EINVAL/-ENOTCONN/-EBADF when `dev` cannot take a call needing `want`.
int check_dev(const coblk_device* dev, const char* fn, State want)
{
    if (!dev)
        return fail(EINVAL, "{}: the device handle is NULL", fn);
    if (dev->state == State::Closed)
        return fail(EBADF, "{}: device '{}' is closed", fn, dev->uri);
    if (dev->state != want) {
        if (want == State::Started)
            return fail(ENOTCONN, "{}: device '{}' is not started (call coblk_start first)", fn,
                        dev->uri);
        return fail(EBUSY, "{}: device '{}' is already started", fn, dev->uri);
    }
    return 0;
}

inline int check_queue(const coblk_queue* q, const char* fn)
{
    if (!q)
        return fail(EINVAL, "{}: the queue handle is NULL", fn);
    if (q->closed)
        return fail(EBADF, "{}: device '{}' is closed", fn, q->dev->uri);
    return 0;
}

// Parses a boolean property value given as a string.
int parse_bool_value(const char* name, const char* value, bool* out)
{
    std::string v = value;
    if (v == "on" || v == "true" || v == "yes" || v == "1") {
        *out = true;
        return 0;
    }
    if (v == "off" || v == "false" || v == "no" || v == "0") {
        *out = false;
        return 0;
    }
    return fail(EINVAL, "property '{}' is a bool: '{}' is not on/off/true/false", name, value);
}

bool has_memory_name(const coblk_device* dev)
{
    if (dev->spec.option("name"))
        return true;
    for (const auto& kv : dev->opts.options)
        if (kv.first == "name" && !kv.second.empty())
            return true;
    return false;
}

// The kind of the first layer of `l`'s stack whose metadata lives in its
// open layer (FVD: bitmap, table, journal), or null. Two such layers
// writing one image would overwrite each other's metadata.
const char* keeps_image_state(const Layer* l)
{
    for (; l; l = l->child())
        if (std::strcmp(l->kind(), "fvd") == 0)
            return l->kind();
    return nullptr;
}

// Closes every opened stack, waiting for requests in flight on each.
void close_queues(coblk_device* dev) noexcept
{
    for (auto& q : dev->queues) {
        if (q->layer) {
            try {
                q->loop->run(q->layer->close());
            } catch (...) {
            }
            q->layer.reset();
        }
    }
}

// Makes room in `q->done` for one more request's completion beyond those
// in flight: moves the uncollected ones to the front, or grows the array.
// Throws std::bad_alloc (the entry point's guard turns it into -ENOMEM).
[[gnu::noinline]] void make_room(coblk_queue* q)
{
    uint32_t waiting = q->tail - q->head;
    if (q->head > 0) {
        std::copy(q->done.begin() + q->head, q->done.begin() + q->tail, q->done.begin());
        q->head = 0;
        q->tail = waiting;
    }
    size_t need = size_t(waiting) + size_t(q->inflight) + 1;
    if (q->done.size() < need)
        q->done.resize(std::max<size_t>({need, 2 * q->done.size(), 64}));
    q->room = uint32_t(std::min<size_t>(q->done.size(), UINT32_MAX));
}

// Records a request's completion. Never reallocates: submit() reserved
// room for every request in flight.
inline void complete(coblk_queue* q, void* user_data, int r) noexcept
{
    q->inflight--;
    q->done[q->tail++] = coblk_completion{user_data, r, 0};
}

// The coroutines of reads and writes, the requests a VMM sends most: one
// await and nothing else, and no more arguments than they need, so that
// their frames and resumptions cost what the C++ interface's own do
// (bench/capi_cost.cpp measures the difference). Started and resumed on
// the queue's loop only. run_one's request has one buffer, kept in its
// frame; run_vec's uses the caller's iovec array.
template <bool Write>
detail::Detached run_one(coblk_queue* q, uint64_t off, iovec one, unsigned flags, void* user_data)
{
    int r;
    try {
        Layer* l = q->layer.get();
        Task<int> t = Write ? l->pwritev(off, &one, 1, flags) : l->preadv(off, &one, 1, 0);
        r = co_await std::move(t);
    } catch (...) {
        r = -ENOMEM;  // I/O paths return errors; only an allocation can throw
    }
    complete(q, user_data, r);
}

template <bool Write>
detail::Detached run_vec(coblk_queue* q, uint64_t off, const iovec* iov, int iovcnt,
                         unsigned flags, void* user_data)
{
    int r;
    try {
        Layer* l = q->layer.get();
        Task<int> t = Write ? l->pwritev(off, iov, iovcnt, flags) : l->preadv(off, iov, iovcnt, 0);
        r = co_await std::move(t);
    } catch (...) {
        r = -ENOMEM;
    }
    complete(q, user_data, r);
}

// The coroutine of a flush, discard or write-zeroes request. Loop thread.
detail::Detached run_other(coblk_queue* q, Op op, uint64_t off, uint64_t len, unsigned flags,
                           void* user_data)
{
    int r;
    try {
        Layer* l = q->layer.get();
        Task<int> t = op == Op::Flush     ? l->flush()
                      : op == Op::Discard ? l->discard(off, len)
                                          : l->write_zeroes(off, len, flags);
        r = co_await std::move(t);
    } catch (...) {
        r = -ENOMEM;
    }
    complete(q, user_data, r);
}

// Validates and starts one request on `q`. 0 or -errno; -ENOMEM when the
// request's frame cannot be allocated (then no completion will come).
// `single`: `iov` is the caller's one-entry array on its stack, copied
// into the request.
// Inlined into each entry point, where `op` and `single` are constants and
// the checks that do not apply fold away.
[[gnu::always_inline]] inline int submit(coblk_queue* q, const char* fn, Op op, uint64_t off, const iovec* iov, int iovcnt,
           uint64_t len, void* user_data, uint32_t flags, bool single = false)
{
    if (int r = check_queue(q, fn))
        return r;
    Layer* l = q->layer.get();
    uint32_t allowed = 0;
    if (op == Op::Write)
        allowed = COBLK_REQ_FUA;
    else if (op == Op::WriteZeroes)
        allowed = COBLK_REQ_FUA | COBLK_REQ_NO_UNMAP;
    if (flags & ~allowed)
        return fail(EINVAL, "{}: flags 0x{:x} not valid for this request (allowed: 0x{:x})", fn,
                    flags, allowed);
    if (op == Op::Read || op == Op::Write) {
        if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt > 0 && !iov))
            return fail(EINVAL, "{}: bad iovec array ({} entries at {})", fn, iovcnt,
                        static_cast<const void*>(iov));
        len = 0;
        for (int i = 0; i < iovcnt; i++) {
            if (iov[i].iov_len && !iov[i].iov_base)
                return fail(EINVAL, "{}: iovec entry {} has a NULL buffer", fn, i);
            len += iov[i].iov_len;
        }
    }
    if (op != Op::Read && op != Op::Flush && l->read_only())
        return fail(EROFS, "{}: device '{}' is read-only", fn, q->dev->uri);
    if (op != Op::Flush) {
        uint64_t size = l->size();
        if (off > size || len > size - off)
            return fail(EINVAL, "{}: range [{}, +{}) ends past the end of '{}' ({} bytes)", fn,
                        off, len, q->dev->uri, size);
    }
    // Reserve the completion slot now, so completing never allocates.
    if (q->tail + uint32_t(q->inflight) >= q->room)
        make_room(q);
    q->inflight++;
    CurrentLoopScope scope(q->loop.get());
    unsigned f = 0;
    if (flags & COBLK_REQ_FUA)
        f |= kReqFua;
    if (flags & COBLK_REQ_NO_UNMAP)
        f |= kReqNoUnmap;
    try {
        if (single && op == Op::Read)
            run_one<false>(q, off, *iov, f, user_data);
        else if (single && op == Op::Write)
            run_one<true>(q, off, *iov, f, user_data);
        else if (op == Op::Read)
            run_vec<false>(q, off, iov, iovcnt, f, user_data);
        else if (op == Op::Write)
            run_vec<true>(q, off, iov, iovcnt, f, user_data);
        else
            run_other(q, op, off, len, f, user_data);
    } catch (const std::bad_alloc&) {
        // No frame for the request: it never started and has no completion.
        q->inflight--;
        return fail(ENOMEM, "{}: out of memory for the request on '{}' (offset {}, {} bytes)",
                    fn, q->dev->uri, off, len);
    }
    return 0;
}

// Moves up to `max` completions out of `q`.
int collect(coblk_queue* q, coblk_completion* out, int max)
{
    uint32_t n = std::min(uint32_t(max), q->tail - q->head);
    if (n > 0) {
        std::memcpy(out, q->done.data() + q->head, n * sizeof *out);
        q->head += n;
    }
    if (q->head == q->tail)
        q->head = q->tail = 0;
    return int(n);
}

int64_t now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

} // namespace

extern "C" {

const char* coblk_version(void) { return COBLK_VERSION_STRING; }

const char* coblk_get_error_msg(void) { return capi::error_message(); }

int coblk_create(const char* uri, struct coblk_device** devp)
{
    COBLK_GUARD_BEGIN
    if (!devp)
        return fail(EINVAL, "coblk_create: devp is NULL");
    *devp = nullptr;
    if (!uri)
        return fail(EINVAL, "coblk_create: the URI is NULL");
    auto spec = uri::parse(uri);
    if (!spec)
        return fail(spec.error().code, "{}", spec.error().message);
    auto dev = std::make_unique<coblk_device>();
    dev->uri = uri;
    dev->spec = std::move(spec).value();
    *devp = dev.release();
    return 0;
    COBLK_GUARD_END
}

int coblk_set_str(struct coblk_device* dev, const char* name, const char* value)
{
    COBLK_GUARD_BEGIN
    if (int r = check_dev(dev, "coblk_set_str", State::Created))
        return r;
    if (!name || !value)
        return fail(EINVAL, "coblk_set_str: NULL property name or value");
    std::string n = name;
    if (n == "format")
        dev->opts.format = value;
    else if (n == "cache") {
        std::string v = value;
        if (v != "none" && v != "writeback")
            return fail(EINVAL, "property 'cache': '{}' is not none or writeback", v);
        dev->opts.cache = v;
    } else if (n == "read-only") {
        bool b = false;
        if (int r = parse_bool_value(name, value, &b))
            return r;
        dev->opts.read_only = b;
    } else if (n == "num-queues") {
        return fail(EINVAL, "property 'num-queues' is an int: use coblk_set_int");
    } else if (n.empty()) {
        return fail(EINVAL, "coblk_set_str: empty property name");
    } else {
        dev->opts.options.emplace_back(n, value);
    }
    return 0;
    COBLK_GUARD_END
}

int coblk_set_bool(struct coblk_device* dev, const char* name, bool value)
{
    COBLK_GUARD_BEGIN
    if (int r = check_dev(dev, "coblk_set_bool", State::Created))
        return r;
    if (!name)
        return fail(EINVAL, "coblk_set_bool: NULL property name");
    if (std::strcmp(name, "read-only") != 0)
        return fail(std::strcmp(name, "num-queues") == 0 || std::strcmp(name, "format") == 0 ||
                            std::strcmp(name, "cache") == 0
                        ? EINVAL
                        : ENOENT,
                    "coblk_set_bool: '{}' is not a bool property (bool: read-only)", name);
    dev->opts.read_only = value;
    return 0;
    COBLK_GUARD_END
}

int coblk_set_int(struct coblk_device* dev, const char* name, int value)
{
    COBLK_GUARD_BEGIN
    if (int r = check_dev(dev, "coblk_set_int", State::Created))
        return r;
    if (!name)
        return fail(EINVAL, "coblk_set_int: NULL property name");
    if (std::strcmp(name, "num-queues") != 0)
        return fail(std::strcmp(name, "read-only") == 0 || std::strcmp(name, "format") == 0 ||
                            std::strcmp(name, "cache") == 0
                        ? EINVAL
                        : ENOENT,
                    "coblk_set_int: '{}' is not an int property (int: num-queues)", name);
    if (value < 1 || value > 1024)
        return fail(EINVAL, "property 'num-queues': {} is not in 1..1024", value);
    dev->num_queues = value;
    return 0;
    COBLK_GUARD_END
}

int coblk_get_uint64(struct coblk_device* dev, const char* name, uint64_t* value)
{
    COBLK_GUARD_BEGIN
    if (int r = check_dev(dev, "coblk_get_uint64", State::Started))
        return r;
    if (!name || !value)
        return fail(EINVAL, "coblk_get_uint64: NULL property name or value pointer");
    const Layer* l = dev->queues[0]->layer.get();
    std::string n = name;
    if (n == "size")
        *value = l->size();
    else if (n == "request-alignment")
        *value = l->limits().request_alignment;
    else if (n == "mem-alignment")
        *value = l->limits().memory_alignment;
    else if (n == "optimal-transfer")
        *value = l->limits().optimal_transfer;
    else if (n == "max-transfer")
        *value = l->limits().max_transfer;
    else if (n == "num-queues")
        *value = uint64_t(dev->num_queues);
    else
        return fail(ENOENT, "coblk_get_uint64: no uint64 property '{}' (uint64: size, "
                    "request-alignment, mem-alignment, optimal-transfer, max-transfer, "
                    "num-queues)", n);
    return 0;
    COBLK_GUARD_END
}

int coblk_get_bool(struct coblk_device* dev, const char* name, bool* value)
{
    COBLK_GUARD_BEGIN
    if (int r = check_dev(dev, "coblk_get_bool", State::Started))
        return r;
    if (!name || !value)
        return fail(EINVAL, "coblk_get_bool: NULL property name or value pointer");
    const Layer* l = dev->queues[0]->layer.get();
    std::string n = name;
    std::string proto = l->protocol();
    if (n == "read-only")
        *value = l->read_only();
    else if (n == "can-discard")
        *value = l->limits().discard;
    else if (n == "can-write-zeroes")
        *value = l->limits().write_zeroes;
    else if (n == "native-fua")
        *value = l->limits().fua;
    else if (n == "can-resize")
        *value = !l->read_only() && proto != "host_device";
    else if (n == "can-snapshot")
        *value = !l->read_only() &&
                 ((std::string(l->kind()) == "fvd" && proto == "file" &&
                   dev->queues.size() == 1) || proto == "rbd");
    else
        return fail(ENOENT, "coblk_get_bool: no bool property '{}' (bool: read-only, "
                    "can-discard, can-write-zeroes, native-fua, can-resize, can-snapshot)", n);
    return 0;
    COBLK_GUARD_END
}

int coblk_get_str(struct coblk_device* dev, const char* name, char** value)
{
    COBLK_GUARD_BEGIN
    if (int r = check_dev(dev, "coblk_get_str", State::Started))
        return r;
    if (!name || !value)
        return fail(EINVAL, "coblk_get_str: NULL property name or value pointer");
    const Layer* l = dev->queues[0]->layer.get();
    std::string n = name, v;
    if (n == "uri")
        v = dev->uri;
    else if (n == "format")
        v = l->kind();
    else if (n == "protocol")
        v = l->protocol();
    else if (n == "cache")
        v = dev->opts.cache.empty() ? dev->spec.option("cache").value_or("writeback")
                                    : dev->opts.cache;
    else
        return fail(ENOENT, "coblk_get_str: no str property '{}' (str: uri, format, protocol, "
                    "cache)", n);
    char* s = strdup(v.c_str());
    if (!s)
        return fail(ENOMEM, "coblk_get_str: out of memory");
    *value = s;
    return 0;
    COBLK_GUARD_END
}

int coblk_start(struct coblk_device* dev)
{
    COBLK_GUARD_BEGIN
    if (int r = check_dev(dev, "coblk_start", State::Created))
        return r;
    if (dev->num_queues > 1 && dev->spec.protocol == uri::Protocol::Memory &&
        !has_memory_name(dev))
        return fail(EINVAL, "'{}': an unnamed memory device has one queue (each queue opens "
                    "its own stack; name it, memory://NAME, to share the data)", dev->uri);
    std::vector<std::unique_ptr<coblk_queue>> queues;
    auto undo = [&] {
        dev->queues = std::move(queues);
        close_queues(dev);
        dev->queues.clear();
    };
    for (int i = 0; i < dev->num_queues; i++) {
        auto q = std::make_unique<coblk_queue>();
        q->dev = dev;
        q->index = i;
        auto loop = Loop::create(kRingEntries, true);
        if (!loop) {
            undo();
            return fail(loop.error().code, "{}: {}", dev->uri, loop.error().message);
        }
        q->loop = std::move(loop).value();
        OpenOptions o = dev->opts;
        // Queue 0's stack holds the image lock for the device.
        if (i > 0 && (dev->spec.protocol == uri::Protocol::File ||
                      dev->spec.protocol == uri::Protocol::HostDevice))
            o.options.emplace_back("locking", "off");
        auto opened = q->loop->run(open_device(*q->loop, dev->uri, o));
        if (!opened) {
            int code = opened.error().code;
            std::string msg = opened.error().message;
            queues.push_back(std::move(q));
            undo();
            return fail(code, "{}", msg);
        }
        q->layer = std::move(opened).value();
        const char* stateful = i == 0 && dev->num_queues > 1 && !q->layer->read_only()
                                   ? keeps_image_state(q->layer.get())
                                   : nullptr;
        queues.push_back(std::move(q));
        if (stateful) {
            undo();
            return fail(ENOTSUP, "'{}': a writable {} image keeps its metadata in the one stack "
                        "that opened it, and each queue opens its own: use one queue "
                        "(num-queues 1), or open it read-only", dev->uri, stateful);
        }
    }
    dev->queues = std::move(queues);
    dev->state = State::Started;
    return 0;
    COBLK_GUARD_END
}

struct coblk_queue* coblk_get_queue(struct coblk_device* dev, int index)
{
    try {
        if (check_dev(dev, "coblk_get_queue", State::Started))
            return nullptr;
        if (index < 0 || index >= dev->num_queues) {
            fail(EINVAL, "coblk_get_queue: no queue {} (the device has {})", index,
                 dev->num_queues);
            return nullptr;
        }
        return dev->queues[size_t(index)].get();
    } catch (...) {
        return nullptr;
    }
}

int coblk_queue_readv(struct coblk_queue* q, uint64_t offset, const struct iovec* iov, int iovcnt,
                      void* user_data, uint32_t flags)
{
    COBLK_GUARD_BEGIN
    return submit(q, "coblk_queue_readv", Op::Read, offset, iov, iovcnt, 0, user_data, flags);
    COBLK_GUARD_END
}

int coblk_queue_writev(struct coblk_queue* q, uint64_t offset, const struct iovec* iov, int iovcnt,
                       void* user_data, uint32_t flags)
{
    COBLK_GUARD_BEGIN
    return submit(q, "coblk_queue_writev", Op::Write, offset, iov, iovcnt, 0, user_data, flags);
    COBLK_GUARD_END
}

int coblk_queue_read(struct coblk_queue* q, uint64_t offset, void* buf, size_t len,
                     void* user_data, uint32_t flags)
{
    COBLK_GUARD_BEGIN
    iovec one{buf, len};
    return submit(q, "coblk_queue_read", Op::Read, offset, &one, 1, 0, user_data, flags, true);
    COBLK_GUARD_END
}

int coblk_queue_write(struct coblk_queue* q, uint64_t offset, const void* buf, size_t len,
                      void* user_data, uint32_t flags)
{
    COBLK_GUARD_BEGIN
    iovec one{const_cast<void*>(buf), len};
    return submit(q, "coblk_queue_write", Op::Write, offset, &one, 1, 0, user_data, flags, true);
    COBLK_GUARD_END
}

int coblk_queue_flush(struct coblk_queue* q, void* user_data, uint32_t flags)
{
    COBLK_GUARD_BEGIN
    return submit(q, "coblk_queue_flush", Op::Flush, 0, nullptr, 0, 0, user_data, flags);
    COBLK_GUARD_END
}

int coblk_queue_discard(struct coblk_queue* q, uint64_t offset, uint64_t len, void* user_data,
                        uint32_t flags)
{
    COBLK_GUARD_BEGIN
    return submit(q, "coblk_queue_discard", Op::Discard, offset, nullptr, 0, len, user_data,
                  flags);
    COBLK_GUARD_END
}

int coblk_queue_write_zeroes(struct coblk_queue* q, uint64_t offset, uint64_t len,
                             void* user_data, uint32_t flags)
{
    COBLK_GUARD_BEGIN
    return submit(q, "coblk_queue_write_zeroes", Op::WriteZeroes, offset, nullptr, 0, len,
                  user_data, flags);
    COBLK_GUARD_END
}

int coblk_queue_do_io(struct coblk_queue* q, struct coblk_completion* completions,
                      int min_completions, int max_completions, const struct timespec* timeout)
{
    COBLK_GUARD_BEGIN
    if (int r = check_queue(q, "coblk_queue_do_io"))
        return r;
    if (min_completions < 0 || max_completions < 0 || min_completions > max_completions ||
        (max_completions > 0 && !completions))
        return fail(EINVAL, "coblk_queue_do_io: bad counts (min {}, max {}, completions {})",
                    min_completions, max_completions, static_cast<void*>(completions));
    if (timeout && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000))
        return fail(EINVAL, "coblk_queue_do_io: bad timeout");
    Loop& loop = *q->loop;
    int64_t deadline = 0;
    if (timeout)
        deadline = now_ns() + int64_t(timeout->tv_sec) * 1000000000 + timeout->tv_nsec;
    // One turn without waiting: sends what was started, reaps what is there.
    loop.run_once(false);
    int n = collect(q, completions, max_completions);
    // A polling queue's loop yields and looks again where it would sleep.
    while (n < min_completions && q->inflight > 0) {
        if (timeout) {
            int64_t left = deadline - now_ns();
            if (left <= 0)
                break;
            __kernel_timespec ts{left / 1000000000, left % 1000000000};
            loop.run_once(true, &ts);
        } else if (!loop.run_once(true)) {
            break;  // nothing can make progress
        }
        n += collect(q, completions + n, max_completions - n);
    }
    // Nothing may be left unsent: the program may now sleep on the fd.
    loop.settle();
    n += collect(q, completions + n, max_completions - n);
    return n;
    COBLK_GUARD_END
}

int coblk_queue_get_fd(struct coblk_queue* q)
{
    COBLK_GUARD_BEGIN
    if (int r = check_queue(q, "coblk_queue_get_fd"))
        return r;
    return q->loop->ring_fd();
    COBLK_GUARD_END
}

int coblk_queue_set_polling(struct coblk_queue* q, bool enable)
{
    COBLK_GUARD_BEGIN
    if (int r = check_queue(q, "coblk_queue_set_polling"))
        return r;
    q->loop->set_polling(enable);
    return 0;
    COBLK_GUARD_END
}

int coblk_queue_in_flight(struct coblk_queue* q)
{
    COBLK_GUARD_BEGIN
    if (!q)
        return fail(EINVAL, "coblk_queue_in_flight: the queue handle is NULL");
    return q->inflight;
    COBLK_GUARD_END
}

int coblk_queue_drain(struct coblk_queue* q)
{
    COBLK_GUARD_BEGIN
    if (int r = check_queue(q, "coblk_queue_drain"))
        return r;
    while (q->inflight > 0)
        if (!q->loop->run_once(true))
            return fail(EIO, "coblk_queue_drain: {} requests of queue {} cannot progress",
                        q->inflight, q->index);
    return 0;
    COBLK_GUARD_END
}

int coblk_resize(struct coblk_device* dev, uint64_t new_size)
{
    COBLK_GUARD_BEGIN
    if (int r = check_dev(dev, "coblk_resize", State::Started))
        return r;
    for (auto& q : dev->queues)
        if (q->inflight > 0)
            return fail(EBUSY, "coblk_resize: queue {} of '{}' has {} requests in flight",
                        q->index, dev->uri, q->inflight);
    Layer* l0 = dev->queues[0]->layer.get();
    if (l0->read_only())
        return fail(EROFS, "coblk_resize: device '{}' is read-only", dev->uri);
    if (std::string(l0->protocol()) == "host_device")
        return fail(ENOTSUP, "coblk_resize: '{}' is a block device, whose size coblk cannot "
                    "change", dev->uri);
    // Every queue's stack learns the new size; queue 0 changes the image.
    for (auto& q : dev->queues) {
        int r = q->loop->run(q->layer->truncate(new_size));
        if (r < 0)
            return fail(-r, "coblk_resize: resizing '{}' to {} bytes (queue {}): {}", dev->uri,
                        new_size, q->index, std::strerror(-r));
    }
    return 0;
    COBLK_GUARD_END
}

int coblk_snapshot_create(struct coblk_device* dev, const char* name)
{
    COBLK_GUARD_BEGIN
    if (int r = check_dev(dev, "coblk_snapshot_create", State::Started))
        return r;
    if (!name || !*name)
        return fail(EINVAL, "coblk_snapshot_create: empty snapshot name");
    Layer* l = dev->queues[0]->layer.get();
    for (auto& q : dev->queues)
        if (q->inflight > 0)
            return fail(EBUSY, "coblk_snapshot_create: queue {} of '{}' has {} requests in "
                        "flight", q->index, dev->uri, q->inflight);
    // An FVD snapshot switches queue 0's stack to a new overlay file; the
    // stacks of other queues would go on writing to the old one.
    if (std::string(l->kind()) == "fvd" && dev->queues.size() > 1)
        return fail(ENOTSUP, "coblk_snapshot_create: '{}' is an FVD image with {} queues; its "
                    "snapshots need a device with one queue", dev->uri, dev->queues.size());
    std::string n = name;
    auto r = dev->queues[0]->loop->run(l->snapshot_create(n));
    if (!r)
        return fail(r.error().code, "coblk_snapshot_create: '{}': {}", dev->uri,
                    r.error().message);
    return 0;
    COBLK_GUARD_END
}

int coblk_close(struct coblk_device* dev)
{
    COBLK_GUARD_BEGIN
    if (!dev)
        return fail(EINVAL, "coblk_close: the device handle is NULL");
    if (dev->state == State::Closed)
        return 0;
    for (auto& q : dev->queues)
        while (q->inflight > 0 && q->loop->run_once(true)) {
        }
    close_queues(dev);
    dev->state = State::Closed;
    for (auto& q : dev->queues)
        q->closed = true;
    return 0;
    COBLK_GUARD_END
}

void coblk_destroy(struct coblk_device* dev)
{
    if (!dev)
        return;
    try {
        coblk_close(dev);
        delete dev;
    } catch (...) {
    }
}

} // extern "C"
