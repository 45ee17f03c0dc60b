// The process-wide cache of libgfapi connections: one glfs_t per (transport,
// server, port or socket, volume), shared by every image opened on that
// volume and reference-counted.
//
// glfs_init and glfs_fini never run on an I/O loop thread: glfs_init runs on
// a thread of its own that the opener waits for with a deadline (the connect
// timeout), and glfs_fini (about 10 s, an internal timer of libgfapi) runs on
// a detached thread when the last reference is dropped. Neither thread is
// joined, so a process can exit while they are still running.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include "engine/loop.h"
#include "engine/result.h"
#include "engine/task.h"
#include "uri/uri.h"

struct glfs;

namespace coblk {

// Settings applied to a new glfs_t before glfs_init. A cached connection
// keeps the settings of the open that created it.
struct GlusterConnectOptions {
    std::string log_file = "-";      // "-": standard error (libgfapi's convention)
    int log_level = 4;               // gf_loglevel_t: 0 none .. 4 error .. 9 trace
    std::optional<int> ping_timeout; // seconds; libgfapi's default (42) when unset
    std::chrono::milliseconds connect_timeout{30000};
    // Whether the volume's client-side io-threads (performance.client-io-
    // threads) queue each request for a thread of their own. Off by
    // default: coblk's loops already submit asynchronously, and that extra
    // hand-off cost 7.3 instead of 3.2 context switches and 87 instead of
    // 63 us of CPU per 4 KiB read at depth 32 (bench/RESULTS.md). On: for
    // volumes whose client does heavy work per request (disperse).
    bool client_io_threads = false;
    // Not a connection setting: each image opened keeps its own. How long
    // the loop may gather this image's read and write completions while 8
    // or more are in flight (Loop::gather_wait); 0 turns gathering off.
    uint32_t gather_us = 200;
};

// Reads the gluster options of a URI or of -o: log-level (none, critical,
// error, warning, info, debug, trace, or 0-9), debug (0-9, as QEMU's),
// log-file, ping-timeout (seconds), connect-timeout (seconds, may be
// fractional), gather-us (microseconds, 0-10000), client-io-threads (on,
// off). Fails (EINVAL) naming the key and the bad value. Any thread.
Result<GlusterConnectOptions> parse_gluster_options(const uri::Options& opts);

struct GlusterConnection;

// A counted reference to a cached connection. Dropping the last reference
// removes the connection from the cache and finishes its glfs_t on a
// detached thread; this never blocks, so any thread may drop one.
class GlusterConnRef {
public:
    GlusterConnRef() = default;
    explicit GlusterConnRef(GlusterConnection* c) : c_(c) {}
    GlusterConnRef(GlusterConnRef&& o) noexcept : c_(o.c_) { o.c_ = nullptr; }
    GlusterConnRef& operator=(GlusterConnRef&& o) noexcept;
    GlusterConnRef(const GlusterConnRef&) = delete;
    GlusterConnRef& operator=(const GlusterConnRef&) = delete;
    ~GlusterConnRef() { reset(); }

    void reset() noexcept;
    explicit operator bool() const { return c_ != nullptr; }

    glfs* fs() const;
    // "volume 'v' on server host:port (tcp)": for error messages.
    const std::string& describe() const;

private:
    GlusterConnection* c_ = nullptr;
};

// Returns a reference to the connection for `server`'s volume, creating and
// initialising one when the cache has none. The error names server and
// volume: ENOENT for a volume the server does not have, ENOTCONN when no
// glusterd answers, ETIMEDOUT when glfs_init did not finish within
// o.connect_timeout (that glfs_init thread is then left running, detached;
// should it ever return, it finishes its glfs_t itself). Loop thread: the
// coroutine waits without blocking the loop.
Task<Result<GlusterConnRef>> gluster_connect(Loop& loop, const uri::GlusterSpec& server,
                                             const GlusterConnectOptions& o);

// Connections in the cache now (for tests). Any thread.
size_t gluster_connection_count();

// "volume 'v' on server host:port (tcp)" for `server`, as in the messages.
std::string gluster_describe(const uri::GlusterSpec& server);

} // namespace coblk
