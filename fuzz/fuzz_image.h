/*
 * fuzz_image.h — the walk shared by the fuzz targets of read-only image
 * drivers (fuzz_vpc, fuzz_vdi, fuzz_vmdk; header-only, as fuzz.h): open
 * an input as an in-memory image, then block status over the whole
 * virtual size (at most FUZZ_IMG_STEPS calls) and reads of what it
 * reports, FUZZ_IMG_BUDGET bytes in all.  Oracle: a range reported as
 * data at a host offset reads the same as the file at that offset; a
 * range reported as zeros reads as zeros.  A broken oracle aborts with
 * the target's name.
 */
#ifndef KIMG_FUZZ_IMAGE_H
#define KIMG_FUZZ_IMAGE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg/driver.h"

#define FUZZ_IMG_STEPS  256
#define FUZZ_IMG_BUDGET (4u << 20)
#define FUZZ_IMG_CHUNK  (256u << 10)

/* the read buffer and the host-file buffer, page-aligned (the rule of
 * kimg_alloc_aligned in kimg/file.h) */
static uint8_t *fuzz_img_rbuf, *fuzz_img_hbuf;

static inline void fuzz_img_init(void)
{
    if (fuzz_img_rbuf)
        return;
    fuzz_img_rbuf = kimg_alloc_aligned(FUZZ_IMG_CHUNK);
    fuzz_img_hbuf = kimg_alloc_aligned(FUZZ_IMG_CHUNK);
    if (!fuzz_img_rbuf || !fuzz_img_hbuf)
        abort();
}

static inline void fuzz_img_die(const char *target, const char *what, uint64_t off, uint64_t n)
{
    fprintf(stderr, "%s: %s at %llu+%llu\n", target, what, (unsigned long long)off,
            (unsigned long long)n);
    abort();
}

/* DATA opened in memory under NAME as FMT (NULL: probed) with FLAGS, or
 * NULL when the driver refuses it; the error is cleared either way. */
static inline struct kimg *fuzz_img_open(const char *name, const uint8_t *data, size_t size,
                                         const char *fmt, unsigned flags)
{
    struct kimg_file *f;
    struct kimg *img = NULL;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, name, data, size, false, 0) < 0)
        return NULL;
    if (kimg_open_file(&img, f, fmt, flags) < 0)
        img = NULL;
    kimg_clear_error();
    return img;
}

/* The oracle for N bytes at OFF of one extent of this layer. */
static inline void fuzz_img_check_extent(const char *target, struct kimg *img, uint64_t off,
                                         uint64_t n, const struct kimg_extent *ext)
{
    if (kimg_read(img, fuzz_img_rbuf, off, n) < 0)
        return;
    if ((ext->flags & (KIMG_BS_DATA | KIMG_BS_OFFSET_VALID)) ==
            (KIMG_BS_DATA | KIMG_BS_OFFSET_VALID) && !(ext->flags & KIMG_BS_ZERO)) {
        if (!ext->host_file ||
            kimg_file_pread(ext->host_file, fuzz_img_hbuf, (size_t)n, ext->offset) < 0 ||
            memcmp(fuzz_img_rbuf, fuzz_img_hbuf, (size_t)n))
            fuzz_img_die(target, "data does not read as the file", off, n);
    } else if (ext->flags & KIMG_BS_ZERO) {
        for (uint64_t k = 0; k < n; k++)
            if (fuzz_img_rbuf[k])
                fuzz_img_die(target, "zero extent reads non-zero", off, k);
    }
}

/* Block status and reads over IMG's whole virtual size, then its last byte. */
static inline void fuzz_img_walk(const char *target, struct kimg *img)
{
    uint64_t size = kimg_size(img), off = 0, budget = FUZZ_IMG_BUDGET;
    uint64_t stride = size / FUZZ_IMG_STEPS + 1;

    for (int step = 0; step < FUZZ_IMG_STEPS && off < size; step++) {
        struct kimg_extent ext;
        uint64_t next = off + 512;
        kimg_clear_error();
        if (kimg_layer_block_status(img, off, size - off, &ext) == 0) {
            if (ext.length == 0 || ext.length > size - off)
                fuzz_img_die(target, "block status length out of range", off, ext.length);
            uint64_t n = ext.length < FUZZ_IMG_CHUNK ? ext.length : FUZZ_IMG_CHUNK;
            if (n > budget)
                n = budget;
            if (n) {
                fuzz_img_check_extent(target, img, off, n, &ext);
                budget -= n;
            }
            next = off + ext.length;
        }
        uint64_t floor = (uint64_t)(step + 1) * stride;
        off = next > floor ? next : floor;
    }
    if (size) {
        kimg_clear_error();
        (void)kimg_read(img, fuzz_img_rbuf, size - 1, 1);
    }
    kimg_clear_error();
}

#endif
