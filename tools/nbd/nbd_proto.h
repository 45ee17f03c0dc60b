/*
 * The NBD protocol as coblk-nbd speaks it (fixed newstyle handshake, simple
 * replies): constants, and pure functions that decode what a client sent
 * and decide what to do with it.  Nothing here touches a socket or a
 * device, so a fuzzer can drive every function with arbitrary bytes.
 * Reference: the NBD protocol document (doc/proto.md in the NBD project).
 */
#ifndef COBLK_NBD_PROTO_H
#define COBLK_NBD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define NBD_MAGIC 0x4e42444d41474943ULL      /* "NBDMAGIC" */
#define NBD_IHAVEOPT 0x49484156454F5054ULL   /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x0003e889045565a9ULL
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u

/* Handshake flags (server) and client flags. */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)

/* Options. */
enum {
    NBD_OPT_EXPORT_NAME = 1,
    NBD_OPT_ABORT = 2,
    NBD_OPT_LIST = 3,
    NBD_OPT_STARTTLS = 5,
    NBD_OPT_INFO = 6,
    NBD_OPT_GO = 7,
    NBD_OPT_STRUCTURED_REPLY = 8
};

/* Option replies. */
#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_ERR_UNSUP 0x80000001u
#define NBD_REP_ERR_POLICY 0x80000002u
#define NBD_REP_ERR_INVALID 0x80000003u
#define NBD_REP_ERR_UNKNOWN 0x80000006u

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT 0u
#define NBD_INFO_NAME 1u
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE 3u

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)

/* Commands and command flags. */
enum {
    NBD_CMD_READ = 0,
    NBD_CMD_WRITE = 1,
    NBD_CMD_DISC = 2,
    NBD_CMD_FLUSH = 3,
    NBD_CMD_TRIM = 4,
    NBD_CMD_WRITE_ZEROES = 6
};
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)

/* Errors in replies. */
#define NBD_EPERM 1u
#define NBD_EIO 5u
#define NBD_ENOMEM 12u
#define NBD_EINVAL 22u
#define NBD_ENOSPC 28u
#define NBD_EOVERFLOW 75u
#define NBD_ENOTSUP 95u
#define NBD_ESHUTDOWN 108u

#define NBD_REQUEST_SIZE 28
#define NBD_OPTION_HEADER_SIZE 16
/* The largest read or write payload served (and advertised). */
#define NBD_MAX_PAYLOAD (32u * 1024 * 1024)
/* The largest option data read; longer options end the connection. */
#define NBD_MAX_OPTION_DATA 65536u

uint16_t nbd_get16(const uint8_t *p);
uint32_t nbd_get32(const uint8_t *p);
uint64_t nbd_get64(const uint8_t *p);
void nbd_put16(uint8_t *p, uint16_t v);
void nbd_put32(uint8_t *p, uint32_t v);
void nbd_put64(uint8_t *p, uint64_t v);

/* What the server exports. */
struct nbd_export {
    const char *name;
    uint64_t size;
    int read_only;
};

/* The transmission flags of `e`. */
uint16_t nbd_transmission_flags(const struct nbd_export *e);

/* An option header: returns 0, or -1 when the magic is wrong. */
struct nbd_option {
    uint32_t option;
    uint32_t length;
};
int nbd_parse_option(const uint8_t buf[NBD_OPTION_HEADER_SIZE], struct nbd_option *out);

/*
 * The data of NBD_OPT_INFO/NBD_OPT_GO: u32 name length, name, u16 count,
 * count u16 info types.  Returns 0 and points *name into `data`, or
 * NBD_REP_ERR_INVALID when the lengths do not add up.  *wants_block_size
 * says whether NBD_INFO_BLOCK_SIZE was among the requests.
 */
uint32_t nbd_parse_info_request(const uint8_t *data, uint32_t len, const uint8_t **name,
                                uint32_t *name_len, int *wants_block_size);

/* Whether `name` (not NUL-terminated) is the export's name. */
int nbd_name_matches(const struct nbd_export *e, const uint8_t *name, uint32_t len);

struct nbd_request {
    uint16_t flags;
    uint16_t type;
    uint64_t handle;
    uint64_t offset;
    uint32_t length;
};

/* Decodes a request header: 0, or -1 when the magic is wrong (the stream
 * is out of step: the connection must end). */
int nbd_parse_request(const uint8_t buf[NBD_REQUEST_SIZE], struct nbd_request *out);

/* What to do with a request. */
enum nbd_action {
    NBD_DO_SUBMIT,      /* valid: run it */
    NBD_DO_ERROR,       /* reply with `error` (after reading `discard` payload bytes) */
    NBD_DO_DISCONNECT,  /* NBD_CMD_DISC: finish what is in flight, then close */
    NBD_DO_FATAL        /* the stream cannot be followed: close now */
};
struct nbd_verdict {
    enum nbd_action action;
    uint32_t error;    /* NBD_E* for NBD_DO_ERROR */
    uint32_t discard;  /* payload bytes to read and drop before replying */
};

/* Checks `r` against the export: command, flags, length and range. */
struct nbd_verdict nbd_check_request(const struct nbd_request *r, const struct nbd_export *e);

/* The NBD error for a request that failed with -errno `ret`. */
uint32_t nbd_error_from_errno(int ret);

/* Encodes a simple reply header (16 bytes). */
void nbd_encode_simple_reply(uint8_t out[16], uint32_t error, uint64_t handle);

/* Encodes an option reply header (20 bytes). */
void nbd_encode_option_reply(uint8_t out[20], uint32_t option, uint32_t type, uint32_t len);

#endif
