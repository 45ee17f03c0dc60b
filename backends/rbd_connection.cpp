#include "backends/rbd_connection.h"

#include <rados/librados.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace coblk {

// What the watchdog completes the opener with: no librados call returns it.
constexpr int64_t kWatchdogFired = -(int64_t(1) << 40);

struct RbdConnection {
    std::string key;
    std::string desc;
    rados_t cluster = nullptr;
    size_t refs = 0;
};

namespace {

// The cache lives for the whole process and is never destroyed: detached
// shutdown threads may outlive static destruction at exit.
struct Cache {
    std::mutex mu;
    std::map<std::string, RbdConnection*> conns;
};

Cache& cache()
{
    static Cache* c = new Cache;
    return *c;
}

// Shutdowns still running on detached threads. Exiting while one runs lets
// the C++ runtime destroy librados' globals under it (a crash in
// boost::get), so an exit handler waits for them, up to kExitWait.
struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    int count = 0;
};

Pending& pending()
{
    static Pending* p = new Pending;
    return *p;
}

constexpr auto kExitWait = std::chrono::seconds(10);

// Runs at exit (before the static destructors of the libraries loaded
// earlier): waits for pending shutdowns, at most kExitWait.
void wait_for_shutdowns()
{
    Pending& p = pending();
    std::unique_lock<std::mutex> g(p.mu);
    p.cv.wait_for(g, kExitWait, [&] { return p.count == 0; });
}

// Shuts `cluster` down on a detached thread: rados_shutdown joins librados'
// threads and must not block a loop. Any thread.
void shutdown_detached(rados_t cluster)
{
    if (!cluster)
        return;
    static std::once_flag registered;
    std::call_once(registered, [] { std::atexit(wait_for_shutdowns); });
    Pending& p = pending();
    {
        std::lock_guard<std::mutex> g(p.mu);
        p.count++;
    }
    std::thread([cluster, &p] {
        rados_shutdown(cluster);
        std::lock_guard<std::mutex> g(p.mu);
        if (--p.count == 0)
            p.cv.notify_all();
    }).detach();
}

std::string cache_key(const RbdConnectOptions& o)
{
    std::string k = fmt::format("{}\n{}\n{}\n", o.conf, o.id, o.name);
    for (const auto& [key, value] : o.settings)
        k += fmt::format("{}={}\n", key, value);
    return k;
}

// State shared by the opener, the thread running rados_connect and the
// watchdog thread. Whichever of the two threads sets `claimed` first
// completes the opener's wait; the other leaves `done` alone.
struct ConnectRace {
    std::mutex mu;
    std::condition_variable cv;
    bool configured = false;  // deadline is set
    bool finished = false;    // the connect thread is done
    bool claimed = false;     // `done` has been completed
    ForeignCompletion* done = nullptr;
    RbdConnectOptions opts;
    std::chrono::steady_clock::time_point deadline;
    int mount_timeout = kRbdDefaultMountTimeout;
    rados_t cluster = nullptr;
    std::string failure;      // what failed, for the message
    bool quiet_errno = false; // `failure` says it all: no strerror after it
};

// Sets `key` to `value` unless the conf file or the options changed it from
// librados' built-in `builtin` value. 0 or -errno.
int default_timeout(rados_t c, const char* key, const char* builtin, int value)
{
    char cur[64] = {};
    if (rados_conf_get(c, key, cur, sizeof cur) < 0)
        return 0;
    double have = std::strtod(cur, nullptr), dflt = std::strtod(builtin, nullptr);
    if (have != dflt)
        return 0;
    return rados_conf_set(c, key, std::to_string(value).c_str());
}

// Creates and configures a cluster handle for `race->opts`; sets
// race->failure and returns -errno on failure. Never blocks on the network.
int configure(ConnectRace& race, rados_t& c)
{
    const RbdConnectOptions& o = race.opts;
    int r;
    if (!o.name.empty())
        r = rados_create2(&c, "ceph", o.name.c_str(), 0);
    else
        r = rados_create(&c, o.id.empty() ? nullptr : o.id.c_str());
    if (r < 0) {
        race.failure = !o.name.empty() ? fmt::format("rados_create2(name '{}')", o.name)
                                       : fmt::format("rados_create(id '{}')", o.id);
        return r;
    }
    if (!o.conf.empty()) {
        r = rados_conf_read_file(c, o.conf.c_str());
        if (r < 0) {
            race.failure = fmt::format("cannot read conf file '{}'", o.conf);
            return r;
        }
    } else {
        // The default search (CEPH_CONF, /etc/ceph/ceph.conf, ...); with no
        // file, mon_host and a key may still come from the options.
        rados_conf_read_file(c, nullptr);
    }
    for (const auto& [key, value] : o.settings) {
        r = rados_conf_set(c, key.c_str(), value.c_str());
        if (r == -ENOENT) {
            race.failure = fmt::format("unknown option '{}' (librados has no such option)", key);
            race.quiet_errno = true;
            return -EINVAL;
        }
        if (r < 0) {
            race.failure = fmt::format("invalid value '{}' for librados option '{}'", value, key);
            race.quiet_errno = true;
            return r;
        }
    }
    struct {
        const char* key;
        const char* builtin;
        int value;
    } const defaults[] = {{"client_mount_timeout", "300", kRbdDefaultMountTimeout},
                          {"rados_osd_op_timeout", "0", kRbdDefaultOsdOpTimeout},
                          {"rados_mon_op_timeout", "0", kRbdDefaultMonOpTimeout}};
    for (const auto& d : defaults)
        if ((r = default_timeout(c, d.key, d.builtin, d.value)) < 0) {
            race.failure = fmt::format("setting {}", d.key);
            return r;
        }
    char v[64] = {};
    if (rados_conf_get(c, "client_mount_timeout", v, sizeof v) == 0)
        race.mount_timeout = std::max(1, std::atoi(v));
    return 0;
}

// Configures and connects a cluster handle. Runs on its own detached
// thread; rados_connect is bounded by client_mount_timeout, but the opener
// does not rely on it (the watchdog). Completes the opener with 0 or -errno
// unless the watchdog gave up first, in which case it shuts its handle down.
void connect_thread(std::shared_ptr<ConnectRace> race)
{
    rados_t c = nullptr;
    int err = configure(*race, c);
    {
        std::lock_guard<std::mutex> g(race->mu);
        race->deadline = std::chrono::steady_clock::now() +
                         std::chrono::seconds(race->mount_timeout + 10);
        race->configured = true;
    }
    race->cv.notify_all();
    if (err == 0) {
        err = rados_connect(c);
        if (err < 0)
            race->failure = "rados_connect";
    }
    ForeignCompletion* done = nullptr;
    {
        std::lock_guard<std::mutex> g(race->mu);
        race->finished = true;
        if (!race->claimed) {
            race->claimed = true;
            done = race->done;
            if (err == 0)
                race->cluster = c;
        }
    }
    race->cv.notify_all();
    if (!done || err < 0) {
        if (c)
            rados_shutdown(c);  // a failed or abandoned handle; this thread is ours
    }
    if (done)
        done->complete(err);
}

// Completes the opener with kWatchdogFired unless the connect thread finishes
// before its deadline. Runs on its own detached thread.
void watchdog_thread(std::shared_ptr<ConnectRace> race)
{
    ForeignCompletion* done = nullptr;
    {
        std::unique_lock<std::mutex> g(race->mu);
        race->cv.wait(g, [&] { return race->configured || race->finished; });
        race->cv.wait_until(g, race->deadline, [&] { return race->finished; });
        if (!race->claimed) {
            race->claimed = true;
            done = race->done;
        }
    }
    if (done)
        done->complete(kWatchdogFired);
}

} // namespace

Result<RbdConnectOptions> parse_rbd_options(const uri::Options& opts)
{
    RbdConnectOptions o;
    for (const auto& [k, v] : opts) {
        std::string key = k;
        std::replace(key.begin(), key.end(), '-', '_');
        if (key == "conf") {
            o.conf = v;
        } else if (key == "id" || key == "user") {
            o.id = v;
        } else if (key == "name") {
            o.name = v;
        } else if (key == "auth_supported") {
            // QEMU's name; librados spells it auth_client_required, with
            // ',' or ';' between methods (QEMU used ';').
            std::string methods = v;
            std::replace(methods.begin(), methods.end(), ';', ',');
            o.settings.emplace_back("auth_client_required", methods);
        } else {
            o.settings.emplace_back(key, v);
        }
    }
    if (!o.name.empty() && !o.id.empty() && o.name != "client." + o.id)
        return make_error(EINVAL, "rbd options id='{}' and name='{}' name different clients",
                          o.id, o.name);
    return o;
}

std::string rbd_describe(const RbdConnectOptions& o)
{
    std::string who = !o.name.empty() ? o.name : "client." + (o.id.empty() ? "admin" : o.id);
    std::string where = o.conf.empty() ? "default conf" : "conf " + o.conf;
    for (const auto& [k, v] : o.settings)
        if (k == "mon_host")
            where += ", mon_host " + v;
    return fmt::format("ceph cluster ({}, {})", where, who);
}

RbdConnRef& RbdConnRef::operator=(RbdConnRef&& o) noexcept
{
    if (this != &o) {
        reset();
        c_ = o.c_;
        o.c_ = nullptr;
    }
    return *this;
}

void RbdConnRef::reset() noexcept
{
    if (!c_)
        return;
    RbdConnection* c = c_;
    c_ = nullptr;
    Cache& k = cache();
    {
        std::lock_guard<std::mutex> g(k.mu);
        if (--c->refs > 0)
            return;
        k.conns.erase(c->key);
    }
    shutdown_detached(c->cluster);
    delete c;
}

rados_t RbdConnRef::cluster() const { return c_ ? c_->cluster : nullptr; }

const std::string& RbdConnRef::describe() const
{
    static const std::string none = "(no ceph connection)";
    return c_ ? c_->desc : none;
}

size_t rbd_connection_count()
{
    Cache& k = cache();
    std::lock_guard<std::mutex> g(k.mu);
    return k.conns.size();
}

// Looks the handle up in the cache; when absent, connects one on a new
// thread raced by a watchdog and adds it (or, when a concurrent open got
// there first, uses theirs and shuts its own down).
Task<Result<RbdConnRef>> rbd_connect(Loop& loop, const RbdConnectOptions& o)
{
    std::string key = cache_key(o);
    std::string desc = rbd_describe(o);
    Cache& k = cache();
    {
        std::lock_guard<std::mutex> g(k.mu);
        if (auto it = k.conns.find(key); it != k.conns.end()) {
            it->second->refs++;
            co_return RbdConnRef(it->second);
        }
    }

    auto race = std::make_shared<ConnectRace>();
    race->opts = o;
    std::shared_ptr<ConnectRace>* rp = &race;
    // A pointer to the frame's shared_ptr keeps the lambda trivially
    // destructible (g++ 12 and temporaries in co_await expressions).
    int64_t r = co_await await_foreign(loop, [rp](ForeignCompletion* c) {
        (*rp)->done = c;
        std::thread(connect_thread, *rp).detach();
        std::thread(watchdog_thread, *rp).detach();
    });
    // race->failure is only read when the connect thread completed us: it
    // may still be writing it after the watchdog fired.
    if (r == kWatchdogFired || (r == -ETIMEDOUT && race->failure == "rados_connect")) {
        const char* why = r == -ETIMEDOUT ? "no mon answered within client_mount_timeout"
                                          : "rados_connect did not return within "
                                            "client_mount_timeout + 10 s";
        co_return make_error(ETIMEDOUT, "cannot connect to {}: {} ({} s; is the cluster "
                             "down or unreachable?); client_mount_timeout=SECONDS changes it",
                             desc, why, race->mount_timeout);
    }
    if (r < 0) {
        int e = int(-r);
        const char* hint = "";
        if (race->failure == "rados_connect" && (e == ENOENT || e == EACCES || e == EPERM))
            hint = " (no keyring or key for this client? give keyring=PATH or conf=PATH)";
        if (race->quiet_errno)
            co_return make_error(e, "cannot connect to {}: {}", desc, race->failure);
        co_return make_error(e, "cannot connect to {}: {}: {}{}", desc, race->failure,
                             std::strerror(e), hint);
    }
    rados_t cluster = race->cluster;
    std::lock_guard<std::mutex> g(k.mu);
    if (auto it = k.conns.find(key); it != k.conns.end()) {
        shutdown_detached(cluster);  // a concurrent open connected first: share theirs
        it->second->refs++;
        co_return RbdConnRef(it->second);
    }
    auto* c = new RbdConnection{key, desc, cluster, 1};
    k.conns.emplace(key, c);
    co_return RbdConnRef(c);
}

} // namespace coblk
