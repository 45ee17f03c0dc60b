// libFuzzer target for coblk-nbd's protocol functions (tools/nbd/nbd_proto.h).
//
// The input is a client's byte stream, after a two-byte prefix that picks
// the export (byte 0: bit 0 read-only, bits 1-2 the name; byte 1: the size
// from kSizes). A small state machine takes the stream through the phases
// coblk_nbd.c goes through (client flags, options, requests) and calls
// every decode and decision function on it, checking what the NBD protocol
// document (doc/proto.md of the NBD project) and nbd_proto.h promise:
//   - nothing is read past the bytes the client sent; decoded fields are
//     the big-endian values of the header bytes;
//   - an INFO/GO request is accepted only when its lengths add up exactly,
//     and its name lies inside the option's data;
//   - a request that is run lies inside the export (checked without
//     overflow) and, for READ/WRITE, within the maximum payload, so no
//     reply is bigger than 16 bytes plus NBD_MAX_PAYLOAD; small exports
//     are real buffers of exactly their size, so ASan catches a copy
//     outside one;
//   - errors are the protocol's: ENOSPC for writes past the end, EINVAL for
//     reads and trims past the end, unknown commands and flags, EPERM for
//     writes to a read-only export; never EOVERFLOW, ENOTSUP or ENOMEM
//     (no DF, FAST_ZERO or structured replies are offered);
//   - with SEND_FUA advertised, a FUA flag never changes a verdict
//     ("the server MUST accept all commands with this bit set");
//   - a refused WRITE's payload is skipped (the stream stays in step);
//     only a WRITE too long to read ends the connection;
//   - nbd_error_from_errno maps any int to a defined error, 0 only for 0.
// Any broken promise aborts, so libFuzzer keeps the input.
extern "C" {
#include "tools/nbd/nbd_proto.h"
}

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace {

#define EXPECT(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "nbd_proto_fuzz: %s:%d: broken: %s\n", __FILE__,   \
                         __LINE__, #cond);                                             \
            std::abort();                                                              \
        }                                                                              \
    } while (0)

const uint64_t kSizes[] = {0,
                           1,
                           512,
                           4096,
                           65536 + 7,
                           1 << 20,
                           uint64_t(NBD_MAX_PAYLOAD) + 4096,
                           uint64_t(1) << 40,
                           uint64_t(1) << 63,
                           UINT64_MAX - 511,
                           UINT64_MAX};
const char* const kNames[] = {"", "disk", "coblk-export-with-a-longer-name", "x"};
// Exports up to this size are backed by a real buffer of exactly their size.
constexpr uint64_t kBacked = 1 << 20;

// The client's bytes, consumed front to back; never read past the end.
struct Stream {
    const uint8_t* p;
    size_t left;
    const uint8_t* take(size_t n)
    {
        if (n > left)
            return nullptr;
        const uint8_t* r = p;
        p += n;
        left -= n;
        return r;
    }
};

uint64_t be(const uint8_t* p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

bool defined_error(uint32_t e)
{
    switch (e) {
    case NBD_EPERM:
    case NBD_EIO:
    case NBD_ENOMEM:
    case NBD_EINVAL:
    case NBD_ENOSPC:
    case NBD_EOVERFLOW:
    case NBD_ENOTSUP:
    case NBD_ESHUTDOWN:
        return true;
    default:
        return false;
    }
}

bool inside(const nbd_export& e, uint64_t off, uint64_t len)
{
    uint64_t end;
    return !__builtin_add_overflow(off, len, &end) && end <= e.size;
}

// The flags the protocol documents for command `type` (FUA for every
// command once SEND_FUA is advertised; NO_HOLE only for WRITE_ZEROES).
uint32_t applicable_flags(uint16_t type, bool fua_offered)
{
    uint32_t f = fua_offered ? NBD_CMD_FLAG_FUA : 0;
    if (type == NBD_CMD_WRITE_ZEROES)
        f |= NBD_CMD_FLAG_NO_HOLE;
    return f;
}

void check_transmission_flags(const nbd_export& e)
{
    uint16_t f = nbd_transmission_flags(&e);
    EXPECT(f & NBD_FLAG_HAS_FLAGS);
    EXPECT(!(f & NBD_FLAG_READ_ONLY) == !e.read_only);
    if (e.read_only)
        EXPECT(!(f & (NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES)));
}

// An option reply header, encoded and read back as a client would.
void check_option_reply(uint32_t option, uint32_t type, uint32_t len)
{
    uint8_t h[20];
    nbd_encode_option_reply(h, option, type, len);
    EXPECT(be(h, 8) == NBD_REP_MAGIC);
    EXPECT(be(h + 8, 4) == option);
    EXPECT(be(h + 12, 4) == type);
    EXPECT(be(h + 16, 4) == len);
}

// NBD_OPT_INFO/NBD_OPT_GO data, against an independent reading of it.
// Returns whether the export it names is ours.
bool check_info_request(const nbd_export& e, const uint8_t* data, uint32_t len)
{
    const uint8_t* name = nullptr;
    uint32_t name_len = 0;
    int wants_bs = -1;
    uint32_t err = nbd_parse_info_request(data, len, &name, &name_len, &wants_bs);
    bool adds_up = false, bs = false;
    if (len >= 4) {
        uint64_t n = be(data, 4);
        if (4 + n + 2 <= len) {
            uint64_t count = be(data + 4 + n, 2);
            adds_up = 4 + n + 2 + 2 * count == len;
            for (uint64_t i = 0; adds_up && i < count; i++)
                bs |= be(data + 6 + n + 2 * i, 2) == NBD_INFO_BLOCK_SIZE;
        }
    }
    EXPECT(wants_bs == 0 || wants_bs == 1);
    if (!adds_up) {
        EXPECT(err == NBD_REP_ERR_INVALID);
        return false;
    }
    EXPECT(err == 0);
    EXPECT(name == data + 4);
    EXPECT(name_len == be(data, 4) && name_len <= len - 6);
    EXPECT(wants_bs == int(bs));
    bool ours = nbd_name_matches(&e, name, name_len) != 0;
    EXPECT(ours == (std::strlen(e.name) == name_len &&
                    std::memcmp(e.name, name, name_len) == 0));
    return ours;
}

enum class Next { Options, Transmission, End };

// One option from the stream, handled as coblk_nbd.c's handshake does.
Next option(Stream& s, const nbd_export& e)
{
    const uint8_t* h = s.take(NBD_OPTION_HEADER_SIZE);
    if (!h)
        return Next::End;
    nbd_option o{};
    if (nbd_parse_option(h, &o) < 0) {
        EXPECT(be(h, 8) != NBD_IHAVEOPT);
        return Next::End;
    }
    EXPECT(be(h, 8) == NBD_IHAVEOPT);
    EXPECT(o.option == be(h + 8, 4) && o.length == be(h + 12, 4));
    if (o.length > NBD_MAX_OPTION_DATA)
        return Next::End;
    const uint8_t* data = s.take(o.length);
    if (!data)
        return Next::End;
    switch (o.option) {
    case NBD_OPT_EXPORT_NAME:
        // No error reply exists here: a wrong name ends the session.
        return nbd_name_matches(&e, data, o.length) ? Next::Transmission : Next::End;
    case NBD_OPT_ABORT:
        check_option_reply(o.option, NBD_REP_ACK, 0);
        return Next::End;
    case NBD_OPT_LIST: {
        // Names are strings: at most 4096 bytes on the wire.
        uint32_t n = uint32_t(std::strlen(e.name));
        EXPECT(n <= 4096);
        check_option_reply(o.option, o.length ? NBD_REP_ERR_INVALID : NBD_REP_SERVER,
                           o.length ? 0 : 4 + n);
        return Next::Options;
    }
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        if (!check_info_request(e, data, o.length))
            return Next::Options;
        check_option_reply(o.option, NBD_REP_INFO, 12);
        return o.option == NBD_OPT_GO ? Next::Transmission : Next::Options;
    default:
        check_option_reply(o.option, NBD_REP_ERR_UNSUP, 0);
        return Next::Options;
    }
}

// The promises about one request's verdict (see the top of the file).
void check_verdict(const nbd_request& r, const nbd_export& e, const nbd_verdict& v)
{
    bool fua_offered = nbd_transmission_flags(&e) & NBD_FLAG_SEND_FUA;
    bool known = r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE || r.type == NBD_CMD_DISC ||
                 r.type == NBD_CMD_FLUSH || r.type == NBD_CMD_TRIM ||
                 r.type == NBD_CMD_WRITE_ZEROES;
    bool writes = r.type == NBD_CMD_WRITE || r.type == NBD_CMD_TRIM ||
                  r.type == NBD_CMD_WRITE_ZEROES;
    bool ranged = writes || r.type == NBD_CMD_READ;
    bool payload = r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE;
    switch (v.action) {
    case NBD_DO_SUBMIT:
        EXPECT(known && r.type != NBD_CMD_DISC);
        // FUA may be accepted even where it was not offered.
        EXPECT(!(r.flags & ~applicable_flags(r.type, true)));
        if (ranged)
            EXPECT(inside(e, r.offset, r.length));
        if (payload)
            EXPECT(r.length <= NBD_MAX_PAYLOAD);
        if (writes)
            EXPECT(!e.read_only);
        EXPECT(v.discard == 0);
        break;
    case NBD_DO_ERROR:
        EXPECT(defined_error(v.error));
        EXPECT(v.error != NBD_EOVERFLOW && v.error != NBD_ENOTSUP && v.error != NBD_ENOMEM);
        // The payload of a refused WRITE is read and dropped; nothing else
        // carries one.
        EXPECT(v.discard == (r.type == NBD_CMD_WRITE ? r.length : 0));
        EXPECT(v.discard <= NBD_MAX_PAYLOAD);
        if (!known)
            EXPECT(v.error == NBD_EINVAL);
        break;
    case NBD_DO_DISCONNECT:
        EXPECT(r.type == NBD_CMD_DISC);
        break;
    case NBD_DO_FATAL:
        EXPECT(r.type == NBD_CMD_WRITE && r.length > NBD_MAX_PAYLOAD);
        break;
    }
    if (known && r.type != NBD_CMD_DISC && !(r.flags & ~applicable_flags(r.type, fua_offered))) {
        // A valid request's error is the one the protocol names.
        bool past_end = ranged && !inside(e, r.offset, r.length);
        if (r.type == NBD_CMD_WRITE && r.length > NBD_MAX_PAYLOAD)
            EXPECT(v.action == NBD_DO_FATAL);  // its payload cannot be skipped
        else if (writes && e.read_only)
            EXPECT(v.action == NBD_DO_ERROR && v.error == NBD_EPERM);
        else if (r.type == NBD_CMD_WRITE && past_end)
            EXPECT(v.action == NBD_DO_ERROR && v.error == NBD_ENOSPC);
        else if ((r.type == NBD_CMD_READ || r.type == NBD_CMD_TRIM) && past_end)
            EXPECT(v.action == NBD_DO_ERROR && v.error == NBD_EINVAL);
        else if (!past_end && (!payload || r.length <= NBD_MAX_PAYLOAD))
            EXPECT(v.action == NBD_DO_SUBMIT);
    }
    if (r.flags & ~uint32_t(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE))
        EXPECT(v.action != NBD_DO_SUBMIT);  // unknown flags
    if (fua_offered && r.type != NBD_CMD_DISC) {
        nbd_request other = r;
        other.flags = uint16_t(r.flags ^ NBD_CMD_FLAG_FUA);
        nbd_verdict w = nbd_check_request(&other, &e);
        EXPECT(w.action == v.action && w.error == v.error && w.discard == v.discard);
    }
}

// One request from the stream, handled as coblk_nbd.c's take_request does
// (the I/O done on a real buffer for small exports).
bool request(Stream& s, const nbd_export& e, uint8_t* disk, std::vector<uint8_t>& reply)
{
    const uint8_t* h = s.take(NBD_REQUEST_SIZE);
    if (!h)
        return false;
    nbd_request r{};
    if (nbd_parse_request(h, &r) < 0) {
        EXPECT(be(h, 4) != NBD_REQUEST_MAGIC);
        return false;
    }
    EXPECT(be(h, 4) == NBD_REQUEST_MAGIC);
    EXPECT(r.flags == be(h + 4, 2) && r.type == be(h + 6, 2) && r.handle == be(h + 8, 8) &&
           r.offset == be(h + 16, 8) && r.length == be(h + 24, 4));
    nbd_verdict v = nbd_check_request(&r, &e);
    check_verdict(r, e, v);
    uint32_t error = 0;
    size_t data_len = 0;
    switch (v.action) {
    case NBD_DO_DISCONNECT:
    case NBD_DO_FATAL:
        return false;
    case NBD_DO_ERROR:
        if (!s.take(v.discard))
            return false;
        error = v.error;
        break;
    case NBD_DO_SUBMIT: {
        // FLUSH's offset means nothing; every other command's is in range.
        uint8_t* at = disk && e.size && r.type != NBD_CMD_FLUSH ? disk + r.offset : nullptr;
        if (r.type == NBD_CMD_WRITE) {
            const uint8_t* payload = s.take(r.length);
            if (!payload)
                return false;
            if (at)
                std::memcpy(at, payload, r.length);
        } else if (r.type == NBD_CMD_READ) {
            data_len = r.length;
            if (at)
                std::memcpy(reply.data() + 16, at, r.length);
        } else if ((r.type == NBD_CMD_TRIM || r.type == NBD_CMD_WRITE_ZEROES) && at) {
            std::memset(at, 0, r.length);
        }
        break;
    }
    }
    // No reply bigger than its header plus the largest payload.
    EXPECT(16 + data_len <= 16 + size_t(NBD_MAX_PAYLOAD));
    EXPECT(data_len <= reply.size() - 16 || e.size > kBacked);
    nbd_encode_simple_reply(reply.data(), error, r.handle);
    EXPECT(be(reply.data(), 4) == NBD_SIMPLE_REPLY_MAGIC);
    EXPECT(be(reply.data() + 4, 4) == error);
    EXPECT(be(reply.data() + 8, 8) == r.handle);
    return true;
}

void check_errno_mapping(int ret)
{
    uint32_t e = nbd_error_from_errno(ret);
    EXPECT((e == 0) == (ret == 0));
    EXPECT(e == 0 || defined_error(e));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    Stream s{data, size};
    const uint8_t* cfg = s.take(2);
    if (!cfg)
        return 0;
    nbd_export e{};
    e.read_only = cfg[0] & 1;
    e.name = kNames[(cfg[0] >> 1) & 3];
    e.size = kSizes[cfg[1] % (sizeof kSizes / sizeof kSizes[0])];
    check_transmission_flags(e);

    // The big-endian helpers read back what they wrote.
    if (size >= 10) {
        uint8_t b[8];
        nbd_put64(b, nbd_get64(data + 2));
        EXPECT(std::memcmp(b, data + 2, 8) == 0);
        int ret;
        std::memcpy(&ret, data + size - 4, sizeof ret);
        check_errno_mapping(ret);
        check_errno_mapping(-int(data[size - 1]));
        check_errno_mapping(INT_MIN);
    }

    // Client flags: unknown bits end the session.
    const uint8_t* cflags = s.take(4);
    if (!cflags || (be(cflags, 4) & ~uint64_t(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)))
        return 0;
    Next next = Next::Options;
    while (next == Next::Options)
        next = option(s, e);
    if (next != Next::Transmission)
        return 0;
    // Exactly the export's size (uninitialised: only bounds matter here).
    std::unique_ptr<uint8_t[]> disk(e.size <= kBacked ? new uint8_t[e.size] : nullptr);
    static std::vector<uint8_t> reply(16 + kBacked);
    while (request(s, e, disk.get(), reply)) {
    }
    return 0;
}
