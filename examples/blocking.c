/*
 * The smallest complete use of coblk's C API: open a device, write a block,
 * read it back, one request at a time, waiting for each.
 *
 *   cc blocking.c $(pkg-config --cflags --libs coblk) -o blocking
 *   ./blocking /var/tmp/disk.img        (an existing image, or any coblk URI)
 *
 * Exits 0 when the block read back is the block written.
 */
#include <coblk.h>

#include <stdio.h>
#include <string.h>

/* Waits for the one request in flight and returns its result. */
static int wait_for_it(struct coblk_queue *q)
{
    struct coblk_completion c;
    int n = coblk_queue_do_io(q, &c, 1, 1, NULL);
    return n < 0 ? n : c.ret;
}

int main(int argc, char **argv)
{
    const char *uri = argc > 1 ? argv[1] : "memory://example?size=1M";
    struct coblk_device *dev;
    struct coblk_queue *q;
    static char block[4096], back[4096];
    uint64_t size;
    int r;

    if ((r = coblk_create(uri, &dev)) < 0) {
        fprintf(stderr, "coblk_create: %s\n", coblk_get_error_msg());
        return 1;
    }
    if ((r = coblk_start(dev)) < 0) {
        fprintf(stderr, "coblk_start: %s\n", coblk_get_error_msg());
        coblk_destroy(dev);
        return 1;
    }
    coblk_get_uint64(dev, "size", &size);
    printf("%s: %llu bytes, coblk %s\n", uri, (unsigned long long)size, coblk_version());
    q = coblk_get_queue(dev, 0);

    memset(block, 'c', sizeof block);
    if ((r = coblk_queue_write(q, 0, block, sizeof block, NULL, COBLK_REQ_FUA)) < 0 ||
        (r = wait_for_it(q)) < 0 ||
        (r = coblk_queue_read(q, 0, back, sizeof back, NULL, 0)) < 0 ||
        (r = wait_for_it(q)) < 0) {
        fprintf(stderr, "I/O failed (%d): %s\n", r, coblk_get_error_msg());
        coblk_destroy(dev);
        return 1;
    }
    coblk_destroy(dev);
    if (memcmp(block, back, sizeof block) != 0) {
        fprintf(stderr, "the block read back differs from the block written\n");
        return 1;
    }
    printf("wrote and read back %zu bytes\n", sizeof block);
    return 0;
}
