/*
 * test_qcow2_header.c — hostile qcow2 images: every header field out of
 * range, bad extensions, bad tables, unknown features, encryption; each
 * must fail to open with a message (never crash).  Then random byte
 * corruption of the metadata clusters: open + read everything + map must
 * terminate without crashing (run it under `make SANITIZE=1 check`).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "kimg.h"
#include "kimg/driver.h"
#include "kimg/opts.h"
#include "formats/qcow2/qcow2.h"

static uint8_t *base;
static size_t base_len;

static void put32(uint8_t *p, uint32_t v) { qcow2_put_be32(p, v); }
static void put64(uint8_t *p, uint64_t v) { qcow2_put_be64(p, v); }

/* Open a mutated copy; returns the open result (image closed). */
static int try_open(const uint8_t *data, size_t len, unsigned flags, char *msg, size_t msglen)
{
    struct kimg_file *f = NULL;
    struct kimg *img = NULL;
    int ret;
    kimg_clear_error();
    ret = kimg_file_open_mem(&f, "hostile.qcow2", data, len, (flags & KIMG_OPEN_RDWR) != 0,
                             len + (64u << 20));
    if (ret == 0)
        ret = kimg_open_file(&img, f, "qcow2", flags | KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING);
    if (msg) {
        const char *e = kimg_last_error();
        snprintf(msg, msglen, "%s", e ? e : "");
    }
    if (ret == 0) {
        /* read it all: must not crash */
        uint64_t size = kimg_size(img);
        uint8_t *buf = malloc(1 << 16);
        for (uint64_t off = 0; off < size && off < (64u << 20); off += 1 << 16) {
            uint64_t n = size - off < (1 << 16) ? size - off : (1 << 16);
            kimg_read(img, buf, off, n);
            struct kimg_extent ext;
            kimg_layer_block_status(img, off, n, &ext);
        }
        free(buf);
        struct kimg_info info;
        memset(&info, 0, sizeof(info));
        if (kimg_get_info(img, &info) == 0)
            kimg_info_free(&info);
        kimg_close(img);
    } else if (f && !img) {
        /* kimg_open_file takes the file only on success */
    }
    return ret;
}

struct mutation {
    const char *name;
    size_t off;
    int width;          /* 4 or 8 */
    uint64_t value;
    const char *expect; /* substring of the message, or NULL */
};

int main(void)
{
    char dir[] = "/tmp/kimg-qcow2-hdr.XXXXXX";
    char path[256], msg[1024];
    if (!mkdtemp(dir)) {
        printf("1..0 # skip no temporary folder\n");
        return 0;
    }
    snprintf(path, sizeof(path), "%s/h.qcow2", dir);
    /* a small valid image with some data */
    {
        struct kimg_create_args a;
        struct kimg_opts *o = NULL;
        memset(&a, 0, sizeof(a));
        kimg_opts_parse(&o, "cluster_size=4k");
        a.filename = path;
        a.format = "qcow2";
        a.size = 1 << 20;
        a.size_given = true;
        a.opts = o;
        int ret = kimg_create(&a);
        kimg_opts_free(o);
        struct kimg *img = NULL;
        if (ret == 0)
            ret = kimg_open(&img, path, "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK);
        uint8_t buf[10000];
        memset(buf, 0x5c, sizeof(buf));
        if (ret == 0) {
            kimg_write(img, buf, 5000, sizeof(buf));
            kimg_write(img, buf, 700000, 3000);
            kimg_close(img);
        }
        FILE *f = fopen(path, "rb");
        base = malloc(1 << 20);
        base_len = f ? fread(base, 1, 1 << 20, f) : 0;
        if (f)
            fclose(f);
    }

    static const struct mutation m[] = {
        { "magic", 0, 4, 0x514649fa, "not in qcow2 format" },
        { "version 1", 4, 4, 1, "Unsupported qcow2 version" },
        { "version 4", 4, 4, 4, "Unsupported qcow2 version" },
        { "cluster_bits 8", 20, 4, 8, "Unsupported cluster size" },
        { "cluster_bits 22", 20, 4, 22, "Unsupported cluster size" },
        { "cluster_bits huge", 20, 4, 0xffffffffu, "Unsupported cluster size" },
        { "size huge", 24, 8, 0x7fffffffffffffffULL, NULL },
        { "size > L1", 24, 8, 1ULL << 40, "L1 table is too small" },
        { "crypt_method 1", 32, 4, 1, "Parameter 'encrypt.key-secret' is required for cipher" },
        { "crypt_method 2", 32, 4, 2, "Missing CRYPTO header for crypt method 2" },
        { "l1_size huge", 36, 4, 0xffffffffu, "too large" },
        { "l1_size past EOF", 36, 4, 100000, NULL },
        { "l1_offset unaligned", 40, 8, 4096 * 3 + 8, "Active L1 table offset invalid" },
        { "l1_offset past EOF", 40, 8, 1ULL << 40, NULL },
        { "l1_offset 0", 40, 8, 0, "Active L1 table offset invalid" },
        { "rt_offset unaligned", 48, 8, 4097, "Reference count table offset" },
        { "rt_offset 0", 48, 8, 0, "Reference count table offset" },
        { "rt_offset past EOF", 48, 8, 1ULL << 50, NULL },
        { "rt_clusters 0", 56, 4, 0, "reference count table" },
        { "rt_clusters huge", 56, 4, 0xffffffffu, "too large" },
        { "nb_snapshots huge", 60, 4, 70000, "Too many snapshots" },
        { "snapshots_offset unaligned", 60, 4, 1, "snapshot table offset" },
        { "backing offset past cluster", 8, 8, 1ULL << 20, NULL },
        { "unknown incompatible bit 5", 72, 8, 1ULL << 5, "Unknown incompatible feature: 20" },
        { "unknown incompatible bit 63", 72, 8, 1ULL << 63, "Unsupported qcow2 feature" },
        { "compression bit without type", 72, 8, 1ULL << 3, "Compression type" },
        { "extended L2 with 4k clusters", 72, 8, 1ULL << 4, "16384" },
        { "data file without name", 72, 8, 1ULL << 2, NULL },
        { "refcount_order 7", 96, 4, 7, "Reference count entry width too large" },
        { "header_length 50", 100, 4, 50, "header too short" },
        { "header_length > cluster", 100, 4, 8192, "exceeds cluster size" },
        { "raw data file without data file", 88, 8, 2, "data-file-raw" },
    };
    size_t nm = sizeof(m) / sizeof(m[0]);
    plan((int)(1 + nm + 6 + 2));
    ok(base_len > 4096 && try_open(base, base_len, 0, NULL, 0) == 0, "the unmodified image opens");

    uint8_t *c = malloc(base_len + 4096);
    for (size_t i = 0; i < nm; i++) {
        memcpy(c, base, base_len);
        if (m[i].width == 4)
            put32(c + m[i].off, (uint32_t)m[i].value);
        else
            put64(c + m[i].off, m[i].value);
        if (!strcmp(m[i].name, "snapshots_offset unaligned"))
            put64(c + 64, 4097);
        if (!strcmp(m[i].name, "backing offset past cluster"))
            put32(c + 16, 10);
        int ret = try_open(c, base_len, 0, msg, sizeof(msg));
        int good = ret < 0 && msg[0] && (!m[i].expect || strstr(msg, m[i].expect));
        ok(good, "%s refused: %s", m[i].name, msg);
    }

    /* header extensions */
    {
        memcpy(c, base, base_len);
        /* extension with a length running past the header cluster */
        put32(c + 112, 0x12345678);
        put32(c + 116, 100000);
        int ret = try_open(c, base_len, 0, msg, sizeof(msg));
        ok(ret < 0 && strstr(msg, "exceeds"), "extension longer than the cluster refused: %s", msg);

        memcpy(c, base, base_len);
        put32(c + 112, QCOW2_EXT_BACKING_FMT);
        put32(c + 116, 2000);
        ret = try_open(c, base_len, 0, msg, sizeof(msg));
        ok(ret < 0, "huge backing format extension refused: %s", msg);

        memcpy(c, base, base_len);
        put32(c + 112, QCOW2_EXT_BITMAPS);
        put32(c + 116, 8);
        ret = try_open(c, base_len, 0, msg, sizeof(msg));
        ok(ret < 0 && strstr(msg, "bitmaps"), "short bitmaps extension refused: %s", msg);

        /* unknown bit named by the feature table: the name is reported */
        memcpy(c, base, base_len);
        put32(c + 112, QCOW2_EXT_FEATURES);
        put32(c + 116, 48);
        memset(c + 120, 0, 48 + 8);
        c[120] = 0;
        c[121] = 6;
        memcpy(c + 122, "frobnication", 12);
        put64(c + 72, 1ULL << 6);
        ret = try_open(c, base_len, 0, msg, sizeof(msg));
        ok(ret < 0 && strstr(msg, "frobnication"), "feature name table names the feature: %s", msg);

        /* corrupt bit: read-only works, read-write refused */
        memcpy(c, base, base_len);
        put64(c + 72, QCOW2_INCOMPAT_CORRUPT);
        ok(try_open(c, base_len, 0, msg, sizeof(msg)) == 0, "corrupt image opens read-only");
        ret = try_open(c, base_len, KIMG_OPEN_RDWR, msg, sizeof(msg));
        ok(ret < 0 && strstr(msg, "corrupt"), "corrupt image refused read-write: %s", msg);
    }

    /* random corruption of the metadata: no crash, no hang */
    {
        uint64_t r = 12345;
        int opened = 0, n = 3000;
        for (int i = 0; i < n; i++) {
            memcpy(c, base, base_len);
            int flips = 1 + (int)(r % 8);
            for (int j = 0; j < flips; j++) {
                r ^= r << 13; r ^= r >> 7; r ^= r << 17;
                size_t pos = (size_t)(r % (5 * 4096 < base_len ? 5 * 4096 : base_len));
                r ^= r << 13; r ^= r >> 7; r ^= r << 17;
                c[pos] = (uint8_t)r;
            }
            if (try_open(c, base_len, (i & 1) ? KIMG_OPEN_RDWR : 0, NULL, 0) == 0)
                opened++;
        }
        ok(1, "%d randomly corrupted images handled (%d opened)", n, opened);
    }
    /* corrupt L2 entries then write: refused or contained, never a crash */
    {
        int handled = 0;
        struct qcow2_state probe;
        (void)probe;
        for (int i = 0; i < 200; i++) {
            memcpy(c, base, base_len);
            /* L1 at cluster 3 (4k clusters); its L2 table is the first entry */
            uint64_t l2 = qcow2_be64(c + 3 * 4096) & QCOW2_L1E_OFFSET_MASK;
            if (l2 && l2 + 4096 <= base_len) {
                put64(c + l2 + (size_t)(i % 256) * 8,
                      (i % 3 == 0) ? 0x8000000000000000ULL : (i % 3 == 1) ?
                      0x8000000000000000ULL | 4096 : 0x8000000000000000ULL | 3 * 4096);
            }
            struct kimg_file *f = NULL;
            struct kimg *img = NULL;
            kimg_clear_error();
            if (kimg_file_open_mem(&f, "w.qcow2", c, base_len, true, 64 << 20) == 0 &&
                kimg_open_file(&img, f, "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK) == 0) {
                uint8_t buf[8192];
                memset(buf, 1, sizeof(buf));
                kimg_write(img, buf, (uint64_t)(i % 256) * 4096, sizeof(buf));
                kimg_close(img);
            }
            handled++;
        }
        ok(handled == 200, "writes through corrupt L2 entries are contained");
    }
    free(c);
    free(base);
    unlink(path);
    rmdir(dir);
    return done_testing();
}
