/*
 * fuzz_vhdx.c — the VHDX driver (formats/vhdx) on hostile files, in memory.
 * A VHDX is megabytes of mostly zeros, so the input describes the file
 * sparsely: a flags byte, the file size in 64 KiB units (le16; at most
 * 16 MiB), then records of (le32 file offset, le16 length, bytes) written
 * over zeros.  Flags ask the target to recompute checksums after the
 * patches, so mutations get past the CRC-32C checks: bit 0 both headers,
 * bit 1 both region tables, bit 2 every log entry found in the log (the
 * header's log), bit 3 clear the second header (the first one counts).
 * Each file is opened as "vhdx", probed, and opened for check (REPAIR):
 * info, check, reads over the whole virtual size (at most MAX_STEPS
 * pieces, READ_BUDGET bytes).  Oracle: two reads of one range agree, and
 * a range read in one piece equals the same range read in two.  Then
 * writes (formats/vhdx/write.c): opened for writing on a copy that may
 * grow by GROW bytes, a pattern written at the start, the middle and the
 * end, flushed; oracle: the file as flushed opens read-only and reads the
 * pattern wherever a write succeeded.
 */
#include <errno.h>
#include <isa-l/crc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg/driver.h"

#define MAX_FILE     (16u << 20)
#define MIN_FILE     (320u << 10)
#define MAX_STEPS    64
#define READ_BUDGET  (1u << 20)
#define READ_CHUNK   (128u << 10)
#define FUZZ_NAME    "/nonexistent-kimg-fuzz/dir/image.vhdx"
#define RO_FLAGS     (KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING)
#define GROW         (64u << 20)
#define WRITE_LEN    4096u

static uint8_t *file, *rbuf, *rbuf2;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    file = malloc(MAX_FILE);
    rbuf = malloc(READ_CHUNK);
    rbuf2 = malloc(READ_CHUNK);
    if (!file || !rbuf || !rbuf2)
        abort();
    return 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void seal(uint8_t *buf, size_t len)
{
    memset(buf + 4, 0, 4);
    uint32_t c = ~crc32_iscsi(buf, (int)len, 0xffffffffu);
    buf[4] = (uint8_t)c;
    buf[5] = (uint8_t)(c >> 8);
    buf[6] = (uint8_t)(c >> 16);
    buf[7] = (uint8_t)(c >> 24);
}

/* every sector of the log that starts "loge" with a length that fits
 * before the log's end is resealed (wrapped entries are left alone) */
static void seal_log(size_t size)
{
    const uint8_t *h = file + (128u << 10);
    uint64_t off = le64(h + 72), len = le32(h + 68);
    if (off >= size || len > size - off)
        return;
    for (uint64_t p = 0; p + 4096 <= len; p += 4096) {
        uint8_t *e = file + off + p;
        uint32_t elen = le32(e + 8);
        if (!memcmp(e, "loge", 4) && elen && elen % 4096 == 0 && elen <= len - p)
            seal(e, elen);
    }
}

static size_t expand(const uint8_t *data, size_t size)
{
    struct fuzz_in in = { data, size };
    uint8_t flags = fuzz_u8(&in);
    uint64_t fsize = (uint64_t)fuzz_u8(&in) << 16 | (uint64_t)fuzz_u8(&in) << 24;
    if (fsize > MAX_FILE)
        fsize = MAX_FILE;
    if (fsize < MIN_FILE)
        fsize = MIN_FILE;
    memset(file, 0, fsize);
    while (in.n >= 6) {
        uint64_t off = le32(in.p);
        size_t len = (size_t)in.p[4] | (size_t)in.p[5] << 8;
        in.p += 6;
        in.n -= 6;
        if (len > in.n)
            len = in.n;
        if (off < fsize)
            memcpy(file + off, in.p, off + len <= fsize ? len : fsize - off);
        in.p += len;
        in.n -= len;
    }
    if (flags & 8)
        memset(file + (128u << 10), 0, 4096);
    if (flags & 1) {
        seal(file + (64u << 10), 4096);
        if (!(flags & 8))
            seal(file + (128u << 10), 4096);
    }
    if (flags & 2) {
        seal(file + (192u << 10), 64u << 10);
        seal(file + (256u << 10), 64u << 10);
    }
    if (flags & 4)
        seal_log(fsize);
    return fsize;
}

static struct kimg *open_mem(size_t size, const char *fmt, unsigned extra)
{
    struct kimg_file *f;
    struct kimg *img = NULL;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, FUZZ_NAME, file, size, false, 0) < 0)
        return NULL;
    if (kimg_open_file(&img, f, fmt, RO_FLAGS | extra) < 0)
        img = NULL;
    kimg_clear_error();
    return img;
}

static void walk(struct kimg *img)
{
    uint64_t size = kimg_size(img), budget = READ_BUDGET;
    uint64_t stride = size / MAX_STEPS + 1;

    for (uint64_t off = 0; off < size && budget; off += stride) {
        uint64_t n = size - off < READ_CHUNK ? size - off : READ_CHUNK;
        if (n > budget)
            n = budget;
        budget -= n;
        kimg_clear_error();
        if (kimg_read(img, rbuf, off, n) < 0)
            continue;
        uint64_t half = n / 2;
        int a = half ? kimg_read(img, rbuf2, off, half) : 0;
        int b = kimg_read(img, rbuf2 + half, off + half, n - half);
        if (a < 0 || b < 0 || memcmp(rbuf, rbuf2, (size_t)n)) {
            fprintf(stderr, "fuzz_vhdx: range %llu+%llu reads differently in two pieces\n",
                    (unsigned long long)off, (unsigned long long)n);
            abort();
        }
    }
    kimg_clear_error();
}

static void exercise(struct kimg *img, bool walk_data)
{
    struct kimg_info info;
    struct kimg_check res = { 0 };
    if (kimg_get_info(img, &info) == 0)
        kimg_info_free(&info);
    kimg_clear_error();
    (void)kimg_check(img, &res, 0);
    kimg_clear_error();
    if (walk_data)
        walk(img);
    kimg_close(img);
    kimg_clear_error();
}

static void write_check(size_t fsize)
{
    struct kimg_file *f;
    struct kimg *img = NULL, *back = NULL;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, FUZZ_NAME, file, fsize, true, fsize + GROW) < 0)
        return;
    if (kimg_open_file(&img, f, "vhdx", RO_FLAGS | KIMG_OPEN_RDWR) < 0) {
        kimg_clear_error();
        return;
    }
    uint64_t size = kimg_size(img), offs[3] = { 0, size / 2 & ~511ull,
                                                size > WRITE_LEN ? size - WRITE_LEN : 0 };
    bool wrote[3];
    memset(rbuf, 0xa5, WRITE_LEN);
    for (int i = 0; i < 3; i++) {
        uint64_t n = size - offs[i] < WRITE_LEN ? size - offs[i] : WRITE_LEN;
        wrote[i] = n && kimg_write(img, rbuf, offs[i], n) == 0;
        kimg_clear_error();
    }
    if (kimg_flush(img) == 0 && img->file->mem) {
        struct kimg_file *g;
        if (kimg_file_open_mem(&g, FUZZ_NAME, img->file->mem, img->file->mem_size, false, 0) < 0)
            abort();
        if (kimg_open_file(&back, g, "vhdx", RO_FLAGS) < 0) {
            fprintf(stderr, "fuzz_vhdx: the written image does not open: %s\n",
                    kimg_last_error());
            abort();
        }
        for (int i = 0; i < 3; i++) {
            uint64_t n = size - offs[i] < WRITE_LEN ? size - offs[i] : WRITE_LEN;
            if (!wrote[i])
                continue;
            if (kimg_read(back, rbuf2, offs[i], n) < 0 || memcmp(rbuf, rbuf2, (size_t)n)) {
                fprintf(stderr, "fuzz_vhdx: write %d at %llu does not read back\n", i,
                        (unsigned long long)offs[i]);
                abort();
            }
        }
        kimg_close(back);
    }
    kimg_clear_error();
    kimg_close(img);
    kimg_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!file)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size > (1u << 20))
        return 0;
    size_t fsize = expand(data, size);

    struct kimg *img = open_mem(fsize, "vhdx", 0);
    if (img)
        exercise(img, true);
    img = open_mem(fsize, NULL, 0);
    if (img && strcmp(kimg_format_name(img), "vhdx")) {
        kimg_close(img);
        img = NULL;
    }
    if (img)
        exercise(img, false);
    /* as check opens it: BAT problems counted, not refused */
    img = open_mem(fsize, "vhdx", KIMG_OPEN_REPAIR);
    if (img)
        exercise(img, true);
    write_check(fsize);
    return 0;
}
