/*
 * rebase.c — the rebase engine (qemu-img rebase): give an overlay a new
 * backing file without changing what it reads.  Safe mode compares, over
 * every range the overlay leaves to its backing, the old chain's content
 * with the new backing's and copies the old content into the overlay where
 * they differ (sector-wise, as qemu-img); then the header is switched.
 * With -c (qemu-img 8.2's option) the clusters those sectors fall in are
 * written whole, the overlay's view of each, compressed (qemu-img 8.2
 * aligns the writes to the cluster size for it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "kimg/driver.h"

#define CHUNK   (2u << 20)   /* qemu-img's IO_BUF_SIZE */
#define SECTOR  512u

/* Put "WHAT 'NAME': " before the message already set (or strerror). */
static void prefix_error(const char *what, const char *name, int err)
{
    const char *m = kimg_last_error();
    char *msg = strdup(m ? m : strerror(-err));
    kimg_clear_error();
    kimg_error("%s '%s': %s", what, name, msg ? msg : strerror(-err));
    free(msg);
}

int kimg_rebase_open_backing(struct kimg *img, const char *name, const char *format,
                             unsigned flags, struct kimg **out)
{
    const char *path;
    int ret = kimg_image_path(name, &path);
    if (ret < 0) {
        prefix_error("Could not open new backing file", name, ret);
        return ret;
    }
    char *full = kimg_path_relative_to(img->filename, path);
    if (!full)
        return -ENOMEM;
    ret = kimg_open(out, full, format, (flags & ~KIMG_OPEN_RDWR) | KIMG_OPEN_PATH);
    free(full);
    if (ret < 0)
        prefix_error("Could not open new backing file", name, ret);
    return ret;
}

/* Depth of NEW's file in IMG's chain (0 = IMG), or -1: when the new backing
 * is a layer of the old chain, what that layer or one below decides is the
 * same in both views and need not be read (qemu's prefix chain). */
static int depth_in_chain(struct kimg *img, struct kimg *nb)
{
    if (!nb)
        return -1;
    int d = 0;
    for (struct kimg *l = img; l; l = l->backing, d++)
        if (kimg_file_same(l->file, nb->file))
            return d;
    return -1;
}

/* Fill BUF with what LAYER reads at [off, off+n) (zeros past its end, and
 * for NULL); ranges that block status calls zero are not read.  *same is
 * set when every byte is decided at depth >= PREFIX (PREFIX < 0: never). */
static int read_view(struct kimg *layer, uint8_t *buf, uint64_t off, uint64_t n,
                     int prefix, bool *same)
{
    uint64_t size = layer ? kimg_size(layer) : 0, pos = off, end = off + n;
    uint64_t run = 0;   /* pending data run [pos - run, pos) */
    int ret;

    *same = prefix >= 0;
    while (pos < end && pos < size) {
        struct kimg_extent e;
        uint64_t len = (end < size ? end : size) - pos;
        ret = kimg_block_status(layer, pos, len, &e);
        if (ret < 0)
            return ret;
        if (prefix < 0 || e.depth < prefix)
            *same = false;
        if (e.flags & KIMG_BS_ZERO) {
            if (run && (ret = kimg_read(layer, buf + (pos - run - off), pos - run, run)) < 0)
                return ret;
            run = 0;
            memset(buf + (pos - off), 0, e.length);
        } else {
            run += e.length;
        }
        pos += e.length;
    }
    if (run && (ret = kimg_read(layer, buf + (pos - run - off), pos - run, run)) < 0)
        return ret;
    if (pos < end) {
        memset(buf + (pos - off), 0, end - pos);
        if (layer != NULL && prefix >= 0)
            *same = false;
    }
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* -c: the state of the compressed copy */
struct rebase_compress {
    uint8_t *buf;       /* one cluster */
    uint64_t cluster;
    uint64_t done;      /* clusters before this are written */
};

/* -c: write every cluster [a, b) touches, the overlay's current view of
 * it (the old chain's content: the copy only touches ranges the overlay
 * leaves to its backing), compressed; an all-zero cluster as zeros. */
static int write_clusters(struct kimg *img, struct rebase_compress *rc, uint64_t a, uint64_t b)
{
    uint64_t size = kimg_size(img), cs = rc->cluster;
    for (uint64_t c = a / cs * cs; c < b && c < size; c += cs) {
        uint64_t n = size - c < cs ? size - c : cs;
        if (c + n <= rc->done)
            continue;
        int ret = kimg_read(img, rc->buf, c, n);
        if (ret == 0)
            ret = all_zero(rc->buf, n) ? kimg_write_zeroes(img, c, n, 0)
                                       : kimg_write_compressed(img, rc->buf, c, n);
        if (ret < 0)
            return ret;
        rc->done = c + n;
    }
    return 0;
}

/* Bring the old content of [off, off+n) into the overlay wherever OLD and
 * NEW differ, in runs of whole sectors (the last one may be short); with
 * RC (-c), in whole compressed clusters. */
static int copy_differences(struct kimg *img, const uint8_t *old, const uint8_t *nw,
                            uint64_t off, uint64_t n, struct rebase_compress *rc)
{
    uint64_t i = 0;
    while (i < n) {
        uint64_t s = n - i < SECTOR ? n - i : SECTOR;
        if (!memcmp(old + i, nw + i, s)) {
            i += s;
            continue;
        }
        uint64_t start = i;
        i += s;
        while (i < n) {
            s = n - i < SECTOR ? n - i : SECTOR;
            if (!memcmp(old + i, nw + i, s))
                break;
            i += s;
        }
        int ret = rc ? write_clusters(img, rc, off + start, off + i)
                : all_zero(old + start, i - start)
                ? kimg_write_zeroes(img, off + start, i - start, 0)
                : kimg_write(img, old + start, off + start, i - start);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* How much from OFF (at most LEN) needs no look at the data (*n, 0 if
 * none): the overlay decides it, or the old view is decided at or below
 * the new backing (PREFIX), or both views read zeros by block status. */
static int skippable(struct kimg *img, struct kimg *nb, int prefix, uint64_t off,
                     uint64_t len, uint64_t *n)
{
    struct kimg_extent e;
    int ret = kimg_layer_block_status(img, off, len, &e);
    *n = 0;
    if (ret < 0)
        return ret;
    if (e.flags & KIMG_BS_ALLOCATED) {
        *n = e.length;
        return 0;
    }
    ret = kimg_block_status(img, off, e.length, &e);
    if (ret < 0)
        return ret;
    if (prefix > 0 && e.depth >= prefix) {
        *n = e.length;
        return 0;
    }
    if (!(e.flags & KIMG_BS_ZERO))
        return 0;
    uint64_t nsize = nb ? kimg_size(nb) : 0;
    if (off >= nsize) {
        *n = e.length;
        return 0;
    }
    uint64_t l = e.length < nsize - off ? e.length : nsize - off;
    ret = kimg_block_status(nb, off, l, &e);
    if (ret < 0)
        return ret;
    if (e.flags & KIMG_BS_ZERO)
        *n = e.length;
    return 0;
}

static int copy_phase(const struct kimg_rebase *r)
{
    struct kimg *img = r->img;
    uint64_t size = kimg_size(img), off = 0;
    uint8_t *bo = kimg_alloc_aligned(CHUNK), *bn = kimg_alloc_aligned(CHUNK);
    int prefix = depth_in_chain(img, r->new_backing);
    int ret = 0;
    struct rebase_compress rc = { .cluster = kimg_cluster_size(img) };

    if (r->compress && rc.cluster && !(rc.buf = kimg_alloc_aligned(rc.cluster))) {
        ret = kimg_fail(-ENOMEM, "out of memory");
        goto out;
    }
    if (!bo || !bn) {
        ret = kimg_fail(-ENOMEM, "out of memory");
        goto out;
    }
    if (prefix == 0) {
        ret = kimg_fail(-EINVAL, "the new backing file is the image itself");
        goto out;
    }
    while (off < size) {
        uint64_t n;
        bool same;
        ret = skippable(img, r->new_backing, prefix, off, size - off, &n);
        if (ret < 0)
            goto out;
        if (!n) {
            /* the overlay's own view there is the old chain's */
            n = size - off < CHUNK ? size - off : CHUNK;
            struct kimg_extent e;
            ret = kimg_layer_block_status(img, off, n, &e);
            if (ret < 0)
                goto out;
            n = e.length;
            ret = read_view(img, bo, off, n, prefix, &same);
            if (ret == 0 && !same)
                ret = read_view(r->new_backing, bn, off, n, -1, &same);
            if (ret == 0 && !same)
                ret = copy_differences(img, bo, bn, off, n, rc.buf ? &rc : NULL);
            if (ret < 0)
                goto out;
        }
        off += n;
        if (r->progress)
            r->progress(r->opaque, off, size);
    }
    ret = kimg_flush(img);
out:
    free(bo);
    free(bn);
    free(rc.buf);
    return ret;
}

int kimg_rebase(const struct kimg_rebase *r)
{
    struct kimg *img = r->img;
    const char *name = r->backing && *r->backing ? r->backing : NULL;
    int ret;

    if (!img->writable)
        return kimg_fail(-EBADF, "image is opened read-only");
    if (r->progress)
        r->progress(r->opaque, 0, kimg_size(img));
    if (!r->unsafe) {
        if (img->backing_name && !img->backing)
            return kimg_fail(-EINVAL, "the old backing file is not open (a safe rebase "
                             "reads it)");
        ret = copy_phase(r);
        if (ret < 0)
            return ret;
    }
    ret = kimg_change_backing(img, name, name ? r->backing_format : NULL);
    if (ret < 0) {
        prefix_error("Could not change the backing file to", name ? name : "", ret);
        return ret;
    }
    if (r->progress)
        r->progress(r->opaque, kimg_size(img), kimg_size(img));
    return 0;
}
