/*
 * fuzz_vdi.c — the VDI driver (formats/vdi) on hostile files, in memory:
 * opened read-only as "vdi" and probed; info, check, block status over the
 * whole virtual size (at most MAX_STEPS calls) and reads of what it
 * reports.  Oracle: a range reported as data at a host offset reads the
 * same as the file at that offset, a range reported as zeros reads as
 * zeros.  Also opened as check opens it (KIMG_OPEN_REPAIR), where a
 * damaged block map is kept for check: check must run, reads and block
 * status must refuse or succeed, never crash.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg/driver.h"

#define MAX_STEPS    256
#define READ_BUDGET  (4u << 20)
#define READ_CHUNK   (256u << 10)
#define FUZZ_NAME    "/nonexistent-kimg-fuzz/dir/image.vdi"
#define RO_FLAGS     (KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING)

static uint8_t *rbuf, *hbuf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rbuf = malloc(READ_CHUNK);
    hbuf = malloc(READ_CHUNK);
    if (!rbuf || !hbuf)
        abort();
    return 0;
}

static struct kimg *open_mem(const uint8_t *data, size_t size, const char *fmt, unsigned flags)
{
    struct kimg_file *f;
    struct kimg *img = NULL;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, FUZZ_NAME, data, size, false, 0) < 0)
        return NULL;
    if (kimg_open_file(&img, f, fmt, flags) < 0)
        img = NULL;
    kimg_clear_error();
    return img;
}

/* The oracle for one extent of this layer, at most N bytes of it. */
static void check_extent(struct kimg *img, uint64_t off, uint64_t n,
                         const struct kimg_extent *ext)
{
    if (kimg_read(img, rbuf, off, n) < 0)
        return;
    if ((ext->flags & (KIMG_BS_DATA | KIMG_BS_OFFSET_VALID)) ==
            (KIMG_BS_DATA | KIMG_BS_OFFSET_VALID) && !(ext->flags & KIMG_BS_ZERO)) {
        if (!ext->host_file || kimg_file_pread(ext->host_file, hbuf, (size_t)n, ext->offset) < 0 ||
            memcmp(rbuf, hbuf, (size_t)n)) {
            fprintf(stderr, "fuzz_vdi: data at %llu+%llu does not read as the file at %llu\n",
                    (unsigned long long)off, (unsigned long long)n,
                    (unsigned long long)ext->offset);
            abort();
        }
    } else if (ext->flags & KIMG_BS_ZERO) {
        for (uint64_t k = 0; k < n; k++)
            if (rbuf[k]) {
                fprintf(stderr, "fuzz_vdi: zero extent at %llu reads 0x%02x at +%llu\n",
                        (unsigned long long)off, rbuf[k], (unsigned long long)k);
                abort();
            }
    }
}

static void walk(struct kimg *img)
{
    uint64_t size = kimg_size(img), off = 0, budget = READ_BUDGET;
    uint64_t stride = size / MAX_STEPS + 1;

    for (int step = 0; step < MAX_STEPS && off < size; step++) {
        struct kimg_extent ext;
        uint64_t next = off + 512;
        kimg_clear_error();
        if (kimg_layer_block_status(img, off, size - off, &ext) == 0) {
            if (ext.length == 0 || ext.length > size - off)
                abort();
            uint64_t n = ext.length < READ_CHUNK ? ext.length : READ_CHUNK;
            if (n > budget)
                n = budget;
            if (n) {
                check_extent(img, off, n, &ext);
                budget -= n;
            }
            next = off + ext.length;
        }
        uint64_t floor = (uint64_t)(step + 1) * stride;
        off = next > floor ? next : floor;
    }
    if (size) {
        kimg_clear_error();
        (void)kimg_read(img, rbuf, size - 1, 1);
    }
    kimg_clear_error();
}

static void exercise(struct kimg *img)
{
    struct kimg_info info;
    struct kimg_check res = { 0 };
    if (kimg_get_info(img, &info) == 0)
        kimg_info_free(&info);
    kimg_clear_error();
    if (kimg_check(img, &res, 0) < 0)
        abort();        /* the check of an open image always runs */
    kimg_clear_error();
    walk(img);
    kimg_close(img);
    kimg_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rbuf)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size > (4u << 20))
        return 0;

    struct kimg *img = open_mem(data, size, "vdi", RO_FLAGS);
    if (img)
        exercise(img);
    /* probed: only images probed as vdi (the others have their targets) */
    img = open_mem(data, size, NULL, RO_FLAGS);
    if (img && !strcmp(kimg_format_name(img), "vdi"))
        exercise(img);
    else if (img)
        kimg_close(img);
    /* as check opens it: a damaged block map is kept for check */
    img = open_mem(data, size, "vdi", RO_FLAGS | KIMG_OPEN_REPAIR);
    if (img)
        exercise(img);
    kimg_clear_error();
    return 0;
}
