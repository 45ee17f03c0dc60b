/*
 * The shape of a VMM's block I/O thread on coblk's C API.
 *
 * A "guest" thread puts requests into a simulated virtqueue (an avail ring
 * of descriptors) and kicks an eventfd, as a driver notifies a device.  The
 * I/O thread waits in its own epoll loop on two fds: the kick eventfd and
 * the coblk queue's completion fd.  On a kick it moves every new
 * descriptor into coblk; when the completion fd is readable it collects
 * completions with coblk_queue_do_io(min = 0) and puts them in the used
 * ring, signalling the guest through a second eventfd (the "interrupt").
 *
 * The guest writes a pattern over the whole device in rounds of requests,
 * flushes, reads everything back and checks it.  Exits 0 when every block
 * read back is the block written.
 *
 *   vmm_epoll URI     (default: memory://vmm?size=16M)
 */
#define _GNU_SOURCE
#include <coblk.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RING 64     /* descriptors in the virtqueue */
#define BLOCK 4096

enum vq_op { VQ_READ, VQ_WRITE, VQ_FLUSH, VQ_STOP };

struct vq_desc {
    enum vq_op op;
    uint64_t offset;
    void *buf;
    int status;  /* written by the device: 0 or -errno */
};

/* A single-producer/single-consumer virtqueue: avail (guest -> device) and
 * used (device -> guest) rings of descriptor indexes. */
struct virtqueue {
    struct vq_desc desc[RING];
    unsigned avail[RING], used[RING];
    unsigned avail_idx, used_idx;  /* written by guest / device */
    int kick_fd, irq_fd;
};

static unsigned load(const unsigned *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void store(unsigned *p, unsigned v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static void signal_fd(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) != sizeof one)
        abort();
}

static void wait_fd(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) < 0 && errno == EINTR) {
    }
}

struct device {
    struct virtqueue *vq;
    struct coblk_queue *q;
    unsigned last_avail;
    int epfd;
    int failed;
};

/* Moves new descriptors from the avail ring into coblk. Returns 1 when
 * the guest asked the device to stop. */
static int take_requests(struct device *d)
{
    struct virtqueue *vq = d->vq;
    unsigned end = load(&vq->avail_idx);
    int stop = 0;
    for (; d->last_avail != end; d->last_avail++) {
        unsigned head = vq->avail[d->last_avail % RING];
        struct vq_desc *desc = &vq->desc[head];
        void *tag = (void *)(uintptr_t)head;
        int r = 0;
        switch (desc->op) {
        case VQ_READ:
            r = coblk_queue_read(d->q, desc->offset, desc->buf, BLOCK, tag, 0);
            break;
        case VQ_WRITE:
            r = coblk_queue_write(d->q, desc->offset, desc->buf, BLOCK, tag, 0);
            break;
        case VQ_FLUSH:
            r = coblk_queue_flush(d->q, tag, 0);
            break;
        case VQ_STOP:
            stop = 1;
            continue;
        }
        if (r < 0) {
            fprintf(stderr, "submit: %s\n", coblk_get_error_msg());
            d->failed = 1;
        }
    }
    return stop;
}

/* Collects what coblk completed and hands it to the guest. */
static void complete_requests(struct device *d)
{
    struct coblk_completion c[RING];
    struct virtqueue *vq = d->vq;
    int i, n = coblk_queue_do_io(d->q, c, 0, RING, NULL);
    if (n < 0) {
        fprintf(stderr, "do_io: %s\n", coblk_get_error_msg());
        d->failed = 1;
        return;
    }
    for (i = 0; i < n; i++) {
        unsigned head = (unsigned)(uintptr_t)c[i].user_data;
        vq->desc[head].status = c[i].ret;
        vq->used[vq->used_idx % RING] = head;
        store(&vq->used_idx, vq->used_idx + 1);
    }
    if (n > 0)
        signal_fd(vq->irq_fd);
}

/* The I/O thread: one epoll loop over the kick fd and the completion fd. */
static void *io_thread(void *arg)
{
    struct device *d = arg;
    int stopping = 0;
    for (;;) {
        struct epoll_event ev[2];
        int i, n = epoll_wait(d->epfd, ev, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        for (i = 0; i < n; i++) {
            if (ev[i].data.fd == d->vq->kick_fd) {
                wait_fd(d->vq->kick_fd);
                stopping |= take_requests(d);
            }
        }
        /* Sends new requests to the kernel and collects what is done. */
        complete_requests(d);
        if (stopping && coblk_queue_in_flight(d->q) == 0)
            return NULL;
    }
}

/* The guest: queues `count` requests starting at descriptor slot 0,
 * kicks, and waits until all are used. Returns the number that failed. */
static int guest_batch(struct virtqueue *vq, int count)
{
    int i, failed = 0;
    unsigned start = vq->used_idx;
    for (i = 0; i < count; i++) {
        vq->avail[vq->avail_idx % RING] = (unsigned)i;
        store(&vq->avail_idx, vq->avail_idx + 1);
    }
    signal_fd(vq->kick_fd);
    while (load(&vq->used_idx) - start < (unsigned)count)
        wait_fd(vq->irq_fd);
    for (i = 0; i < count; i++)
        if (vq->desc[i].status != 0)
            failed++;
    return failed;
}

static void pattern(unsigned char *buf, uint64_t block)
{
    int i;
    for (i = 0; i < BLOCK; i++)
        buf[i] = (unsigned char)(block * 13 + (uint64_t)i * 7);
}

int main(int argc, char **argv)
{
    const char *uri = argc > 1 ? argv[1] : "memory://vmm?size=16M";
    struct coblk_device *dev;
    struct virtqueue *vq = calloc(1, sizeof *vq);
    struct device d;
    struct epoll_event ev;
    unsigned char *bufs = malloc((size_t)RING * BLOCK), want[BLOCK];
    uint64_t size, blocks, b;
    pthread_t io;
    int i, failed = 0, bad = 0;

    if (coblk_create(uri, &dev) < 0 || coblk_start(dev) < 0) {
        fprintf(stderr, "%s: %s\n", uri, coblk_get_error_msg());
        return 1;
    }
    coblk_get_uint64(dev, "size", &size);
    blocks = size / BLOCK;
    if (blocks > 4096)
        blocks = 4096;
    memset(&d, 0, sizeof d);
    d.vq = vq;
    d.q = coblk_get_queue(dev, 0);
    vq->kick_fd = eventfd(0, 0);
    vq->irq_fd = eventfd(0, 0);
    d.epfd = epoll_create1(0);
    ev.events = EPOLLIN;
    ev.data.fd = vq->kick_fd;
    epoll_ctl(d.epfd, EPOLL_CTL_ADD, vq->kick_fd, &ev);
    ev.data.fd = coblk_queue_get_fd(d.q);
    if (ev.data.fd < 0 || epoll_ctl(d.epfd, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0) {
        fprintf(stderr, "completion fd: %s\n", coblk_get_error_msg());
        return 1;
    }
    pthread_create(&io, NULL, io_thread, &d);

    /* Write every block, RING at a time, then flush. */
    for (b = 0; b < blocks;) {
        int n = blocks - b < RING ? (int)(blocks - b) : RING;
        for (i = 0; i < n; i++) {
            vq->desc[i].op = VQ_WRITE;
            vq->desc[i].offset = (b + (uint64_t)i) * BLOCK;
            vq->desc[i].buf = bufs + (size_t)i * BLOCK;
            pattern(vq->desc[i].buf, b + (uint64_t)i);
        }
        failed += guest_batch(vq, n);
        b += (uint64_t)n;
    }
    vq->desc[0].op = VQ_FLUSH;
    failed += guest_batch(vq, 1);

    /* Read every block back and check it. */
    for (b = 0; b < blocks;) {
        int n = blocks - b < RING ? (int)(blocks - b) : RING;
        for (i = 0; i < n; i++) {
            vq->desc[i].op = VQ_READ;
            vq->desc[i].offset = (b + (uint64_t)i) * BLOCK;
            vq->desc[i].buf = bufs + (size_t)i * BLOCK;
            memset(vq->desc[i].buf, 0, BLOCK);
        }
        failed += guest_batch(vq, n);
        for (i = 0; i < n; i++) {
            pattern(want, b + (uint64_t)i);
            if (memcmp(want, vq->desc[i].buf, BLOCK) != 0)
                bad++;
        }
        b += (uint64_t)n;
    }

    /* Stop the I/O thread. */
    vq->desc[0].op = VQ_STOP;
    vq->avail[vq->avail_idx % RING] = 0;
    store(&vq->avail_idx, vq->avail_idx + 1);
    signal_fd(vq->kick_fd);
    pthread_join(io, NULL);
    coblk_destroy(dev);
    close(d.epfd);
    close(vq->kick_fd);
    close(vq->irq_fd);
    free(vq);
    free(bufs);

    printf("%s: %llu blocks written and read back through the epoll loop: %d requests "
           "failed, %d blocks differ\n", uri, (unsigned long long)blocks, failed, bad);
    return failed || bad || d.failed ? 1 : 0;
}
