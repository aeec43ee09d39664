/*
 * compare.c — the compare engine (compare.h).  The caller's thread walks
 * both images' block status and queues each range that must be looked at
 * as a job of the worker pool (img/pool.c); a worker gets each side's
 * bytes (not a side known to read as zeros) and finds the equal prefix.
 * Each side is read into the job's page-aligned buffer; with
 * KIMG_MAP_SOURCES=1, data stored plainly in a host file (raw,
 * uncompressed qcow2 clusters) is compared in place from a mapping
 * (img/srcmap.c) instead, slower in VMs (README "Sources are read, not
 * mapped").  Results are taken in order, and
 * the walk's own findings (a strict-mode difference, a block status error)
 * only after every job before them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kimg/compare.h"
#include "kimg/convert.h"
#include "kimg/driver.h"
#include "pool.h"
#include "srcmap.h"
#include "internal.h"

#define CHUNK (2u << 20)
#define MAP_WINDOW (16u << 20)  /* shared source mappings (srcmap.h) */
#define SECTOR 512u

/* Byte count of the leading run of A and B that is equal, in whole 512-byte
 * sectors (qemu-img reports mismatches at sector granularity); B NULL:
 * compared with zeros. */
static uint64_t equal_prefix(const uint8_t *a, const uint8_t *b, uint64_t len)
{
    /* the common case, equal: one pass over the whole chunk */
    if (b ? !memcmp(a, b, len) : kimg_buffer_is_zero(a, len))
        return len;
    uint64_t i = 0;
    while (i < len) {
        uint64_t n = len - i < SECTOR ? len - i : SECTOR;
        if (b ? memcmp(a + i, b + i, n) : (a[i] != 0 || memcmp(a + i, a + i + 1, n - 1)))
            return i;
        i += n;
    }
    return len;
}

/* One side of a job: zeros, a plain host range, or read. */
struct part {
    bool zero;                  /* reads as zeros: nothing to get */
    struct kimg_file *hfile;    /* stored plainly at hoff there, or NULL */
    uint64_t hoff;
    uint8_t *buf;               /* CHUNK bytes */
    struct kimg_srcmap *map;    /* the window holding the data, or NULL */
    const uint8_t *data;
};

struct job {
    uint64_t off, len;
    struct part side[2];
    uint64_t same;              /* equal prefix, whole sectors */
};

struct engine {
    struct kimg_compare *c;
    struct kimg *img[2];
    const char *name[2];
    struct kimg_pool *pool;
    struct kimg_srcwins *wins;
};

static int read_error(struct engine *e, int i, uint64_t off, int ret)
{
    const char *m = kimg_last_error();
    char msg[400];
    snprintf(msg, sizeof(msg), "%s", m ? m : "I/O error");
    kimg_clear_error();
    return kimg_fail(ret < 0 ? ret : -EIO, "Error while reading offset %" PRIu64 " of %s: %s",
                     off, e->name[i], msg);
}

/* Side I of J into p->data: mapped, read, or NULL (zeros). */
static int fetch(struct engine *e, struct job *j, int i)
{
    struct part *p = &j->side[i];
    p->data = NULL;
    if (p->zero)
        return 0;
    if (p->hfile) {
        int ret = kimg_srcwins_get(e->wins, p->hfile, p->hoff, j->len, &p->map, &p->data);
        if (ret == 0)
            return 0;
        p->map = NULL;
        if (ret == -EIO)
            return read_error(e, i, j->off, ret);
    }
    int ret = kimg_read(e->img[i], p->buf, j->off, j->len);
    if (ret < 0)
        return read_error(e, i, j->off, ret);
    p->data = p->buf;
    return 0;
}

static int run_job(void *opaque, void *local, void *job)
{
    struct engine *e = opaque;
    struct job *j = job;
    int ret = fetch(e, j, 0);
    if (ret == 0)
        ret = fetch(e, j, 1);
    if (ret == 0) {
        const uint8_t *a = j->side[0].data, *b = j->side[1].data;
        j->same = !a ? equal_prefix(b, NULL, j->len)
                     : !b ? equal_prefix(a, NULL, j->len) : equal_prefix(a, b, j->len);
    }
    /* what was compared in place was the files' data (srcmap.h) */
    for (int i = 0; i < 2 && ret == 0; i++)
        if (j->side[i].map && kimg_srcmap_check(j->side[i].map) < 0)
            ret = read_error(e, i, j->off, -EIO);
    for (int i = 0; i < 2; i++)
        if (j->side[i].map)
            kimg_srcwins_put(e->wins, j->side[i].map);
    j->side[0].map = j->side[1].map = NULL;
    return ret;
}

/* Take the oldest job's result: SAME, or the difference or error it found. */
static int take_oldest(struct engine *e)
{
    int ret;
    struct job *j = kimg_pool_take(e->pool, &ret, true);
    if (!j)
        return KIMG_COMPARE_SAME;
    int res = KIMG_COMPARE_SAME;
    if (ret < 0) {
        res = KIMG_COMPARE_EREAD;
    } else if (j->same < j->len) {
        e->c->diff = KIMG_COMPARE_CONTENT;
        e->c->offset = j->off + j->same;
        res = KIMG_COMPARE_DIFF;
    }
    kimg_pool_put(e->pool, j);
    return res;
}

/* Every queued job's result in order; the first difference or error. */
static int drain(struct engine *e)
{
    while (kimg_pool_pending(e->pool) > 0) {
        int ret = take_oldest(e);
        if (ret != KIMG_COMPARE_SAME)
            return ret;
    }
    return KIMG_COMPARE_SAME;
}

/* The host range of EXT's data at guest OFF (LEN bytes), if it is stored
 * plainly inside a file that is not a device: to compare in place. */
static struct kimg_file *plain_host(const struct kimg_extent *ext, uint64_t off, uint64_t len,
                                    uint64_t *hoff)
{
    struct kimg_file *f = ext->host_file;
    if (!(ext->flags & KIMG_BS_OFFSET_VALID) || (ext->flags & KIMG_BS_COMPRESSED) || !f ||
        f->direct || kimg_file_is_device(f))
        return NULL;
    *hoff = ext->offset + (off - ext->start);
    return f;
}

/* Queue [off, off+len) (len <= CHUNK), taking older results while no slot
 * is free; SAME, or the first difference or error among them. */
static int submit(struct engine *e, uint64_t off, uint64_t len, const struct kimg_extent ext[2])
{
    struct job *j;
    while (!(j = kimg_pool_get(e->pool))) {
        int ret = take_oldest(e);
        if (ret != KIMG_COMPARE_SAME)
            return ret;
    }
    j->off = off;
    j->len = len;
    for (int i = 0; i < 2; i++) {
        struct part *p = &j->side[i];
        p->zero = ext[i].flags & KIMG_BS_ZERO;
        p->hfile = p->zero ? NULL : plain_host(&ext[i], off, len, &p->hoff);
    }
    kimg_pool_submit(e->pool, j);
    return KIMG_COMPARE_SAME;
}

/* Block status of side I at OFF; the error line set on failure. */
static int status(struct engine *e, int i, uint64_t off, uint64_t len, struct kimg_extent *ext)
{
    /* -s compares what qemu-img reports; otherwise only the content counts */
    int ret = e->c->strict ? kimg_block_status(e->img[i], off, len, ext)
                           : kimg_content_status(e->img[i], off, len, ext);
    if (ret == 0)
        return KIMG_COMPARE_SAME;
    const char *m = kimg_last_error();
    char msg[400];
    snprintf(msg, sizeof(msg), "%s", m ? m : "I/O error");
    kimg_clear_error();
    kimg_error("error while reading block status at offset %" PRIu64 " of %s: %s", off,
               e->name[i], msg);
    return KIMG_COMPARE_ESTATUS;
}

/* The part of the larger image past the smaller one must read as zeros
 * (sequential: nothing else is in flight by then). */
static int check_tail_zero(struct engine *e, int i, uint8_t *buf, uint64_t off, uint64_t end)
{
    while (off < end) {
        struct kimg_extent ext;
        int ret = status(e, i, off, end - off, &ext);
        if (ret)
            return ret;
        uint64_t n = ext.length < CHUNK ? ext.length : CHUNK;
        if (!(ext.flags & KIMG_BS_ZERO)) {
            if ((ret = kimg_read(e->img[i], buf, off, n)) < 0) {
                read_error(e, i, off, ret);
                return KIMG_COMPARE_EREAD;
            }
            uint64_t same = equal_prefix(buf, NULL, n);
            if (same < n) {
                e->c->diff = KIMG_COMPARE_CONTENT;
                e->c->offset = off + same;
                return KIMG_COMPARE_DIFF;
            }
        }
        off += n;
    }
    return KIMG_COMPARE_SAME;
}

static int walk(struct engine *e)
{
    struct kimg_compare *c = e->c;
    uint64_t size_a = kimg_size(c->a), size_b = kimg_size(c->b);
    uint64_t common = size_a < size_b ? size_a : size_b;
    uint64_t off = 0;
    int ret;

    while (off < common) {
        struct kimg_extent ext[2];
        if ((ret = status(e, 0, off, common - off, &ext[0])) ||
            (ret = status(e, 1, off, common - off, &ext[1]))) {
            /* an earlier range may still differ: that comes first */
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", kimg_last_error());
            kimg_clear_error();
            int first = drain(e);
            if (first != KIMG_COMPARE_SAME)
                return first;
            kimg_error("%s", msg);
            return ret;
        }
        uint64_t n = ext[0].length < ext[1].length ? ext[0].length : ext[1].length;
        /* qemu-img compares the whole status: whether a host offset is
         * known counts too (an encrypted image's data has none, so it
         * differs from the same data stored plain), and so does its EOF
         * flag, set when the extent the format reports reaches the
         * image's end (one extent over the whole disk differs from the
         * same data reported in two) */
        const unsigned bits = KIMG_BS_ALLOCATED | KIMG_BS_ZERO | KIMG_BS_DATA |
                              KIMG_BS_OFFSET_VALID;
        bool eof0 = off + ext[0].length >= size_a, eof1 = off + ext[1].length >= size_b;
        if (c->strict && ((ext[0].flags & bits) != (ext[1].flags & bits) || eof0 != eof1)) {
            int first = drain(e);
            if (first != KIMG_COMPARE_SAME)
                return first;
            c->diff = KIMG_COMPARE_STRICT_STATUS;
            c->offset = off;
            return KIMG_COMPARE_DIFF;
        }
        if ((ext[0].flags & KIMG_BS_ZERO) && (ext[1].flags & KIMG_BS_ZERO)) {
            off += n;     /* both read as zeros: proven equal without reading */
            continue;
        }
        /* queue the extent in chunks */
        for (uint64_t end = off + n; off < end;) {
            uint64_t m = end - off < CHUNK ? end - off : CHUNK;
            if ((ret = submit(e, off, m, ext)))
                return ret;
            off += m;
        }
    }
    if ((ret = drain(e)))
        return ret;
    if (size_a != size_b) {
        c->tail = true;
        struct job *j = kimg_pool_job(e->pool, 0);
        return check_tail_zero(e, size_a > size_b ? 0 : 1, j->side[0].buf, common,
                               size_a > size_b ? size_a : size_b);
    }
    return KIMG_COMPARE_SAME;
}

/* Workers: one per core (at least 2, at most 8), with two jobs in flight
 * each but at most 8 (4 MiB of buffers a job: 32 MiB). */
static int start(struct engine *e)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu < 2 ? 2 : ncpu > 8 ? 8 : (int)ncpu;
    int slots = 2 * threads > 8 ? 8 : 2 * threads;
    struct kimg_pool_def def = { .threads = threads, .slots = slots,
                                 .job_size = sizeof(struct job), .run = run_job, .opaque = e };
    e->wins = kimg_srcwins_new(MAP_WINDOW);
    e->pool = e->wins ? kimg_pool_new(&def) : NULL;
    if (!e->pool)
        return -ENOMEM;
    for (int i = 0; i < slots; i++) {
        struct job *j = kimg_pool_job(e->pool, i);
        for (int k = 0; k < 2; k++) {
            j->side[k].buf = kimg_buffer_alloc(CHUNK);
            if (!j->side[k].buf)
                return -ENOMEM;
        }
    }
    return 0;
}

/* Stop the workers, then free the buffers they used. */
static void stop(struct engine *e)
{
    if (!e->pool) {
        kimg_srcwins_free(e->wins);
        return;
    }
    kimg_pool_stop(e->pool);
    for (int i = 0; i < kimg_pool_slots(e->pool); i++) {
        struct job *j = kimg_pool_job(e->pool, i);
        kimg_buffer_free(j->side[0].buf, CHUNK);
        kimg_buffer_free(j->side[1].buf, CHUNK);
    }
    kimg_pool_free(e->pool);
    e->pool = NULL;
    kimg_srcwins_free(e->wins);     /* every job has put its windows back */
    e->wins = NULL;
}

int kimg_compare_run(struct kimg_compare *c)
{
    struct engine e = { .c = c, .img = { c->a, c->b }, .name = { c->name_a, c->name_b } };
    c->tail = false;
    c->offset = 0;
    if (kimg_size(c->a) != kimg_size(c->b) && c->strict) {
        c->diff = KIMG_COMPARE_STRICT_SIZE;
        return KIMG_COMPARE_DIFF;
    }
    if (start(&e) < 0) {
        stop(&e);
        kimg_clear_error();
        kimg_error("cannot start the comparison: out of memory or threads");
        return KIMG_COMPARE_EREAD;
    }
    struct kimg_srcsizes sizes[2];
    kimg_srcmap_note_sizes(c->a, NULL, &sizes[0]);
    kimg_srcmap_note_sizes(c->b, NULL, &sizes[1]);
    int ret = walk(&e);
    stop(&e);
    /* a difference or equality found in a file that changed size is none */
    if ((ret == KIMG_COMPARE_SAME || ret == KIMG_COMPARE_DIFF) &&
        (kimg_srcmap_check_sizes(c->a, &sizes[0]) < 0 ||
         kimg_srcmap_check_sizes(c->b, &sizes[1]) < 0))
        ret = KIMG_COMPARE_EREAD;
    return ret;
}
