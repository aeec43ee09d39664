/*
 * test_qcow2_rw.c — qcow2 round trips: create with each option variant,
 * random writes / zero writes / discards mirrored in a reference buffer,
 * read back (open and reopened, also from an in-memory copy), refcounts
 * rebuilt and compared; COW from a backing file, extended L2 partial
 * subclusters, snapshot-shared clusters.  When qemu-img is installed the
 * results also pass `qemu-img check` and `qemu-img compare`.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "kimg.h"
#include "kimg/driver.h"
#include "kimg/opts.h"
#include "formats/qcow2/qcow2.h"

static char dir[256];
static int have_qemu;
static uint64_t rng = 88172645463325252ULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static int create(const char *path, const char *opts, uint64_t size,
                  const char *backing, const char *bfmt)
{
    struct kimg_create_args a;
    struct kimg_opts *o = NULL;
    memset(&a, 0, sizeof(a));
    a.filename = path;
    a.format = "qcow2";
    a.size = size;
    a.size_given = size != 0 || !backing;
    a.backing_file = backing;
    a.backing_format = bfmt;
    if (opts && *opts && kimg_opts_parse(&o, opts) < 0)
        return -EINVAL;
    a.opts = o;
    kimg_clear_error();
    int ret = kimg_create(&a);
    if (ret < 0)
        diag("create %s (%s): %s", path, opts ? opts : "", kimg_last_error());
    kimg_opts_free(o);
    return ret;
}

static int write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite(buf, 1, len, f);
    fclose(f);
    return n == len ? 0 : -1;
}

/* Every refcount on disk equals the recount of references. */
static int refcounts_consistent(struct kimg *img)
{
    struct qcow2_state *s = img->state;
    uint64_t fsz;
    if (kimg_file_size(s->file, &fsz) < 0)
        return 0;
    uint64_t nb = (fsz + s->cluster_size - 1) >> s->cluster_bits;
    if (s->alloc_end > nb)
        nb = s->alloc_end;
    uint32_t *refs = calloc(nb + 1, 4);
    uint64_t bad = 0;
    int good = 1;
    if (qcow2_count_references(s, refs, nb, &bad) < 0 || bad)
        good = 0;
    for (uint64_t c = 0; good && c < nb; c++) {
        uint64_t rc;
        if (qcow2_refcount_get(s, c, &rc) < 0 || rc != refs[c]) {
            diag("cluster %llu: refcount %llu, references %u", (unsigned long long)c,
                 (unsigned long long)rc, refs[c]);
            good = 0;
        }
    }
    free(refs);
    return good;
}

/* Random operations on an image, mirrored in REF. */
static int random_ops(struct kimg *img, uint8_t *ref, uint64_t size, int nops,
                      bool zero_ok_v2)
{
    struct qcow2_state *s = img->state;
    uint8_t *buf = malloc(size);
    int ret = 0;
    for (int i = 0; i < nops && ret == 0; i++) {
        uint64_t op = rnd() % 10;
        uint64_t len = 1 + rnd() % (op < 2 ? (1 << 20) : 3 * s->cluster_size);
        if (len > size)
            len = size;
        uint64_t off = rnd() % (size - len + 1);
        if (rnd() % 3 == 0) {   /* aligned */
            off &= ~(s->cluster_size - 1);
            if (off + len > size)
                len = size - off;
        }
        if (op < 6) {
            uint8_t pat = (uint8_t)(rnd() | 1);
            for (uint64_t j = 0; j < len; j++)
                buf[j] = (uint8_t)(pat + j * 7 + (j >> 9));
            ret = kimg_write(img, buf, off, len);
            memcpy(ref + off, buf, len);
        } else if (op < 8) {
            ret = kimg_write_zeroes(img, off, len, rnd() % 2 ? KIMG_ZERO_MAY_UNMAP : 0);
            memset(ref + off, 0, len);
        } else if (op == 8) {
            ret = kimg_discard(img, off, len);
            /* discard only drops whole clusters; those read as zeros
             * (no backing file here) */
            uint64_t a = (off + s->cluster_size - 1) & ~(s->cluster_size - 1);
            uint64_t b = off + len == size ? off + len : (off + len) & ~(s->cluster_size - 1);
            if (a < b)
                memset(ref + a, 0, b - a);
        } else {
            ret = kimg_read(img, buf, off, len);
            if (ret == 0 && memcmp(buf, ref + off, len)) {
                diag("read mismatch at %llu+%llu", (unsigned long long)off,
                     (unsigned long long)len);
                ret = -EIO;
            }
        }
        if (ret < 0)
            diag("op %llu at %llu+%llu failed: %s", (unsigned long long)op,
                 (unsigned long long)off, (unsigned long long)len, kimg_last_error());
    }
    (void)zero_ok_v2;
    free(buf);
    return ret;
}

static int read_all_equal(struct kimg *img, const uint8_t *ref, uint64_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    int ok_ = kimg_read(img, buf, 0, size) == 0 && memcmp(buf, ref, size) == 0;
    free(buf);
    return ok_;
}

static void roundtrip(const char *opts, uint64_t size, int nops)
{
    const char *only = getenv("KIMG_QCOW2_VARIANT");
    if (only && strcmp(only, opts)) {
        for (int i = 0; i < 6; i++)
            ok(1, "# skip variant %s", opts);
        return;
    }
    char path[512], raw[512];
    snprintf(path, sizeof(path), "%s/rt.qcow2", dir);
    snprintf(raw, sizeof(raw), "%s/rt.raw", dir);
    uint8_t *ref = calloc(1, size);
    struct kimg *img = NULL;
    int ret = create(path, opts, size, NULL, NULL);
    ret = ret ? ret : kimg_open(&img, path, "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK);
    if (ret < 0)
        diag("open: %s", kimg_last_error());
    ret = ret ? ret : random_ops(img, ref, size, nops, true);
    ok(ret == 0, "[%s] %d random operations", opts, nops);
    ok(img && refcounts_consistent(img), "[%s] refcounts match the references", opts);
    if (img)
        kimg_close(img);
    img = NULL;
    ret = kimg_open(&img, path, "qcow2", KIMG_OPEN_NO_LOCK);
    ok(ret == 0 && read_all_equal(img, ref, size), "[%s] reopened image reads back", opts);
    if (img)
        kimg_close(img);
    /* the same from an in-memory copy */
    {
        FILE *f = fopen(path, "rb");
        struct stat st;
        stat(path, &st);
        uint8_t *data = malloc((size_t)st.st_size);
        size_t n = fread(data, 1, (size_t)st.st_size, f);
        fclose(f);
        struct kimg_file *mf = NULL;
        img = NULL;
        if (strstr(opts, "data_file")) {
            /* the guest data lives in the data file: not in the copy */
            ok(1, "# skip memory copy with an external data file");
            free(data);
            goto qemu;
        }
        ret = kimg_file_open_mem(&mf, "mem.qcow2", data, n, false, 0);
        ret = ret ? ret : kimg_open_file(&img, mf, "qcow2", KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING);
        ok(ret == 0 && read_all_equal(img, ref, size), "[%s] memory copy reads back", opts);
        if (img)
            kimg_close(img);
        free(data);
    }
qemu:
    if (have_qemu) {
        write_file(raw, ref, size);
        ok(sh("qemu-img check -q '%s' >/dev/null 2>&1", path) == 0, "[%s] qemu-img check", opts);
        ok(sh("qemu-img compare -q -f qcow2 -F raw '%s' '%s' 2>/dev/null", path, raw) == 0,
           "[%s] qemu-img compare with the reference", opts);
    } else {
        ok(1, "# skip no qemu-img");
        ok(1, "# skip no qemu-img");
    }
    free(ref);
}

/* Overlay over a backing file: partial writes copy the rest from below. */
static void backing_cow(const char *opts)
{
    char base[512], top[512], raw[512];
    uint64_t size = 4 << 20;
    snprintf(base, sizeof(base), "%s/base.qcow2", dir);
    snprintf(top, sizeof(top), "%s/top.qcow2", dir);
    snprintf(raw, sizeof(raw), "%s/top.raw", dir);
    uint8_t *ref = malloc(size);
    struct kimg *img = NULL;
    int ret = create(base, "", size, NULL, NULL);
    ret = ret ? ret : kimg_open(&img, base, "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK);
    for (uint64_t i = 0; i < size; i++)
        ref[i] = (uint8_t)(i * 13 + (i >> 12));
    ret = ret ? ret : kimg_write(img, ref, 0, size);
    if (img)
        kimg_close(img);
    img = NULL;
    ret = ret ? ret : create(top, opts, size, "base.qcow2", "qcow2");
    ret = ret ? ret : kimg_open(&img, top, "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK);
    if (ret < 0)
        diag("%s", kimg_last_error());
    uint8_t buf[3000];
    for (int i = 0; ret == 0 && i < 200; i++) {
        uint64_t len = 1 + rnd() % sizeof(buf);
        uint64_t off = rnd() % (size - len);
        memset(buf, (int)(i + 1), len);
        ret = kimg_write(img, buf, off, len);
        memcpy(ref + off, buf, len);
    }
    ok(ret == 0, "[backing %s] partial writes over a backing file", opts);
    ok(img && read_all_equal(img, ref, size), "[backing %s] reads back with COW data", opts);
    ok(img && refcounts_consistent(img), "[backing %s] refcounts consistent", opts);
    if (img)
        kimg_close(img);
    if (have_qemu) {
        write_file(raw, ref, size);
        ok(sh("qemu-img check -q '%s' >/dev/null 2>&1", top) == 0,
           "[backing %s] qemu-img check", opts);
        ok(sh("qemu-img compare -q '%s' '%s' 2>/dev/null", top, raw) == 0,
           "[backing %s] qemu-img compare", opts);
    } else {
        ok(1, "# skip no qemu-img");
        ok(1, "# skip no qemu-img");
    }
    free(ref);
}

/* Clusters shared with an internal snapshot are copied before writing. */
static void snapshot_cow(void)
{
    char path[512], snapraw[512], raw[512];
    uint64_t size = 2 << 20;
    if (!have_qemu) {
        for (int i = 0; i < 5; i++)
            ok(1, "# skip no qemu-img");
        return;
    }
    snprintf(path, sizeof(path), "%s/snap.qcow2", dir);
    snprintf(snapraw, sizeof(snapraw), "%s/snap-s1.raw", dir);
    snprintf(raw, sizeof(raw), "%s/snap.raw", dir);
    sh("qemu-img create -q -f qcow2 '%s' 2M && qemu-io -c 'write -P 0x11 0 1M' "
       "-c 'write -c -P 0x33 1M 64k' '%s' >/dev/null && qemu-img snapshot -c s1 '%s' && "
       "qemu-img convert -O raw -l snapshot.name=s1 '%s' '%s'", path, path, path, path, snapraw);
    struct kimg *img = NULL;
    uint8_t *ref = malloc(size);
    int ret = kimg_open(&img, path, "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK);
    ret = ret ? ret : kimg_read(img, ref, 0, size);
    uint8_t buf[5000];
    for (int i = 0; ret == 0 && i < 50; i++) {
        uint64_t len = 1 + rnd() % sizeof(buf);
        uint64_t off = rnd() % (size - len);
        memset(buf, 0x40 + i, len);
        ret = kimg_write(img, buf, off, len);
        memcpy(ref + off, buf, len);
    }
    ok(ret == 0, "writes into clusters shared with a snapshot");
    ok(img && read_all_equal(img, ref, size), "active layer reads the new data");
    ok(img && refcounts_consistent(img), "refcounts consistent after snapshot COW");
    if (img)
        kimg_close(img);
    write_file(raw, ref, size);
    ok(sh("qemu-img check -q '%s' >/dev/null 2>&1", path) == 0, "qemu-img check after snapshot COW");
    ok(sh("qemu-img convert -O raw -l snapshot.name=s1 '%s' '%s.2' && cmp -s '%s' '%s.2' && "
          "qemu-img compare -q '%s' '%s'", path, snapraw, snapraw, snapraw, path, raw) == 0,
       "the snapshot keeps its data, the active layer has the new data");
    free(ref);
}

/* Dirty lazy-refcount image: opening RDWR rebuilds the refcounts. */
static void lazy_dirty(void)
{
    char path[512];
    if (!have_qemu) {
        for (int i = 0; i < 3; i++)
            ok(1, "# skip no qemu-img");
        return;
    }
    snprintf(path, sizeof(path), "%s/lazy.qcow2", dir);
    sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on '%s' 4M && "
       "qemu-io -c 'write -P 0x5a 0 3M' -c abort '%s' >/dev/null 2>&1", path, path);
    ok(sh("qemu-img info '%s' | grep -q 'dirty flag'", path) == 0 ||
       sh("qemu-img check '%s' >/dev/null 2>&1", path) != 0, "qemu-io left the image dirty");
    struct kimg *img = NULL;
    int ret = kimg_open(&img, path, "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK);
    if (ret < 0)
        diag("%s", kimg_last_error());
    ok(ret == 0 && refcounts_consistent(img), "refcounts rebuilt on a RDWR open");
    if (img)
        kimg_close(img);
    ok(sh("qemu-img check -q '%s' >/dev/null 2>&1 && qemu-io -c 'read -P 0x5a 0 3M' '%s' "
          "| grep -q 'read 3145728'", path, path) == 0, "qemu-img check clean, data intact");
}

/* Compressed clusters written by us, read back and by qemu-img. */
static void compressed(const char *opts)
{
    char path[512], raw[512];
    uint64_t size = (3 << 20) + 4096;
    snprintf(path, sizeof(path), "c.qcow2");
    snprintf(raw, sizeof(raw), "c.raw");
    uint8_t *ref = calloc(1, size);
    struct kimg *img = NULL;
    int ret = create(path, opts, size, NULL, NULL);
    ret = ret ? ret : kimg_open(&img, path, "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK);
    struct qcow2_state *s = img ? img->state : NULL;
    for (uint64_t off = 0; ret == 0 && off < size; off += s->cluster_size) {
        uint64_t n = size - off < s->cluster_size ? size - off : s->cluster_size;
        for (uint64_t j = 0; j < n; j++)
            ref[off + j] = (off / s->cluster_size) % 3 == 2 ? (uint8_t)rnd()
                                                            : (uint8_t)((j / 100) + off / 4096);
        ret = img->drv->write_compressed(img, ref + off, off, n);
    }
    ok(ret == 0, "[compressed %s] every cluster written compressed", opts);
    /* then overwrite parts: compressed clusters are copied out */
    uint8_t buf[777];
    for (int i = 0; ret == 0 && i < 40; i++) {
        uint64_t off = rnd() % (size - sizeof(buf));
        memset(buf, 0xe0 + i % 16, sizeof(buf));
        ret = kimg_write(img, buf, off, sizeof(buf));
        memcpy(ref + off, buf, sizeof(buf));
    }
    ok(ret == 0 && read_all_equal(img, ref, size), "[compressed %s] reads back after overwrites", opts);
    ok(img && refcounts_consistent(img), "[compressed %s] refcounts consistent", opts);
    if (img)
        kimg_close(img);
    if (have_qemu) {
        write_file(raw, ref, size);
        ok(sh("qemu-img check -q %s >/dev/null 2>&1 && qemu-img compare -q %s %s", path, path,
              raw) == 0, "[compressed %s] qemu-img check and compare", opts);
    } else {
        ok(1, "# skip no qemu-img");
    }
    free(ref);
}

/* Grow (L1 growth, zeroed tail over a longer backing file) and shrink. */
static void resize(const char *opts)
{
    uint64_t size = 1 << 20;
    struct kimg *img = NULL;
    uint8_t *ref = calloc(1, 64 << 20);
    int ret = create("r.qcow2", opts, size, NULL, NULL);
    ret = ret ? ret : kimg_open(&img, "r.qcow2", "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK);
    memset(ref, 0x31, size);
    ret = ret ? ret : kimg_write(img, ref, 0, size);
    ret = ret ? ret : kimg_truncate(img, 40 << 20, KIMG_PREALLOC_OFF);
    memset(ref + (30 << 20), 0x32, 1 << 20);
    ret = ret ? ret : kimg_write(img, ref + (30 << 20), 30 << 20, 1 << 20);
    ok(ret == 0 && kimg_size(img) == (40 << 20) && read_all_equal(img, ref, 40 << 20),
       "[resize %s] grown image reads back", opts);
    /* qcow2 sizes are multiples of 512, as in qemu */
    ret = ret ? ret : kimg_truncate(img, (20 << 20) + 1024, KIMG_PREALLOC_OFF);
    ok(ret == 0 && read_all_equal(img, ref, (20 << 20) + 1024), "[resize %s] shrunk", opts);
    ok(kimg_truncate(img, (20 << 20) + 1000, KIMG_PREALLOC_OFF) < 0,
       "[resize %s] a size that is not a multiple of 512 is refused", opts);
    kimg_clear_error();
    /* stale bytes of the old last cluster must not come back */
    memset(ref + (20 << 20), 0x33, 1024);
    ret = ret ? ret : kimg_write(img, ref + (20 << 20), 20 << 20, 1024);
    ret = ret ? ret : kimg_truncate(img, (20 << 20) + 512, KIMG_PREALLOC_OFF);
    ret = ret ? ret : kimg_truncate(img, 50 << 20, KIMG_PREALLOC_METADATA);
    memset(ref + (20 << 20) + 512, 0, (30 << 20) - 512);
    ok(ret == 0 && read_all_equal(img, ref, 50 << 20), "[resize %s] regrown with metadata "
       "preallocation reads zeros", opts);
    ok(img && refcounts_consistent(img), "[resize %s] refcounts consistent", opts);
    if (img)
        kimg_close(img);
    if (have_qemu) {
        write_file("r.raw", ref, 50 << 20);
        ok(sh("qemu-img check -q r.qcow2 >/dev/null 2>&1 && qemu-img compare -q r.qcow2 r.raw")
           == 0, "[resize %s] qemu-img check and compare", opts);
    } else {
        ok(1, "# skip no qemu-img");
    }
    free(ref);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/kimg-qcow2-rw.XXXXXX");
    if (!mkdtemp(dir)) {
        printf("1..0 # skip no temporary folder\n");
        return 0;
    }
    if (chdir(dir) < 0) {
        printf("1..0 # skip cannot enter the temporary folder\n");
        return 0;
    }
    have_qemu = sh("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1") == 0;
    static const char *const variants[] = {
        "", "compat=0.10", "cluster_size=512", "cluster_size=4k", "cluster_size=2M",
        "refcount_bits=1,cluster_size=512", "refcount_bits=2,cluster_size=1k",
        "refcount_bits=4", "refcount_bits=8", "refcount_bits=64,cluster_size=512", "refcount_bits=32", "refcount_bits=64",
        "extended_l2=on", "extended_l2=on,cluster_size=16k", "lazy_refcounts=on",
        "compression_type=zstd", "preallocation=metadata", "preallocation=falloc",
        "preallocation=full", "data_file=rt-data.raw", "data_file=rt-data.raw,data_file_raw=on",
    };
    size_t nv = sizeof(variants) / sizeof(variants[0]);
    plan((int)(nv * 6 + 3 * 5 + 5 + 3 + 4 * 4 + 3 * 6));
    for (size_t i = 0; i < nv; i++)
        roundtrip(variants[i], (6 << 20) + 1536, 300);
    backing_cow("");
    backing_cow("extended_l2=on");
    backing_cow("cluster_size=4k,compat=0.10");
    snapshot_cow();
    lazy_dirty();
    compressed("");
    compressed("compression_type=zstd");
    compressed("cluster_size=4k,extended_l2=off");
    compressed("extended_l2=on");
    resize("");
    resize("compat=0.10,cluster_size=512");
    resize("extended_l2=on,cluster_size=32k");
    if (!getenv("KIMG_KEEP_TMP"))
        sh("rm -rf '%s'", dir);
    else
        diag("files kept in %s", dir);
    return done_testing();
}
