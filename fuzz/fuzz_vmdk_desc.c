/*
 * fuzz_vmdk_desc.c — the VMDK descriptor parser (formats/vmdk/
 * descriptor.c) and the driver's open on hostile descriptors, in memory:
 * the input parsed directly (as a descriptor file and as an embedded
 * one; invariants of the result checked), opened as "vmdk" and probed
 * (extent files cannot be opened from a memory image, so only ZERO
 * extents get past the open), and embedded as the descriptor of a small
 * monolithicSparse file built around it.  Opened images go through info,
 * check and block status over the whole virtual size with reads; oracle:
 * a range reported as zeros without data reads as zeros.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg/driver.h"
#include "../formats/vmdk/vmdk.h"

#define MAX_STEPS    256
#define READ_BUDGET  (4u << 20)
#define READ_CHUNK   (256u << 10)
#define FUZZ_NAME    "/nonexistent-kimg-fuzz/dir/image.vmdk"
#define RO_FLAGS     (KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING)

static uint8_t *rbuf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rbuf = malloc(READ_CHUNK);
    if (!rbuf)
        abort();
    return 0;
}

static void check_parse(const uint8_t *data, size_t size, bool embedded)
{
    struct vmdk_desc d;
    kimg_clear_error();
    if (vmdk_desc_parse((const char *)data, size, embedded, &d) < 0) {
        if (!kimg_last_error())
            abort();            /* every failure says why */
        kimg_clear_error();
        return;
    }
    uint64_t total = 0;
    if (d.nb_extents > VMDK_MAX_EXTENTS || !d.has_cid || !d.has_parent_cid ||
        d.version < 1 || d.version > 3 || (embedded && d.nb_extents))
        abort();
    for (size_t i = 0; i < d.nb_extents; i++) {
        const struct vmdk_desc_extent *e = &d.extents[i];
        if (e->sectors == 0 || (e->type == VMDK_EXT_ZERO) != (e->file == NULL) ||
            (e->file && (!*e->file || strlen(e->file) > VMDK_MAX_NAME)))
            abort();
        total += e->sectors;
    }
    if (total != d.total_sectors || total > VMDK_MAX_SECTORS)
        abort();
    vmdk_desc_free(&d);
}

static struct kimg *open_mem(const uint8_t *data, size_t size, const char *fmt)
{
    struct kimg_file *f;
    struct kimg *img = NULL;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, FUZZ_NAME, data, size, false, 0) < 0)
        return NULL;
    if (kimg_open_file(&img, f, fmt, RO_FLAGS) < 0)
        img = NULL;
    else if (strcmp(kimg_format_name(img), "vmdk")) {
        kimg_close(img);        /* probed as another format: not ours */
        img = NULL;
    }
    kimg_clear_error();
    return img;
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
            if (n && kimg_read(img, rbuf, off, n) == 0 &&
                (ext.flags & (KIMG_BS_ZERO | KIMG_BS_DATA)) == KIMG_BS_ZERO)
                for (uint64_t k = 0; k < n; k++)
                    if (rbuf[k]) {
                        fprintf(stderr, "fuzz_vmdk_desc: zero extent at %llu reads 0x%02x\n",
                                (unsigned long long)off, rbuf[k]);
                        abort();
                    }
            budget -= n;
            next = off + ext.length;
        }
        uint64_t floor = (uint64_t)(step + 1) * stride;
        off = next > floor ? next : floor;
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
    (void)kimg_check(img, &res, 0);
    kimg_clear_error();
    walk(img);
    kimg_close(img);
    kimg_clear_error();
}

static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

/* A 1 MiB monolithicSparse extent as qemu lays it out (header, the
 * descriptor from sector 1, grain directory, one grain table, no grain),
 * with DATA (at most 64 KiB) as its descriptor. */
static void embedded(const uint8_t *data, size_t size)
{
    uint64_t desc_sectors = size ? (size + 511) / 512 : 1;
    uint64_t gd = 1 + desc_sectors, gt = gd + 1, end = gt + 4;
    uint8_t *f = calloc(end, 512);
    if (!f)
        return;
    memcpy(f, "KDMV", 4);
    put32(f + 4, 1);                    /* version */
    put32(f + 8, 3);                    /* flags: newline test, redundant GD */
    put64(f + 12, 2048);                /* capacity (sectors) */
    put64(f + 20, 128);                 /* grain (sectors) */
    put64(f + 28, 1);                   /* descriptor offset */
    put64(f + 36, desc_sectors);
    put32(f + 44, 512);                 /* grain table entries */
    put64(f + 48, gd);                  /* redundant GD: the same tables */
    put64(f + 56, gd);
    put64(f + 64, end);                 /* overhead */
    memcpy(f + 73, "\n \r\n", 4);
    memcpy(f + 512, data, size);
    put32(f + gd * 512, (uint32_t)gt);
    struct kimg *img = open_mem(f, end * 512, "vmdk");
    if (img)
        exercise(img);
    free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rbuf)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size > VMDK_MAX_DESC_BYTES + 4096)
        return 0;
    check_parse(data, size, false);
    check_parse(data, size, true);
    struct kimg *img = open_mem(data, size, "vmdk");
    if (img)
        exercise(img);
    img = open_mem(data, size, NULL);
    if (img)
        exercise(img);
    if (size <= (64u << 10))
        embedded(data, size);
    return 0;
}
