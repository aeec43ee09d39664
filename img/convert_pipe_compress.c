/*
 * convert_pipe_compress.c — -c for convert from a pipe: a window is cut
 * into one slice per worker, the workers compress its clusters in
 * parallel (kimg_compress_cluster), and the caller stores them in the
 * stream's order (kimg_write_compressed_data; a cluster that would not
 * shrink is written plainly, as the copy engine does; one the driver
 * cannot split goes to kimg_write_compressed whole).  Memory: one
 * compressed copy of the window, whatever the stream's length.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "convert_pipe.h"
#include "internal.h"
#include "pool.h"

#define CLEN_ZERO INT64_MIN

struct slice {
    const uint8_t *data;
    uint64_t off;           /* target offset */
    size_t len;
    uint8_t *cbuf;          /* compressed clusters, back to back */
    size_t cbuf_cap;
    int64_t *clen;          /* per cluster: length, -errno or CLEN_ZERO */
};

struct pipe_compress {
    struct kimg_convert *c;
    struct kimg_pool *pool;
    size_t unit, slice_len;
    size_t npieces;         /* clusters per slice at most */
};

static int compress_slice(void *opaque, void *local, void *job)
{
    struct pipe_compress *pc = opaque;
    struct slice *s = job;
    size_t cpos = 0;
    (void)local;
    for (size_t pos = 0, i = 0; pos < s->len; pos += pc->unit, i++) {
        size_t n = s->len - pos < pc->unit ? s->len - pos : pc->unit;
        if (pc->c->sparse_size && kimg_buffer_is_zero(s->data + pos, n)) {
            s->clen[i] = CLEN_ZERO;
            continue;
        }
        int64_t r = kimg_compress_cluster(pc->c->dst, s->off + pos, s->data + pos, n,
                                          s->cbuf + cpos, s->cbuf_cap - cpos);
        s->clen[i] = r;
        if (r > 0)
            cpos += (size_t)r;
    }
    return 0;
}

static int store_slice(struct pipe_compress *pc, struct kimg_ratelimit *rl, struct slice *s)
{
    struct kimg_convert *c = pc->c;
    size_t cpos = 0;
    for (size_t pos = 0, i = 0; pos < s->len; pos += pc->unit, i++) {
        size_t n = s->len - pos < pc->unit ? s->len - pos : pc->unit;
        int64_t r = s->clen[i];
        int ret;
        if (r == CLEN_ZERO) {
            ret = c->target_is_zero ? 0
                  : kimg_write_zeroes(c->dst, s->off + pos, n, KIMG_ZERO_MAY_UNMAP);
        } else if (r >= 0) {
            kimg_ratelimit_charge(rl, n);
            ret = kimg_write_compressed_data(c->dst, s->off + pos, n, s->cbuf + cpos,
                                             (size_t)r);
            cpos += (size_t)r;
        } else if (r == -ENOSPC) {
            kimg_ratelimit_charge(rl, n);
            ret = kimg_write(c->dst, s->data + pos, s->off + pos, n);
        } else if (r == -ENOTSUP) {
            /* no split path here: the driver compresses it itself */
            kimg_ratelimit_charge(rl, n);
            ret = kimg_write_compressed(c->dst, s->data + pos, s->off + pos, n);
        } else {
            ret = kimg_fail((int)r, "compression failed");
        }
        if (ret < 0)
            return ret;
    }
    return 0;
}

struct pipe_compress *pipe_compress_new(struct kimg_convert *c, size_t wlen, size_t unit)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = c->in_flight > 0 ? c->in_flight : 8;
    if (ncpu >= 1 && threads > ncpu)
        threads = (int)ncpu;
    if (threads < 1)
        threads = 1;
    struct pipe_compress *pc = calloc(1, sizeof(*pc));
    if (!pc) {
        kimg_fail(-ENOMEM, "out of memory");
        return NULL;
    }
    pc->c = c;
    pc->unit = unit;
    size_t clusters = (wlen + unit - 1) / unit;
    pc->npieces = (clusters + (size_t)threads - 1) / (size_t)threads;
    pc->slice_len = pc->npieces * unit;
    struct kimg_pool_def def = {
        .threads = threads, .slots = threads, .job_size = sizeof(struct slice),
        .run = compress_slice, .opaque = pc,
    };
    pc->pool = kimg_pool_new(&def);
    if (!pc->pool) {
        free(pc);
        return NULL;
    }
    for (int i = 0; i < threads; i++) {
        struct slice *s = kimg_pool_job(pc->pool, i);
        /* room for clusters that do not shrink */
        s->cbuf_cap = pc->slice_len + pc->npieces * 1024;
        s->cbuf = kimg_buffer_alloc(s->cbuf_cap);
        s->clen = calloc(pc->npieces, sizeof(*s->clen));
        if (!s->cbuf || !s->clen) {
            pipe_compress_free(pc);
            kimg_fail(-ENOMEM, "out of memory");
            return NULL;
        }
    }
    return pc;
}

int pipe_compress_window(struct pipe_compress *pc, struct kimg_ratelimit *rl,
                         const uint8_t *buf, uint64_t off, size_t len)
{
    int ret = 0;
    for (size_t pos = 0; pos < len; pos += pc->slice_len) {
        struct slice *s = kimg_pool_get(pc->pool);
        if (!s)
            return kimg_fail(-EIO, "no free slot");    /* cannot happen */
        s->data = buf + pos;
        s->off = off + pos;
        s->len = len - pos < pc->slice_len ? len - pos : pc->slice_len;
        kimg_pool_submit(pc->pool, s);
    }
    struct slice *s;
    int r;
    while ((s = kimg_pool_take(pc->pool, &r, true))) {
        if (ret == 0)
            ret = r < 0 ? r : store_slice(pc, rl, s);
        kimg_pool_put(pc->pool, s);
    }
    return ret;
}

void pipe_compress_free(struct pipe_compress *pc)
{
    if (!pc)
        return;
    kimg_pool_stop(pc->pool);
    for (int i = 0; i < kimg_pool_slots(pc->pool); i++) {
        struct slice *s = kimg_pool_job(pc->pool, i);
        if (s->cbuf)
            kimg_buffer_free(s->cbuf, s->cbuf_cap);
        free(s->clen);
    }
    kimg_pool_free(pc->pool);
    free(pc);
}
