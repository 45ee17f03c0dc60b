// Tests of uri::parse, parse_size and parse_bool.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "uri/uri.h"

using namespace coblk;
using namespace coblk::uri;
using Catch::Matchers::Contains;

namespace {

// Parses `text` and fails the test when it does not parse.
Spec parse_ok(std::string_view text)
{
    auto r = parse(text);
    INFO("input: " << text);
    if (!r.ok())
        FAIL("unexpected error: " << r.error().message);
    return r.value();
}

Options opts(std::initializer_list<std::pair<std::string, std::string>> l) { return Options(l); }

} // namespace

TEST_CASE("protocol names", "[uri]")
{
    CHECK(std::string(protocol_name(Protocol::File)) == "file");
    CHECK(std::string(protocol_name(Protocol::HostDevice)) == "host_device");
    CHECK(std::string(protocol_name(Protocol::Null)) == "null");
    CHECK(std::string(protocol_name(Protocol::Memory)) == "memory");
    CHECK(std::string(protocol_name(Protocol::Gluster)) == "gluster");
    CHECK(std::string(protocol_name(Protocol::Rbd)) == "rbd");
}

TEST_CASE("plain paths", "[uri]")
{
    struct Case {
        const char* text;
        Protocol protocol;
    };
    const Case cases[] = {
        {"/var/lib/images/disk.img", Protocol::File},
        {"disk.img", Protocol::File},
        {"./foo:bar", Protocol::File},
        {"foo:bar", Protocol::File},
        {"qcow2:foo", Protocol::File},
        {"dir/a?b=c", Protocol::File},
        {"/tmp/x%20y", Protocol::File},
        {"null:", Protocol::File},
        {"/dev/sda", Protocol::HostDevice},
        {"/dev/mapper/vg-lv", Protocol::HostDevice},
        {"/devices/x", Protocol::File},
        {"Nbd://x", Protocol::File},
    };
    for (const auto& c : cases) {
        Spec s = parse_ok(c.text);
        INFO(c.text);
        CHECK(s.protocol == c.protocol);
        CHECK(s.path == c.text);
        CHECK(s.text == c.text);
        CHECK(s.options.empty());
    }
}

TEST_CASE("file: URIs", "[uri]")
{
    Spec s = parse_ok("file:/abs/path");
    CHECK(s.protocol == Protocol::File);
    CHECK(s.path == "/abs/path");
    CHECK(s.text == "file:/abs/path");
    CHECK(s.options.empty());

    CHECK(parse_ok("file:///abs/path").path == "/abs/path");
    CHECK(parse_ok("file://localhost/abs/path").path == "/abs/path");
    CHECK(parse_ok("file:///my%20disk.img").path == "/my disk.img");
    CHECK(parse_ok("file:/a%3fb%3Fc").path == "/a?b?c");

    s = parse_ok("file:///dev/sdb");
    CHECK(s.protocol == Protocol::File);
    CHECK(s.path == "/dev/sdb");

    s = parse_ok("file:///img?cache=none&aio=io_uring&locking=off&cache=writeback");
    CHECK(s.protocol == Protocol::File);
    CHECK(s.path == "/img");
    CHECK(s.options == opts({{"cache", "none"}, {"aio", "io_uring"}, {"locking", "off"},
                             {"cache", "writeback"}}));
    CHECK(s.option("cache") == "writeback");
    CHECK(s.option("aio") == "io_uring");
    CHECK_FALSE(s.option("size").has_value());

    s = parse_ok("file:/img?aio=a%20b&cache=");
    CHECK(s.option("aio") == "a b");
    CHECK(s.option("cache") == "");
}

TEST_CASE("host_device: URIs", "[uri]")
{
    Spec s = parse_ok("host_device:/dev/sdc");
    CHECK(s.protocol == Protocol::HostDevice);
    CHECK(s.path == "/dev/sdc");
    CHECK(s.options.empty());

    s = parse_ok("host_device:///dev/nvme0n1?cache=none&aio=native");
    CHECK(s.protocol == Protocol::HostDevice);
    CHECK(s.path == "/dev/nvme0n1");
    CHECK(s.options == opts({{"cache", "none"}, {"aio", "native"}}));

    s = parse_ok("host_device:/srv/dev-link");
    CHECK(s.protocol == Protocol::HostDevice);
    CHECK(s.path == "/srv/dev-link");
}

TEST_CASE("null:// URIs", "[uri]")
{
    Spec s = parse_ok("null://");
    CHECK(s.protocol == Protocol::Null);
    CHECK(s.path.empty());
    CHECK(s.options.empty());

    s = parse_ok("null://?size=1G&latency-ns=1000");
    CHECK(s.protocol == Protocol::Null);
    CHECK(s.options == opts({{"size", "1G"}, {"latency-ns", "1000"}}));
    CHECK(s.option("size") == "1G");

    s = parse_ok("null-co://?read-zeroes=on");
    CHECK(s.protocol == Protocol::Null);
    CHECK(s.options == opts({{"read-zeroes", "on"}}));
}

TEST_CASE("memory:// URIs", "[uri]")
{
    Spec s = parse_ok("memory://");
    CHECK(s.protocol == Protocol::Memory);
    CHECK(s.options.empty());

    s = parse_ok("memory://?size=64M&name=scratch");
    CHECK(s.protocol == Protocol::Memory);
    CHECK(s.options == opts({{"size", "64M"}, {"name", "scratch"}}));

    s = parse_ok("memory://disk0?size=64M");
    CHECK(s.protocol == Protocol::Memory);
    CHECK(s.option("name") == "disk0");
    CHECK(s.options == opts({{"name", "disk0"}, {"size", "64M"}}));

    CHECK(parse_ok("memory://my%20disk").option("name") == "my disk");
}

TEST_CASE("gluster URIs", "[uri]")
{
    SECTION("default transport and port") {
        Spec s = parse_ok("gluster://server1/vol/dir/image.img");
        CHECK(s.protocol == Protocol::Gluster);
        CHECK(s.gluster.transport == "tcp");
        CHECK(s.gluster.host == "server1");
        CHECK(s.gluster.port == 0);
        CHECK(s.gluster.socket.empty());
        CHECK(s.gluster.volume == "vol");
        CHECK(s.gluster.path == "/dir/image.img");
        CHECK(s.options.empty());
        CHECK(s.path.empty());
    }
    SECTION("explicit tcp with port and options") {
        Spec s = parse_ok("gluster+tcp://gl-1.example.com:24007/testvol/a.img"
                          "?log-level=4&log-file=/tmp/gl.log&ping-timeout=10"
                          "&connect-timeout=5&debug=9");
        CHECK(s.gluster.transport == "tcp");
        CHECK(s.gluster.host == "gl-1.example.com");
        CHECK(s.gluster.port == 24007);
        CHECK(s.gluster.volume == "testvol");
        CHECK(s.gluster.path == "/a.img");
        CHECK(s.options == opts({{"log-level", "4"}, {"log-file", "/tmp/gl.log"},
                                 {"ping-timeout", "10"}, {"connect-timeout", "5"},
                                 {"debug", "9"}}));
    }
    SECTION("port limits") {
        CHECK(parse_ok("gluster://h:0/v/i").gluster.port == 0);
        CHECK(parse_ok("gluster://h:65535/v/i").gluster.port == 65535);
        CHECK(parse_ok("gluster://h:024007/v/i").gluster.port == 24007);
    }
    SECTION("IPv4 and IPv6 hosts") {
        Spec s = parse_ok("gluster://192.168.1.10:24007/vol/img");
        CHECK(s.gluster.host == "192.168.1.10");
        CHECK(s.gluster.port == 24007);

        s = parse_ok("gluster://[::1]:24007/vol/img");
        CHECK(s.gluster.host == "::1");
        CHECK(s.gluster.port == 24007);
        CHECK(s.gluster.volume == "vol");
        CHECK(s.gluster.path == "/img");

        s = parse_ok("gluster+rdma://[fe80::1%eth0]/vol/img");
        CHECK(s.gluster.transport == "rdma");
        CHECK(s.gluster.host == "fe80::1%eth0");
        CHECK(s.gluster.port == 0);

        CHECK(parse_ok("gluster://[::ffff:10.0.0.1]/v/i").gluster.host == "::ffff:10.0.0.1");
        CHECK(parse_ok("gluster://my_host/v/i").gluster.host == "my_host");
    }
    SECTION("unix transport") {
        Spec s = parse_ok("gluster+unix:///volname/image?socket=/var/run/glusterd.socket");
        CHECK(s.gluster.transport == "unix");
        CHECK(s.gluster.host.empty());
        CHECK(s.gluster.port == 0);
        CHECK(s.gluster.socket == "/var/run/glusterd.socket");
        CHECK(s.gluster.volume == "volname");
        CHECK(s.gluster.path == "/image");
        CHECK(s.options.empty());

        s = parse_ok("gluster:///v/i?transport=unix&socket=/run/g%20d.sock");
        CHECK(s.gluster.transport == "unix");
        CHECK(s.gluster.socket == "/run/g d.sock");
    }
    SECTION("transport in the query") {
        Spec s = parse_ok("gluster://h/v/i?transport=socket");
        CHECK(s.gluster.transport == "tcp");
        CHECK(s.options.empty());
        CHECK(parse_ok("gluster://h/v/i?transport=tcp").gluster.transport == "tcp");
        CHECK(parse_ok("gluster://h/v/i?transport=rdma").gluster.transport == "rdma");
        CHECK(parse_ok("gluster+tcp://h/v/i?transport=socket").gluster.transport == "tcp");
        CHECK(parse_ok("gluster+rdma://h/v/i?transport=rdma").gluster.transport == "rdma");
    }
    SECTION("percent-decoding of volume and path") {
        Spec s = parse_ok("gluster://h/my%20vol/dir/my%20image");
        CHECK(s.gluster.volume == "my vol");
        CHECK(s.gluster.path == "/dir/my image");
    }
}

TEST_CASE("rbd names", "[uri]")
{
    SECTION("pool and image") {
        Spec s = parse_ok("rbd:rbdpool/disk1");
        CHECK(s.protocol == Protocol::Rbd);
        CHECK(s.rbd.pool == "rbdpool");
        CHECK(s.rbd.ns.empty());
        CHECK(s.rbd.image == "disk1");
        CHECK(s.rbd.snap.empty());
        CHECK(s.rbd.options.empty());
        CHECK(s.options.empty());
        CHECK(s.text == "rbd:rbdpool/disk1");
    }
    SECTION("namespace and snapshot") {
        Spec s = parse_ok("rbd:pool/ns1/img@snap1");
        CHECK(s.rbd.pool == "pool");
        CHECK(s.rbd.ns == "ns1");
        CHECK(s.rbd.image == "img");
        CHECK(s.rbd.snap == "snap1");
    }
    SECTION("options in order") {
        Spec s = parse_ok("rbd:pool/img@s:conf=/etc/ceph/ceph.conf:id=admin"
                          ":keyring=/etc/ceph/k:mon_host=10.0.0.1\\:6789;10.0.0.2"
                          ":rbd_cache=true:user=u:name=client.u:key=AQ==");
        CHECK(s.rbd.pool == "pool");
        CHECK(s.rbd.image == "img");
        CHECK(s.rbd.snap == "s");
        CHECK(s.rbd.options == opts({{"conf", "/etc/ceph/ceph.conf"}, {"id", "admin"},
                                     {"keyring", "/etc/ceph/k"},
                                     {"mon_host", "10.0.0.1:6789;10.0.0.2"},
                                     {"rbd_cache", "true"}, {"user", "u"},
                                     {"name", "client.u"}, {"key", "AQ=="}}));
    }
    SECTION("every known key and prefixed keys") {
        Spec s = parse_ok("rbd:p/i:auth_supported=cephx:client_mount_timeout=5"
                          ":rados_osd_op_timeout=6:rados_mon_op_timeout=7:ms_type=async"
                          ":debug_rbd=20:log_file=/tmp/l:objecter_inflight_ops=8"
                          ":auth_client_required=none:mon_max_pg=1:osd_x2=y");
        CHECK(s.rbd.options.size() == 11);
        CHECK(s.rbd.options[0] == std::pair<std::string, std::string>{"auth_supported", "cephx"});
        CHECK(s.rbd.options[10] == std::pair<std::string, std::string>{"osd_x2", "y"});
    }
    SECTION("escapes") {
        Spec s = parse_ok("rbd:po\\:ol/na\\/me/im\\@g@sn\\\\ap:key=a\\:b\\=c");
        CHECK(s.rbd.pool == "po:ol");
        CHECK(s.rbd.ns == "na/me");
        CHECK(s.rbd.image == "im@g");
        CHECK(s.rbd.snap == "sn\\ap");
        CHECK(s.rbd.options == opts({{"key", "a:b=c"}}));
    }
    SECTION("any other lower-case key is left for librados to judge") {
        Spec s = parse_ok("rbd:p/i:fsid=x:foo_bar=1:rbd-cache=false");
        CHECK(s.rbd.options == opts({{"fsid", "x"}, {"foo_bar", "1"}, {"rbd-cache", "false"}}));
    }
    SECTION("namespace, snapshot and options with escapes together") {
        Spec s = parse_ok("rbd:p\\@1/n\\:s/im\\/g@s\\:1:conf=/a\\:b/c.conf:id=x");
        CHECK(s.rbd.pool == "p@1");
        CHECK(s.rbd.ns == "n:s");
        CHECK(s.rbd.image == "im/g");
        CHECK(s.rbd.snap == "s:1");
        CHECK(s.rbd.options == opts({{"conf", "/a:b/c.conf"}, {"id", "x"}}));
    }
    SECTION("value with '=' and empty non-required value") {
        Spec s = parse_ok("rbd:p/i:key=abc==:rbd_cache=");
        CHECK(s.rbd.options == opts({{"key", "abc=="}, {"rbd_cache", ""}}));
    }
}

TEST_CASE("malformed names are rejected with a precise message", "[uri]")
{
    struct Bad {
        const char* text;
        const char* needle;   // names the specific problem
    };
    const std::vector<Bad> cases = {
        {"", "it is empty"},
        // gluster
        {"gluster://[::1:24007/vol/img", "has no closing ']'"},
        {"gluster://[::1]x/vol/img", "unexpected 'x' after IPv6 address"},
        {"gluster://[]/vol/img", "empty IPv6 address"},
        {"gluster://[::g1]/vol/img", "IPv6 address '::g1' contains invalid character 'g'"},
        {"gluster://[1.2.3.4]/vol/img", "contains no ':'"},
        {"gluster://[fe80::1%]/vol/img", "empty zone after '%'"},
        {"gluster://h:70000/vol/img", "port '70000' is out of range 0-65535"},
        {"gluster://h:99999999999999999999/vol/img", "is out of range 0-65535"},
        {"gluster://h:65536/vol/img", "port '65536' is out of range"},
        {"gluster://h:abc/vol/img", "port 'abc' is not a decimal number"},
        {"gluster://h:-1/vol/img", "port '-1' is not a decimal number"},
        {"gluster://h:24007x/vol/img", "port '24007x' is not a decimal number"},
        {"gluster://h:/vol/img", "empty port after ':'"},
        {"gluster://a:b:c/vol/img", "more than one ':'"},
        {"gluster://h//img", "empty volume name"},
        {"gluster://h/vol", "missing image path after volume 'vol'"},
        {"gluster://h/vol/", "missing image path after volume 'vol'"},
        {"gluster://h", "missing '/volname/image'"},
        {"gluster:///vol/img", "missing server for the tcp transport"},
        {"gluster://bad!host/vol/img", "hostname 'bad!host' contains invalid character '!'"},
        {"gluster://user@h/vol/img", "invalid character '@'"},
        {"gluster+unix:///vol/img", "needs ?socket="},
        {"gluster+unix://h/vol/img?socket=/s", "unix transport takes no server, got 'h'"},
        {"gluster+unix://:24007/vol/img?socket=/s", "unix transport takes no port"},
        {"gluster://h/vol/img?socket=/s", "?socket= is only valid with the unix transport"},
        {"gluster+tcp://h/vol/img?socket=/s", "only valid with the unix transport, not with 'tcp'"},
        {"gluster+unix:///vol/img?socket=", "?socket= has an empty path"},
        {"gluster+tcp://h/vol/img?transport=rdma", "?transport=rdma contradicts transport 'tcp'"},
        {"gluster+unix:///v/i?socket=/s&transport=socket", "contradicts transport 'unix'"},
        {"gluster://h/v/i?transport=tcp&transport=rdma", "contradicts transport 'tcp' given by ?transport=tcp"},
        {"gluster://h/vol/img?transport=udp", "unknown transport 'udp'"},
        {"gluster+udp://h/vol/img", "unknown transport 'udp' in scheme 'gluster+udp'"},
        {"gluster://h/vol/img?foo=1", "unknown option 'foo' (known options: transport, socket"},
        {"gluster://h/vol/img%zz", "bad percent escape '%zz'"},
        // rbd
        {"rbd:pool/img@snap@x", "more than one '@' in 'pool/img@snap@x'"},
        {"rbd:pool/img:rbd_Cache=1", "invalid rbd option name 'rbd_Cache'"},
        {"rbd:pool/img:a/b=1", "invalid rbd option name 'a/b'"},
        {"rbd:pool/img:a\\:b=1", "invalid rbd option name 'a:b'"},
        {"rbd:pool/ns/img@", "empty snapshot name"},
        {"rbd:pool/ns/", "empty image name"},
        {"rbd:/img", "empty pool name"},
        {"rbd:", "missing pool and image"},
        {"rbd:pool/", "empty image name"},
        {"rbd:pool/img@", "empty snapshot name"},
        {"rbd:pool//img", "empty namespace name"},
        {"rbd:pool/img:conf", "option 'conf' has no '=value'"},
        {"rbd:pool", "missing '/image' after pool 'pool'"},
        {"rbd:pool@snap", "missing '/image' after pool 'pool'"},
        {"rbd:a/b/c/d", "too many '/'"},
        {"rbd:pool/img:=x", "empty option name"},
        {"rbd:pool/img:", "empty option after ':'"},
        {"rbd:pool/img:id=a::conf=b", "empty option after ':'"},
        {"rbd:pool/img:conf=", "option 'conf' has an empty value"},
        {"rbd:pool/img:id=", "option 'id' has an empty value"},
        {"rbd:pool/img:keyring=", "option 'keyring' has an empty value"},
        {"rbd:pool/img\\", "trailing '\\' escapes nothing"},
        {"rbd://pool/img", "takes no '//'"},
        // file and host_device
        {"file:relative/path", "path 'relative/path' is not absolute"},
        {"file:", "empty path"},
        {"file://", "empty path"},
        {"file://localhost", "empty path"},
        {"file://server/abs", "host 'server' is not supported"},
        {"file:///a%2", "bad percent escape '%2'"},
        {"file:///a%g1", "bad percent escape '%g1'"},
        {"file:///a%00b", "decodes to a NUL byte"},
        {"file:///img?cache", "option 'cache' has no '=value'"},
        {"file:///img?=x", "empty option name"},
        {"file:///img?cache=none&&aio=x", "empty option between '&'s"},
        {"file:///img?cache=none&", "empty option between '&'s"},
        {"file:///img?", "nothing follows '?'"},
        {"file:///img?aio=a?cache=b", "second '?'"},
        {"file:///img?size=1G", "unknown option 'size' (known options: cache, aio, locking)"},
        {"file:///img?aio=%x1", "bad percent escape '%x1'"},
        {"host_device:dev/sda", "path 'dev/sda' is not absolute"},
        {"host_device:///dev/sda?locking=off", "unknown option 'locking' (known options: cache, aio)"},
        // null and memory
        {"null://foo", "null:// takes no host or path, got 'foo'"},
        {"null-co:///x", "takes no host or path, got '/x'"},
        {"null://?size", "option 'size' has no '=value'"},
        {"null://?cache=none", "unknown option 'cache' (known options: size, latency-ns, read-zeroes)"},
        {"memory://a/b", "memory name 'a/b' contains '/'"},
        {"memory://a?name=b", "name given twice"},
        {"memory://?latency-ns=1", "unknown option 'latency-ns' (known options: size, name)"},
        // unknown schemes
        {"nbd://x", "unknown protocol 'nbd'"},
        {"iscsi+tcp://h/t", "unknown protocol 'iscsi+tcp'"},
        {"http://example.com/x", "unknown protocol 'http'"},
    };
    REQUIRE(cases.size() >= 30);
    for (const auto& c : cases) {
        INFO("input: '" << c.text << "'");
        auto r = parse(c.text);
        REQUIRE_FALSE(r.ok());
        INFO("message: " << r.error().message);
        CHECK(r.error().code == EINVAL);
        CHECK_THAT(r.error().message, Contains(c.needle));
        CHECK_THAT(r.error().message, Contains("expected"));
        CHECK_THAT(r.error().message, Contains("'" + std::string(c.text) + "'"));
    }
}

TEST_CASE("errors show the accepted form of the URI kind", "[uri]")
{
    struct Form {
        const char* text;
        const char* form;
    };
    const Form cases[] = {
        {"gluster://h:70000/v/i",
         "expected gluster[+tcp|+unix|+rdma]://server[:port]/volname/image"
         "[?transport=...|?socket=...]"},
        {"rbd:pool", "expected rbd:pool[/namespace]/image[@snap][:key=value[:key=value...]]"},
        {"file:x", "expected file:/abs/path, file:///abs/path or file://localhost/abs/path"},
        {"host_device:x", "expected host_device:/dev/name"},
        {"null://x", "expected null://[?key=value&...] or null-co://"},
        {"memory://a/b", "expected memory://[name]"},
        {"nbd://x", "file:/path, host_device:/dev/name, null://"},
        {"", "expected a plain path or one of"},
    };
    for (const auto& c : cases) {
        INFO("input: '" << c.text << "'");
        auto r = parse(c.text);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Contains(c.form));
    }
}

TEST_CASE("a NUL byte is rejected", "[uri]")
{
    auto r = parse(std::string_view("/tmp/a\0b", 8));
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Contains("NUL byte"));
}

TEST_CASE("Spec::option returns the last value", "[uri]")
{
    Spec s;
    CHECK_FALSE(s.option("a").has_value());
    s.options = opts({{"a", "1"}, {"b", "2"}, {"a", "3"}});
    CHECK(s.option("a") == "3");
    CHECK(s.option("b") == "2");
    CHECK_FALSE(s.option("c").has_value());
}

TEST_CASE("parse_size accepts integers and binary suffixes", "[size]")
{
    struct Case {
        const char* text;
        uint64_t bytes;
    };
    const Case cases[] = {
        {"0", 0},
        {"512", 512},
        {"512B", 512},
        {"512b", 512},
        {"64k", 64ull << 10},
        {"64K", 64ull << 10},
        {"4KiB", 4096},
        {"4kib", 4096},
        {"4KB", 4096},
        {"1M", 1ull << 20},
        {"1G", 1ull << 30},
        {"1g", 1ull << 30},
        {"1GiB", 1ull << 30},
        {"2T", 2ull << 40},
        {"3P", 3ull << 50},
        {"7E", 7ull << 60},
        {"1.5M", 3ull << 19},
        {"0.5K", 512},
        {"2.0", 2},
        {"1.25K", 1280},
        {"0.0009765625M", 1024},
        {"007", 7},
        {"9223372036854775807", 9223372036854775807ull},
        {"8191.99999999999999911182158029987476766109466552734375P",
         9223372036854775807ull},
    };
    for (const auto& c : cases) {
        INFO("input: '" << c.text << "'");
        auto r = parse_size(c.text, "size");
        REQUIRE(r.ok());
        CHECK(r.value() == c.bytes);
    }
}

TEST_CASE("parse_size rejects malformed sizes", "[size]")
{
    struct Bad {
        const char* text;
        const char* needle;
    };
    const Bad cases[] = {
        {"", "it is empty"},
        {"-1", "cannot be negative"},
        {"-0", "cannot be negative"},
        {"K", "does not start with a digit"},
        {"+5", "does not start with a digit"},
        {" 5", "does not start with a digit"},
        {".5K", "does not start with a digit"},
        {"1.K", "no digits after '.'"},
        {"64X", "unknown unit 'X'"},
        {"64KX", "unknown unit 'KX'"},
        {"1G5", "unknown unit 'G5'"},
        {"1iB", "unknown unit 'iB'"},
        {"1 G", "unknown unit ' G'"},
        {"1.5", "not a whole number of bytes"},
        {"1.3K", "not a whole number of bytes"},
        {"0.1E", "not a whole number of bytes"},
        {"9223372036854775808", "exceeds the maximum"},
        {"99999999999999999999999", "exceeds the maximum"},
        {"8E", "exceeds the maximum"},
        {"8388608T", "exceeds the maximum"},
        {"7.9999999999999999999E", "not a whole number"},
    };
    for (const auto& c : cases) {
        INFO("input: '" << c.text << "'");
        auto r = parse_size(c.text, "null:// size");
        REQUIRE_FALSE(r.ok());
        INFO("message: " << r.error().message);
        CHECK(r.error().code == EINVAL);
        CHECK_THAT(r.error().message, Contains(c.needle));
        CHECK_THAT(r.error().message, Contains("null:// size"));
        CHECK_THAT(r.error().message, Contains("'" + std::string(c.text) + "'"));
    }
}

TEST_CASE("parse_bool", "[size]")
{
    for (const char* t : {"on", "true", "yes", "1", "ON", "True"}) {
        INFO(t);
        auto r = parse_bool(t, "read-zeroes");
        REQUIRE(r.ok());
        CHECK(r.value());
    }
    for (const char* t : {"off", "false", "no", "0", "NO"}) {
        INFO(t);
        auto r = parse_bool(t, "read-zeroes");
        REQUIRE(r.ok());
        CHECK_FALSE(r.value());
    }
    for (const char* t : {"", "2", "maybe", "onn", "y"}) {
        INFO(t);
        auto r = parse_bool(t, "read-zeroes");
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == EINVAL);
        CHECK_THAT(r.error().message, Contains("read-zeroes"));
        CHECK_THAT(r.error().message, Contains("'" + std::string(t) + "'"));
        CHECK_THAT(r.error().message, Contains("expected on, off"));
    }
}
