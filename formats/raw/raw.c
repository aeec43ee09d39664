/*
 * raw.c — the raw format: guest offset = file offset.  Create with
 * preallocation, write-zeroes by punching holes, block status from
 * SEEK_DATA/SEEK_HOLE, truncate.  Probing always answers 1 (last resort).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "kimg/driver.h"

static const struct kimg_optdesc raw_create_opts[] = {
    { "size", KIMG_OPT_SIZE, "Virtual disk size" },
    { "preallocation", KIMG_OPT_STRING,
      "Preallocation mode (allowed values: off, falloc, full)" },
    { NULL, 0, NULL },
};

/* qemu's raw format has only the size: preallocation is the file
 * protocol's (listed by `-o help` only with a file name) */
static const char *const raw_protocol_opts[] = { "preallocation", NULL };

/* qemu-img's "Formatting" line for raw: its own option (the size), then
 * the file protocol's */
static const struct kimg_shown_opt raw_shown[] = {
    { "size", NULL, true }, { "nocow", NULL, false }, { "preallocation", NULL, false },
    { "extent_size_hint", NULL, true }, { NULL, NULL, false },
};

static int raw_probe(const uint8_t *buf, size_t len, const char *filename)
{
    return 1;
}

static int raw_open(struct kimg *img)
{
    /* qemu sizes a raw image in whole 512-byte sectors: a 1000-byte file
     * is a 1024-byte disk whose tail reads as zeros */
    int ret = kimg_file_size(img->file, &img->size);
    if (ret == 0)
        img->size = (img->size + 511) & ~(uint64_t)511;
    return ret;
}

static void raw_close(struct kimg *img) {}

static int raw_read(struct kimg *img, void *buf, uint64_t off, uint64_t len)
{
    /* a file shrunk under us reads as zeros past its end, as QEMU does */
    return kimg_file_pread_zero_eof(img->file, buf, (size_t)len, off);
}

static int raw_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len)
{
    return kimg_file_pwrite(img->file, buf, (size_t)len, off);
}

static int raw_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags)
{
    if (flags & KIMG_ZERO_FAST)
        return kimg_file_zero_fast(img->file, off, len, flags & KIMG_ZERO_MAY_UNMAP);
    return kimg_file_zero(img->file, off, len, flags & KIMG_ZERO_MAY_UNMAP);
}

static int raw_discard(struct kimg *img, uint64_t off, uint64_t len)
{
    return kimg_file_zero(img->file, off, len, true);
}

static int raw_flush(struct kimg *img)
{
    return kimg_file_sync(img->file);
}

static int raw_block_status(struct kimg *img, uint64_t off, uint64_t len,
                            struct kimg_extent *ext)
{
    bool is_data;
    uint64_t pnum;
    int ret = kimg_file_data_status(img->file, off, len, &is_data, &pnum);
    if (ret < 0)
        return ret;
    ext->length = pnum;
    ext->flags = KIMG_BS_ALLOCATED | KIMG_BS_OFFSET_VALID |
                 (is_data ? KIMG_BS_DATA : KIMG_BS_ZERO);
    ext->offset = off;
    return 0;
}

static int preallocate(struct kimg_file *f, uint64_t from, uint64_t to,
                       enum kimg_prealloc mode)
{
    if (to <= from)
        return 0;
    if (mode == KIMG_PREALLOC_FALLOC)
        return kimg_file_allocate(f, from, to - from);
    if (mode == KIMG_PREALLOC_FULL) {
        /* write real zeros so every block is allocated */
        size_t chunk = 1u << 20;
        uint8_t *z = kimg_alloc_aligned_zero(chunk + 64);
        int ret = 0;
        if (!z)
            return -ENOMEM;
        for (uint64_t off = from; off < to && ret == 0; off += chunk) {
            size_t n = to - off < chunk ? (size_t)(to - off) : chunk;
            /* the buffer's address agrees with the file offset mod 64 */
            ret = kimg_file_pwrite(f, z + (off & 63), n, off);
        }
        free(z);
        return ret;
    }
    return 0;
}

/* The file becomes exactly SIZE bytes (qemu's file-posix truncate); the
 * new part is preallocated from the file's old end. */
static int raw_truncate(struct kimg *img, uint64_t size, enum kimg_prealloc prealloc)
{
    uint64_t old = 0;
    if (prealloc == KIMG_PREALLOC_METADATA)
        return kimg_fail(-ENOTSUP, "Unsupported preallocation mode: metadata");
    int ret = kimg_file_size(img->file, &old);
    if (ret == 0 && (ret = kimg_file_truncate(img->file, size)) < 0) {
        kimg_clear_error();
        return kimg_fail(ret, "Could not resize file: %s", strerror(-ret));
    }
    if (ret == 0)
        ret = preallocate(img->file, old, size, prealloc);
    if (ret == 0 && prealloc != KIMG_PREALLOC_OFF)
        ret = kimg_file_sync(img->file);
    if (ret == 0)
        img->size = size;
    return ret;
}

/* qemu-img's preallocation names; -EINVAL for others. */
static int parse_prealloc(const char *s, enum kimg_prealloc *out)
{
    static const char *const names[] = { "off", "metadata", "falloc", "full" };
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            *out = (enum kimg_prealloc)i;
            return 0;
        }
    return kimg_fail(-EINVAL, "invalid parameter value: %s", s);
}

static int raw_create(const struct kimg_create_args *a)
{
    enum kimg_prealloc mode = KIMG_PREALLOC_OFF;
    const char *p = kimg_opts_get(a->opts, "preallocation");
    struct kimg_file *f;
    int ret;

    if (p && (ret = parse_prealloc(p, &mode)) < 0)
        return ret;
    if (mode == KIMG_PREALLOC_METADATA)
        return kimg_fail(-ENOTSUP, "Unsupported preallocation mode: metadata");
    if (a->backing_file)
        return kimg_fail(-ENOTSUP, "Backing file not supported for file format 'raw'");
    ret = kimg_file_open(&f, a->filename, KIMG_FILE_CREATE | KIMG_FILE_RDWR | KIMG_FILE_TRUNC);
    if (ret < 0)
        return ret;
    ret = kimg_create_file_attrs(a->opts, f);      /* while the file is empty */
    if (ret == 0)
        ret = kimg_file_truncate(f, a->size);
    if (ret == 0)
        ret = preallocate(f, 0, a->size, mode);
    if (ret == 0 && mode != KIMG_PREALLOC_OFF)
        ret = kimg_file_sync(f);
    kimg_file_close(f);
    return ret;
}

static int raw_info(struct kimg *img, struct kimg_info *info)
{
    return 0;
}

/* measure -O raw: every guest byte is a file byte, allocated or not: the
 * source's size, or SIZE in whole 512-byte sectors (options change
 * nothing, as in qemu-img). */
static int raw_measure(struct kimg_opts *opts, uint64_t size, struct kimg *src,
                       struct kimg_measure *out)
{
    out->required = src ? kimg_size(src) : (size + 511) & ~(uint64_t)511;
    out->fully_allocated = out->required;
    return 0;
}

const struct kimg_driver kimg_raw_driver = {
    .name = "raw",
    .state_size = 0,
    .create_opts = raw_create_opts,
    .protocol_opts = raw_protocol_opts,
    .probe = raw_probe,
    .open = raw_open,
    .close = raw_close,
    .create = raw_create,
    .read = raw_read,
    .write = raw_write,
    .write_zeroes = raw_write_zeroes,
    .discard = raw_discard,
    .flush = raw_flush,
    .block_status = raw_block_status,
    .truncate = raw_truncate,
    .info = raw_info,
    .measure = raw_measure,
    .flags = KIMG_DRV_IDENTITY_MAP | KIMG_DRV_FAST_ZERO,
    .formatting_opts = raw_shown,
};
