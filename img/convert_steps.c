/*
 * convert_steps.c — the progress steps of `convert -p`, as qemu-img 7.2
 * prints them (callers such as vdsm parse them).  qemu-img cuts the copy
 * into pieces from the sources' block status and counts only the pieces
 * it reads as data (and zero pieces with -S 0); it first walks the whole
 * copy to total them, then reports the share done as each piece starts.
 * kimg's engine cuts its work differently, so this file walks the sources
 * a second (and third) time, cutting pieces by qemu-img's rules, and
 * reports those pieces as the engine's own jobs pass them.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include "convert_steps.h"
#include "kimg/driver.h"
#include "internal.h"

#define SECTOR              512u
/* qemu's largest request: INT_MAX bytes, in whole sectors */
#define REQUEST_MAX_SECTORS ((uint64_t)INT_MAX / SECTOR)
/* qemu-img convert's I/O buffer: 2 MiB */
#define BUF_SECTORS         4096u

enum { ST_DATA, ST_ZERO, ST_BACKING };

static uint64_t div_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

/* Where qemu's block status for EXT (a reply for SRC at EXT->start) ends:
 * each layer it consults cuts its reply at its units (status_units). */
static uint64_t qemu_extent_end(struct kimg *src, const struct kimg_extent *ext, int depth)
{
    uint64_t off = ext->start, end = ext->start + ext->length;
    struct kimg *l = src;
    for (int d = 0; l && d <= depth; d++, l = l->backing) {
        uint64_t span, cluster;
        kimg_status_units(l, &span, &cluster);
        if (span && (off / span + 1) * span < end)
            end = (off / span + 1) * span;
        if (d == depth && (ext->flags & KIMG_BS_COMPRESSED) && cluster &&
            (off / cluster + 1) * cluster < end)
            end = (off / cluster + 1) * cluster;
    }
    /* qemu-img's own cut (convert_iteration_sectors: "avoid that
     * sector_next_status becomes unaligned"): a reply whose end lies past
     * a cluster boundary of the source's top layer but inside a cluster
     * stops at that boundary.  Replies end inside a cluster where a layer
     * has subclusters (extended L2), where a backing file's clusters are
     * smaller, and where qemu limits a data reply to what the host file
     * holds (a cluster written only in part, its tail a hole once the
     * file system has allocated the written part). */
    uint64_t span, cluster;
    kimg_status_units(src, &span, &cluster);
    if (cluster > SECTOR && end % cluster && end - end % cluster > off)
        end -= end % cluster;
    return end;
}

/* The block status at OFF (at most LEN bytes) as qemu-img's convert asks
 * for it: through the chain, or only the top layer with -B.  The request
 * stops at the top layer's unit (qemu stops there too): it bounds the
 * walk. */
static int layer_status(struct convert_steps *q, struct kimg *src, uint64_t off, uint64_t len,
                        struct kimg_extent *ext)
{
    q->cut_by_span = false;
    uint64_t span, cluster;
    kimg_status_units(src, &span, &cluster);
    if (span && (off / span + 1) * span - off <= len) {
        len = (off / span + 1) * span - off;
        q->cut_by_span = true;
    }
    if (!q->c->target_has_backing)
        return kimg_block_status(src, off, len, ext);
    return kimg_layer_block_status(src, off, len, ext);
}

/* One piece at SECTOR, as qemu-img's convert_iteration_sectors cuts it:
 * its length in sectors (q->status says what it is), or -errno. */
static int64_t piece(struct convert_steps *q, uint64_t sector)
{
    struct kimg_convert *c = q->c;
    int i = 0;
    uint64_t part = 0;
    while (i < c->nb_src - 1 && sector - part >= q->src_sectors[i])
        part += q->src_sectors[i++];

    uint64_t n = q->total_sectors - sector;
    bool past_backing = false;
    if (n > REQUEST_MAX_SECTORS)
        n = REQUEST_MAX_SECTORS;
    if (q->backing_sectors >= 0) {
        /* zeros past the target's backing file need not be written */
        if (sector >= (uint64_t)q->backing_sectors)
            past_backing = true;
        else if (sector + n > (uint64_t)q->backing_sectors)
            n = (uint64_t)q->backing_sectors - sector;
    }

    if (q->next_status <= sector) {
        struct kimg *src = c->src[i];
        uint64_t off = (sector - part) * SECTOR, size = kimg_size(src);
        uint64_t len = n * SECTOR;
        struct kimg_extent ext;
        int ret, depth;
        if (off >= size)
            return -EIO;
        if (len > size - off)
            len = size - off;
        if (q->cache_src == i && off >= q->cache_start && off < q->cache_end) {
            /* the same run: qemu's reply from here is its tail */
            ext = q->cache;
            ext.length = q->cache_end - off < len ? q->cache_end - off : len;
            ext.start = off;
        } else {
            ret = layer_status(q, src, off, len, &ext);
            if (ret < 0)
                return ret;
            q->cache_src = -1;
            if (ext.length < len || q->cut_by_span) {
                q->cache_src = i;
                q->cache_start = off;
                q->cache_end = off + ext.length;
                q->cache = ext;
            }
        }
        depth = c->target_has_backing ? 0 : ext.depth;
        /* -B: unallocated is zero where no backing file lies below */
        if (c->target_has_backing && !(ext.flags & (KIMG_BS_DATA | KIMG_BS_ZERO)) &&
            (!src->backing || off >= kimg_size(src->backing)))
            ext.flags |= KIMG_BS_ZERO;
        n = div_up(qemu_extent_end(src, &ext, depth) - off, SECTOR);
        if (ext.flags & KIMG_BS_ZERO)
            q->status = past_backing ? ST_BACKING : ST_ZERO;
        else if (ext.flags & KIMG_BS_DATA)
            q->status = ST_DATA;
        else
            q->status = c->target_has_backing ? ST_BACKING : ST_DATA;
        q->next_status = sector + n;
    }

    if (n > q->next_status - sector)
        n = q->next_status - sector;
    if (q->status == ST_DATA && n > q->buf_sectors)
        n = q->buf_sectors;
    if (c->compress) {
        /* whole clusters: a shorter run is read as a cluster of data (the
         * status stays so until the next block status call) */
        if (n < q->cluster_sectors) {
            n = q->total_sectors - sector < q->cluster_sectors ? q->total_sectors - sector
                                                               : q->cluster_sectors;
            q->status = ST_DATA;
        } else {
            n -= n % q->cluster_sectors;
        }
    }
    /* -S 0: zeros are written as data, a buffer at a time */
    if (!c->sparse_size && q->status == ST_ZERO && n > q->buf_sectors)
        n = q->buf_sectors;
    return (int64_t)n;
}

static bool counted(const struct convert_steps *q)
{
    return q->status == ST_DATA || (!q->c->sparse_size && q->status == ST_ZERO);
}

void convert_steps_start(struct convert_steps *q, struct kimg_convert *c,
                         uint64_t target_cluster)
{
    *q = (struct convert_steps){ .c = c, .backing_sectors = -1, .buf_sectors = BUF_SECTORS,
                                 .cache_src = -1 };
    if (!c->steps || c->nb_src < 1)
        return;
    q->src_sectors = calloc((size_t)c->nb_src, sizeof(*q->src_sectors));
    if (!q->src_sectors)
        return;
    for (int i = 0; i < c->nb_src; i++) {
        q->src_sectors[i] = div_up(kimg_size(c->src[i]), SECTOR);
        q->total_sectors += q->src_sectors[i];
    }
    if (c->compress) {
        q->cluster_sectors = target_cluster / SECTOR ? target_cluster / SECTOR : 1;
        q->buf_sectors = q->cluster_sectors;   /* one cluster at a time */
    }
    if (c->target_has_backing && c->dst->backing)
        q->backing_sectors = (int64_t)div_up(kimg_size(c->dst->backing), SECTOR);
    /* the first walk: what is counted in all */
    for (uint64_t s = 0; s < q->total_sectors;) {
        int64_t n = piece(q, s);
        if (n <= 0) {
            kimg_clear_error();  /* the copy reports the same failure */
            return;
        }
        if (counted(q))
            q->allocated += (uint64_t)n;
        s += (uint64_t)n;
    }
    q->next_status = 0;
    q->cache_src = -1;
    q->active = true;
}

void convert_steps_advance(struct convert_steps *q, uint64_t to)
{
    uint64_t to_sector = div_up(to, SECTOR);
    while (q->active && q->sector < q->total_sectors && q->sector < to_sector) {
        int64_t n = piece(q, q->sector);
        if (n <= 0) {
            kimg_clear_error();
            q->active = false;
            return;
        }
        q->sector += (uint64_t)n;
        if (counted(q)) {
            q->done += (uint64_t)n;
            q->c->steps(q->c->opaque, q->done, q->allocated);
        }
    }
}

void convert_steps_free(struct convert_steps *q)
{
    free(q->src_sectors);
    q->src_sectors = NULL;
    q->active = false;
}
