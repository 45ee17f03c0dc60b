#include "nbd_proto.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

uint16_t nbd_get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

uint32_t nbd_get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint64_t nbd_get64(const uint8_t *p) { return ((uint64_t)nbd_get32(p) << 32) | nbd_get32(p + 4); }

void nbd_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void nbd_put32(uint8_t *p, uint32_t v)
{
    nbd_put16(p, (uint16_t)(v >> 16));
    nbd_put16(p + 2, (uint16_t)v);
}

void nbd_put64(uint8_t *p, uint64_t v)
{
    nbd_put32(p, (uint32_t)(v >> 32));
    nbd_put32(p + 4, (uint32_t)v);
}

uint16_t nbd_transmission_flags(const struct nbd_export *e)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH;
    if (e->read_only)
        f |= NBD_FLAG_READ_ONLY;
    else
        f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
    return f;
}

int nbd_parse_option(const uint8_t buf[NBD_OPTION_HEADER_SIZE], struct nbd_option *out)
{
    if (nbd_get64(buf) != NBD_IHAVEOPT)
        return -1;
    out->option = nbd_get32(buf + 8);
    out->length = nbd_get32(buf + 12);
    return 0;
}

uint32_t nbd_parse_info_request(const uint8_t *data, uint32_t len, const uint8_t **name,
                                uint32_t *name_len, int *wants_block_size)
{
    uint32_t n, count, i;
    *wants_block_size = 0;
    if (len < 6)
        return NBD_REP_ERR_INVALID;
    n = nbd_get32(data);
    if (n > len - 6)
        return NBD_REP_ERR_INVALID;
    count = nbd_get16(data + 4 + n);
    if ((uint64_t)4 + n + 2 + 2ull * count != len)
        return NBD_REP_ERR_INVALID;
    *name = data + 4;
    *name_len = n;
    for (i = 0; i < count; i++)
        if (nbd_get16(data + 6 + n + 2 * i) == NBD_INFO_BLOCK_SIZE)
            *wants_block_size = 1;
    return 0;
}

int nbd_name_matches(const struct nbd_export *e, const uint8_t *name, uint32_t len)
{
    return strlen(e->name) == len && memcmp(e->name, name, len) == 0;
}

int nbd_parse_request(const uint8_t buf[NBD_REQUEST_SIZE], struct nbd_request *out)
{
    if (nbd_get32(buf) != NBD_REQUEST_MAGIC)
        return -1;
    out->flags = nbd_get16(buf + 4);
    out->type = nbd_get16(buf + 6);
    out->handle = nbd_get64(buf + 8);
    out->offset = nbd_get64(buf + 16);
    out->length = nbd_get32(buf + 24);
    return 0;
}

static struct nbd_verdict verdict(enum nbd_action a, uint32_t error, uint32_t discard)
{
    struct nbd_verdict v;
    v.action = a;
    v.error = error;
    v.discard = discard;
    return v;
}

/* Whether [off, off + len) lies inside the export. */
static int in_range(const struct nbd_export *e, uint64_t off, uint64_t len)
{
    return off <= e->size && len <= e->size - off;
}

/*
 * FUA is accepted on every command (proto.md: once SEND_FUA is offered the
 * server MUST accept it anywhere); NO_HOLE only on WRITE_ZEROES, the one
 * command it is documented for.
 */
struct nbd_verdict nbd_check_request(const struct nbd_request *r, const struct nbd_export *e)
{
    uint32_t fua = NBD_CMD_FLAG_FUA;
    switch (r->type) {
    case NBD_CMD_WRITE:
        /* A payload follows: too long to read means the stream is lost. */
        if (r->length > NBD_MAX_PAYLOAD)
            return verdict(NBD_DO_FATAL, NBD_EOVERFLOW, 0);
        if (r->flags & ~fua)
            return verdict(NBD_DO_ERROR, NBD_EINVAL, r->length);
        if (e->read_only)
            return verdict(NBD_DO_ERROR, NBD_EPERM, r->length);
        if (!in_range(e, r->offset, r->length))
            return verdict(NBD_DO_ERROR, NBD_ENOSPC, r->length);
        return verdict(NBD_DO_SUBMIT, 0, 0);
    case NBD_CMD_READ:
        if (r->flags & ~fua)
            return verdict(NBD_DO_ERROR, NBD_EINVAL, 0);
        /* EOVERFLOW is only for DF and payload-free commands (proto.md). */
        if (r->length > NBD_MAX_PAYLOAD)
            return verdict(NBD_DO_ERROR, NBD_EINVAL, 0);
        if (!in_range(e, r->offset, r->length))
            return verdict(NBD_DO_ERROR, NBD_EINVAL, 0);
        return verdict(NBD_DO_SUBMIT, 0, 0);
    case NBD_CMD_DISC:
        return verdict(NBD_DO_DISCONNECT, 0, 0);
    case NBD_CMD_FLUSH:
        if (r->flags & ~fua)
            return verdict(NBD_DO_ERROR, NBD_EINVAL, 0);
        return verdict(NBD_DO_SUBMIT, 0, 0);
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES:
        if (r->flags & ~(r->type == NBD_CMD_TRIM ? fua : fua | NBD_CMD_FLAG_NO_HOLE))
            return verdict(NBD_DO_ERROR, NBD_EINVAL, 0);
        if (e->read_only)
            return verdict(NBD_DO_ERROR, NBD_EPERM, 0);
        if (!in_range(e, r->offset, r->length))
            return verdict(NBD_DO_ERROR, r->type == NBD_CMD_TRIM ? NBD_EINVAL : NBD_ENOSPC, 0);
        return verdict(NBD_DO_SUBMIT, 0, 0);
    default:
        return verdict(NBD_DO_ERROR, NBD_EINVAL, 0);
    }
}

uint32_t nbd_error_from_errno(int ret)
{
    /* Not a -errno (INT_MIN cannot even be negated): an I/O error. */
    if (ret > 0 || ret == INT_MIN)
        return NBD_EIO;
    switch (-ret) {
    case 0:
        return 0;
    case EPERM:
    case EROFS:
        return NBD_EPERM;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
        return NBD_EINVAL;
    case ENOSPC:
    case EFBIG:
    case EDQUOT:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

void nbd_encode_simple_reply(uint8_t out[16], uint32_t error, uint64_t handle)
{
    nbd_put32(out, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put32(out + 4, error);
    nbd_put64(out + 8, handle);
}

void nbd_encode_option_reply(uint8_t out[20], uint32_t option, uint32_t type, uint32_t len)
{
    nbd_put64(out, NBD_REP_MAGIC);
    nbd_put32(out + 8, option);
    nbd_put32(out + 12, type);
    nbd_put32(out + 16, len);
}
