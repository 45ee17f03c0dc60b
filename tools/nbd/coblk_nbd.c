/*
 * coblk-nbd: exports any coblk URI over NBD, on TCP or a unix socket, with
 * qemu-nbd's flags.  Written against include/coblk.h alone and linked with
 * libcoblk only: it is the proof that the C API is enough for a server.
 *
 * Threads: the main thread accepts connections; each client gets a thread
 * and one coblk queue of its own (the device has --shared queues), and that
 * thread waits in poll() on the client's socket, the queue's completion fd
 * and the shutdown pipe.  SIGINT/SIGTERM: stop taking requests, wait for
 * those in flight, send their replies, close, exit 0.
 */
#define _GNU_SOURCE
#include <coblk.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd_proto.h"

#define MAX_INFLIGHT 64 /* requests in flight per client */

struct server {
    struct coblk_device *dev;
    struct nbd_export exp;
    int shared;            /* clients at once (= queues) */
    int persistent;
    int stop_pipe[2];      /* readable once a stop was asked */
    pthread_mutex_t mu;
    int *slot_busy;        /* per queue */
    int active;            /* clients connected */
    int served;            /* clients that have come and gone */
    pthread_cond_t idle;
    unsigned long stats[7];  /* summed from clients as they leave */
};

/* Counters printed at exit, so a test can see what clients asked for. */
enum { ST_READ, ST_WRITE, ST_FUA, ST_FLUSH, ST_TRIM, ST_ZERO, ST_ERROR };

#define INBUF_SIZE (256 * 1024)

struct client {
    struct server *srv;
    int fd;
    /* Bytes received and not yet parsed: [in_start, in_end) of inbuf, so
     * that one recv() can bring several requests. */
    char *inbuf;
    size_t in_start, in_end;
    int slot;
    struct coblk_queue *q;
    int no_zeroes;
    unsigned long stats[7];
};

struct request {
    uint64_t handle;
    uint16_t type;
    uint32_t length;
    void *buf;
    int then_flush;  /* a flush runs after this request, and replies for it */
};

static volatile sig_atomic_t stop_signal;
static int stop_write_fd = -1;

static void on_signal(int sig)
{
    char c = 1;
    stop_signal = sig;
    if (write(stop_write_fd, &c, 1) < 0) {
        /* the pipe is full: a stop is already pending */
    }
}

static int write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Receives what the socket has (at least one byte, waiting for it unless
 * `nowait`) into the client's buffer. 0, -1 at end of stream or on an
 * error, -2 when `nowait` found nothing. */
static int fill(struct client *c, int nowait)
{
    ssize_t n;
    if (c->in_start == c->in_end)
        c->in_start = c->in_end = 0;
    if (c->in_end == INBUF_SIZE) {
        memmove(c->inbuf, c->inbuf + c->in_start, c->in_end - c->in_start);
        c->in_end -= c->in_start;
        c->in_start = 0;
    }
    if (!nowait) {
        /* Wait for the client or a stop, whichever comes first: a client
         * that sends half a request, or nothing, cannot hold up a shutdown. */
        struct pollfd p[2];
        p[0].fd = c->fd;
        p[0].events = POLLIN;
        p[1].fd = c->srv->stop_pipe[0];
        p[1].events = POLLIN;
        while (poll(p, 2, -1) < 0)
            if (errno != EINTR)
                return -1;
        if (p[1].revents && !p[0].revents)
            return -1;
    }
    do
        n = recv(c->fd, c->inbuf + c->in_end, INBUF_SIZE - c->in_end, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -2;
    if (n <= 0)
        return -1;
    c->in_end += (size_t)n;
    return 0;
}

/* Reads `len` bytes from the client, buffered bytes first. 0 or -1. */
static int client_read(struct client *c, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        size_t n = c->in_end - c->in_start;
        if (n == 0) {
            if (fill(c, 0) == -1)
                return -1;
            continue;
        }
        if (n > len)
            n = len;
        memcpy(p, c->inbuf + c->in_start, n);
        c->in_start += n;
        p += n;
        len -= n;
    }
    return 0;
}

/* Drops `len` bytes of the client's stream. 0 or -1. */
static int client_skip(struct client *c, uint64_t len)
{
    char buf[4096];
    while (len) {
        size_t n = len < sizeof buf ? (size_t)len : sizeof buf;
        if (client_read(c, buf, n) < 0)
            return -1;
        len -= n;
    }
    return 0;
}

static int send_option_reply(int fd, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
    uint8_t h[20];
    nbd_encode_option_reply(h, opt, type, len);
    if (write_full(fd, h, sizeof h) < 0)
        return -1;
    return len ? write_full(fd, data, len) : 0;
}

/* The replies to NBD_OPT_INFO/NBD_OPT_GO for a known export. */
static int send_export_info(struct client *c, uint32_t opt, int block_size)
{
    const struct nbd_export *e = &c->srv->exp;
    uint8_t info[14];
    nbd_put16(info, NBD_INFO_EXPORT);
    nbd_put64(info + 2, e->size);
    nbd_put16(info + 10, nbd_transmission_flags(e));
    if (send_option_reply(c->fd, opt, NBD_REP_INFO, info, 12) < 0)
        return -1;
    if (block_size) {
        /* Any alignment is served (coblk bounces); 4 KiB is the good one. */
        uint8_t bs[14];
        nbd_put16(bs, NBD_INFO_BLOCK_SIZE);
        nbd_put32(bs + 2, 1);
        nbd_put32(bs + 6, 4096);
        nbd_put32(bs + 10, NBD_MAX_PAYLOAD);
        if (send_option_reply(c->fd, opt, NBD_REP_INFO, bs, sizeof bs) < 0)
            return -1;
    }
    return send_option_reply(c->fd, opt, NBD_REP_ACK, NULL, 0);
}

/* The fixed newstyle handshake. Returns 1 to go on to transmission, 0 when
 * the client ended it, -1 on a protocol or socket error. */
static int handshake(struct client *c)
{
    const struct nbd_export *e = &c->srv->exp;
    uint8_t hello[18], cflags[4];
    nbd_put64(hello, NBD_MAGIC);
    nbd_put64(hello + 8, NBD_IHAVEOPT);
    nbd_put16(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    if (write_full(c->fd, hello, sizeof hello) < 0 || client_read(c, cflags, 4) < 0)
        return -1;
    if (nbd_get32(cflags) & ~(uint32_t)(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES))
        return -1;
    c->no_zeroes = (nbd_get32(cflags) & NBD_FLAG_NO_ZEROES) != 0;
    for (;;) {
        uint8_t h[NBD_OPTION_HEADER_SIZE];
        struct nbd_option o;
        uint8_t *data = NULL;
        int r = 0;
        if (client_read(c, h, sizeof h) < 0 || nbd_parse_option(h, &o) < 0)
            return -1;
        if (o.length > NBD_MAX_OPTION_DATA)
            return -1;
        if (o.length) {
            data = malloc(o.length);
            if (!data || client_read(c, data, o.length) < 0) {
                free(data);
                return -1;
            }
        }
        switch (o.option) {
        case NBD_OPT_EXPORT_NAME: {
            uint8_t reply[10 + 124];
            size_t n = c->no_zeroes ? 10 : sizeof reply;
            if (!nbd_name_matches(e, data, o.length)) {
                r = -1; /* the protocol has no error reply here: close */
                break;
            }
            memset(reply, 0, sizeof reply);
            nbd_put64(reply, e->size);
            nbd_put16(reply + 8, nbd_transmission_flags(e));
            r = write_full(c->fd, reply, n) < 0 ? -1 : 1;
            break;
        }
        case NBD_OPT_ABORT:
            send_option_reply(c->fd, o.option, NBD_REP_ACK, NULL, 0);
            r = 0;
            break;
        case NBD_OPT_LIST:
            if (o.length) {
                r = send_option_reply(c->fd, o.option, NBD_REP_ERR_INVALID, NULL, 0) < 0 ? -1 : 2;
            } else {
                uint32_t n = (uint32_t)strlen(e->name);
                uint8_t *d = malloc(4 + n);
                if (!d) {
                    r = -1;
                    break;
                }
                nbd_put32(d, n);
                memcpy(d + 4, e->name, n);
                r = send_option_reply(c->fd, o.option, NBD_REP_SERVER, d, 4 + n) < 0 ||
                            send_option_reply(c->fd, o.option, NBD_REP_ACK, NULL, 0) < 0
                        ? -1
                        : 2;
                free(d);
            }
            break;
        case NBD_OPT_INFO:
        case NBD_OPT_GO: {
            const uint8_t *name = NULL;
            uint32_t name_len = 0;
            int bs = 0;
            uint32_t err = nbd_parse_info_request(data, o.length, &name, &name_len, &bs);
            if (!err && !nbd_name_matches(e, name, name_len))
                err = NBD_REP_ERR_UNKNOWN;
            if (err)
                r = send_option_reply(c->fd, o.option, err, NULL, 0) < 0 ? -1 : 2;
            else if (send_export_info(c, o.option, bs) < 0)
                r = -1;
            else
                r = o.option == NBD_OPT_GO ? 1 : 2;
            break;
        }
        default: /* STARTTLS, STRUCTURED_REPLY, anything newer */
            r = send_option_reply(c->fd, o.option, NBD_REP_ERR_UNSUP, NULL, 0) < 0 ? -1 : 2;
            break;
        }
        free(data);
        if (r != 2)
            return r;
    }
}

/* Sends a simple reply; `more`: another reply follows at once (MSG_MORE
 * lets the kernel put them in one segment). */
static int send_reply(struct client *c, uint32_t error, uint64_t handle, const void *data,
                      uint32_t len, int more)
{
    uint8_t h[16];
    struct iovec iov[2];
    struct msghdr m;
    size_t total = sizeof h + (error ? 0 : len);
    nbd_encode_simple_reply(h, error, handle);
    iov[0].iov_base = h;
    iov[0].iov_len = sizeof h;
    iov[1].iov_base = (void *)data;
    iov[1].iov_len = error ? 0 : len;
    memset(&m, 0, sizeof m);
    m.msg_iov = iov;
    m.msg_iovlen = 2;
    while (total) {
        ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        total -= (size_t)n;
        while (n > 0 && m.msg_iovlen) {
            if ((size_t)n >= m.msg_iov[0].iov_len) {
                n -= (ssize_t)m.msg_iov[0].iov_len;
                m.msg_iov++;
                m.msg_iovlen--;
            } else {
                m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + n;
                m.msg_iov[0].iov_len -= (size_t)n;
                n = 0;
            }
        }
    }
    return 0;
}

/* Collects completions and replies to them. Returns -1 when a reply could
 * not be sent. */
static int reap(struct client *c, int min)
{
    struct coblk_completion done[MAX_INFLIGHT];
    int i, n, failed = 0;
    n = coblk_queue_do_io(c->q, done, min, MAX_INFLIGHT, NULL);
    if (n < 0) {
        fprintf(stderr, "coblk-nbd: %s\n", coblk_get_error_msg());
        return -1;
    }
    for (i = 0; i < n; i++) {
        struct request *r = done[i].user_data;
        uint32_t err = nbd_error_from_errno(done[i].ret);
        if (err)
            c->stats[ST_ERROR]++;
        if (r->then_flush && done[i].ret == 0) {
            r->then_flush = 0;
            if (coblk_queue_flush(c->q, r, 0) == 0)
                continue;
            err = NBD_EIO;
        }
        if (!failed && send_reply(c, err, r->handle, r->buf,
                                  r->type == NBD_CMD_READ ? r->length : 0, i + 1 < n) < 0)
            failed = 1;
        free(r->buf);
        free(r);
    }
    return failed ? -1 : 0;
}

/* Reads one request (and its payload) and starts it. Returns 1 to go on,
 * 0 on NBD_CMD_DISC or end of stream, -1 on an error that ends the
 * connection. */
static int take_request(struct client *c)
{
    uint8_t h[NBD_REQUEST_SIZE];
    struct nbd_request rq;
    struct nbd_verdict v;
    struct request *r;
    uint32_t flags = 0;
    int ret = 0;
    if (client_read(c, h, sizeof h) < 0)
        return 0;
    if (nbd_parse_request(h, &rq) < 0)
        return -1;
    v = nbd_check_request(&rq, &c->srv->exp);
    if (v.action == NBD_DO_DISCONNECT)
        return 0;
    if (v.action == NBD_DO_FATAL)
        return -1;
    if (v.action == NBD_DO_ERROR) {
        c->stats[ST_ERROR]++;
        if (client_skip(c, v.discard) < 0)
            return -1;
        return send_reply(c, v.error, rq.handle, NULL, 0, 0) < 0 ? -1 : 1;
    }
    r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    r->handle = rq.handle;
    r->type = rq.type;
    r->length = rq.length;
    if ((rq.type == NBD_CMD_READ || rq.type == NBD_CMD_WRITE) && rq.length &&
        posix_memalign(&r->buf, 4096, rq.length) != 0) {
        free(r);
        return -1;
    }
    if (rq.type == NBD_CMD_WRITE && client_read(c, r->buf, rq.length) < 0) {
        free(r->buf);
        free(r);
        return 0;
    }
    if (rq.flags & NBD_CMD_FLAG_FUA)
        flags |= COBLK_REQ_FUA;
    switch (rq.type) {
    case NBD_CMD_READ:
        ret = coblk_queue_read(c->q, rq.offset, r->buf, rq.length, r, 0);
        break;
    case NBD_CMD_WRITE:
        ret = coblk_queue_write(c->q, rq.offset, r->buf, rq.length, r, flags);
        break;
    case NBD_CMD_FLUSH:
        ret = coblk_queue_flush(c->q, r, 0);
        break;
    case NBD_CMD_TRIM:
        ret = coblk_queue_discard(c->q, rq.offset, rq.length, r, 0);
        /* TRIM with FUA: a flush follows before the reply (see reap). */
        r->then_flush = (flags & COBLK_REQ_FUA) != 0;
        break;
    case NBD_CMD_WRITE_ZEROES:
        if (rq.flags & NBD_CMD_FLAG_NO_HOLE)
            flags |= COBLK_REQ_NO_UNMAP;
        ret = coblk_queue_write_zeroes(c->q, rq.offset, rq.length, r, flags);
        break;
    }
    if (ret == 0) {
        static const int kind[] = {ST_READ, ST_WRITE, 0, ST_FLUSH, ST_TRIM, 0, ST_ZERO};
        c->stats[kind[rq.type]]++;
        if (flags & COBLK_REQ_FUA)
            c->stats[ST_FUA]++;
    }
    if (ret < 0) {
        /* Refused before it started (checked above, so rare): reply now. */
        int s = send_reply(c, nbd_error_from_errno(ret), rq.handle, NULL, 0, 0);
        free(r->buf);
        free(r);
        return s < 0 ? -1 : 1;
    }
    return 1;
}

/* Serves one client on its own queue until it leaves or a stop is asked;
 * always waits for the requests in flight before closing. */
static void serve(struct client *c)
{
    int cfd = coblk_queue_get_fd(c->q);
    int reading = 1, eof = 0, r = handshake(c);
    if (r <= 0)
        return;
    while (reading) {
        struct pollfd p[3];
        int busy = coblk_queue_in_flight(c->q) >= MAX_INFLIGHT;
        int whole = c->in_end - c->in_start >= NBD_REQUEST_SIZE;
        p[0].fd = busy || eof ? -1 : c->fd;
        p[0].events = POLLIN;
        p[0].revents = 0;
        p[1].fd = cfd;
        p[1].events = POLLIN;
        p[2].fd = c->srv->stop_pipe[0];
        p[2].events = POLLIN;
        /* Whole requests already buffered: look, but do not wait. */
        if (poll(p, 3, whole && !busy ? 0 : -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[2].revents)
            break;  /* stop: finish what is in flight */
        if (p[0].revents && fill(c, 1) == -1)
            eof = 1;
        /* Every whole request received, as far as the in-flight limit allows. */
        while (reading && c->in_end - c->in_start >= NBD_REQUEST_SIZE &&
               coblk_queue_in_flight(c->q) < MAX_INFLIGHT) {
            r = take_request(c);
            if (r <= 0)
                reading = 0;
        }
        if (eof && c->in_end - c->in_start < NBD_REQUEST_SIZE)
            reading = 0;
        if (reap(c, 0) < 0)
            break;
    }
    /* Drain: every started request completes and is answered (or dropped
     * when the client is gone). */
    while (coblk_queue_in_flight(c->q) > 0)
        if (reap(c, 1) < 0) {
            /* The client is gone: still wait for the requests. */
            coblk_queue_drain(c->q);
            reap(c, 0);
            break;
        }
}

static void *client_thread(void *arg)
{
    struct client *c = arg;
    struct server *s = c->srv;
    c->inbuf = malloc(INBUF_SIZE);
    if (c->inbuf)
        serve(c);
    free(c->inbuf);
    close(c->fd);
    pthread_mutex_lock(&s->mu);
    s->slot_busy[c->slot] = 0;
    s->active--;
    s->served++;
    for (int i = 0; i < 7; i++)
        s->stats[i] += c->stats[i];
    /* Without --persistent the server ends with its last client. */
    if (!s->persistent && s->active == 0 && write(s->stop_pipe[1], "", 1) < 0) {
        /* the pipe is full: a stop is already pending */
    }
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    free(c);
    return NULL;
}

static int listen_tcp(const char *bind_addr, const char *port)
{
    struct addrinfo hints, *res, *ai;
    int fd = -1, one = 1, r;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    r = getaddrinfo(bind_addr, port, &hints, &res);
    if (r != 0) {
        fprintf(stderr, "coblk-nbd: cannot resolve %s:%s: %s\n", bind_addr, port,
                gai_strerror(r));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "coblk-nbd: cannot listen on %s:%s: %s\n", bind_addr, port,
                strerror(errno));
    return fd;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un a;
    int fd;
    if (strlen(path) >= sizeof a.sun_path) {
        fprintf(stderr, "coblk-nbd: socket path too long: %s\n", path);
        return -1;
    }
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0) {
        fprintf(stderr, "coblk-nbd: cannot listen on %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: coblk-nbd [OPTIONS] URI\n"
            "Exports a coblk device (any coblk URI) over NBD.\n\n"
            "  -b, --bind=ADDR        address to listen on (default 0.0.0.0)\n"
            "  -p, --port=PORT        TCP port (default 10809)\n"
            "  -k, --socket=PATH      listen on a unix socket instead of TCP\n"
            "  -x, --export-name=NAME export name (default \"\")\n"
            "  -r, --read-only        export read-only\n"
            "  -f, --format=FORMAT    image format (raw, or a protocol name; default: probe)\n"
            "  -t, --persistent       keep serving after the last client leaves\n"
            "  -e, --shared=N         serve up to N clients at once (default 1)\n"
            "      --cache=MODE       none (O_DIRECT) or writeback\n"
            "  -h, --help             this text\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"bind", required_argument, NULL, 'b'},
        {"port", required_argument, NULL, 'p'},
        {"socket", required_argument, NULL, 'k'},
        {"export-name", required_argument, NULL, 'x'},
        {"read-only", no_argument, NULL, 'r'},
        {"format", required_argument, NULL, 'f'},
        {"persistent", no_argument, NULL, 't'},
        {"shared", required_argument, NULL, 'e'},
        {"cache", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *bind_addr = "0.0.0.0", *port = "10809", *sock = NULL, *format = NULL;
    const char *cache = NULL;
    struct server s;
    struct sigaction sa;
    int opt, lfd, read_only = 0, rc = 0, accept_starved = 0;
    uint64_t size = 0;
    bool ro = false;

    memset(&s, 0, sizeof s);
    s.shared = 1;
    s.exp.name = "";
    while ((opt = getopt_long(argc, argv, "b:p:k:x:rf:te:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b': bind_addr = optarg; break;
        case 'p': port = optarg; break;
        case 'k': sock = optarg; break;
        case 'x': s.exp.name = optarg; break;
        case 'r': read_only = 1; break;
        case 'f': format = optarg; break;
        case 't': s.persistent = 1; break;
        case 'C': cache = optarg; break;
        case 'e': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 1024) {
                fprintf(stderr, "coblk-nbd: --shared takes 1..1024, not '%s'\n", optarg);
                return 2;
            }
            s.shared = (int)n;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    {
        char *end;
        long p = strtol(port, &end, 10);
        if (*end || p < 0 || p > 65535) {
            fprintf(stderr, "coblk-nbd: invalid port '%s'\n", port);
            return 2;
        }
    }

    if (coblk_create(argv[optind], &s.dev) < 0 ||
        (format && coblk_set_str(s.dev, "format", format) < 0) ||
        (cache && coblk_set_str(s.dev, "cache", cache) < 0) ||
        coblk_set_bool(s.dev, "read-only", read_only) < 0 ||
        coblk_set_int(s.dev, "num-queues", s.shared) < 0 || coblk_start(s.dev) < 0) {
        fprintf(stderr, "coblk-nbd: %s\n", coblk_get_error_msg());
        coblk_destroy(s.dev);
        return 1;
    }
    coblk_get_uint64(s.dev, "size", &size);
    coblk_get_bool(s.dev, "read-only", &ro);
    s.exp.size = size;
    s.exp.read_only = ro;

    if (pipe2(s.stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        perror("coblk-nbd: pipe");
        return 1;
    }
    stop_write_fd = s.stop_pipe[1];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    lfd = sock ? listen_unix(sock) : listen_tcp(bind_addr, port);
    if (lfd < 0) {
        coblk_destroy(s.dev);
        return 1;
    }
    fprintf(stderr, "coblk-nbd: serving %s (%llu bytes%s) on %s%s%s\n", argv[optind],
            (unsigned long long)size, ro ? ", read-only" : "", sock ? sock : bind_addr,
            sock ? "" : ":", sock ? "" : port);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.idle, NULL);
    s.slot_busy = calloc((size_t)s.shared, sizeof *s.slot_busy);
    if (!s.slot_busy) {
        fprintf(stderr, "coblk-nbd: out of memory\n");
        close(lfd);
        coblk_destroy(s.dev);
        return 1;
    }

    for (;;) {
        struct pollfd p[2];
        int cfd, slot = -1, i;
        p[0].fd = lfd;
        p[0].events = POLLIN;
        p[1].fd = s.stop_pipe[0];
        p[1].events = POLLIN;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0) {
            /* Out of descriptors or memory: the connection stays queued and
             * the socket stays readable, so wait a little (or for the stop
             * pipe) instead of spinning; say so once per episode. */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                if (!accept_starved)
                    fprintf(stderr, "coblk-nbd: cannot accept a client: %s (retrying)\n",
                            strerror(errno));
                accept_starved = 1;
                poll(&p[1], 1, 100);
            }
            continue;
        }
        accept_starved = 0;
        pthread_mutex_lock(&s.mu);
        for (i = 0; i < s.shared; i++)
            if (!s.slot_busy[i]) {
                slot = i;
                break;
            }
        if (slot >= 0) {
            s.slot_busy[slot] = 1;
            s.active++;
        }
        pthread_mutex_unlock(&s.mu);
        if (slot < 0) {
            close(cfd); /* more clients than --shared allows */
            continue;
        }
        {
            struct client *c = calloc(1, sizeof *c);
            pthread_t t;
            int one = 1;
            if (!c) {
                fprintf(stderr, "coblk-nbd: no memory for a client; closing it\n");
                close(cfd);
                pthread_mutex_lock(&s.mu);
                s.slot_busy[slot] = 0;
                s.active--;
                pthread_mutex_unlock(&s.mu);
                continue;
            }
            /* A client that stops reading its replies fails a send after
             * 30 s instead of holding the server forever. */
            struct timeval send_timeout = {30, 0};
            setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
            c->srv = &s;
            c->fd = cfd;
            c->slot = slot;
            c->q = coblk_get_queue(s.dev, slot);
            if (pthread_create(&t, NULL, client_thread, c) != 0) {
                close(cfd);
                free(c);
                pthread_mutex_lock(&s.mu);
                s.slot_busy[slot] = 0;
                s.active--;
                pthread_mutex_unlock(&s.mu);
                continue;
            }
            pthread_detach(t);
        }
    }
    close(lfd);
    /* Wait for every client thread to drain and leave. */
    pthread_mutex_lock(&s.mu);
    while (s.active > 0)
        pthread_cond_wait(&s.idle, &s.mu);
    pthread_mutex_unlock(&s.mu);
    if (coblk_close(s.dev) < 0) {
        fprintf(stderr, "coblk-nbd: %s\n", coblk_get_error_msg());
        rc = 1;
    }
    coblk_destroy(s.dev);
    if (sock)
        unlink(sock);
    fprintf(stderr, "coblk-nbd: %d clients served: %lu reads, %lu writes (%lu with FUA), "
            "%lu flushes, %lu trims, %lu write-zeroes, %lu errors\n", s.served,
            s.stats[ST_READ], s.stats[ST_WRITE], s.stats[ST_FUA], s.stats[ST_FLUSH],
            s.stats[ST_TRIM], s.stats[ST_ZERO], s.stats[ST_ERROR]);
    free(s.slot_busy);
    return rc;
}
