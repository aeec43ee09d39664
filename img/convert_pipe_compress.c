/*
 * convert_pipe_compress.c — -c for convert from a pipe: a window is cut
 * into one slice per worker, the workers compress its clusters in
 * parallel, and the caller stores them in the stream's order, with the
 * copy engine's two halves (convert_clusters.h).  Memory: one
 * compressed copy of the window, whatever the stream's length.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "convert_pipe.h"
#include "internal.h"
#include "convert_clusters.h"
#include "pool.h"


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
    (void)local;
    convert_compress_clusters(pc->c, pc->unit, s->off, s->data, s->len, s->cbuf, s->cbuf_cap,
                              s->clen, (uint32_t)pc->npieces);
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
        if (ret == 0 && r < 0)
            ret = r;
        if (ret == 0) {
            kimg_ratelimit_charge(rl, s->len);
            ret = convert_store_clusters(pc->c, pc->unit, s->off, s->data, s->len, s->cbuf,
                                         s->clen);
        }
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
