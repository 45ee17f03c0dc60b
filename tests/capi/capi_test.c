/*
 * Tests of every call of include/coblk.h, correct use and misuse, written
 * in C99 against the public header and libcoblk only.  What a request did
 * to a file is checked with plain pread/pwrite on the file, not through
 * coblk.  Usage: capi-test [NAME...] (no name: every test).
 */
#define _GNU_SOURCE
#include <coblk.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;
static char scratch_dir[256];

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__,    \
                    __LINE__, #cond, coblk_get_error_msg());                         \
            failures++;                                                              \
        }                                                                            \
    } while (0)

/* The call failed with `err` and left a message containing `word`. */
#define CHECK_ERR(call, err, word)                                                   \
    do {                                                                             \
        int r_ = (call);                                                             \
        if (r_ != -(err) || !strstr(coblk_get_error_msg(), (word))) {                \
            fprintf(stderr, "%s:%d: %s returned %d (want %d) with message '%s' "      \
                    "(want it to mention '%s')\n", __FILE__, __LINE__, #call, r_,    \
                    -(err), coblk_get_error_msg(), (word));                          \
            failures++;                                                              \
        }                                                                            \
    } while (0)

#define MiB (1024u * 1024u)

/* A new scratch file of `size` bytes filled with `fill`; returns its path. */
static const char *scratch_file(const char *name, size_t size, int fill)
{
    static char path[512];
    char *buf = malloc(size);
    int fd;
    snprintf(path, sizeof path, "%s/%s", scratch_dir, name);
    fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    memset(buf, fill, size);
    if (fd < 0 || pwrite(fd, buf, size, 0) != (ssize_t)size) {
        perror(path);
        exit(2);
    }
    close(fd);
    free(buf);
    return path;
}

static void fill_pattern(unsigned char *buf, size_t len, unsigned seed)
{
    size_t i;
    for (i = 0; i < len; i++)
        buf[i] = (unsigned char)((i * 31u + seed * 7u + (i >> 9)) & 0xff);
}

/* Reads the file with plain pread: what coblk really wrote. */
static int file_equals(const char *path, uint64_t off, const void *want, size_t len)
{
    char *buf = malloc(len);
    int fd = open(path, O_RDONLY);
    int same = fd >= 0 && pread(fd, buf, len, (off_t)off) == (ssize_t)len &&
               memcmp(buf, want, len) == 0;
    if (fd >= 0)
        close(fd);
    free(buf);
    return same;
}

/* Opens `uri` with `cache` ("" to leave it) and starts it; exits on failure. */
static struct coblk_device *open_started(const char *uri, const char *cache, int queues)
{
    struct coblk_device *dev = NULL;
    if (coblk_create(uri, &dev) != 0 || (cache[0] && coblk_set_str(dev, "cache", cache) != 0) ||
        coblk_set_int(dev, "num-queues", queues) != 0 || coblk_start(dev) != 0) {
        fprintf(stderr, "cannot open %s: %s\n", uri, coblk_get_error_msg());
        exit(2);
    }
    return dev;
}

/* Waits for exactly one completion and returns its result. */
static int wait_one(struct coblk_queue *q, void *want_user_data)
{
    struct coblk_completion c;
    int n = coblk_queue_do_io(q, &c, 1, 1, NULL);
    if (n != 1) {
        fprintf(stderr, "do_io returned %d: %s\n", n, coblk_get_error_msg());
        failures++;
        return -1000;
    }
    if (c.user_data != want_user_data) {
        fprintf(stderr, "completion carries user_data %p, want %p\n", c.user_data,
                want_user_data);
        failures++;
    }
    return c.ret;
}

static void test_version_and_message(void)
{
    CHECK(strcmp(coblk_version(), COBLK_EXPECTED_VERSION) == 0);
    CHECK(coblk_get_error_msg() != NULL);
}

static void test_create_misuse(void)
{
    struct coblk_device *dev = (struct coblk_device *)1;
    CHECK_ERR(coblk_create(NULL, &dev), EINVAL, "NULL");
    CHECK(dev == NULL);
    CHECK_ERR(coblk_create("null://", NULL), EINVAL, "devp");
    CHECK_ERR(coblk_create("gluster://", &dev), EINVAL, "gluster");
    CHECK(dev == NULL);
    CHECK_ERR(coblk_create("null://?bogus=1", &dev), EINVAL, "bogus");
    /* NULL handles everywhere. */
    CHECK_ERR(coblk_set_str(NULL, "format", "raw"), EINVAL, "NULL");
    CHECK_ERR(coblk_set_bool(NULL, "read-only", true), EINVAL, "NULL");
    CHECK_ERR(coblk_set_int(NULL, "num-queues", 1), EINVAL, "NULL");
    {
        uint64_t v;
        bool b;
        char *s;
        CHECK_ERR(coblk_get_uint64(NULL, "size", &v), EINVAL, "NULL");
        CHECK_ERR(coblk_get_bool(NULL, "read-only", &b), EINVAL, "NULL");
        CHECK_ERR(coblk_get_str(NULL, "uri", &s), EINVAL, "NULL");
    }
    CHECK_ERR(coblk_start(NULL), EINVAL, "NULL");
    CHECK(coblk_get_queue(NULL, 0) == NULL);
    CHECK_ERR(coblk_resize(NULL, 1), EINVAL, "NULL");
    CHECK_ERR(coblk_snapshot_create(NULL, "s"), EINVAL, "NULL");
    CHECK_ERR(coblk_close(NULL), EINVAL, "NULL");
    coblk_destroy(NULL);
    CHECK_ERR(coblk_queue_read(NULL, 0, NULL, 0, NULL, 0), EINVAL, "NULL");
    CHECK_ERR(coblk_queue_readv(NULL, 0, NULL, 0, NULL, 0), EINVAL, "NULL");
    CHECK_ERR(coblk_queue_write(NULL, 0, NULL, 0, NULL, 0), EINVAL, "NULL");
    CHECK_ERR(coblk_queue_writev(NULL, 0, NULL, 0, NULL, 0), EINVAL, "NULL");
    CHECK_ERR(coblk_queue_flush(NULL, NULL, 0), EINVAL, "NULL");
    CHECK_ERR(coblk_queue_discard(NULL, 0, 0, NULL, 0), EINVAL, "NULL");
    CHECK_ERR(coblk_queue_write_zeroes(NULL, 0, 0, NULL, 0), EINVAL, "NULL");
    CHECK_ERR(coblk_queue_do_io(NULL, NULL, 0, 0, NULL), EINVAL, "NULL");
    CHECK_ERR(coblk_queue_get_fd(NULL), EINVAL, "NULL");
    CHECK_ERR(coblk_queue_set_polling(NULL, true), EINVAL, "NULL");
    CHECK_ERR(coblk_queue_in_flight(NULL), EINVAL, "NULL");
    CHECK_ERR(coblk_queue_drain(NULL), EINVAL, "NULL");
}

static void test_properties(void)
{
    struct coblk_device *dev = NULL;
    uint64_t v = 0;
    bool b = true;
    char *s = NULL;
    CHECK(coblk_create("null://?size=8M", &dev) == 0);
    /* Before start: no queue, nothing to read. */
    CHECK(coblk_get_queue(dev, 0) == NULL);
    CHECK(strstr(coblk_get_error_msg(), "not started") != NULL);
    CHECK_ERR(coblk_get_uint64(dev, "size", &v), ENOTCONN, "not started");
    /* Wrong types, unknown names, bad values. */
    CHECK_ERR(coblk_set_int(dev, "read-only", 1), EINVAL, "not an int");
    CHECK_ERR(coblk_set_bool(dev, "num-queues", true), EINVAL, "not a bool");
    CHECK_ERR(coblk_set_bool(dev, "no-such", true), ENOENT, "no-such");
    CHECK_ERR(coblk_set_int(dev, "num-queues", 0), EINVAL, "num-queues");
    CHECK_ERR(coblk_set_str(dev, "cache", "sometimes"), EINVAL, "sometimes");
    CHECK_ERR(coblk_set_str(dev, "read-only", "maybe"), EINVAL, "maybe");
    CHECK_ERR(coblk_set_str(dev, "num-queues", "2"), EINVAL, "coblk_set_int");
    CHECK_ERR(coblk_set_str(dev, NULL, "x"), EINVAL, "NULL");
    CHECK(coblk_set_str(dev, "latency-ns", "0") == 0); /* a backend option */
    CHECK(coblk_set_str(dev, "read-only", "off") == 0);
    CHECK(coblk_set_int(dev, "num-queues", 2) == 0);
    CHECK(coblk_start(dev) == 0);
    CHECK_ERR(coblk_start(dev), EBUSY, "already started");
    CHECK_ERR(coblk_set_bool(dev, "read-only", true), EBUSY, "already started");
    CHECK(coblk_get_uint64(dev, "size", &v) == 0 && v == 8 * MiB);
    CHECK(coblk_get_uint64(dev, "num-queues", &v) == 0 && v == 2);
    CHECK(coblk_get_uint64(dev, "request-alignment", &v) == 0 && v >= 1);
    CHECK(coblk_get_uint64(dev, "mem-alignment", &v) == 0 && v >= 1);
    CHECK(coblk_get_uint64(dev, "optimal-transfer", &v) == 0);
    CHECK(coblk_get_uint64(dev, "max-transfer", &v) == 0);
    CHECK_ERR(coblk_get_uint64(dev, "colour", &v), ENOENT, "colour");
    CHECK_ERR(coblk_get_uint64(dev, "size", NULL), EINVAL, "NULL");
    CHECK(coblk_get_bool(dev, "read-only", &b) == 0 && !b);
    CHECK(coblk_get_bool(dev, "can-discard", &b) == 0);
    CHECK(coblk_get_bool(dev, "can-write-zeroes", &b) == 0);
    CHECK(coblk_get_bool(dev, "native-fua", &b) == 0);
    CHECK(coblk_get_bool(dev, "can-snapshot", &b) == 0 && !b);
    CHECK_ERR(coblk_get_bool(dev, "size", &b), ENOENT, "size");
    CHECK(coblk_get_str(dev, "uri", &s) == 0 && strcmp(s, "null://?size=8M") == 0);
    free(s);
    CHECK(coblk_get_str(dev, "protocol", &s) == 0 && strcmp(s, "null") == 0);
    free(s);
    CHECK(coblk_get_str(dev, "format", &s) == 0 && strcmp(s, "raw") == 0);
    free(s);
    CHECK_ERR(coblk_get_str(dev, "nope", &s), ENOENT, "nope");
    CHECK(coblk_get_queue(dev, 1) != NULL);
    CHECK(coblk_get_queue(dev, 2) == NULL);
    CHECK(strstr(coblk_get_error_msg(), "no queue 2") != NULL);
    CHECK(coblk_get_queue(dev, -1) == NULL);
    CHECK_ERR(coblk_snapshot_create(dev, "snap1"), ENOTSUP, "snapshots");
    CHECK_ERR(coblk_snapshot_create(dev, ""), EINVAL, "name");
    coblk_destroy(dev);
}

static void test_start_errors(void)
{
    struct coblk_device *dev = NULL;
    char path[512];
    CHECK(coblk_create("null://", &dev) == 0);
    CHECK(coblk_set_str(dev, "colour", "blue") == 0);
    CHECK_ERR(coblk_start(dev), EINVAL, "colour");
    CHECK(coblk_get_queue(dev, 0) == NULL);
    coblk_destroy(dev);

    snprintf(path, sizeof path, "%s/does-not-exist.img", scratch_dir);
    CHECK(coblk_create(path, &dev) == 0);
    CHECK_ERR(coblk_start(dev), ENOENT, "does-not-exist.img");
    coblk_destroy(dev);

    CHECK(coblk_create("memory://", &dev) == 0);
    CHECK(coblk_set_int(dev, "num-queues", 2) == 0);
    CHECK_ERR(coblk_start(dev), EINVAL, "unnamed memory");
    coblk_destroy(dev);
}

/* Reads, writes, flush, FUA, discard, write-zeroes on a file, checked with
 * plain pread on the file. */
static void io_on_file(const char *cache)
{
    const char *p = scratch_file("io.img", 4 * MiB, 0x5a);
    char path[512];
    struct coblk_device *dev;
    struct coblk_queue *q;
    unsigned char *a, *b, *zero;
    struct iovec iov[3];
    uint64_t size = 0;
    int tag;

    strcpy(path, p);
    dev = open_started(path, cache, 1);
    q = coblk_get_queue(dev, 0);
    CHECK(q != NULL);
    CHECK(coblk_get_uint64(dev, "size", &size) == 0 && size == 4 * MiB);
    if (posix_memalign((void **)&a, 4096, 1 * MiB) || posix_memalign((void **)&b, 4096, 1 * MiB))
        exit(2);
    zero = calloc(1, 1 * MiB);

    fill_pattern(a, 65536, 1);
    CHECK(coblk_queue_write(q, 8192, a, 65536, &tag, 0) == 0);
    CHECK(wait_one(q, &tag) == 0);
    CHECK(file_equals(path, 8192, a, 65536));

    /* readv into three pieces, then compare. */
    memset(b, 0, 65536);
    iov[0].iov_base = b;
    iov[0].iov_len = 4096;
    iov[1].iov_base = b + 4096;
    iov[1].iov_len = 8192;
    iov[2].iov_base = b + 12288;
    iov[2].iov_len = 65536 - 12288;
    CHECK(coblk_queue_readv(q, 8192, iov, 3, &tag, 0) == 0);
    CHECK(wait_one(q, &tag) == 0);
    CHECK(memcmp(a, b, 65536) == 0);

    /* writev with FUA, then a flush. */
    fill_pattern(a, 3 * 4096, 2);
    iov[0].iov_base = a;
    iov[0].iov_len = 4096;
    iov[1].iov_base = a + 4096;
    iov[1].iov_len = 8192;
    CHECK(coblk_queue_writev(q, 1 * MiB, iov, 2, &tag, COBLK_REQ_FUA) == 0);
    CHECK(wait_one(q, &tag) == 0);
    CHECK(file_equals(path, 1 * MiB, a, 3 * 4096));
    CHECK(coblk_queue_flush(q, &tag, 0) == 0);
    CHECK(wait_one(q, &tag) == 0);

    /* write-zeroes (both flags) and discard. */
    CHECK(coblk_queue_write_zeroes(q, 8192, 16384, &tag, COBLK_REQ_NO_UNMAP | COBLK_REQ_FUA) == 0);
    CHECK(wait_one(q, &tag) == 0);
    CHECK(file_equals(path, 8192, zero, 16384));
    CHECK(coblk_queue_write_zeroes(q, 2 * MiB, 1 * MiB, &tag, 0) == 0);
    CHECK(wait_one(q, &tag) == 0);
    CHECK(file_equals(path, 2 * MiB, zero, 1 * MiB));
    CHECK(coblk_queue_discard(q, 3 * MiB, 1 * MiB, &tag, 0) == 0);
    CHECK(wait_one(q, &tag) == 0);

    /* Several requests in flight, collected in one batch. */
    {
        struct coblk_completion c[8];
        int i, n = 0, seen = 0;
        for (i = 0; i < 8; i++) {
            fill_pattern(a + i * 4096, 4096, 10 + (unsigned)i);
            CHECK(coblk_queue_write(q, (uint64_t)i * 4096, a + i * 4096, 4096,
                                    (void *)(intptr_t)(i + 1), 0) == 0);
        }
        while (n < 8) {
            int r = coblk_queue_do_io(q, c + n, 1, 8 - n, NULL);
            CHECK(r >= 1);
            if (r < 1)
                break;
            n += r;
        }
        for (i = 0; i < n; i++) {
            CHECK(c[i].ret == 0);
            seen |= 1 << ((int)(intptr_t)c[i].user_data - 1);
        }
        CHECK(seen == 0xff);
        CHECK(file_equals(path, 0, a, 8 * 4096));
        CHECK(coblk_queue_in_flight(q) == 0);
    }

    /* Misaligned buffer, offset and length: accepted and bounced under
     * cache=none, with the data intact. */
    fill_pattern(a, 5000, 3);
    CHECK(coblk_queue_write(q, 777, a + 1, 4999, &tag, 0) == 0);
    CHECK(wait_one(q, &tag) == 0);
    CHECK(file_equals(path, 777, a + 1, 4999));
    memset(b, 0, 8192);
    CHECK(coblk_queue_read(q, 777, b + 3, 4999, &tag, 0) == 0);
    CHECK(wait_one(q, &tag) == 0);
    CHECK(memcmp(b + 3, a + 1, 4999) == 0);

    /* Ranges past the end, and overflowing ones. */
    CHECK_ERR(coblk_queue_read(q, size - 512, b, 1024, &tag, 0), EINVAL, "past the end");
    CHECK_ERR(coblk_queue_write(q, size + 1, a, 1, &tag, 0), EINVAL, "past the end");
    CHECK_ERR(coblk_queue_read(q, UINT64_MAX, b, 2, &tag, 0), EINVAL, "past the end");
    CHECK_ERR(coblk_queue_discard(q, size - 1, 2, &tag, 0), EINVAL, "past the end");
    CHECK_ERR(coblk_queue_write_zeroes(q, 1, UINT64_MAX, &tag, 0), EINVAL, "past the end");
    CHECK(coblk_queue_read(q, size - 512, b, 512, &tag, 0) == 0); /* the last sector is fine */
    CHECK(wait_one(q, &tag) == 0);
    CHECK(coblk_queue_read(q, size, b, 0, &tag, 0) == 0); /* empty at the end */
    CHECK(wait_one(q, &tag) == 0);

    /* Bad iovecs and flags. */
    CHECK_ERR(coblk_queue_readv(q, 0, NULL, 2, &tag, 0), EINVAL, "iovec");
    CHECK_ERR(coblk_queue_readv(q, 0, iov, -1, &tag, 0), EINVAL, "iovec");
    iov[0].iov_base = NULL;
    iov[0].iov_len = 10;
    CHECK_ERR(coblk_queue_writev(q, 0, iov, 1, &tag, 0), EINVAL, "NULL buffer");
    CHECK_ERR(coblk_queue_read(q, 0, b, 512, &tag, COBLK_REQ_FUA), EINVAL, "flags");
    CHECK_ERR(coblk_queue_discard(q, 0, 512, &tag, COBLK_REQ_NO_UNMAP), EINVAL, "flags");
    CHECK_ERR(coblk_queue_write(q, 0, a, 512, &tag, 0x80), EINVAL, "flags");
    CHECK(coblk_queue_in_flight(q) == 0);

    /* do_io misuse. */
    {
        struct coblk_completion c;
        struct timespec bad = {0, 2000000000L};
        CHECK_ERR(coblk_queue_do_io(q, &c, 2, 1, NULL), EINVAL, "bad counts");
        CHECK_ERR(coblk_queue_do_io(q, NULL, 0, 1, NULL), EINVAL, "bad counts");
        CHECK_ERR(coblk_queue_do_io(q, &c, -1, 1, NULL), EINVAL, "bad counts");
        CHECK_ERR(coblk_queue_do_io(q, &c, 0, 1, &bad), EINVAL, "timeout");
        /* Nothing in flight: min is not waited for. */
        CHECK(coblk_queue_do_io(q, &c, 1, 1, NULL) == 0);
    }

    coblk_destroy(dev);
    free(a);
    free(b);
    free(zero);
}

static void test_io_writeback(void) { io_on_file("writeback"); }
static void test_io_cache_none(void) { io_on_file("none"); }

static void test_read_only(void)
{
    const char *path = scratch_file("ro.img", 1 * MiB, 0x11);
    struct coblk_device *dev = NULL;
    struct coblk_queue *q;
    unsigned char buf[4096];
    bool ro = false;
    int tag;
    CHECK(coblk_create(path, &dev) == 0);
    CHECK(coblk_set_bool(dev, "read-only", true) == 0);
    CHECK(coblk_start(dev) == 0);
    CHECK(coblk_get_bool(dev, "read-only", &ro) == 0 && ro);
    q = coblk_get_queue(dev, 0);
    memset(buf, 0, sizeof buf);
    CHECK_ERR(coblk_queue_write(q, 0, buf, sizeof buf, &tag, 0), EROFS, "read-only");
    CHECK_ERR(coblk_queue_write_zeroes(q, 0, 4096, &tag, 0), EROFS, "read-only");
    CHECK_ERR(coblk_queue_discard(q, 0, 4096, &tag, 0), EROFS, "read-only");
    CHECK_ERR(coblk_resize(dev, 2 * MiB), EROFS, "read-only");
    CHECK(coblk_queue_read(q, 0, buf, sizeof buf, &tag, 0) == 0);
    CHECK(wait_one(q, &tag) == 0);
    CHECK(buf[0] == 0x11 && buf[4095] == 0x11);
    CHECK(coblk_queue_flush(q, &tag, 0) == 0);
    CHECK(wait_one(q, &tag) == 0);
    coblk_destroy(dev);
}

/* The image lock: a second writer is refused naming the file; the queues
 * of one device do not lock each other out. */
static void test_lock(void)
{
    const char *p = scratch_file("lock.img", 1 * MiB, 0);
    char path[512];
    struct coblk_device *a, *b = NULL;
    strcpy(path, p);
    a = open_started(path, "", 3);
    CHECK(coblk_create(path, &b) == 0);
    CHECK_ERR(coblk_start(b), EBUSY, "lock.img");
    coblk_destroy(b);
    coblk_destroy(a);
    /* Released with the device. */
    b = open_started(path, "", 1);
    coblk_destroy(b);
}

struct writer {
    struct coblk_queue *q;
    uint64_t off;
    unsigned seed;
    int errors;
};

/* Writes 64 blocks of 4 KiB at w->off on its own queue, 8 in flight. */
static void *writer_thread(void *arg)
{
    struct writer *w = arg;
    static const int kBlocks = 64;
    unsigned char *buf = malloc((size_t)kBlocks * 4096);
    int i, done = 0;
    fill_pattern(buf, (size_t)kBlocks * 4096, w->seed);
    for (i = 0; i < kBlocks || done < kBlocks;) {
        struct coblk_completion c[8];
        int n, k;
        while (i < kBlocks && i - done < 8) {
            if (coblk_queue_write(w->q, w->off + (uint64_t)i * 4096, buf + i * 4096, 4096,
                                  NULL, 0) != 0)
                w->errors++;
            i++;
        }
        n = coblk_queue_do_io(w->q, c, 1, 8, NULL);
        if (n < 1) {
            w->errors++;
            break;
        }
        for (k = 0; k < n; k++)
            if (c[k].ret != 0)
                w->errors++;
        done += n;
    }
    free(buf);
    return NULL;
}

/* Two queues on two threads at once, then each queue reads what the other
 * wrote. */
static void test_queues_on_threads(void)
{
    const char *p = scratch_file("mq.img", 2 * MiB, 0);
    char path[512];
    struct coblk_device *dev;
    struct writer w[2];
    pthread_t t[2];
    unsigned char *want = malloc(64 * 4096), *got = malloc(64 * 4096);
    int i, tag;
    strcpy(path, p);
    dev = open_started(path, "none", 2);
    for (i = 0; i < 2; i++) {
        w[i].q = coblk_get_queue(dev, i);
        w[i].off = (uint64_t)i * MiB;
        w[i].seed = 100u + (unsigned)i;
        w[i].errors = 0;
        CHECK(pthread_create(&t[i], NULL, writer_thread, &w[i]) == 0);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].errors == 0);
    }
    for (i = 0; i < 2; i++) {
        struct coblk_queue *other = coblk_get_queue(dev, 1 - i);
        fill_pattern(want, 64 * 4096, 100u + (unsigned)i);
        CHECK(coblk_queue_read(other, w[i].off, got, 64 * 4096, &tag, 0) == 0);
        CHECK(wait_one(other, &tag) == 0);
        CHECK(memcmp(want, got, 64 * 4096) == 0);
        CHECK(file_equals(path, w[i].off, want, 64 * 4096));
    }
    coblk_destroy(dev);
    free(want);
    free(got);
}

/* Timeout, polling mode, the completion fd and drain, on a null device
 * whose requests take 300 ms. */
static void test_wait_modes(void)
{
    struct coblk_device *dev = open_started("null://?latency-ns=300000000", "", 1);
    struct coblk_queue *q = coblk_get_queue(dev, 0);
    struct coblk_completion c[4];
    struct timespec short_wait = {0, 1000000}; /* 1 ms */
    struct pollfd pfd;
    char buf[512];
    int fd, n, tag;

    fd = coblk_queue_get_fd(q);
    CHECK(fd >= 0);
    CHECK(coblk_queue_read(q, 0, buf, sizeof buf, &tag, 0) == 0);
    /* The request needs 300 ms: a 1 ms wait comes back with nothing. */
    CHECK(coblk_queue_do_io(q, c, 1, 4, &short_wait) == 0);
    CHECK(coblk_queue_in_flight(q) == 1);
    /* The fd turns readable when the completion is there (10 s: hang guard). */
    pfd.fd = fd;
    pfd.events = POLLIN;
    CHECK(poll(&pfd, 1, 10000) == 1 && (pfd.revents & POLLIN));
    n = coblk_queue_do_io(q, c, 0, 4, NULL);
    CHECK(n == 1 && c[0].ret == 0 && c[0].user_data == &tag);

    /* Polling mode. */
    CHECK(coblk_queue_set_polling(q, true) == 0);
    CHECK(coblk_queue_read(q, 0, buf, sizeof buf, &tag, 0) == 0);
    CHECK(coblk_queue_read(q, 512, buf, sizeof buf, &tag, 0) == 0);
    n = coblk_queue_do_io(q, c, 2, 4, NULL);
    CHECK(n == 2);
    CHECK(coblk_queue_set_polling(q, false) == 0);

    /* drain: returns with nothing in flight; the completions stay. */
    CHECK(coblk_queue_write(q, 0, buf, sizeof buf, &tag, 0) == 0);
    CHECK(coblk_queue_write(q, 512, buf, sizeof buf, &tag, 0) == 0);
    CHECK(coblk_queue_in_flight(q) == 2);
    CHECK_ERR(coblk_resize(dev, 1 * MiB), EBUSY, "in flight");
    CHECK(coblk_queue_drain(q) == 0);
    CHECK(coblk_queue_in_flight(q) == 0);
    CHECK(coblk_queue_do_io(q, c, 0, 4, NULL) == 2);

    /* Close with a request in flight: it is waited for, not cancelled. */
    CHECK(coblk_queue_read(q, 0, buf, sizeof buf, &tag, 0) == 0);
    CHECK(coblk_close(dev) == 0);
    CHECK(coblk_queue_in_flight(q) == 0);
    coblk_destroy(dev);
}

/* Waits like a program's own event loop: do_io(min = 0), then poll() on
 * the completion fd (10 s: a hang guard), until `want` completions came.
 * Returns how many came. */
static int wait_by_fd(struct coblk_queue *q, int want)
{
    struct coblk_completion c[8];
    int got = 0;
    while (got < want) {
        struct pollfd pfd;
        int n = coblk_queue_do_io(q, c, 0, 8, NULL);
        if (n < 0)
            return got;
        got += n;
        if (got >= want)
            break;
        pfd.fd = coblk_queue_get_fd(q);
        pfd.events = POLLIN;
        if (poll(&pfd, 1, 10000) != 1) {
            fprintf(stderr, "the completion fd stayed silent for 10 s with %d requests in "
                    "flight\n", coblk_queue_in_flight(q));
            return got;
        }
    }
    return got;
}

/* Requests that need a second step inside coblk (an unaligned O_DIRECT
 * write is a read, then a write issued when the read completes) still
 * complete when the program only sleeps on the fd between do_io calls. */
static void test_fd_wakeups(void)
{
    const char *p = scratch_file("fd.img", 1 * MiB, 0x33);
    char path[512];
    struct coblk_device *dev;
    struct coblk_queue *q;
    unsigned char buf[6000], back[6000];
    int i;
    strcpy(path, p);
    dev = open_started(path, "none", 1);
    q = coblk_get_queue(dev, 0);
    for (i = 0; i < 4; i++) {
        fill_pattern(buf, sizeof buf, 40u + (unsigned)i);
        CHECK(coblk_queue_write(q, 1000 + (uint64_t)i * 70000, buf + 1, 5000, NULL, 0) == 0);
        CHECK(wait_by_fd(q, 1) == 1);
        CHECK(file_equals(path, 1000 + (uint64_t)i * 70000, buf + 1, 5000));
        CHECK(coblk_queue_read(q, 1000 + (uint64_t)i * 70000, back + 3, 5000, NULL, 0) == 0);
        CHECK(wait_by_fd(q, 1) == 1);
        CHECK(memcmp(back + 3, buf + 1, 5000) == 0);
    }
    coblk_destroy(dev);
}

static void test_resize(void)
{
    const char *p = scratch_file("resize.img", 1 * MiB, 0x22);
    char path[512];
    struct coblk_device *dev;
    struct coblk_queue *q;
    uint64_t size = 0;
    unsigned char buf[4096], zero[4096];
    struct stat st;
    int tag;
    strcpy(path, p);
    dev = open_started(path, "", 2);
    CHECK(coblk_resize(dev, 3 * MiB) == 0);
    CHECK(coblk_get_uint64(dev, "size", &size) == 0 && size == 3 * MiB);
    CHECK(stat(path, &st) == 0 && st.st_size == 3 * MiB);
    /* Every queue knows the new size. */
    q = coblk_get_queue(dev, 1);
    memset(zero, 0, sizeof zero);
    memset(buf, 0xff, sizeof buf);
    CHECK(coblk_queue_read(q, 3 * MiB - 4096, buf, 4096, &tag, 0) == 0);
    CHECK(wait_one(q, &tag) == 0);
    CHECK(memcmp(buf, zero, 4096) == 0);
    CHECK(coblk_resize(dev, 512 * 1024) == 0);
    CHECK_ERR(coblk_queue_read(coblk_get_queue(dev, 0), 1 * MiB - 4096, buf, 4096, &tag, 0),
              EINVAL, "past the end");
    coblk_destroy(dev);
}

static void test_closed_device(void)
{
    struct coblk_device *dev = open_started("memory://capi-closed", "", 2);
    struct coblk_queue *q = coblk_get_queue(dev, 1);
    char buf[512];
    uint64_t v;
    memset(buf, 1, sizeof buf);
    CHECK(coblk_close(dev) == 0);
    CHECK(coblk_close(dev) == 0); /* idempotent */
    CHECK_ERR(coblk_queue_write(q, 0, buf, sizeof buf, NULL, 0), EBADF, "closed");
    CHECK_ERR(coblk_queue_read(q, 0, buf, sizeof buf, NULL, 0), EBADF, "closed");
    CHECK_ERR(coblk_queue_flush(q, NULL, 0), EBADF, "closed");
    CHECK_ERR(coblk_queue_do_io(q, NULL, 0, 0, NULL), EBADF, "closed");
    CHECK_ERR(coblk_queue_get_fd(q), EBADF, "closed");
    CHECK_ERR(coblk_queue_drain(q), EBADF, "closed");
    CHECK_ERR(coblk_get_uint64(dev, "size", &v), EBADF, "closed");
    CHECK_ERR(coblk_start(dev), EBADF, "closed");
    CHECK_ERR(coblk_set_int(dev, "num-queues", 1), EBADF, "closed");
    CHECK_ERR(coblk_resize(dev, 4096), EBADF, "closed");
    CHECK(coblk_get_queue(dev, 0) == NULL);
    CHECK(strstr(coblk_get_error_msg(), "closed") != NULL);
    coblk_destroy(dev);
}

/* The error message belongs to the thread that failed. */
static void *fail_in_thread(void *arg)
{
    (void)arg;
    coblk_start(NULL);
    return NULL;
}

static void test_thread_local_message(void)
{
    pthread_t t;
    struct coblk_device *dev = NULL;
    CHECK(coblk_create("null://?size=bad", &dev) == 0);
    CHECK(coblk_start(dev) < 0);
    CHECK(strstr(coblk_get_error_msg(), "bad") != NULL);
    pthread_create(&t, NULL, fail_in_thread, NULL);
    pthread_join(t, NULL);
    CHECK(strstr(coblk_get_error_msg(), "bad") != NULL);
    CHECK(strstr(coblk_get_error_msg(), "coblk_start") == NULL);
    coblk_destroy(dev);
}

struct test {
    const char *name;
    void (*fn)(void);
};

/* Completions collected a few at a time while more requests keep coming
 * (bursts of 1..13, at most 3 collected per call, so uncollected ones pile
 * up and are moved about inside the queue): every request completes
 * exactly once, with its own user_data, result and data. */
static void test_partial_collection(void)
{
    enum { N = 3000, SLOT = 512, SLOTS = 64 };
    struct coblk_device *dev = open_started("memory://?size=1M", "", 1);
    struct coblk_queue *q = coblk_get_queue(dev, 0);
    static unsigned char seen[N];
    static unsigned char bufs[SLOTS][SLOT];
    static unsigned char rbuf[N][SLOT];
    struct coblk_completion c[7];
    int submitted = 0, completed = 0, bad = 0, i, n;

    memset(seen, 0, sizeof seen);
    for (i = 0; i < SLOTS; i++) {
        memset(bufs[i], i + 1, SLOT);
        CHECK(coblk_queue_write(q, (uint64_t)i * SLOT, bufs[i], SLOT, NULL, 0) == 0);
    }
    CHECK(coblk_queue_do_io(q, c, 0, 0, NULL) == 0); /* max 0: nothing collected */
    CHECK(coblk_queue_drain(q) == 0);
    n = 0;
    while (n < SLOTS) {
        int got = coblk_queue_do_io(q, c, 1, 7, NULL);
        if (got <= 0)
            break;
        for (i = 0; i < got; i++)
            bad += c[i].ret != 0 || c[i].user_data != NULL;
        n += got;
    }
    CHECK(n == SLOTS);
    while (completed < N) {
        /* Submit a burst of 1..9 reads, then collect at most 7. */
        int burst = 1 + (submitted * 7) % 13;
        for (i = 0; i < burst && submitted < N; i++, submitted++)
            CHECK(coblk_queue_read(q, (uint64_t)(submitted % SLOTS) * SLOT, rbuf[submitted],
                                   SLOT, &seen[submitted], 0) == 0);
        n = coblk_queue_do_io(q, c, submitted > completed ? 1 : 0, 3, NULL);
        if (n < 0) {
            CHECK(n >= 0);
            break;
        }
        for (i = 0; i < n; i++) {
            unsigned char *tag = c[i].user_data;
            long k = tag - seen;
            if (k < 0 || k >= N || c[i].ret != 0 || *tag != 0 ||
                memcmp(rbuf[k], bufs[k % SLOTS], SLOT) != 0)
                bad++;
            else
                *tag = 1;
        }
        completed += n;
    }
    CHECK(bad == 0);
    CHECK(completed == N && submitted == N);
    for (i = 0; i < N; i++)
        if (!seen[i])
            bad++;
    CHECK(bad == 0);
    CHECK(coblk_queue_in_flight(q) == 0);
    CHECK(coblk_queue_do_io(q, c, 0, 7, NULL) == 0);
    coblk_destroy(dev);
}

/* Snapshots of an FVD image on a file (made by the coblk-img named in
 * COBLK_IMG): taken while started; the old data stays in the snapshot file,
 * new writes go to the image. */
static void test_fvd_snapshot(void)
{
    const char *tool = getenv("COBLK_IMG");
    char path[512], snap[600], cmd[1400];
    struct coblk_device *dev, *two, *ro = NULL;
    struct coblk_queue *q;
    unsigned char *a = malloc(MiB), *b = malloc(64 * 1024), *got = malloc(MiB);
    bool can = false;
    if (!tool) {
        fprintf(stderr, "fvd_snapshot: COBLK_IMG (a coblk-img to create the FVD image) is not "
                "set\n");
        failures++;
        goto out;
    }
    snprintf(path, sizeof path, "%s/snap.fvd", scratch_dir);
    snprintf(snap, sizeof snap, "%s.snap-s1", path);
    snprintf(cmd, sizeof cmd, "'%s' create -q -f fvd '%s' 4M", tool, path);
    CHECK(system(cmd) == 0);

    /* Two queues on a writable FVD image: refused at start, naming the
     * reason (each queue's stack would keep its own bitmap and journal);
     * read-only, two queues are fine, and cannot snapshot. */
    two = NULL;
    CHECK(coblk_create(path, &two) == 0 && coblk_set_int(two, "num-queues", 2) == 0);
    CHECK_ERR(coblk_start(two), ENOTSUP, "one queue");
    coblk_destroy(two);
    two = NULL;
    CHECK(coblk_create(path, &two) == 0 && coblk_set_int(two, "num-queues", 2) == 0 &&
          coblk_set_bool(two, "read-only", true) == 0 && coblk_start(two) == 0);
    CHECK(coblk_get_bool(two, "can-snapshot", &can) == 0 && !can);
    coblk_destroy(two);

    dev = open_started(path, "", 1);
    q = coblk_get_queue(dev, 0);
    CHECK(coblk_get_bool(dev, "can-snapshot", &can) == 0 && can);
    fill_pattern(a, MiB, 1);
    fill_pattern(b, 64 * 1024, 2);
    CHECK(coblk_queue_write(q, 0, a, MiB, a, 0) == 0);
    CHECK_ERR(coblk_snapshot_create(dev, "s1"), EBUSY, "in flight");
    CHECK(wait_one(q, a) == 0);
    CHECK_ERR(coblk_snapshot_create(dev, "bad/name"), EINVAL, "'/'");
    CHECK(coblk_snapshot_create(dev, "s1") == 0);
    CHECK_ERR(coblk_snapshot_create(dev, "s1"), EEXIST, "snap.fvd.snap-s1");
    CHECK(coblk_queue_write(q, 0, b, 64 * 1024, b, 0) == 0);
    CHECK(wait_one(q, b) == 0);
    CHECK(coblk_queue_read(q, 0, got, MiB, got, 0) == 0);
    CHECK(wait_one(q, got) == 0);
    CHECK(memcmp(got, b, 64 * 1024) == 0 && memcmp(got + 64 * 1024, a + 64 * 1024,
                                                   MiB - 64 * 1024) == 0);
    CHECK(coblk_close(dev) == 0);
    coblk_destroy(dev);

    /* The snapshot file holds the data written before the snapshot. */
    CHECK(coblk_create(snap, &ro) == 0);
    CHECK(coblk_set_bool(ro, "read-only", true) == 0);
    CHECK(coblk_start(ro) == 0);
    q = coblk_get_queue(ro, 0);
    memset(got, 0, MiB);
    CHECK(q && coblk_queue_read(q, 0, got, MiB, got, 0) == 0);
    CHECK(q && wait_one(q, got) == 0);
    CHECK(memcmp(got, a, MiB) == 0);
    coblk_destroy(ro);
out:
    free(a);
    free(b);
    free(got);
}

static const struct test tests[] = {
    {"version", test_version_and_message},
    {"create_misuse", test_create_misuse},
    {"properties", test_properties},
    {"fvd_snapshot", test_fvd_snapshot},
    {"start_errors", test_start_errors},
    {"io_writeback", test_io_writeback},
    {"io_cache_none", test_io_cache_none},
    {"read_only", test_read_only},
    {"lock", test_lock},
    {"queues_on_threads", test_queues_on_threads},
    {"wait_modes", test_wait_modes},
    {"fd_wakeups", test_fd_wakeups},
    {"resize", test_resize},
    {"closed_device", test_closed_device},
    {"thread_local_message", test_thread_local_message},
    {"partial_collection", test_partial_collection},
};

static void remove_scratch(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", scratch_dir);
}

int main(int argc, char **argv)
{
    size_t i;
    int ran = 0, a;
    strcpy(scratch_dir, "/var/tmp/coblk-capi-XXXXXX");
    if (!mkdtemp(scratch_dir)) {
        perror("mkdtemp");
        return 2;
    }
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int want = argc < 2;
        for (a = 1; a < argc; a++)
            if (strcmp(argv[a], tests[i].name) == 0)
                want = 1;
        if (!want)
            continue;
        {
            int before = failures;
            tests[i].fn();
            printf("%s %s\n", failures == before ? "ok  " : "FAIL", tests[i].name);
            ran++;
        }
    }
    remove_scratch();
    if (ran == 0) {
        fprintf(stderr, "no test matched\n");
        return 2;
    }
    printf("%d tests, %d failed checks\n", ran, failures);
    return failures ? 1 : 0;
}
