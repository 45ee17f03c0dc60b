// The process-wide cache of librados cluster handles: one rados_t per set
// of connection options (conf file, client id or name, mon_host, keyring,
// key, and every other librados option given), shared by every RBD image
// opened with them and reference-counted.
//
// rados_connect and rados_shutdown never run on an I/O loop thread:
// rados_connect runs on a thread of its own that the opener waits for with a
// deadline (client_mount_timeout plus a margin), and rados_shutdown runs on
// a detached thread when the last reference is dropped. Neither thread is
// joined, so a process can exit while they still run.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "engine/loop.h"
#include "engine/result.h"
#include "engine/task.h"
#include "uri/uri.h"

typedef void* rados_t;

namespace coblk {

// How to reach a cluster: the options of an rbd: name that are not part of
// the image's name. Every field takes part in the cache key.
struct RbdConnectOptions {
    std::string conf;        // ceph.conf to read; empty: librados' default search
    std::string id;          // client id ("admin"); empty: librados' default
    std::string name;        // full client name ("client.admin"); wins over id
    // Every other key, in the order given, for rados_conf_set (keyring, key,
    // mon_host, client_mount_timeout, rbd_cache, ...).
    uri::Options settings;
};

// Splits the options of an rbd: name (and -o) into connection options.
// `auth_supported` is renamed to librados' `auth_client_required`; `user`
// is a synonym of `id`. Never fails on an unknown key: librados judges
// those at connect time. Fails (EINVAL) on conflicting id and name. Any
// thread.
Result<RbdConnectOptions> parse_rbd_options(const uri::Options& opts);

// The timeouts applied when neither the options nor the conf file set
// them, so that a dead or frozen cluster fails in bounded time instead of
// librados' 300 s (mount) or forever (OSD and mon operations).
inline constexpr int kRbdDefaultMountTimeout = 30;  // client_mount_timeout
inline constexpr int kRbdDefaultOsdOpTimeout = 30;  // rados_osd_op_timeout
inline constexpr int kRbdDefaultMonOpTimeout = 30;  // rados_mon_op_timeout

struct RbdConnection;

// A counted reference to a cached cluster handle. Dropping the last
// reference removes it from the cache and shuts the handle down on a
// detached thread; this never blocks, so any thread may drop one.
class RbdConnRef {
public:
    RbdConnRef() = default;
    explicit RbdConnRef(RbdConnection* c) : c_(c) {}
    RbdConnRef(RbdConnRef&& o) noexcept : c_(o.c_) { o.c_ = nullptr; }
    RbdConnRef& operator=(RbdConnRef&& o) noexcept;
    RbdConnRef(const RbdConnRef&) = delete;
    RbdConnRef& operator=(const RbdConnRef&) = delete;
    ~RbdConnRef() { reset(); }

    void reset() noexcept;
    explicit operator bool() const { return c_ != nullptr; }

    rados_t cluster() const;
    // "ceph cluster (conf /etc/ceph/ceph.conf, client.admin)": for messages.
    const std::string& describe() const;

private:
    RbdConnection* c_ = nullptr;
};

// Returns a reference to the cluster handle for `o`, creating and
// connecting one when the cache has none. Errors name the cluster and the
// culprit: ENOENT for a conf file that cannot be read or an option librados
// does not know (naming the key), EINVAL for a bad value, ETIMEDOUT when no
// mon answers within client_mount_timeout (or when rados_connect does not
// return within that plus a margin: that thread is then left running,
// detached, and shuts its handle down itself should it ever return). Loop
// thread: the coroutine waits without blocking the loop.
Task<Result<RbdConnRef>> rbd_connect(Loop& loop, const RbdConnectOptions& o);

// Cluster handles in the cache now (for tests). Any thread.
size_t rbd_connection_count();

// "ceph cluster (conf ..., client ...)" for `o`, as in the messages.
std::string rbd_describe(const RbdConnectOptions& o);

} // namespace coblk
