/*
 * aio.c — batched file I/O (see aio.h): libaio for aligned requests on
 * files whose backend prepares them (kimg_file_aio_prep: POSIX O_DIRECT
 * files), synchronous pread/pwrite for the rest.  A request the
 * kernel completes short (or refuses with EINVAL/EAGAIN at submission) is
 * finished synchronously through kimg_file_*, which also bounces anything
 * unaligned.
 */
#include <errno.h>
#include <libaio.h>
#include <stdlib.h>
#include <string.h>
#include "aio.h"
#include "kimg.h"

struct kimg_aio {
    io_context_t ctx;
    struct iocb cb[KIMG_AIO_MAX];
    struct iocb *cbp[KIMG_AIO_MAX];
    struct io_event ev[KIMG_AIO_MAX];
};

struct kimg_aio *kimg_aio_new(void)
{
    struct kimg_aio *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    if (io_setup(KIMG_AIO_MAX, &a->ctx) < 0) {
        free(a);
        return NULL;
    }
    return a;
}

void kimg_aio_free(struct kimg_aio *a)
{
    if (!a)
        return;
    io_destroy(a->ctx);
    free(a);
}

bool kimg_aio_direct_ok(const struct kimg_aio_req *r)
{
    const struct kimg_file *f = r->file;
    if (!f || !kimg_file_has_aio(f) || f->align == 0 || !r->len)
        return false;
    uint64_t mask = f->align - 1;
    return !((uintptr_t)r->buf & mask) && !(r->len & mask) && !(r->off & mask);
}

/* One request synchronously, from byte DONE on. */
static int run_sync(const struct kimg_aio_req *r, size_t done, bool write)
{
    if (done >= r->len)
        return 0;
    uint8_t *b = (uint8_t *)r->buf + done;
    return write ? kimg_file_pwrite(r->file, b, r->len - done, r->off + done)
                 : kimg_file_pread(r->file, b, r->len - done, r->off + done);
}

int kimg_aio_run(struct kimg_aio *a, struct kimg_aio_req *reqs, int n, bool write)
{
    int ret = 0, nb = 0;
    size_t done[KIMG_AIO_MAX];
    if (n < 0 || n > KIMG_AIO_MAX)
        return kimg_fail(-EINVAL, "too many requests in one batch");
    /* requests libaio can take go in one submission, the others now */
    for (int i = 0; i < n; i++) {
        done[i] = 0;
        if (!a || !kimg_aio_direct_ok(&reqs[i])) {
            if (ret == 0)
                ret = run_sync(&reqs[i], 0, write);
            done[i] = reqs[i].len;
            continue;
        }
        struct iocb *cb = &a->cb[nb];
        if (kimg_file_aio_prep(reqs[i].file, cb, write, reqs[i].buf, reqs[i].len,
                               reqs[i].off) < 0) {
            if (ret == 0)
                ret = run_sync(&reqs[i], 0, write);
            done[i] = reqs[i].len;
            continue;
        }
        if (write)
            kimg_file_count_change();
        cb->data = &reqs[i];
        a->cbp[nb++] = cb;
    }
    int submitted = 0;
    while (submitted < nb) {
        int r = io_submit(a->ctx, nb - submitted, a->cbp + submitted);
        if (r == -EINTR)
            continue;
        if (r <= 0)
            break;      /* the rest is done synchronously below */
        submitted += r;
    }
    for (int reaped = 0; reaped < submitted;) {
        int r = io_getevents(a->ctx, 1, submitted - reaped, a->ev, NULL);
        if (r == -EINTR)
            continue;
        if (r < 0) {
            /* cannot happen with a valid context; nothing safe to do but
             * report it (the buffers may still be in use by the kernel) */
            return kimg_fail(r, "asynchronous I/O failed: %s", strerror(-r));
        }
        for (int k = 0; k < r; k++) {
            struct kimg_aio_req *req = a->ev[k].data;
            long res = (long)a->ev[k].res;
            size_t i = (size_t)(req - reqs);
            if (res < 0) {
                if (ret == 0)
                    ret = kimg_fail((int)res, "%s error at offset %llu of '%s': %s",
                                    write ? "write" : "read", (unsigned long long)req->off,
                                    req->file->path, strerror((int)-res));
                done[i] = req->len;
            } else {
                done[i] = (size_t)res;
            }
        }
        reaped += r;
    }
    /* whatever was not submitted or came back short */
    for (int i = 0; i < n && ret == 0; i++)
        ret = run_sync(&reqs[i], done[i], write);
    return ret;
}
