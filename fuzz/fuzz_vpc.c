/*
 * fuzz_vpc.c — the VHD driver (formats/vpc) on hostile files, in memory:
 * opened read-only as "vpc" and probed; info, check (must say -ENOTSUP),
 * block status over the whole virtual size (at most MAX_STEPS calls) and
 * reads of what it reports.  Oracle: a range reported as data at a host
 * offset reads the same as the file at that offset, and a range reported
 * as zeros without data reads as zeros.  The same input is also probed
 * with a copy of its first 512 bytes appended, so fixed VHDs (footer at
 * the end) are reached from seeds of either kind.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_image.h"

#define FUZZ_NAME    "/nonexistent-kimg-fuzz/dir/image.vhd"
#define RO_FLAGS     (KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_img_init();
    return 0;
}

static struct kimg *open_mem(const uint8_t *data, size_t size, const char *fmt)
{
    return fuzz_img_open(FUZZ_NAME, data, size, fmt, RO_FLAGS);
}

/* Probed: only images probed as vpc are exercised (the others belong to
 * their own targets). */
static struct kimg *probed_vpc(const uint8_t *data, size_t size)
{
    struct kimg *img = open_mem(data, size, NULL);
    if (img && strcmp(kimg_format_name(img), "vpc")) {
        kimg_close(img);
        img = NULL;
    }
    kimg_clear_error();
    return img;
}

static void exercise(struct kimg *img)
{
    struct kimg_info info;
    struct kimg_check res = { 0 };
    if (kimg_get_info(img, &info) == 0)
        kimg_info_free(&info);
    kimg_clear_error();
    if (kimg_check(img, &res, 0) != -ENOTSUP)
        abort();        /* qemu-img has no check for vpc: exit 63 */
    fuzz_img_walk("fuzz_vpc", img);
    kimg_close(img);
    kimg_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_img_init();
    if (size > (4u << 20))
        return 0;

    struct kimg *img = open_mem(data, size, "vpc");
    if (img)
        exercise(img);
    img = probed_vpc(data, size);
    if (img)
        exercise(img);

    /* the first 512 bytes again at the end: a fixed disk's footer */
    if (size >= 512) {
        uint8_t *twice = malloc(size + 512);
        if (!twice)
            return 0;
        memcpy(twice, data, size);
        memcpy(twice + size, data, 512);
        img = probed_vpc(twice, size + 512);
        if (img)
            exercise(img);
        free(twice);
    }
    return 0;
}
