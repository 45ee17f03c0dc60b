// Parsing of every name a coblk device can be opened by: plain paths, file:
// URIs, /dev/... block devices, null://, memory://, gluster[+transport]://
// and rbd:pool/image. Parsing is pure text work: nothing is opened here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/result.h"

namespace coblk::uri {

enum class Protocol { File, HostDevice, Null, Memory, Gluster, Rbd };

// "file", "host_device", "null", "memory", "gluster", "rbd".
const char* protocol_name(Protocol p);

using Options = std::vector<std::pair<std::string, std::string>>;

struct GlusterSpec {
    std::string transport = "tcp";   // "tcp", "unix" or "rdma"
    std::string host;                // name, IPv4, or IPv6 without brackets; empty for unix
    uint16_t port = 0;               // 0: libgfapi's default (24007)
    std::string socket;              // unix transport: the socket path
    std::string volume;              // never empty
    std::string path;                // image path inside the volume, starts with '/'
};

struct RbdSpec {
    std::string pool;                // never empty
    std::string ns;                  // namespace, may be empty
    std::string image;               // never empty
    std::string snap;                // empty: the image head
    // key=value pairs in URI order, escapes removed; includes conf=, id=, ...
    Options options;
};

struct Spec {
    Protocol protocol = Protocol::File;
    std::string text;                // the string that was parsed
    std::string path;                // File and HostDevice: the local path
    GlusterSpec gluster;             // Protocol::Gluster only
    RbdSpec rbd;                     // Protocol::Rbd only
    // ?key=value options of file:, null://, memory://, gluster URIs, in order.
    // Keys are checked against the protocol's known keys; values are checked
    // by the backend that uses them.
    Options options;

    // The last value of option `key`, if given.
    std::optional<std::string> option(std::string_view key) const;
};

// Parses `text`. On failure the Error (EINVAL) says what is wrong and shows
// the accepted form of the URI kind it looked like. Any thread.
Result<Spec> parse(std::string_view text);

// Parses a size: a non-negative integer with an optional K/M/G/T/P/E suffix
// (binary, case-insensitive, optional trailing "B" or "iB"), e.g. "4096",
// "64k", "1G", "1.5M" when the result is a whole number of bytes. `what`
// names the field in the error. Any thread.
Result<uint64_t> parse_size(std::string_view text, std::string_view what);

// Parses "on|off|true|false|yes|no|1|0". Any thread.
Result<bool> parse_bool(std::string_view text, std::string_view what);

} // namespace coblk::uri
