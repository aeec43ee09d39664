/*
 * fuzz_ova.c — OVA archives (formats/ova) on hostile input, in memory:
 * the input as an archive (the tar walk, the descriptor, the manifest,
 * the digests of each listed disk, then each disk opened through its
 * window and probed: info, block status, reads), and the input on its
 * own as an OVF descriptor and as a manifest.  Oracles: every disk lies
 * inside the input, on a 512-byte boundary, and reads as the input at
 * its offsets (data extents); the window never reads past its member.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg/driver.h"
#include "archive.h"
#include "formats/ova/ova.h"

#define MAX_DISKS    4
#define MAX_STEPS    64
#define READ_CHUNK   (64u << 10)
#define FUZZ_NAME    "/nonexistent-kimg-fuzz/dir/vm.ova"
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

static void die(const char *what, unsigned long long a, unsigned long long b)
{
    fprintf(stderr, "fuzz_ova: %s (%llu, %llu)\n", what, a, b);
    abort();
}

/* Disk I of the archive: open it through kimg_open_file_disk, walk it. */
static void walk_disk(const uint8_t *data, size_t size, unsigned i, uint64_t moff,
                      uint64_t mlen)
{
    struct kimg_file *f;
    struct kimg *img;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, FUZZ_NAME, data, size, false, 0) < 0)
        return;
    if (kimg_open_file_disk(&img, f, RO_FLAGS, i) < 0) {
        kimg_clear_error();
        return;
    }
    if (!kimg_archive_member(img) || kimg_archive_disk(img) != i)
        die("the opened disk is not the one asked for", i, kimg_archive_disk(img));
    /* the window: its size is the member's; nothing past it reads */
    uint64_t wsize;
    if (kimg_file_size(img->file, &wsize) < 0 || wsize != mlen)
        die("window size differs from the member's", wsize, mlen);
    if (kimg_file_pread(img->file, rbuf, 1, mlen) == 0)
        die("a read past the window succeeded", mlen, 1);
    kimg_clear_error();

    struct kimg_info info;
    if (kimg_get_info(img, &info) == 0)
        kimg_info_free(&info);
    kimg_clear_error();
    uint64_t vsize = kimg_size(img), off = 0, stride = vsize / MAX_STEPS + 1;
    for (int step = 0; step < MAX_STEPS && off < vsize; step++) {
        struct kimg_extent ext;
        uint64_t next = off + 512;
        kimg_clear_error();
        if (kimg_layer_block_status(img, off, vsize - off, &ext) == 0) {
            uint64_t n = ext.length < READ_CHUNK ? ext.length : READ_CHUNK;
            if (kimg_read(img, rbuf, off, n) == 0 &&
                (ext.flags & (KIMG_BS_DATA | KIMG_BS_OFFSET_VALID | KIMG_BS_ZERO |
                              KIMG_BS_COMPRESSED)) == (KIMG_BS_DATA | KIMG_BS_OFFSET_VALID) &&
                ext.host_file == img->file) {
                /* in the member: the input's bytes at moff + offset */
                if (ext.offset > mlen || n > mlen - ext.offset)
                    die("a data extent outside the member", ext.offset, n);
                memcpy(hbuf, data + moff + ext.offset, (size_t)n);
                if (memcmp(rbuf, hbuf, (size_t)n))
                    die("data does not read as the member at its offset", off, ext.offset);
            }
            next = off + ext.length;
        }
        uint64_t floor = (uint64_t)(step + 1) * stride;
        off = next > floor ? next : floor;
    }
    kimg_close(img);
    kimg_clear_error();
}

static void archive(const uint8_t *data, size_t size)
{
    struct kimg_file *f;
    struct kimg_ova *o;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, FUZZ_NAME, data, size, false, 0) < 0)
        return;
    int ret = kimg_ova_open(f, &o);
    if (ret != 0) {
        kimg_file_close(f);
        kimg_clear_error();
        return;
    }
    unsigned n = kimg_ova_disk_count(o);
    if (n < 1 || n > OVA_MAX_DISKS)
        die("disk count out of range", n, 0);
    uint64_t offs[MAX_DISKS], lens[MAX_DISKS];
    unsigned k = n < MAX_DISKS ? n : MAX_DISKS;
    for (unsigned i = 1; i <= k; i++) {
        uint64_t off, len;
        const char *name = kimg_ova_disk(o, i, &off, &len);
        if (!name || !*name || strchr(name, '/') || strstr(name, ".."))
            die("a disk member with a bad name", i, 0);
        if (off % 512 || off > size || len > size - off)
            die("a disk member outside the input", off, len);
        offs[i - 1] = off;
        lens[i - 1] = len;
        (void)kimg_ova_verify(o, f, i);
        kimg_clear_error();
    }
    kimg_ova_free(o);
    kimg_file_close(f);
    for (unsigned i = 1; i <= k; i++)
        walk_disk(data, size, i, offs[i - 1], lens[i - 1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rbuf)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size > (4u << 20))
        return 0;
    archive(data, size);

    /* the input as a descriptor, and as a manifest */
    struct ova_ovf ovf;
    kimg_clear_error();
    if (ova_ovf_parse((const char *)data, size, &ovf) == 0) {
        for (unsigned i = 0; i < ovf.n; i++)
            if (!ovf.d[i].href || strchr(ovf.d[i].href, '/'))
                die("a descriptor href with '/'", i, 0);
        ova_ovf_free(&ovf);
    }
    struct ova_manifest mf;
    kimg_clear_error();
    if (ova_manifest_parse((const char *)data, size, &mf) == 0) {
        for (unsigned i = 0; i < mf.n; i++)
            if (!mf.d[i].name || mf.d[i].md_len > OVA_MAX_MD_SIZE)
                die("a bad manifest entry", i, mf.d[i].md_len);
        ova_manifest_free(&mf);
    }
    kimg_clear_error();
    return 0;
}
