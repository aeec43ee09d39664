/*
 * file_window.c — the window backend: bytes [off, off+len) of a base
 * kimg_file as a read-only file of its own (an OVA's disk member, read in
 * place).  Reads, block status, mappings and libaio requests are shifted
 * into the base and kept inside the window (kimg/file.h states the rules).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "kimg.h"
#include "kimg/file.h"

struct file_window {
    struct kimg_file f;         /* first: a struct kimg_file * is this */
    struct kimg_file *base;
    uint64_t off, len;
    bool own;                   /* closing the window closes the base */
};

static const struct kimg_file_ops window_ops;

static struct file_window *win(struct kimg_file *f)
{
    return (struct file_window *)f;
}

/* The part of [off, off+len) inside the window: its length. */
static uint64_t clip(const struct file_window *w, uint64_t off, uint64_t len)
{
    if (off >= w->len)
        return 0;
    return len < w->len - off ? len : w->len - off;
}

/* As the POSIX backend: bytes past the end read as zeros and the call
 * says -ENODATA (kimg_file_pread turns that into its "past the end"
 * error). */
static int window_pread(struct kimg_file *f, void *buf, size_t len, uint64_t off)
{
    struct file_window *w = win(f);
    size_t n = (size_t)clip(w, off, len);
    int ret = n ? w->base->ops->pread(w->base, buf, n, w->off + off) : 0;
    if (ret < 0)
        return ret;
    if (n < len) {
        memset((char *)buf + n, 0, len - n);
        return -ENODATA;
    }
    return 0;
}

static int window_pwrite(struct kimg_file *f, const void *buf, size_t len, uint64_t off)
{
    return -EBADF;
}

/* The window's length, less what the base no longer holds (a base that
 * shrinks shows as a window that shrinks: the engines' size checks). */
static int window_get_size(struct kimg_file *f, uint64_t *size)
{
    struct file_window *w = win(f);
    uint64_t bsize;
    int ret = w->base->ops->get_size(w->base, &bsize);
    if (ret < 0)
        return ret;
    *size = bsize <= w->off ? 0 : (bsize - w->off < w->len ? bsize - w->off : w->len);
    return 0;
}

static int window_truncate(struct kimg_file *f, uint64_t size) { return -EBADF; }
static int window_sync(struct kimg_file *f) { return 0; }
static int window_zero(struct kimg_file *f, uint64_t off, uint64_t len, bool punch)
{
    return -EBADF;
}
static int window_discard(struct kimg_file *f, uint64_t off, uint64_t len) { return -EBADF; }
static int window_allocate(struct kimg_file *f, uint64_t off, uint64_t len) { return -EBADF; }

static int window_data_status(struct kimg_file *f, uint64_t off, uint64_t len,
                              bool *is_data, uint64_t *pnum)
{
    struct file_window *w = win(f);
    uint64_t n = clip(w, off, len);
    if (!n) {
        *is_data = false;
        *pnum = len ? len : 1;
        return 0;
    }
    int ret = w->base->ops->data_status(w->base, w->off + off, n, is_data, pnum);
    if (ret == 0 && (*pnum == 0 || *pnum > n))
        *pnum = n;
    return ret;
}

/* The bytes the window takes in its base ("disk size" of an archive
 * member: what it occupies in the archive). */
static int64_t window_allocated(struct kimg_file *f)
{
    return (int64_t)win(f)->len;
}

static void window_close(struct kimg_file *f)
{
    struct file_window *w = win(f);
    if (w->own)
        kimg_file_close(w->base);
}

static int window_map(struct kimg_file *f, uint64_t off, uint64_t len, struct kimg_file_map *m)
{
    struct file_window *w = win(f);
    if (!len || clip(w, off, len) != len)
        return -ERANGE;
    return kimg_file_map(w->base, w->off + off, len, m);
}

static void window_unmap(struct kimg_file *f, struct kimg_file_map *m)
{
    struct file_window *w = win(f);
    w->base->ops->unmap(w->base, m);
}

/* Only requests that stay aligned in the base (an archive member starts
 * on a 512-byte boundary, the base's O_DIRECT alignment may be 4096);
 * the others go through window_pread, which bounces. */
static int window_aio_prep(struct kimg_file *f, struct iocb *cb, bool write, void *buf,
                           size_t len, uint64_t off)
{
    struct file_window *w = win(f);
    if (write)
        return -EBADF;
    if (clip(w, off, len) != len || (w->base->align > 1 && w->off % w->base->align))
        return -EOPNOTSUPP;
    return kimg_file_aio_prep(w->base, cb, false, buf, len, w->off + off);
}

/* Two windows on one base file, over the same range. */
static bool window_same_file(struct kimg_file *a, struct kimg_file *b)
{
    struct file_window *wa = win(a), *wb = win(b);
    return b->ops == &window_ops && wa->off == wb->off && wa->len == wb->len &&
           (wa->base == wb->base || kimg_file_same(wa->base, wb->base));
}

static struct kimg_file *window_underlying(struct kimg_file *f, uint64_t *off, uint64_t len)
{
    struct file_window *w = win(f);
    if (clip(w, *off, len) != len)
        return NULL;
    *off += w->off;
    return w->base;
}

static const struct kimg_file_ops window_ops = {
    .pread = window_pread, .pwrite = window_pwrite, .get_size = window_get_size,
    .truncate = window_truncate, .sync = window_sync, .zero = window_zero,
    .discard = window_discard, .allocate = window_allocate,
    .data_status = window_data_status, .allocated = window_allocated,
    .close = window_close, .map = window_map, .unmap = window_unmap,
    .aio_prep = window_aio_prep, .same_file = window_same_file,
    .underlying = window_underlying,
};

int kimg_file_open_window(struct kimg_file **out, struct kimg_file *base, uint64_t off,
                          uint64_t len, const char *name, bool own)
{
    uint64_t end, bsize;
    int ret;
    if (__builtin_add_overflow(off, len, &end))
        ret = kimg_fail(-EINVAL, "a window past the largest file offset");
    else if ((ret = kimg_file_size(base, &bsize)) == 0 && end > bsize)
        ret = kimg_fail(-EINVAL, "the window [%llu, +%llu) ends past the end of the file "
                        "(%llu bytes)", (unsigned long long)off, (unsigned long long)len,
                        (unsigned long long)bsize);
    struct file_window *w = ret < 0 ? NULL : calloc(1, sizeof(*w));
    if (w)
        w->f.path = strdup(name ? name : base->path ? base->path : "window");
    if (ret == 0 && (!w || !w->f.path)) {
        kimg_error("out of memory");
        ret = -ENOMEM;
    }
    if (ret < 0) {
        if (w)
            free(w->f.path);
        free(w);
        if (own)
            kimg_file_close(base);
        return ret;
    }
    w->f.ops = &window_ops;
    w->f.fd = base->fd;         /* for locks and identity only (see file.h) */
    w->f.writable = false;
    w->f.direct = base->direct;
    w->f.align = base->align;
    w->f.nosync = true;
    w->base = base;
    w->off = off;
    w->len = len;
    w->own = own;
    *out = &w->f;
    return 0;
}
