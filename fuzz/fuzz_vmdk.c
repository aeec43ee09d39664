/*
 * fuzz_vmdk.c — VMDK sparse extents (formats/vmdk sparse.c, stream.c,
 * cowd.c) on hostile files, in memory: the input opened as a sparse
 * extent through vmdk_sparse_open (KDMV, VMware stream footer, COWD), its
 * runs walked over the whole capacity (at most FUZZ_IMG_STEPS calls, FUZZ_IMG_BUDGET
 * bytes read) and checked; then opened as "vmdk" and probed through the
 * driver: info, check, block status and reads.  Oracles: every run is at
 * least one byte and inside the range asked for, a deflated run stays in
 * one grain, a data run lies inside the file and reads as the file at its
 * host offset; through the driver, data at a host offset reads as the
 * file there and zeros read as zeros.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_image.h"
#include "kimg/file.h"
#include "../formats/vmdk/vmdk.h"

#define FUZZ_NAME    "/nonexistent-kimg-fuzz/dir/image.vmdk"
#define RO_FLAGS     (KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_img_init();
    return 0;
}

static void die(const char *what, uint64_t off, uint64_t n)
{
    fuzz_img_die("fuzz_vmdk", what, off, n);
}

/* ---- the sparse half directly ------------------------------------------ */

static void sparse_run(struct vmdk_sparse *s, const struct vmdk_sparse_info *in,
                       const uint8_t *data, size_t size, uint64_t off,
                       uint64_t *budget, uint64_t *next)
{
    struct vmdk_grain_run r;
    kimg_clear_error();
    if (vmdk_sparse_status(s, off, in->capacity - off, &r) < 0)
        return;
    if (r.length == 0 || r.length > in->capacity - off)
        die("run length out of range", off, r.length);
    *next = off + r.length;
    uint64_t n = r.length < FUZZ_IMG_CHUNK ? r.length : FUZZ_IMG_CHUNK;
    if (n > *budget)
        n = *budget;
    if (r.kind == VMDK_GRAIN_COMPRESSED &&
        off / in->grain_size != (off + r.length - 1) / in->grain_size)
        die("compressed run crosses a grain", off, r.length);
    if (r.kind == VMDK_GRAIN_DATA && (r.host > size || r.length > size - r.host))
        die("data run outside the file", off, r.length);
    if (!n || (r.kind != VMDK_GRAIN_DATA && r.kind != VMDK_GRAIN_COMPRESSED))
        return;
    *budget -= n;
    kimg_clear_error();
    if (vmdk_sparse_read(s, fuzz_img_rbuf, off, n) < 0)
        return;
    if (r.kind == VMDK_GRAIN_DATA && memcmp(fuzz_img_rbuf, data + r.host, (size_t)n))
        die("data run does not read as the file", off, n);
}

static void sparse_direct(const uint8_t *data, size_t size)
{
    struct kimg_file *f;
    struct vmdk_sparse *s;
    struct vmdk_sparse_info in;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, FUZZ_NAME, data, size, false, 0) < 0)
        return;
    if (vmdk_sparse_open(f, size, &s, &in) == 0) {
        if (in.grain_size == 0 || (in.desc_size && in.desc_offset + in.desc_size > size))
            die("bad info", in.grain_size, in.desc_size);
        uint64_t off = 0, budget = FUZZ_IMG_BUDGET, stride = in.capacity / FUZZ_IMG_STEPS + 1;
        for (int step = 0; step < FUZZ_IMG_STEPS && off < in.capacity; step++) {
            uint64_t next = off + 512;
            sparse_run(s, &in, data, size, off, &budget, &next);
            uint64_t floor = (uint64_t)(step + 1) * stride;
            off = next > floor ? next : floor;
        }
        struct kimg_check res = { 0 };
        kimg_clear_error();
        (void)vmdk_sparse_check(s, &res);
        vmdk_sparse_close(s);
    }
    kimg_clear_error();
    kimg_file_close(f);
}

/* ---- through the driver ------------------------------------------------- */

static void through_driver(const uint8_t *data, size_t size, const char *fmt)
{
    struct kimg *img = fuzz_img_open(FUZZ_NAME, data, size, fmt, RO_FLAGS);
    if (!img)
        return;
    if (!strcmp(kimg_format_name(img), "vmdk")) {
        struct kimg_info info;
        struct kimg_check res = { 0 };
        if (kimg_get_info(img, &info) == 0)
            kimg_info_free(&info);
        kimg_clear_error();
        (void)kimg_check(img, &res, 0);
        fuzz_img_walk("fuzz_vmdk", img);
    }
    kimg_close(img);
    kimg_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_img_init();
    if (size > (4u << 20))
        return 0;
    sparse_direct(data, size);
    through_driver(data, size, "vmdk");
    through_driver(data, size, NULL);
    return 0;
}
