/*
 * convert.c — the copy engine.  It walks each source's block status
 * through its backing chain: ranges that read as zeros are never read and,
 * on a target that already reads as zeros, never written; data ranges are
 * read in large chunks, and inside them zero runs of at least the sparse
 * size (rounded up to the target's cluster size) become holes.
 * This first version is synchronous; the async pipeline slots in at
 * copy_data().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "convert.h"
#include "driver.h"

#define CHUNK (2u << 20)

bool kimg_buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    /* head up to word alignment, then words, then the tail */
    while (len && ((uintptr_t)p & (sizeof(uint64_t) - 1))) {
        if (*p++)
            return false;
        len--;
    }
    const uint64_t *w = (const uint64_t *)(const void *)p;
    while (len >= 4 * sizeof(uint64_t)) {
        if (w[0] | w[1] | w[2] | w[3])
            return false;
        w += 4;
        len -= 4 * sizeof(uint64_t);
    }
    p = (const unsigned char *)w;
    while (len--)
        if (*p++)
            return false;
    return true;
}

struct engine {
    struct kimg_convert *c;
    uint8_t *buf;
    uint8_t *zbuf;              /* zeros, for -S 0 */
    uint64_t grain;             /* zero-detection granularity, 0 = off */
    uint64_t cluster;           /* target cluster size (compression unit) */
    uint64_t done, total, last_report;
};

static void report(struct engine *e, uint64_t n)
{
    e->done += n;
    if (!e->c->progress)
        return;
    if (e->done == e->total || (e->done - e->last_report) * 100 >= e->total) {
        e->c->progress(e->c->opaque, e->done, e->total);
        e->last_report = e->done;
    }
}

static int write_zero_range(struct engine *e, uint64_t off, uint64_t len)
{
    if (!e->c->sparse_size) {
        /* -S 0: fully allocated output, zeros written as data */
        memset(e->zbuf, 0, CHUNK);
        while (len) {
            uint64_t n = len < CHUNK ? len : CHUNK;
            int ret = kimg_write(e->c->dst, e->zbuf, off, n);
            if (ret < 0)
                return ret;
            off += n;
            len -= n;
        }
        return 0;
    }
    if (e->c->target_is_zero)
        return 0;
    return kimg_write_zeroes(e->c->dst, off, len, KIMG_ZERO_MAY_UNMAP);
}

/* Write BUF (LEN bytes, target offset OFF), leaving aligned zero runs of
 * at least e->grain bytes as holes. */
static int write_sparse(struct engine *e, const uint8_t *buf, uint64_t off, uint64_t len)
{
    if (e->c->compress) {
        /* whole clusters, each compressed (or stored plain if it does not
         * shrink) by the driver; all-zero clusters stay holes */
        for (uint64_t pos = 0; pos < len;) {
            uint64_t n = e->cluster - ((off + pos) % e->cluster);
            if (n > len - pos)
                n = len - pos;
            int ret = kimg_buffer_is_zero(buf + pos, n)
                    ? write_zero_range(e, off + pos, n)
                    : kimg_write_compressed(e->c->dst, buf + pos, off + pos, n);
            if (ret < 0)
                return ret;
            pos += n;
        }
        return 0;
    }
    if (!e->grain)
        return kimg_write(e->c->dst, buf, off, len);
    uint64_t pos = 0;
    while (pos < len) {
        /* the next grain-aligned block (partial at the edges) */
        uint64_t n = e->grain - ((off + pos) % e->grain);
        if (n > len - pos)
            n = len - pos;
        bool zero = kimg_buffer_is_zero(buf + pos, n);
        /* extend the run while blocks keep the same kind */
        uint64_t run = n;
        while (pos + run < len) {
            uint64_t m = len - pos - run < e->grain ? len - pos - run : e->grain;
            if (kimg_buffer_is_zero(buf + pos + run, m) != zero)
                break;
            run += m;
        }
        int ret = zero ? write_zero_range(e, off + pos, run)
                       : kimg_write(e->c->dst, buf + pos, off + pos, run);
        if (ret < 0)
            return ret;
        pos += run;
    }
    return 0;
}

static int copy_data(struct engine *e, struct kimg *src, uint64_t soff,
                     uint64_t doff, uint64_t len)
{
    while (len) {
        uint64_t n = len < CHUNK ? len : CHUNK;
        int ret = kimg_read(src, e->buf, soff, n);
        if (ret < 0) {
            kimg_error("error while reading at offset %llu of '%s'",
                       (unsigned long long)soff, kimg_filename(src));
            return ret;
        }
        ret = write_sparse(e, e->buf, doff, n);
        if (ret < 0) {
            kimg_error("error while writing at offset %llu", (unsigned long long)doff);
            return ret;
        }
        report(e, n);
        soff += n;
        doff += n;
        len -= n;
    }
    return 0;
}

static int copy_source(struct engine *e, struct kimg *src, uint64_t base)
{
    uint64_t size = kimg_size(src);
    for (uint64_t off = 0; off < size;) {
        struct kimg_extent ext;
        int ret;
        if (e->c->target_has_backing) {
            /* -B: the target's backing file has the content of the source's
             * backing chain, so only what the top layer holds is copied */
            ret = kimg_layer_block_status(src, off, size - off, &ext);
            if (ret < 0)
                return ret;
            if (!(ext.flags & KIMG_BS_ALLOCATED)) {
                report(e, ext.length);
                off += ext.length;
                continue;
            }
        }
        ret = kimg_block_status(src, off, size - off, &ext);
        if (ret < 0)
            return ret;
        if (ext.flags & KIMG_BS_ZERO) {
            ret = write_zero_range(e, base + off, ext.length);
            if (ret < 0)
                return ret;
            report(e, ext.length);
        } else {
            ret = copy_data(e, src, off, base + off, ext.length);
            if (ret < 0)
                return ret;
        }
        off += ext.length;
    }
    return 0;
}

int kimg_convert_run(struct kimg_convert *c)
{
    struct engine e = { .c = c };
    struct kimg_info info;
    int ret;

    for (int i = 0; i < c->nb_src; i++)
        e.total += kimg_size(c->src[i]);
    if (kimg_get_info(c->dst, &info) < 0)
        return -EIO;
    e.cluster = info.cluster_size ? info.cluster_size : 65536;
    kimg_info_free(&info);
    if (c->sparse_size) {
        /* holes smaller than a target cluster save nothing in a cluster
         * format and cost a read-modify-write: round up */
        e.grain = c->sparse_size;
        if (e.cluster > e.grain && strcmp(kimg_format_name(c->dst), "raw"))
            e.grain = e.cluster;
    }
    e.buf = kimg_alloc_aligned(CHUNK);
    e.zbuf = c->sparse_size ? NULL : kimg_alloc_aligned(CHUNK);
    if (!e.buf || (!c->sparse_size && !e.zbuf)) {
        free(e.buf);
        free(e.zbuf);
        return kimg_fail(-ENOMEM, "out of memory");
    }
    if (c->progress)
        c->progress(c->opaque, 0, e.total);
    uint64_t base = 0;
    ret = 0;
    for (int i = 0; i < c->nb_src && ret == 0; i++) {
        ret = copy_source(&e, c->src[i], base);
        base += kimg_size(c->src[i]);
    }
    free(e.buf);
    free(e.zbuf);
    if (ret == 0)
        ret = kimg_flush(c->dst);
    return ret;
}
