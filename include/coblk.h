/*
 * coblk.h - the C interface of coblk, an embeddable block storage engine.
 *
 * A program opens a *device* by URI ("/path/disk.img", "file:/p?cache=none",
 * "null://?size=1G", "memory://name", "gluster://host/vol/img", "/dev/sdb"),
 * then issues reads, writes, flushes, discards and write-zeroes on one or
 * more *queues* of that device and collects their completions.
 *
 * Lifecycle of a device:
 *
 *   coblk_create(uri)    -> CREATED: properties may be set
 *   coblk_start(dev)     -> STARTED: the stack is open, queues take requests
 *   coblk_close(dev)     -> CLOSED: requests in flight were waited for; every
 *                           later call on the device or its queues fails
 *                           with -EBADF
 *   coblk_destroy(dev)   frees the handle (closing first when needed)
 *
 * Queues and threads.  A queue is used by one thread at a time; different
 * queues may be used by different threads at the same time.  Each queue owns
 * its own engine loop (an io_uring) and its own opened layer stack over the
 * same image, so queues share no loop and no layer: a request is submitted
 * and completed on the thread that calls the queue's functions, with no
 * hand-over between threads.  Queue 0's stack holds the image lock (a local
 * file is locked against other processes); the stacks of other queues open
 * the same image without taking it again.  A device whose data cannot be
 * shared between stacks (an unnamed memory:// device) offers one queue,
 * and so does a writable FVD image, whose bitmap, table and journal live in
 * the stack that opened it (coblk_start with more fails with -ENOTSUP).
 * A queue may move to another thread between calls (its ring is not tied to
 * a thread), but never be used by two threads at once.
 *
 * Device-level calls (coblk_set_*, coblk_start, coblk_resize, coblk_close,
 * coblk_destroy) must not run while another thread uses one of the device's
 * queues.  coblk_get_* may be called from any thread once the device is
 * started.
 *
 * Requests.  coblk_queue_readv() and friends start a request and return at
 * once; the request's buffers and iovec array must stay valid until its
 * completion has been collected.  Requests make progress, and completions
 * are collected, inside coblk_queue_do_io().  A program that waits in its
 * own event loop puts the queue's completion fd (coblk_queue_get_fd()) in
 * its epoll set and calls coblk_queue_do_io() with min_completions = 0
 * after submitting and whenever the fd is readable.
 *
 * Buffers and alignment.  Requests need no particular buffer or offset
 * alignment: with cache=none, a request not aligned to the device's
 * "request-alignment" (offset and length) and "mem-alignment" (buffer
 * addresses) goes through an aligned bounce buffer.  That is correct but
 * costs a copy (and a read-modify-write for unaligned writes); a program
 * that wants the fast path aligns to those two properties.
 *
 * Errors.  Every call that can fail returns a negative errno value and sets
 * a message for the calling thread, read with coblk_get_error_msg().  A
 * request's own result (0 or -errno) arrives in its completion.  No call
 * aborts the program on bad input: NULL handles, calls in the wrong state,
 * ranges past the end of the device and closed devices are errors.
 *
 * Signals.  The first gluster:// device a process starts sets SIGPIPE to
 * ignored if it still has its default action (libgfapi writes to sockets
 * whose server may be gone); a handler the program installed is kept.
 */
#ifndef COBLK_H
#define COBLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define COBLK_API __attribute__((visibility("default")))
#else
#define COBLK_API
#endif

struct coblk_device;
struct coblk_queue;
struct timespec; /* <time.h> declares it only with POSIX features enabled */

/* Request flags. */
enum {
    COBLK_REQ_FUA = 1u << 0,      /* writev/write_zeroes: durable when completed */
    COBLK_REQ_NO_UNMAP = 1u << 1  /* write_zeroes: keep the range allocated */
};

/* One collected completion. */
struct coblk_completion {
    void *user_data;   /* as passed when the request was submitted */
    int ret;           /* 0, or a negative errno */
    uint32_t reserved; /* 0 */
};

/* The library's version, "MAJOR.MINOR.PATCH". Never fails; any thread. */
COBLK_API const char *coblk_version(void);

/*
 * The message of the last failed call on this thread, naming what was wrong
 * (the URI, property, handle or range); "" when no call failed yet.  Valid
 * until the next coblk call on this thread.  Any thread.
 */
COBLK_API const char *coblk_get_error_msg(void);

/*
 * Creates a device for `uri` in the CREATED state and stores it in *devp.
 * The URI is only parsed here; nothing is opened until coblk_start().
 * Returns 0, -EINVAL (NULL argument, malformed URI: the message shows the
 * accepted form) or -ENOMEM.  Any thread.
 */
COBLK_API int coblk_create(const char *uri, struct coblk_device **devp);

/*
 * Properties.  Settable before coblk_start() (-EBUSY afterwards):
 *   "format"      str   "raw", a protocol name ("file", ...) for no format
 *                       layer, or "" to probe (the default)
 *   "cache"       str   "none" (O_DIRECT) or "writeback"
 *   "read-only"   bool  default false
 *   "num-queues"  int   default 1
 *   any other name  str  an option of the backend or format, as ?key=value
 *                        on the URI ("size", "locking", "offset", ...);
 *                        refused by coblk_start() when nothing takes it
 * Readable after coblk_start() (-ENOTCONN before):
 *   "size"               uint64  bytes
 *   "request-alignment"  uint64  offset/length alignment of the fast path
 *   "mem-alignment"      uint64  buffer address alignment of the fast path
 *   "optimal-transfer"   uint64  preferred request size, 0: none
 *   "max-transfer"       uint64  largest request passed down whole, 0: none
 *   "num-queues"         uint64
 *   "read-only", "can-discard", "can-write-zeroes", "native-fua",
 *   "can-resize", "can-snapshot"                bool
 *   "uri", "format", "protocol", "cache"        str
 * A wrong type gives -EINVAL naming the property's type; an unknown name
 * -ENOENT.  coblk_get_str() stores a malloc()ed copy the caller frees.
 * The setters: the device's thread (see above); the getters: any thread.
 */
COBLK_API int coblk_set_str(struct coblk_device *dev, const char *name, const char *value);
COBLK_API int coblk_set_bool(struct coblk_device *dev, const char *name, bool value);
COBLK_API int coblk_set_int(struct coblk_device *dev, const char *name, int value);
COBLK_API int coblk_get_uint64(struct coblk_device *dev, const char *name, uint64_t *value);
COBLK_API int coblk_get_bool(struct coblk_device *dev, const char *name, bool *value);
COBLK_API int coblk_get_str(struct coblk_device *dev, const char *name, char **value);

/*
 * Opens the device: the layer stack of every queue.  Returns 0, or -errno of
 * the open with a message naming the URI, file or option at fault (the
 * device stays CREATED and may be fixed and started again); -EBUSY when
 * already started, -EBADF when closed.
 */
COBLK_API int coblk_start(struct coblk_device *dev);

/*
 * Queue `index` (0 .. num-queues - 1) of a started device, or NULL with the
 * error message set (not started, closed, index out of range).  The handle
 * lives as long as the device.  Any thread.
 */
COBLK_API struct coblk_queue *coblk_get_queue(struct coblk_device *dev, int index);

/*
 * Starting requests.  Each returns 0 when the request was started (its
 * result then arrives as a completion carrying `user_data`), or a negative
 * errno with nothing started: -EINVAL (NULL queue, bad iovec, unknown flag,
 * a range that ends past the device's size), -EROFS (a write to a
 * read-only device), -EBADF (closed device), -ENOMEM.  The queue's thread.
 * `flags`: COBLK_REQ_FUA for writev/write_zeroes, COBLK_REQ_NO_UNMAP for
 * write_zeroes; 0 otherwise.
 */
COBLK_API int coblk_queue_readv(struct coblk_queue *q, uint64_t offset, const struct iovec *iov,
                                int iovcnt, void *user_data, uint32_t flags);
COBLK_API int coblk_queue_writev(struct coblk_queue *q, uint64_t offset, const struct iovec *iov,
                                 int iovcnt, void *user_data, uint32_t flags);
COBLK_API int coblk_queue_read(struct coblk_queue *q, uint64_t offset, void *buf, size_t len,
                               void *user_data, uint32_t flags);
COBLK_API int coblk_queue_write(struct coblk_queue *q, uint64_t offset, const void *buf,
                                size_t len, void *user_data, uint32_t flags);
/* Makes every write completed before it durable. */
COBLK_API int coblk_queue_flush(struct coblk_queue *q, void *user_data, uint32_t flags);
/* The range's data is no longer needed; it may read as zeros or as before. */
COBLK_API int coblk_queue_discard(struct coblk_queue *q, uint64_t offset, uint64_t len,
                                  void *user_data, uint32_t flags);
/* The range reads as zeros afterwards. */
COBLK_API int coblk_queue_write_zeroes(struct coblk_queue *q, uint64_t offset, uint64_t len,
                                       void *user_data, uint32_t flags);

/*
 * Sends started requests to the kernel and collects up to
 * `max_completions` completions into `completions`, waiting until at least
 * `min_completions` are there, or `timeout` has passed (NULL: no limit), or
 * no request is in flight any more.  With min_completions = 0 it never
 * waits.  In polling mode it spins instead of sleeping in the kernel.
 * Returns the number collected (which is below min_completions only after
 * the timeout or when nothing was left in flight), or -EINVAL (NULL queue,
 * min > max, NULL completions with max > 0, negative counts), -EBADF
 * (closed device).  Completions not collected stay queued.  The queue's
 * thread.
 */
COBLK_API int coblk_queue_do_io(struct coblk_queue *q, struct coblk_completion *completions,
                                int min_completions, int max_completions,
                                const struct timespec *timeout);

/*
 * A file descriptor that polls readable (EPOLLIN) when coblk_queue_do_io()
 * may find completions or progress to make.  Owned by the queue: do not
 * close or read it.  Returns the fd or -EINVAL/-EBADF.  Any thread.
 */
COBLK_API int coblk_queue_get_fd(struct coblk_queue *q);

/*
 * Polling mode: while requests are in flight, coblk_queue_do_io() (and any
 * other wait on the queue) does not sleep in the kernel: it gives the CPU
 * up with sched_yield() and looks for completions again, for the lowest
 * latency at the cost of a busy CPU.  Default off.  Returns 0 or
 * -EINVAL/-EBADF.  The queue's thread.
 */
COBLK_API int coblk_queue_set_polling(struct coblk_queue *q, bool enable);

/* Requests started on the queue and not yet completed; -EINVAL for NULL. */
COBLK_API int coblk_queue_in_flight(struct coblk_queue *q);

/*
 * Waits until every request started on the queue has completed (their
 * completions stay queued for coblk_queue_do_io()).  Returns 0, or
 * -EINVAL/-EBADF.  The queue's thread.
 */
COBLK_API int coblk_queue_drain(struct coblk_queue *q);

/*
 * Changes the device's size.  Requests must not be in flight on any queue
 * (-EBUSY).  Every queue knows the new size when it returns.  Returns 0,
 * -ENOTSUP when the stack cannot resize (a block device), -EROFS,
 * -ENOTCONN/-EBADF in the wrong state, or the -errno of the truncate.
 * The device's thread.
 */
COBLK_API int coblk_resize(struct coblk_device *dev, uint64_t new_size);

/*
 * Creates snapshot `name` of the device's image, as coblk-img snapshot -c
 * does: an RBD snapshot for rbd images; for an FVD image on a local file,
 * an external one (the file becomes IMAGE.snap-NAME under a new overlay
 * that keeps the image's name; see docs/fvd-format.md), taken while the
 * device stays started.  Requests must not be in flight on any queue
 * (-EBUSY); an FVD device needs a single queue.  Returns 0, -EINVAL for a
 * bad name, -EEXIST, -EROFS, -ENOTSUP where the stack has no snapshots (the
 * message names it), -ENOTCONN/-EBADF in the wrong state, or the -errno of
 * the operation.  "can-snapshot" says whether it can work.  The device's
 * thread.
 */
COBLK_API int coblk_snapshot_create(struct coblk_device *dev, const char *name);

/*
 * Waits for the requests in flight on every queue (their completions are
 * dropped), then closes every stack.  Idempotent: 0, or -EINVAL for NULL.
 * Afterwards every call on the device or its queues fails with -EBADF.
 * The device's thread, with no other thread inside a queue call.
 */
COBLK_API int coblk_close(struct coblk_device *dev);

/* Closes the device when needed and frees it; NULL is ignored. */
COBLK_API void coblk_destroy(struct coblk_device *dev);

#ifdef __cplusplus
}
#endif

#endif /* COBLK_H */
