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
#include "fuzz_image.h"

#define FUZZ_NAME    "/nonexistent-kimg-fuzz/dir/image.vdi"
#define RO_FLAGS     (KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_img_init();
    return 0;
}

static struct kimg *open_mem(const uint8_t *data, size_t size, const char *fmt, unsigned flags)
{
    return fuzz_img_open(FUZZ_NAME, data, size, fmt, flags);
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
    fuzz_img_walk("fuzz_vdi", img);
    kimg_close(img);
    kimg_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_img_init();
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
