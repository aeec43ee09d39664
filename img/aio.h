/*
 * aio.h — batched file I/O for the copy engine.  A batch is a list of
 * full-length reads or writes (buffer, length, file, offset) carried out
 * together.  Two backends:
 *   - libaio, for files opened O_DIRECT whose requests are aligned: the
 *     whole batch is submitted with one io_submit and reaped together, so
 *     several requests are in flight on the device from one thread;
 *   - synchronous pread/pwrite on the calling thread, for everything else
 *     (the copy engine calls it from its worker pool, which is the thread
 *     pool backend: one request per worker in flight).
 * A context belongs to one thread (each engine worker has its own).
 */
#ifndef KIMG_AIO_H
#define KIMG_AIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kimg/file.h"

#define KIMG_AIO_MAX 64         /* requests in one batch */

struct kimg_aio_req {
    struct kimg_file *file;
    void *buf;
    size_t len;
    uint64_t off;
};

struct kimg_aio;

/* A context for up to KIMG_AIO_MAX requests in flight; NULL if the kernel
 * has no AIO to give (the batch then runs synchronously). */
struct kimg_aio *kimg_aio_new(void);
void kimg_aio_free(struct kimg_aio *a);

/* Whether REQ can go through libaio (an O_DIRECT file, aligned buffer,
 * length and offset). */
bool kimg_aio_direct_ok(const struct kimg_aio_req *req);

/* Carry out N requests (N <= KIMG_AIO_MAX; WRITE selects the direction);
 * returns 0 when every one transferred its full length, else -errno with a
 * kimg_error() naming the file and offset.  A read past the end of the
 * file is an error.  A may be NULL (synchronous). */
int kimg_aio_run(struct kimg_aio *a, struct kimg_aio_req *reqs, int n, bool write);

#endif
