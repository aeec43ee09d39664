/*
 * commit.c — the commit engine (qemu-img commit): write what the layers
 * above a base decide into the base, then empty the top.  The chain is
 * opened without locks and locked here as qemu locks it (top read-write,
 * layers between read-only); the base is opened a second time, read-write
 * and locked, since the chain's handle of it is read-only.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "kimg/convert.h"
#include "kimg/driver.h"
#include "internal.h"
#include "lock.h"
#include "tunables.h"

#define CHUNK (2u << 20)

/* qemu's bdrv_find_backing_image for plain file names: NAME taken relative
 * to each layer's folder names that layer's backing file if both resolve
 * to the same real path.  Returns the depth of the base (>= 1) or -1. */
static int find_base(struct kimg *top, const char *name)
{
    int d = 1;
    if (kimg_image_path(name, &name) < 0) {
        kimg_clear_error();     /* not a local file: not in the chain */
        return -1;
    }
    for (struct kimg *l = top; l && l->backing; l = l->backing, d++) {
        char a[PATH_MAX], b[PATH_MAX];
        char *cand = kimg_path_relative_to(l->filename, name);
        bool same = cand && l->backing_path && realpath(cand, a) &&
                    realpath(l->backing_path, b) && !strcmp(a, b);
        free(cand);
        if (same)
            return d;
    }
    return -1;
}

enum span_kind { SPAN_SKIP, SPAN_ZERO, SPAN_DATA };

/* What the layers above depth BASE decide at [off, off+n): the kind and
 * *len (>= 1) of the first run.  A layer shorter than OFF reads zeros
 * there, which hides everything below it (qemu counts that allocated). */
static int span_above(struct kimg *top, int base, uint64_t off, uint64_t n,
                      enum span_kind *kind, uint64_t *len)
{
    struct kimg *l = top;
    for (int d = 0; d < base; d++, l = l->backing) {
        struct kimg_extent e;
        if (off >= kimg_size(l)) {
            *kind = SPAN_ZERO;
            *len = n;
            return 0;
        }
        if (n > kimg_size(l) - off)
            n = kimg_size(l) - off;
        int ret = kimg_layer_block_status(l, off, n, &e);
        if (ret < 0)
            return ret;
        n = e.length;
        if (e.flags & KIMG_BS_ALLOCATED) {
            *kind = (e.flags & KIMG_BS_ZERO) ? SPAN_ZERO : SPAN_DATA;
            *len = n;
            return 0;
        }
    }
    *kind = SPAN_SKIP;
    *len = n;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sleep until WRITTEN bytes since START are within RATE bytes/s. */
static void throttle(uint64_t rate, uint64_t written, double start)
{
    if (!rate)
        return;
    double due = start + (double)written / (double)rate, t = now();
    if (due > t) {
        double w = due - t;
        struct timespec ts = { .tv_sec = (time_t)w,
                               .tv_nsec = (long)((w - (double)(time_t)w) * 1e9) };
        nanosleep(&ts, NULL);
    }
}

static int copy_down(const struct kimg_commit *c, struct kimg *top, int depth,
                     struct kimg *base)
{
    uint64_t size = kimg_size(top), off = 0, written = 0;
    uint8_t *buf = kimg_alloc_aligned(CHUNK);
    double start = now();
    int ret = 0;

    if (!buf)
        return kimg_fail(-ENOMEM, "out of memory");
    while (off < size) {
        uint64_t n = size - off < CHUNK ? size - off : CHUNK, len = 0;
        enum span_kind kind;
        /* one run of a kind: skipped and zero runs as long as they are,
         * data runs read in pieces of at most CHUNK */
        ret = span_above(top, depth, off, size - off, &kind, &len);
        if (ret == 0 && kind == SPAN_DATA && len > n)
            len = n;
        while (ret == 0 && kind == SPAN_DATA && len < n) {
            enum span_kind k2;
            uint64_t l2;
            ret = span_above(top, depth, off + len, n - len, &k2, &l2);
            if (ret < 0 || k2 != SPAN_DATA)
                break;
            len += l2;
        }
        if (ret < 0)
            break;
        if (kind == SPAN_DATA) {
            ret = kimg_read(top, buf, off, len);
            if (ret == 0)
                ret = kimg_write(base, buf, off, len);
        } else if (kind == SPAN_ZERO) {
            ret = kimg_write_zeroes(base, off, len, KIMG_ZERO_MAY_UNMAP);
        }
        if (ret < 0)
            break;
        off += len;
        if (kind != SPAN_SKIP) {
            written += len;
            throttle(c->rate, written, start);
        }
        if (c->progress)
            c->progress(c->opaque, off, size);
    }
    free(buf);
    if (ret == 0)
        ret = kimg_flush(base);
    return ret;
}

/* The common case, the top into its own backing file with no rate limit,
 * through the copy engine (img/convert.c): with target_has_backing it
 * copies only what the top holds (data as data, zero clusters as zero
 * writes, the rest skipped), reading on worker threads (plain data mapped,
 * compressed data decompressed there) and writing a qcow2 base in parallel
 * (clusters allocated in order, linked after their data: a crash leaks,
 * never exposes).  Zero detection is all but off, as in qemu-img commit:
 * only a whole job (up to 2 MiB) of zero data goes in as a zero write. */
static int copy_parallel(const struct kimg_commit *c, struct kimg *top, struct kimg *base)
{
    struct kimg *src[1] = { top };
    struct kimg_convert cv = {
        .src = src, .nb_src = 1, .dst = base,
        .sparse_size = UINT64_C(1) << 62,
        .target_has_backing = true,
        .progress = c->progress, .opaque = c->opaque,
    };
    return kimg_convert_run(&cv);
}

/* Hold TOP's locks on a descriptor of our own before opening it (the
 * chain is opened unlocked): read-write, as qemu-img commit opens it. */
static int lock_top(const struct kimg_commit *c, int *fd)
{
    const char *path = c->open_opts ? kimg_opts_get(c->open_opts, "file.filename") : NULL;
    if (c->open_opts && !path)
        return 0;   /* the open that follows reports it */
    if (!path && kimg_image_path(c->filename, &path) < 0) {
        kimg_clear_error();
        return 0;   /* the open that follows reports it */
    }
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return 0;   /* the open that follows reports it */
    return kimg_lock_fd(*fd, true, path);
}

int kimg_commit(const struct kimg_commit *c)
{
    struct kimg *top = NULL, *rtop = NULL, *base = NULL, *chain_base;
    unsigned cache = c->flags & (KIMG_OPEN_DIRECT | KIMG_OPEN_NOSYNC);
    int lockfd = -1, depth, ret;

    /* open failures in qemu-img's words: "Could not open 'TOP': " + why */
    ret = lock_top(c, &lockfd);
    if (ret == 0 && c->open_opts)
        ret = kimg_open_opts(&top, c->open_opts, KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK | cache);
    else if (ret == 0)
        ret = kimg_open(&top, c->filename, c->format,
                        KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK | cache);
    if (ret < 0) {
        kimg_error_prefix("Could not open '%s': ", c->filename);
        goto out;
    }
    if (!top->backing) {
        ret = kimg_fail(-EINVAL, "Image does not have a backing file");
        goto out;
    }
    depth = 1;
    if (c->base) {
        depth = find_base(top, c->base);
        if (depth < 0) {
            ret = kimg_fail(-ENOENT, "Did not find '%s' in the backing chain of '%s'",
                            c->base, c->filename);
            goto out;
        }
    }
    chain_base = top;
    for (int d = 0; d < depth; d++) {
        /* the layers between are read: locked read-only, as qemu does */
        if (d > 0 &&
            (ret = kimg_file_lock(chain_base->file, false, chain_base->filename)) < 0)
            goto out;
        chain_base = chain_base->backing;
    }
    /* the base again, read-write and locked (with its own chain below);
     * with the top's "backing.[backing.]..." open options, as qemu opens
     * it (an encrypted base's key: backing.encrypt.key-secret=ID) */
    struct kimg_opts *bopts = NULL;
    char *bdriver = NULL, prefix[8 * (KIMG_MAX_CHAIN + 1) + 1] = "";
    for (int d = 0; d < depth && d <= KIMG_MAX_CHAIN; d++)
        strcat(prefix, "backing.");
    ret = top->open_opts ? kimg_open_opts_sub(top, prefix, &bopts, &bdriver) : 0;
    if (ret == 0)
        ret = kimg_open_layer_opts(&base, chain_base->filename,
                                   bdriver ? bdriver : chain_base->probed ? NULL
                                   : chain_base->drv->name,
                                   KIMG_OPEN_RDWR | cache, bopts, NULL);
    kimg_opts_free(bopts);
    free(bdriver);
    if (ret < 0) {
        /* qemu-img opens the base with the top, as its backing file */
        kimg_error_prefix("Could not open '%s': Could not open backing file: ", c->filename);
        goto out;
    }
    if (kimg_size(base) < kimg_size(top)) {
        ret = kimg_truncate(base, kimg_size(top), KIMG_PREALLOC_OFF);
        if (ret < 0)
            goto out;
    }
    /* the data is read through a read-only handle of the chain: reads of
     * a writable qcow2 image hold its lock throughout, reads of a
     * read-only one decompress in parallel (the writable handle above,
     * opened as qemu-img commit opens the top, empties it afterwards) */
    ret = kimg_open_layer_opts(&rtop, top->filename, top->drv->name,
                               KIMG_OPEN_NO_LOCK | cache, top->open_opts, NULL);
    if (ret < 0)
        goto out;
    if (c->progress)
        c->progress(c->opaque, 0, kimg_size(top));
    if (depth == 1 && !c->rate && !kimg_tunables()->commit_serial)
        ret = copy_parallel(c, rtop, base);
    else
        ret = copy_down(c, rtop, depth, base);
    int rc = kimg_close(rtop);
    rtop = NULL;
    if (ret == 0)
        ret = rc;
    if (ret < 0)
        goto out;
    if (!c->keep_top && !c->base) {
        ret = kimg_make_empty(top);
        if (ret < 0)
            goto out;
    }
out:
    if (rtop)
        kimg_close(rtop);
    if (base) {
        int r = kimg_close(base);
        if (ret == 0)
            ret = r;
    }
    if (top) {
        int r = kimg_close(top);
        if (ret == 0)
            ret = r;
    }
    if (lockfd >= 0)
        close(lockfd);
    return ret;
}
