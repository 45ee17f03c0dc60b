#include "backends/gluster_connection.h"

#include <glusterfs/api/glfs.h>
#include <netdb.h>
#include <signal.h>

#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "uri/options.h"

namespace coblk {

struct GlusterConnection {
    std::string key;
    std::string desc;
    glfs_t* fs = nullptr;
    size_t refs = 0;
};

namespace {

// The cache lives for the whole process and is never destroyed: detached
// fini threads may outlive static destruction at exit.
struct Cache {
    std::mutex mu;
    std::map<std::string, GlusterConnection*> conns;
};

Cache& cache()
{
    static Cache* c = new Cache;
    return *c;
}

// Finishes `fs` on a detached thread: glfs_fini takes about 10 s and must
// neither block a loop nor delay process exit. Any thread.
void fini_detached(glfs_t* fs)
{
    if (fs)
        std::thread([fs] { glfs_fini(fs); }).detach();
}

uint16_t effective_port(const uri::GlusterSpec& s)
{
    if (s.transport == "unix")
        return 0;
    return s.port ? s.port : 24007;
}

std::string cache_key(const uri::GlusterSpec& s)
{
    return fmt::format("{}\n{}\n{}\n{}\n{}", s.transport, s.host, effective_port(s), s.socket,
                       s.volume);
}

// State shared by the opener, the thread running glfs_init and the watchdog
// thread that enforces the connect timeout. Whichever of the two threads
// sets `claimed` first completes the opener's wait; the other one leaves
// `done` alone (it may already be gone).
struct InitRace {
    std::mutex mu;
    std::condition_variable cv;
    bool finished = false;  // glfs_init returned
    bool claimed = false;   // `done` has been completed
    ForeignCompletion* done = nullptr;
    uri::GlusterSpec server;
    GlusterConnectOptions opts;
    glfs_t* fs = nullptr;
    const char* stage = "glfs_new";  // the call that failed
    std::string resolve_error;       // getaddrinfo's message when the host has no address
};

// Whether `host` has an address, as libgfapi will look it up; on failure
// fills `why` with the resolver's message. libgfapi reports an unknown host
// as ENOTCONN, the same as a server that is down. Any thread; may block on
// DNS (the init thread's watchdog bounds it).
bool host_resolves(const std::string& host, std::string& why)
{
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int e = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (e == 0) {
        freeaddrinfo(res);
        return true;
    }
    why = e == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(e);
    return false;
}

// Held from glfs_new to glfs_init: glfs_new and glfs_set_logging call
// setlocale (in gf_log_init), which is not thread-safe, and TSan saw two
// concurrent opens race inside it. None of those calls waits on the network.
std::mutex& setup_mutex()
{
    static std::mutex m;
    return m;
}

// Creates, configures and initialises a glfs_t for `race->server`. Runs on
// its own detached thread; may block forever inside glfs_init (frozen
// glusterd). Completes the opener with 0 or -errno unless the watchdog has
// already given up, in which case it finishes its glfs_t itself.
void init_thread(std::shared_ptr<InitRace> race)
{
    const uri::GlusterSpec& s = race->server;
    const GlusterConnectOptions& o = race->opts;
    int err = 0;
    glfs_t* fs = nullptr;
    std::string why;
    if (s.transport != "unix" && !host_resolves(s.host, why)) {
        err = EHOSTUNREACH;
        race->stage = "resolving the host";
        race->resolve_error = why;
    } else if (std::unique_lock<std::mutex> setup(setup_mutex());
               !(fs = glfs_new(s.volume.c_str()))) {
        err = errno ? errno : ENOMEM;
    } else {
        const char* host = s.transport == "unix" ? s.socket.c_str() : s.host.c_str();
        errno = 0;
        if (glfs_set_volfile_server(fs, s.transport.c_str(), host, effective_port(s)) < 0) {
            err = errno ? errno : EINVAL;
            race->stage = "glfs_set_volfile_server";
        } else if (errno = 0, glfs_set_logging(fs, o.log_file.c_str(), o.log_level) < 0) {
            err = errno ? errno : EINVAL;
            race->stage = "glfs_set_logging";
        } else if (o.ping_timeout &&
                   (errno = 0, glfs_set_xlator_option(fs, "*-client-*", "ping-timeout",
                                                      std::to_string(*o.ping_timeout).c_str()) <
                                   0)) {
            err = errno ? errno : EINVAL;
            race->stage = "glfs_set_xlator_option(ping-timeout)";
        } else if (!o.client_io_threads &&
                   (errno = 0, glfs_set_xlator_option(fs, "*-io-threads", "pass-through",
                                                      "true") < 0)) {
            err = errno ? errno : EINVAL;
            race->stage = "glfs_set_xlator_option(pass-through)";
        } else {
            setup.unlock();
            race->stage = "glfs_init";
            errno = 0;
            if (glfs_init(fs) != 0)
                err = errno ? errno : EIO;
        }
    }
    ForeignCompletion* done = nullptr;
    {
        std::lock_guard<std::mutex> g(race->mu);
        race->finished = true;
        if (!race->claimed) {
            race->claimed = true;
            done = race->done;
            race->fs = fs;
        }
    }
    race->cv.notify_all();
    if (done) {
        if (err && fs) {
            race->fs = nullptr;  // the opener does not see it; set before complete()
            fini_detached(fs);
        }
        done->complete(err ? -err : 0);
    } else if (fs) {
        glfs_fini(fs);  // too late: the opener reported ETIMEDOUT long ago
    }
}

// Completes the opener with -ETIMEDOUT unless glfs_init returns before
// `deadline`. Runs on its own detached thread.
void watchdog_thread(std::shared_ptr<InitRace> race, std::chrono::steady_clock::time_point deadline)
{
    ForeignCompletion* done = nullptr;
    {
        std::unique_lock<std::mutex> g(race->mu);
        race->cv.wait_until(g, deadline, [&] { return race->finished; });
        if (!race->claimed) {
            race->claimed = true;
            done = race->done;
        }
    }
    if (done)
        done->complete(-ETIMEDOUT);
}

Result<int> parse_int_option(std::string_view key, std::string_view v, int lo, int hi)
{
    int n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size() || n < lo || n > hi)
        return make_error(EINVAL, "invalid gluster option {}='{}' (expected an integer {}..{})",
                          key, v, lo, hi);
    return n;
}

} // namespace

Result<GlusterConnectOptions> parse_gluster_options(const uri::Options& opts)
{
    static constexpr std::string_view kKeys[] = {"log-level", "log-file", "ping-timeout",
                                                 "connect-timeout", "debug", "gather-us",
                                                 "client-io-threads"};
    if (auto r = uri::check_known_options(opts, kKeys, "gluster"); !r)
        return r.error();
    static constexpr std::string_view kLevels[] = {"none", "emerg", "alert", "critical", "error",
                                                   "warning", "notice", "info", "debug",
                                                   "trace"};
    GlusterConnectOptions o;
    for (const auto& [k, v] : opts) {
        if (k == "log-file") {
            if (v.empty())
                return make_error(EINVAL, "gluster option log-file is empty (use - for "
                                  "standard error)");
            o.log_file = v;
        } else if (k == "log-level" || k == "debug") {
            bool named = false;
            for (int i = 0; i < 10; i++)
                if (k == "log-level" && v == kLevels[i]) {
                    o.log_level = i;
                    named = true;
                }
            if (!named) {
                auto n = parse_int_option(k, v, 0, 9);
                if (!n)
                    return make_error(EINVAL, "{}{}", n.error().message,
                                      k == "log-level" ? " or a level name: none, critical, "
                                      "error, warning, info, debug, trace" : "");
                o.log_level = *n;
            }
        } else if (k == "ping-timeout") {
            auto n = parse_int_option(k, v, 1, 1800);
            if (!n)
                return n.error();
            o.ping_timeout = *n;
        } else if (k == "client-io-threads") {
            if (v == "on" || v == "true" || v == "1")
                o.client_io_threads = true;
            else if (v == "off" || v == "false" || v == "0")
                o.client_io_threads = false;
            else
                return make_error(EINVAL, "invalid gluster option client-io-threads='{}' "
                                  "(expected on or off)", v);
        } else if (k == "gather-us") {
            auto n = parse_int_option(k, v, 0, 10000);
            if (!n)
                return n.error();
            o.gather_us = uint32_t(*n);
        } else if (k == "connect-timeout") {
            double secs = 0;
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
            if (ec != std::errc() || p != v.data() + v.size() || !(secs > 0) || secs > 86400)
                return make_error(EINVAL, "invalid gluster option connect-timeout='{}' "
                                  "(expected seconds, > 0)", v);
            o.connect_timeout = std::chrono::milliseconds(int64_t(secs * 1000 + 0.5));
        }
    }
    return o;
}

std::string gluster_describe(const uri::GlusterSpec& s)
{
    if (s.transport == "unix")
        return fmt::format("volume '{}' on server unix:{}", s.volume, s.socket);
    bool v6 = s.host.find(':') != std::string::npos;
    return fmt::format("volume '{}' on server {}{}{}:{} ({})", s.volume, v6 ? "[" : "", s.host,
                       v6 ? "]" : "", effective_port(s), s.transport);
}

GlusterConnRef& GlusterConnRef::operator=(GlusterConnRef&& o) noexcept
{
    if (this != &o) {
        reset();
        c_ = o.c_;
        o.c_ = nullptr;
    }
    return *this;
}

void GlusterConnRef::reset() noexcept
{
    if (!c_)
        return;
    GlusterConnection* c = c_;
    c_ = nullptr;
    Cache& k = cache();
    {
        std::lock_guard<std::mutex> g(k.mu);
        if (--c->refs > 0)
            return;
        k.conns.erase(c->key);
    }
    fini_detached(c->fs);
    delete c;
}

glfs* GlusterConnRef::fs() const { return c_ ? c_->fs : nullptr; }

const std::string& GlusterConnRef::describe() const
{
    static const std::string none = "(no gluster connection)";
    return c_ ? c_->desc : none;
}

size_t gluster_connection_count()
{
    Cache& k = cache();
    std::lock_guard<std::mutex> g(k.mu);
    return k.conns.size();
}

namespace {

// libgfapi sends on its sockets with writev, which raises SIGPIPE when the
// brick or glusterd at the other end is gone; with the default action that
// kills the whole process instead of failing the requests with ENOTCONN.
// So, at the first connection, a process that left SIGPIPE at its default
// ignores it from then on; a handler or disposition of the application's
// own is left alone. Any thread.
void ignore_default_sigpipe() noexcept
{
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction old {};
        if (sigaction(SIGPIPE, nullptr, &old) != 0 || (old.sa_flags & SA_SIGINFO) ||
            old.sa_handler != SIG_DFL)
            return;
        struct sigaction ign {};
        ign.sa_handler = SIG_IGN;
        sigemptyset(&ign.sa_mask);
        sigaction(SIGPIPE, &ign, nullptr);
    });
}

} // namespace

// Looks the connection up in the cache; when absent, runs glfs_init on a
// new thread raced by a watchdog, and adds the result to the cache (or, when
// a concurrent open got there first, uses theirs and finishes its own).
Task<Result<GlusterConnRef>> gluster_connect(Loop& loop, const uri::GlusterSpec& server,
                                             const GlusterConnectOptions& o)
{
    ignore_default_sigpipe();
    std::string key = cache_key(server);
    std::string desc = gluster_describe(server);
    Cache& k = cache();
    {
        std::lock_guard<std::mutex> g(k.mu);
        if (auto it = k.conns.find(key); it != k.conns.end()) {
            it->second->refs++;
            co_return GlusterConnRef(it->second);
        }
    }

    auto race = std::make_shared<InitRace>();
    race->server = server;
    race->opts = o;
    auto deadline = std::chrono::steady_clock::now() + o.connect_timeout;
    std::shared_ptr<InitRace>* rp = &race;
    // A pointer to the frame's shared_ptr keeps the lambda trivially
    // destructible (g++ 12 and temporaries in co_await expressions,
    // docs/architecture.md); each thread holds its own copy of the pointer.
    int64_t r = co_await await_foreign(loop, [rp, deadline](ForeignCompletion* c) {
        (*rp)->done = c;
        std::thread(init_thread, *rp).detach();
        std::thread(watchdog_thread, *rp, deadline).detach();
    });
    if (r == -ETIMEDOUT)
        co_return make_error(ETIMEDOUT, "cannot connect to gluster {}: no answer within the "
                             "connect timeout of {} ms (glusterd frozen or unreachable?); "
                             "raise it with connect-timeout=SECONDS", desc,
                             o.connect_timeout.count());
    if (r < 0 && !race->resolve_error.empty())
        co_return make_error(int(-r), "cannot connect to gluster {}: no address for host '{}': {}",
                             desc, server.host, race->resolve_error);
    if (r < 0) {
        int e = int(-r);
        const char* hint = "";
        if (e == ENOENT)
            hint = " (no such volume on that server?)";
        else if (e == ENOTCONN || e == ECONNREFUSED)
            hint = " (is glusterd running and listening there?)";
        co_return make_error(e, "cannot connect to gluster {}: {} failed: {}{}", desc,
                             race->stage, std::strerror(e), hint);
    }
    glfs_t* fs = race->fs;
    std::lock_guard<std::mutex> g(k.mu);
    if (auto it = k.conns.find(key); it != k.conns.end()) {
        fini_detached(fs);  // a concurrent open connected first: share theirs
        it->second->refs++;
        co_return GlusterConnRef(it->second);
    }
    auto* c = new GlusterConnection{key, desc, fs, 1};
    k.conns.emplace(key, c);
    co_return GlusterConnRef(c);
}

} // namespace coblk
