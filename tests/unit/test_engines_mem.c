/*
 * test_engines_mem.c — convert, compare and checksum on memory files, a
 * file backend with no descriptor (no mmap, reflink, copy offload or
 * libaio of the POSIX kind): every engine must work through the file
 * layer's operations and their pread/pwrite fallbacks, and give the same
 * results as on host files.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/unit/tap.h"
#include "kimg/checksum.h"
#include "kimg/compare.h"
#include "kimg/convert.h"
#include "kimg/driver.h"

#define SIZE ((8u << 20) + 1536u)      /* an unaligned tail */
#define LIMIT (64u << 20)

static uint8_t *pattern;

static void make_pattern(void)
{
    pattern = calloc(1, SIZE);
    /* data, a zero run inside it, data, a hole, data up to the end */
    for (uint32_t i = 0; i < SIZE; i++) {
        bool zero = (i >= (1u << 20) && i < (3u << 20)) || (i >= (5u << 20) && i < (6u << 20));
        pattern[i] = zero ? 0 : (uint8_t)(i * 7 + (i >> 12));
    }
}

/* A memory image of FORMAT holding BYTES (LEN of them) of file content. */
static struct kimg *mem_open(const char *name, const void *bytes, size_t len,
                             const char *format, bool writable)
{
    struct kimg_file *f;
    struct kimg *img;
    if (kimg_file_open_mem(&f, name, bytes, len, writable, LIMIT) < 0)
        return NULL;
    unsigned fl = KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING | (writable ? KIMG_OPEN_RDWR : 0);
    if (kimg_open_file(&img, f, format, fl) < 0) {
        diag("open %s: %s", name, kimg_last_error() ? kimg_last_error() : "?");
        return NULL;
    }
    return img;
}

/* The bytes of a new, empty image of FORMAT and SIZE made on disk by
 * kimg_create, for a memory target; *LEN gets their count. */
static uint8_t *empty_image(const char *format, size_t *len)
{
    char path[] = "/tmp/kimg-test-engines-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    close(fd);
    unlink(path);
    struct kimg_create_args a = { .filename = path, .format = format, .size = SIZE,
                                  .size_given = true };
    uint8_t *buf = NULL;
    if (kimg_create(&a) == 0) {
        FILE *fp = fopen(path, "rb");
        buf = malloc(LIMIT);
        *len = fp && buf ? fread(buf, 1, LIMIT, fp) : 0;
        if (fp)
            fclose(fp);
    } else {
        diag("create: %s", kimg_last_error());
    }
    unlink(path);
    return buf;
}

/* Convert SRC into a new memory image of FORMAT; returns it (open RDWR). */
static struct kimg *convert_to(struct kimg *src, const char *format, bool compress)
{
    size_t len = 0;
    uint8_t *bytes = empty_image(format, &len);
    struct kimg *dst = bytes ? mem_open("dst", bytes, len, format, true) : NULL;
    free(bytes);
    if (!dst)
        return NULL;
    struct kimg *srcs[1] = { src };
    struct kimg_convert c = { .src = srcs, .nb_src = 1, .dst = dst, .sparse_size = 4096,
                              .compress = compress, .target_is_zero = true, .in_flight = 8 };
    kimg_clear_error();
    int ret = kimg_convert_run(&c);
    if (ret < 0) {
        diag("convert to %s: %s", format, kimg_last_error() ? kimg_last_error() : "?");
        kimg_close(dst);
        return NULL;
    }
    return dst;
}

static bool reads_pattern(struct kimg *img)
{
    uint8_t *buf = kimg_alloc_aligned(SIZE);
    bool same = buf && kimg_size(img) == SIZE && kimg_read(img, buf, 0, SIZE) == 0 &&
                !memcmp(buf, pattern, SIZE);
    free(buf);
    return same;
}

static int compare(struct kimg *a, struct kimg *b, uint64_t *off)
{
    struct kimg_compare c = { .a = a, .b = b, .name_a = "a", .name_b = "b" };
    int ret = kimg_compare_run(&c);
    *off = c.offset;
    return ret;
}

static int digest(struct kimg *img, unsigned char *md, int threads)
{
    struct kimg_checksum c = { .threads = threads };
    unsigned len;
    return kimg_checksum_run(img, &c, md, &len);
}

/* kimg_convert_stream of IMG into a temporary file: its bytes are the
 * pattern, written in order (the file is never seeked: a pipe would do). */
static bool streams_pattern(struct kimg *img)
{
    char path[] = "/tmp/kimg-test-stream-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return false;
    unlink(path);
    struct kimg *srcs[1] = { img };
    struct kimg_convert c = { .src = srcs, .nb_src = 1 };
    bool good = kimg_convert_stream(&c, fd) == 0 && lseek(fd, 0, SEEK_CUR) == (off_t)SIZE;
    uint8_t *buf = malloc(SIZE);
    good = good && buf && pread(fd, buf, SIZE, 0) == (ssize_t)SIZE && !memcmp(buf, pattern, SIZE);
    free(buf);
    close(fd);
    return good;
}

int main(void)
{
    plan(20);
    make_pattern();

    struct kimg *src = mem_open("src.raw", pattern, SIZE, "raw", false);
    ok(src != NULL, "memory raw source");
    ok(src && src->file->fd < 0, "... has no descriptor");

    struct kimg *raw = src ? convert_to(src, "raw", false) : NULL;
    ok(raw && reads_pattern(raw), "convert memory raw -> memory raw");
    struct kimg *q = src ? convert_to(src, "qcow2", false) : NULL;
    ok(q && reads_pattern(q), "convert memory raw -> memory qcow2 (parallel cluster writes)");
    struct kimg *qz = src ? convert_to(src, "qcow2", true) : NULL;
    ok(qz && reads_pattern(qz), "convert -c memory raw -> memory qcow2");
    struct kimg *back = q ? convert_to(q, "raw", false) : NULL;
    ok(back && reads_pattern(back), "convert memory qcow2 -> memory raw");

    ok(src && streams_pattern(src), "stream memory raw -> a descriptor, in order");
    ok(q && streams_pattern(q), "stream memory qcow2 (a hole, a zero run) -> a descriptor");

    uint64_t off = 0;
    ok(src && q && compare(src, q, &off) == KIMG_COMPARE_SAME, "compare raw vs qcow2: same");
    ok(qz && back && compare(qz, back, &off) == KIMG_COMPARE_SAME,
       "compare compressed qcow2 vs raw: same");

    /* one byte changed in a copy of the source */
    uint8_t *diff = malloc(SIZE);
    memcpy(diff, pattern, SIZE);
    diff[(4u << 20) + 777] ^= 0x40;
    struct kimg *d = mem_open("diff.raw", diff, SIZE, "raw", false);
    ok(d && q && compare(q, d, &off) == KIMG_COMPARE_DIFF, "compare finds a difference");
    is_u64(off, (4u << 20) + 512, "... at its sector");
    free(diff);

    unsigned char m1[KIMG_CHECKSUM_MAX_MD_SIZE], m2[KIMG_CHECKSUM_MAX_MD_SIZE];
    unsigned char m3[KIMG_CHECKSUM_MAX_MD_SIZE];
    ok(src && digest(src, m1, 4) == 0, "checksum of the memory raw source");
    ok(q && digest(q, m2, 2) == 0 && !memcmp(m1, m2, 32), "... same for memory qcow2");
    ok(qz && digest(qz, m3, 1) == 0 && !memcmp(m1, m3, 32), "... and compressed, 1 thread");
    ok(d && digest(d, m3, 3) == 0 && memcmp(m1, m3, 32), "... differs for the changed copy");

    /* a raw file of 1000 bytes is a 1024-byte image: the last sector runs
     * past the file's end, where a mapping cannot reach; the engines read
     * it (zeros) instead of calling it a file that changed size */
    struct kimg *o1 = mem_open("odd1.raw", pattern, 1000, "raw", false);
    struct kimg *o2 = mem_open("odd2.raw", pattern, 1000, "raw", false);
    kimg_clear_error();
    ok(o1 && o2 && compare(o1, o2, &off) == KIMG_COMPARE_SAME,
       "compare of a raw file whose size is not a multiple of 512");
    ok(o1 && digest(o1, m3, 2) == 0, "... and its checksum");
    if (o1)
        kimg_close(o1);
    if (o2)
        kimg_close(o2);

    /* -C needs a backend that copies inside the host: refused, not crashed */
    size_t len = 0;
    uint8_t *bytes = empty_image("raw", &len);
    struct kimg *t = bytes ? mem_open("t.raw", bytes, len, "raw", true) : NULL;
    free(bytes);
    struct kimg *srcs[1] = { src };
    struct kimg_convert c = { .src = srcs, .nb_src = 1, .dst = t, .sparse_size = 4096,
                              .copy_offload = true, .in_flight = 4 };
    kimg_clear_error();
    ok(t && src && kimg_convert_run(&c) == -ENOTSUP, "-C on memory files: -ENOTSUP");
    ok(kimg_last_error() && strstr(kimg_last_error(), "copy offloading"),
       "... with a message");

    struct kimg *all[] = { t, d, back, qz, q, raw, src };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (all[i])
            kimg_close(all[i]);
    free(pattern);
    return done_testing();
}
