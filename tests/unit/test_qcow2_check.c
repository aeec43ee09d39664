/*
 * test_qcow2_check.c — the qcow2 check and repair (formats/qcow2/check.c)
 * on small images built byte by byte in memory: clean, leaks, corruptions,
 * COPIED flags, entries past the end of the file, broken refcount table,
 * dirty bit, and random damage (no crash, bounded, a repaired image checks
 * clean).  Expected counts are those qemu-img 7.2 reports on the same damage.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/tap.h"
#include "kimg/driver.h"
#include "formats/qcow2/qcow2.h"
#include "formats/qcow2/check.h"

#define CB 12
#define CS (1u << CB)
#define NCL 7                   /* clusters in the base image */
#define COPIED (1ULL << 63)

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

struct img {
    uint8_t *d;
    size_t len;
};

/* v3, 4 KiB clusters, 16-bit refcounts, 1 MiB:
 * 0 header, 1 refcount table, 2 refcount block, 3 L1, 4 L2, 5-6 data
 * (guest clusters 0 and 1). */
static struct img base(size_t nclusters)
{
    struct img m = { calloc(nclusters, CS), nclusters * CS };
    uint8_t *h = m.d;
    put32(h, 0x514649fb);
    put32(h + 4, 3);
    put32(h + 20, CB);
    put64(h + 24, 1 << 20);
    put32(h + 36, 1);                 /* l1_size */
    put64(h + 40, 3 * CS);            /* l1 offset */
    put64(h + 48, 1 * CS);            /* refcount table */
    put32(h + 56, 1);
    put32(h + 96, 4);                 /* refcount_order */
    put32(h + 100, 104);
    put64(m.d + 1 * CS, 2 * CS);
    for (int c = 0; c < NCL; c++)
        put16(m.d + 2 * CS + 2 * c, 1);
    put64(m.d + 3 * CS, COPIED | 4 * CS);
    put64(m.d + 4 * CS, COPIED | 5 * CS);
    put64(m.d + 4 * CS + 8, COPIED | 6 * CS);
    memset(m.d + 5 * CS, 0xaa, CS);
    memset(m.d + 6 * CS, 0xbb, CS);
    return m;
}

static void set_rc(struct img *m, unsigned c, uint16_t v) { put16(m->d + 2 * CS + 2 * c, v); }
static void set_l2(struct img *m, unsigned i, uint64_t v) { put64(m->d + 4 * CS + 8 * i, v); }

/* With QCOW2_CHECK_DUMP=DIR, damaged images are also written to DIR (to
 * compare with qemu-img check by hand). */
static void dump(const char *name, const struct img *m)
{
    const char *dir = getenv("QCOW2_CHECK_DUMP");
    char path[4096];
    if (!dir)
        return;
    static int n;
    snprintf(path, sizeof(path), "%s/%02d-%s.qcow2", dir, n++, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(m->d, 1, m->len, f);
        fclose(f);
    }
}

static struct kimg *open_img(const struct img *m, bool rw, bool quiet)
{
    struct kimg_file *f;
    struct kimg *img = NULL;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, "t.qcow2", m->d, m->len, rw, m->len + (64u << 20)) < 0)
        return NULL;
    unsigned fl = KIMG_OPEN_REPAIR | KIMG_OPEN_NO_BACKING | KIMG_OPEN_NO_LOCK;
    if (kimg_open_file(&img, f, "qcow2", fl | (rw ? KIMG_OPEN_RDWR : 0)) < 0) {
        if (!quiet)
            diag("open: %s", kimg_last_error() ? kimg_last_error() : "?");
        return NULL;
    }
    return img;
}

/* Check (read-only) a copy; returns the result, ret in *retp. */
static struct kimg_check check_ro(const struct img *m, int *retp)
{
    struct kimg_check r = { 0 };
    *retp = -EIO;
    struct kimg *img = open_img(m, false, false);
    if (!img)
        return r;
    *retp = kimg_check(img, &r, 0);
    kimg_close(img);
    return r;
}

/* Repair with FIX, then check again on the same handle as the CLI does;
 * the repaired bytes replace *m. */
static int repair(struct img *m, unsigned fix, struct kimg_check *first,
                  struct kimg_check *second)
{
    memset(first, 0, sizeof(*first));
    memset(second, 0, sizeof(*second));
    struct kimg *img = open_img(m, true, false);
    if (!img)
        return -EIO;
    int ret = kimg_check(img, first, fix);
    if (ret == 0)
        ret = kimg_check(img, second, 0);
    struct kimg_file *f = img->file;
    free(m->d);
    m->len = f->mem_size;
    m->d = malloc(m->len ? m->len : 1);
    memcpy(m->d, f->mem, m->len);
    if (kimg_close(img) < 0 && ret == 0)
        ret = -EIO;
    return ret;
}

static bool clean(const struct kimg_check *r)
{
    return !r->corruptions && !r->leaks && !r->check_errors;
}

static void test_clean(void)
{
    struct img m = base(NCL);
    int ret;
    dump(__func__, &m);
    struct kimg_check r = check_ro(&m, &ret);
    is_u64((uint64_t)ret, 0, "clean: check runs");
    ok(clean(&r), "clean: no errors");
    is_u64(r.image_end_offset, NCL * CS, "clean: image end offset");
    is_u64(r.total_clusters, (1 << 20) / CS, "clean: total clusters");
    is_u64(r.allocated_clusters, 2, "clean: allocated clusters");
    is_u64(r.fragmented_clusters, 0, "clean: fragmented clusters");
    ok(r.has_stats, "clean: has stats");
    free(m.d);
}

static void test_leak(void)
{
    struct img m = base(NCL + 1);
    set_rc(&m, NCL, 1);              /* a cluster nothing references */
    uint8_t *orig = malloc(m.len);
    memcpy(orig, m.d, m.len);
    int ret;
    dump(__func__, &m);
    struct kimg_check r = check_ro(&m, &ret);
    is_u64(r.leaks, 1, "leak: 1 leaked cluster");
    is_u64(r.corruptions, 0, "leak: no corruption");
    is_u64(r.image_end_offset, (NCL + 1) * CS, "leak: image end counts the leaked cluster");

    /* read-only check never writes (the memory file is a private copy,
     * so check through a writable handle with fix = 0) */
    struct kimg *img = open_img(&m, true, false);
    struct kimg_check r2 = { 0 };
    kimg_check(img, &r2, 0);
    ok(img && !memcmp(img->file->mem, orig, m.len), "leak: a check without -r writes nothing");
    kimg_close(img);

    struct kimg_check a, b;
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS, &a, &b);
    is_u64((uint64_t)ret, 0, "leak: -r leaks runs");
    is_u64(a.leaks_fixed, 1, "leak: 1 leak fixed");
    ok(clean(&b), "leak: clean after -r leaks");
    dump(__func__, &m);
    r = check_ro(&m, &ret);
    ok(ret == 0 && clean(&r), "leak: clean on a fresh open");
    free(orig);
    free(m.d);
}

static void test_refcount_raised(void)
{
    struct img m = base(NCL);
    set_rc(&m, 6, 2);   /* leak + COPIED set with refcount 2 */
    int ret;
    dump(__func__, &m);
    struct kimg_check r = check_ro(&m, &ret);
    is_u64(r.leaks, 1, "rc raised: 1 leak");
    is_u64(r.corruptions, 1, "rc raised: 1 corruption (OFLAG_COPIED)");
    struct kimg_check a, b;
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS, &a, &b);
    is_u64(a.leaks_fixed, 1, "rc raised: -r leaks fixes the leak");
    is_u64(a.corruptions_fixed, 0, "rc raised: COPIED consistent once the leak is gone");
    ok(ret == 0 && clean(&b), "rc raised: clean after -r leaks");
    free(m.d);
}

static void test_refcount_zero(void)
{
    struct img m = base(NCL);
    set_rc(&m, 6, 0);
    int ret;
    dump(__func__, &m);
    struct kimg_check r = check_ro(&m, &ret);
    is_u64(r.corruptions, 2, "rc zero: 2 corruptions (refcount + OFLAG_COPIED)");
    is_u64(r.leaks, 0, "rc zero: no leak");
    struct kimg_check a, b;
    struct img m2 = { malloc(m.len), m.len };
    memcpy(m2.d, m.d, m.len);
    ret = repair(&m2, KIMG_CHECK_FIX_LEAKS, &a, &b);
    ok(ret < 0 && a.check_errors, "rc zero: -r leaks cannot fix it (needs a rebuild)");
    free(m2.d);
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, &a, &b);
    is_u64((uint64_t)ret, 0, "rc zero: -r all runs");
    is_u64(a.corruptions_fixed, 1, "rc zero: 1 corruption fixed (by the rebuild)");
    ok(clean(&b), "rc zero: clean after -r all");
    dump(__func__, &m);
    r = check_ro(&m, &ret);
    ok(ret == 0 && clean(&r), "rc zero: clean on a fresh open");
    struct kimg *img = open_img(&m, false, false);
    uint8_t buf[CS];
    ok(img && kimg_read(img, buf, CS, CS) == 0 && buf[0] == 0xbb && buf[CS - 1] == 0xbb,
       "rc zero: data intact after the rebuild");
    kimg_close(img);
    free(m.d);
}

static void test_refcount_low(void)
{
    /* a second reference to cluster 6 (guest cluster 2, no COPIED) with
     * refcount 1: refcount too low but not zero */
    struct img m = base(NCL);
    set_l2(&m, 1, 6 * CS);
    set_l2(&m, 2, 6 * CS);
    int ret;
    dump(__func__, &m);
    struct kimg_check r = check_ro(&m, &ret);
    is_u64(r.corruptions, 3, "rc low: refcount error + 2 OFLAG_COPIED errors");
    struct kimg_check a, b;
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, &a, &b);
    is_u64(a.corruptions_fixed, 1, "rc low: refcount raised");
    ok(ret == 0 && clean(&b), "rc low: clean after -r all");
    free(m.d);
}

static void test_copied(void)
{
    struct img m = base(NCL);
    set_l2(&m, 0, 5 * CS);   /* COPIED cleared */
    put64(m.d + 3 * CS, 4 * CS);
    int ret;
    dump(__func__, &m);
    struct kimg_check r = check_ro(&m, &ret);
    is_u64(r.corruptions, 2, "copied: L1 and L2 OFLAG_COPIED errors");
    struct kimg_check a, b;
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS, &a, &b);
    is_u64(a.corruptions_fixed, 2, "copied: -r leaks repairs COPIED when refcounts are right");
    ok(ret == 0 && clean(&b), "copied: clean after repair");
    ok(m.d[4 * CS] & 0x80, "copied: the flag is back in the L2 entry");
    free(m.d);
}

static void test_past_eof(void)
{
    struct img m = base(NCL);
    set_l2(&m, 2, COPIED | (256ULL * CS));
    int ret;
    dump(__func__, &m);
    struct kimg_check r = check_ro(&m, &ret);
    is_u64(r.corruptions, 2, "past EOF: region error + OFLAG_COPIED");
    is_u64(r.allocated_clusters, 3, "past EOF: counted as allocated, as qemu does");
    struct kimg_check a, b;
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, &a, &b);
#if QCOW2_CHECK_CLEAR_PAST_EOF
    is_u64(a.corruptions_fixed, 1, "past EOF: entry cleared");
    ok(ret == 0 && clean(&b), "past EOF: clean after -r all");
    struct kimg *img = open_img(&m, false, false);
    uint8_t buf[CS];
    memset(buf, 1, sizeof(buf));
    ok(img && kimg_read(img, buf, 2 * CS, CS) == 0 && buf[0] == 0 && buf[CS - 1] == 0,
       "past EOF: the cluster reads as zeros");
    kimg_close(img);
#else
    is_u64(a.corruptions_fixed, 1, "past EOF: -r all fixes the COPIED flag (as qemu 7.2)");
    ok(ret == 0 && b.corruptions == 1 && !b.leaks,
       "past EOF: the re-check still reports the entry (as qemu 7.2)");
    ok(!(m.d[4 * CS + 16] & 0x80), "past EOF: COPIED flag cleared");
#endif
    free(m.d);

    m = base(NCL);
    put64(m.d + 3 * CS, COPIED | (1ULL << 30));  /* L2 table past EOF */
    set_rc(&m, 4, 0);
    set_rc(&m, 5, 0);
    set_rc(&m, 6, 0);
    dump(__func__, &m);
    r = check_ro(&m, &ret);
    is_u64(r.corruptions, 2, "L2 table past EOF: region error + OFLAG_COPIED L2");
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, &a, &b);
#if QCOW2_CHECK_CLEAR_PAST_EOF
    ok(ret == 0 && clean(&b), "L2 table past EOF: clean after -r all");
#else
    ok(ret == 0 && b.corruptions == 1 && !b.leaks && a.corruptions_fixed == 1,
       "L2 table past EOF: COPIED fixed, the entry stays (as qemu 7.2)");
#endif
    free(m.d);
}

static void test_reserved_and_misaligned(void)
{
    struct img m = base(NCL);
    set_l2(&m, 0, COPIED | 5 * CS | 0x2);
    int ret;
    dump(__func__, &m);
    struct kimg_check r = check_ro(&m, &ret);
    is_u64(r.corruptions, 1, "reserved L2 bits: 1 corruption");
    put64(m.d + 3 * CS, COPIED | 4 * CS | 0x100);
    dump(__func__, &m);
    r = check_ro(&m, &ret);
    is_u64(r.corruptions, 2, "reserved L1 bits too: 2 corruptions");
    free(m.d);

    m = base(NCL);
    set_l2(&m, 1, COPIED | (5 * CS + 512) | 1);  /* misaligned preallocated zero */
    dump(__func__, &m);
    r = check_ro(&m, &ret);
    is_u64(r.corruptions, 2, "misaligned zero cluster: misalignment + cluster 5 referenced twice");
    is_u64(r.leaks, 0, "misaligned zero cluster: no leak (its range covers cluster 6)");
    struct kimg_check a, b;
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, &a, &b);
    ok(ret == 0 && clean(&b), "misaligned zero cluster: clean after -r all");
    free(m.d);
}

static void test_refcount_table(void)
{
    struct img m = base(NCL);
    put64(m.d + 1 * CS, 2 * CS + 512);           /* misaligned refcount block */
    int ret;
    dump(__func__, &m);
    struct kimg_check r = check_ro(&m, &ret);
    ok(r.check_errors > 0, "misaligned refblock: check errors (refcounts unreadable)");
    is_u64(r.corruptions, 1, "misaligned refblock: 1 corruption");
    struct kimg_check a, b;
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, &a, &b);
    ok(ret == 0 && clean(&b), "misaligned refblock: rebuilt, clean after -r all");
    dump(__func__, &m);
    r = check_ro(&m, &ret);
    ok(ret == 0 && clean(&r), "misaligned refblock: clean on a fresh open");
    free(m.d);

    m = base(NCL);
    put64(m.d + 1 * CS + 8, 1000ULL * CS);       /* refblock 1 outside the image */
    dump(__func__, &m);
    r = check_ro(&m, &ret);
    is_u64(r.corruptions, 1, "refblock outside: 1 corruption");
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, &a, &b);
    ok(ret == 0 && clean(&b), "refblock outside: clean after -r all");
    free(m.d);
}

static void test_dirty(void)
{
    struct img m = base(NCL);
    m.d[79] |= 1;                                /* dirty bit */
    put32(m.d + 80 + 4, 1);                      /* lazy refcounts */
    set_rc(&m, 6, 0);
    int ret;
    dump(__func__, &m);
    struct kimg_check r = check_ro(&m, &ret);
    ok(ret == 0, "dirty: check runs on a dirty image");
    is_u64(r.corruptions, 2, "dirty: reports what the refcounts lack");
    struct kimg_check a, b;
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, &a, &b);
    ok(ret == 0 && clean(&b), "dirty: clean after -r all");
    ok(!(m.d[79] & 1), "dirty: the dirty bit is cleared");
    free(m.d);

    m = base(NCL);
    m.d[79] |= 2;                                /* corrupt bit */
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, &a, &b);
    ok(ret == 0 && clean(&b) && !(m.d[79] & 2), "corrupt bit: cleared by -r all");
    free(m.d);
}

static void test_shared_l2(void)
{
    /* many L1 entries pointing at one L2 table: bounded work, counted */
    struct img m = base(NCL);
    put32(m.d + 24, 0);
    put64(m.d + 24, 64ULL << 20);                /* 64 MiB: 32 L1 entries */
    put32(m.d + 36, 32);
    for (int i = 0; i < 32; i++)
        put64(m.d + 3 * CS + 8 * i, 4 * CS);
    int ret;
    dump(__func__, &m);
    struct kimg_check r = check_ro(&m, &ret);
    ok(ret == 0 && r.corruptions > 0, "shared L2: reported as corruptions");
    struct kimg_check a, b;
    ret = repair(&m, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, &a, &b);
    ok(ret == 0 || ret < 0, "shared L2: repair terminates");
    free(m.d);
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t xr(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}

static void test_random_damage(void)
{
    int opened = 0, repaired_clean = 0, repaired = 0;
    for (int t = 0; t < 300; t++) {
        struct img m = base(NCL + (t % 3));
        int n = 1 + (int)(xr() % 6);
        for (int k = 0; k < n; k++) {
            /* aim at metadata most of the time */
            uint64_t off = xr() % 5 < 4 ? (xr() % 5) * CS + (xr() % 64) * 8 + (xr() % 8)
                                        : xr() % m.len;
            if (off < 8 || off >= m.len)
                continue;
            m.d[off] ^= (uint8_t)(1u << (xr() % 8));
        }
        int ret;
        struct kimg *img = open_img(&m, false, true);
        if (!img) {
            free(m.d);
            continue;
        }
        kimg_close(img);
        opened++;
        (void)check_ro(&m, &ret);
        struct kimg_check a, b;
        ret = repair(&m, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, &a, &b);
        if (ret == 0) {
            repaired++;
            if (!b.leaks && !b.check_errors)
                repaired_clean++;
        }
        free(m.d);
    }
    ok(opened > 50, "random damage: %d of 300 damaged images open and check", opened);
    diag("random damage: %d repairs ran, %d left no leak", repaired, repaired_clean);
    ok(repaired_clean == repaired, "random damage: no repair leaves a leak behind");
}

int main(void)
{
    plan(62);
    test_clean();
    test_leak();
    test_refcount_raised();
    test_refcount_zero();
    test_refcount_low();
    test_copied();
    test_past_eof();
    test_reserved_and_misaligned();
    test_refcount_table();
    test_dirty();
    test_shared_l2();
    test_random_damage();
    return done_testing();
}
