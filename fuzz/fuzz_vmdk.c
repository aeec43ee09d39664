/*
 * fuzz_vmdk.c — VMDK sparse extents (formats/vmdk sparse.c, stream.c,
 * cowd.c) on hostile files, in memory: the input opened as a sparse
 * extent through vmdk_sparse_open (KDMV, VMware stream footer, COWD), its
 * runs walked over the whole capacity (at most MAX_STEPS calls, READ_BUDGET
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
#include "fuzz.h"
#include "kimg/driver.h"
#include "kimg/file.h"
#include "../formats/vmdk/vmdk.h"

#define MAX_STEPS    256
#define READ_BUDGET  (4u << 20)
#define READ_CHUNK   (256u << 10)
#define FUZZ_NAME    "/nonexistent-kimg-fuzz/dir/image.vmdk"
#define RO_FLAGS     (KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING)

static uint8_t *rbuf, *hbuf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rbuf = kimg_alloc_aligned(READ_CHUNK);
    hbuf = kimg_alloc_aligned(READ_CHUNK);
    if (!rbuf || !hbuf)
        abort();
    return 0;
}

static void die(const char *what, uint64_t off, uint64_t n)
{
    fprintf(stderr, "fuzz_vmdk: %s at %llu+%llu\n", what, (unsigned long long)off,
            (unsigned long long)n);
    abort();
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
    uint64_t n = r.length < READ_CHUNK ? r.length : READ_CHUNK;
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
    if (vmdk_sparse_read(s, rbuf, off, n) < 0)
        return;
    if (r.kind == VMDK_GRAIN_DATA && memcmp(rbuf, data + r.host, (size_t)n))
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
        uint64_t off = 0, budget = READ_BUDGET, stride = in.capacity / MAX_STEPS + 1;
        for (int step = 0; step < MAX_STEPS && off < in.capacity; step++) {
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

static void check_extent(struct kimg *img, uint64_t off, uint64_t n,
                         const struct kimg_extent *ext)
{
    if (kimg_read(img, rbuf, off, n) < 0)
        return;
    if ((ext->flags & (KIMG_BS_DATA | KIMG_BS_OFFSET_VALID)) ==
            (KIMG_BS_DATA | KIMG_BS_OFFSET_VALID) && !(ext->flags & KIMG_BS_ZERO)) {
        if (!ext->host_file || kimg_file_pread(ext->host_file, hbuf, (size_t)n, ext->offset) < 0 ||
            memcmp(rbuf, hbuf, (size_t)n))
            die("data does not read as the file", off, n);
    } else if (ext->flags & KIMG_BS_ZERO) {
        for (uint64_t k = 0; k < n; k++)
            if (rbuf[k])
                die("zero extent reads non-zero", off, k);
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
    kimg_clear_error();
}

static void through_driver(const uint8_t *data, size_t size, const char *fmt)
{
    struct kimg_file *f;
    struct kimg *img = NULL;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, FUZZ_NAME, data, size, false, 0) < 0)
        return;
    if (kimg_open_file(&img, f, fmt, RO_FLAGS) < 0) {
        kimg_clear_error();
        return;
    }
    if (!strcmp(kimg_format_name(img), "vmdk")) {
        struct kimg_info info;
        struct kimg_check res = { 0 };
        if (kimg_get_info(img, &info) == 0)
            kimg_info_free(&info);
        kimg_clear_error();
        (void)kimg_check(img, &res, 0);
        walk(img);
    }
    kimg_close(img);
    kimg_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rbuf)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size > (4u << 20))
        return 0;
    sparse_direct(data, size);
    through_driver(data, size, "vmdk");
    through_driver(data, size, NULL);
    return 0;
}
