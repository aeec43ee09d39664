/*
 * fuzz_qcow2_snapshot.c — the qcow2 snapshot table, mutated in place: the
 * input is a small patch applied onto a valid 16 KiB image with two
 * internal snapshots (fuzz/qcow2_snap_base.h, made by make-seeds.sh), so
 * nearly every input gets past the header and lands in the table parser.
 * Input layout:
 *   byte 0: flags  bit0: a be32 follows: new nb_snapshots (header @60)
 *                  bit1: a be64 follows: new snapshots_offset (header @64)
 *                  bit2: a be16 follows: signed shift of the patch start
 *                        from the table (reach the snapshot L1 tables)
 *                  bit3: XOR the patch in (else overwrite)
 *   rest: patch bytes, applied at snapshots_offset (as in the base) + shift;
 *         the image grows if the patch runs past its end.
 * Then: info (snapshot list, JSON), check, a read pass, and check -r on a
 * read-write copy; the snapshot operations (create, apply, delete) on
 * another read-write copy, with an oracle: an operation that succeeds on
 * an image that checked without corruptions leaves it with neither
 * corruptions nor leaks (the operation recounts every refcount); a
 * snapshot loaded read-only (convert -l) and read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg/driver.h"
#include "kimg/json.h"
#include "qcow2_snap_base.h"

#define MAX_IMAGE  (256u << 10)
#define FUZZ_NAME  "/nonexistent-kimg-fuzz/dir/snap.qcow2"
#define RO_FLAGS   (KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING)

static FILE *devnull;

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static struct kimg *open_mem(const uint8_t *img, size_t len, unsigned flags)
{
    struct kimg_file *f;
    struct kimg *out = NULL;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, FUZZ_NAME, img, len, flags & KIMG_OPEN_RDWR,
                           4u << 20) < 0)
        return NULL;
    if (kimg_open_file(&out, f, "qcow2", flags) < 0)
        out = NULL;
    kimg_clear_error();
    return out;
}

static void info(struct kimg *img)
{
    struct kimg_info in;
    kimg_clear_error();
    if (kimg_get_info(img, &in) < 0)
        return;
    struct kimg_jv *arr = kimg_jv_array();
    for (size_t i = 0; i < in.nb_snapshots; i++) {
        const struct kimg_snapshot_info *sn = &in.snapshots[i];
        struct kimg_jv *o = kimg_jv_add(arr, NULL, kimg_jv_object());
        kimg_jv_add_str(o, "id", sn->id);
        kimg_jv_add_str(o, "name", sn->name);
        kimg_jv_add_uint(o, "vm-state-size", sn->vm_state_size);
        kimg_jv_add_uint(o, "date-sec", sn->date_sec);
        kimg_jv_add_uint(o, "date-nsec", sn->date_nsec);
        kimg_jv_add_uint(o, "vm-clock-nsec", sn->vm_clock_nsec);
        if (sn->has_icount)
            kimg_jv_add_uint(o, "icount", sn->icount);
    }
    kimg_jv_print(devnull, arr, 0);
    kimg_jv_free(arr);
    if (in.format_specific)
        kimg_jv_print(devnull, in.format_specific, 0);
    kimg_info_free(&in);
}

static void check_counts(struct kimg *k, uint64_t *corruptions, uint64_t *leaks)
{
    struct kimg_check res = { .log = NULL };
    kimg_clear_error();
    if (kimg_check(k, &res, 0) < 0 || res.check_errors)
        res.corruptions = UINT64_MAX;   /* unknown: no oracle */
    kimg_clear_error();
    *corruptions = res.corruptions;
    *leaks = res.leaks;
}

static void snapshot_ops(const uint8_t *img, size_t len)
{
    struct kimg *k = open_mem(img, len, RO_FLAGS | KIMG_OPEN_RDWR);
    if (k) {
        uint64_t c0, l0, c1, l1;
        check_counts(k, &c0, &l0);
        for (int op = 0; op < 4; op++) {
            int ret;
            kimg_clear_error();
            switch (op) {
            case 0: ret = kimg_snapshot_create(k, "fz"); break;
            case 1: ret = kimg_snapshot_apply(k, "1"); break;
            case 2: ret = kimg_snapshot_delete(k, "2"); break;
            default: ret = kimg_snapshot_delete(k, "fz"); break;
            }
            kimg_clear_error();
            if (ret < 0)
                continue;
            check_counts(k, &c1, &l1);
            if (c0 == 0 && (c1 || l1)) {
                fprintf(stderr, "snapshot op %d left %llu corruptions, %llu leaks\n", op,
                        (unsigned long long)c1, (unsigned long long)l1);
                abort();
            }
        }
        kimg_close(k);
    }
    k = open_mem(img, len, RO_FLAGS);
    if (k) {
        uint8_t buf[4096];
        kimg_clear_error();
        if (kimg_snapshot_load(k, "1", NULL) == 0)
            for (uint64_t off = 0; off < kimg_size(k) && off < (64u << 10); off += sizeof(buf)) {
                uint64_t n = kimg_size(k) - off < sizeof(buf) ? kimg_size(k) - off : sizeof(buf);
                (void)kimg_read(k, buf, off, n);
            }
        kimg_clear_error();
        kimg_close(k);
    }
    kimg_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = { data, size };
    size_t base_len = sizeof(snap_base);

    if (!devnull && !(devnull = fopen("/dev/null", "w")))
        abort();
    if (size > 65536)
        return 0;

    uint8_t flags = fuzz_u8(&in);
    uint64_t table = be(snap_base + 64, 8);
    uint8_t hdr_nb[4], hdr_off[8];
    bool set_nb = flags & 1, set_off = flags & 2;
    if (set_nb)
        put_be(hdr_nb, fuzz_u64(&in, 4), 4);
    if (set_off)
        put_be(hdr_off, fuzz_u64(&in, 8), 8);
    int64_t start = (int64_t)table;
    if (flags & 4)
        start += (int16_t)fuzz_u64(&in, 2);
    if (start < 72)          /* keep the fixed header: the header target is fuzz_qcow2 */
        start = 72;
    size_t end = (size_t)start + in.n;
    size_t len = end > base_len ? end : base_len;
    if (len > MAX_IMAGE)
        return 0;

    uint8_t *img = calloc(1, len);
    if (!img)
        return 0;
    memcpy(img, snap_base, base_len);
    for (size_t i = 0; i < in.n; i++) {
        if (flags & 8)
            img[start + i] ^= in.p[i];
        else
            img[start + i] = in.p[i];
    }
    if (set_nb)
        memcpy(img + 60, hdr_nb, 4);
    if (set_off)
        memcpy(img + 64, hdr_off, 8);

    struct kimg *k = open_mem(img, len, RO_FLAGS);
    if (k) {
        struct kimg_check res = { .log = NULL };
        uint8_t buf[4096];
        info(k);
        kimg_clear_error();
        (void)kimg_check(k, &res, 0);
        kimg_clear_error();
        for (uint64_t off = 0; off < kimg_size(k) && off < (64u << 10); off += sizeof(buf)) {
            uint64_t n = kimg_size(k) - off < sizeof(buf) ? kimg_size(k) - off : sizeof(buf);
            (void)kimg_read(k, buf, off, n);
            kimg_clear_error();
        }
        kimg_close(k);
    }
    k = open_mem(img, len, RO_FLAGS | KIMG_OPEN_RDWR | KIMG_OPEN_REPAIR);
    if (k) {
        struct kimg_check res = { .log = devnull };
        (void)kimg_check(k, &res, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS);
        kimg_clear_error();
        info(k);
        kimg_close(k);
    }
    kimg_clear_error();
    snapshot_ops(img, len);
    free(img);
    return 0;
}
