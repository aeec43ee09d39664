/*
 * check.c — `check` for qcow2, as qemu-img check does it: count every
 * reference to each host cluster (header, L1/L2 tables of the active state
 * and of each snapshot, data clusters, refcount structures, snapshot table,
 * bitmaps), compare with the stored refcounts, check the COPIED flags, and
 * gather the allocation statistics; repair leaks, corruptions, COPIED flags
 * and broken entries, rebuilding the refcount structure when it is broken,
 * and (last) incomplete v3 snapshot table entries, by a new table.
 *
 * Semantics follow qemu-img 7.2 (its messages, its counting, its order of
 * repairs), written from docs/interop/qcow2.txt and observed behaviour.
 * Where qemu 7.2 fails, kimg repairs: a refcount block outside the image or
 * a broken refcount table entry (reserved bits, misaligned) is handled by a
 * rebuild (qemu grows the file, or fails).  qemu 7.2 leaves an L2/L1 entry
 * pointing one cluster or more past the end of the file in place (only its
 * COPIED flag is repaired) so the re-check still finds it; so does kimg by
 * default (QCOW2_CHECK_CLEAR_PAST_EOF, check.h, turns on clearing it).
 *
 * Repair ordering: references are fixed (written and synced) before any
 * refcount is lowered; refcounts reach the disk before a COPIED flag is
 * set on their account; the dirty/corrupt bits are cleared last.
 * Bounds: one 32-bit counter per host cluster (at most 2^28 clusters),
 * L2 tables read one at a time, L2 entries visited at most (snapshots + 1)
 * x file size / 8 (what a sane image can need; at least 2^32).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "check.h"

enum ctype { CT_UNALLOC, CT_ZERO_PLAIN, CT_ZERO_ALLOC, CT_NORMAL, CT_COMPRESSED };

struct chk {
    struct qcow2_state *s;
    struct kimg_check *res;
    unsigned fix;               /* repairs allowed in the current pass */
    uint64_t file_size;
    uint32_t *refs;             /* computed references, one per cluster */
    uint64_t nb;                /* counters in use */
    uint64_t cap;               /* counters allocated (file clusters + 1) */
    uint64_t limit;             /* a counter past this is an overflow */
    bool rebuild;               /* the refcount structure must be rebuilt */
    bool wrote;                 /* metadata changed since the last sync */
    uint64_t l2_visits;         /* L2 entries visited so far */
    uint64_t l2_budget;         /* and at most */
    uint8_t *l2buf;             /* one L2 table */
    uint8_t *rbbuf;             /* the last refcount block read */
    uint64_t rbbuf_off;
    bool rbbuf_valid;
};

static void logline(struct chk *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logline(struct chk *c, const char *fmt, ...)
{
    va_list ap;
    char *line;
    if (!c->res->log)
        return;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    kimg_print_for_terminal(c->res->log, line);   /* snapshot names come from the image */
    fputc('\n', c->res->log);
    free(line);
}

/* ---- computed references ---------------------------------------------- */

static int setup_counters(struct chk *c)
{
    struct qcow2_state *s = c->s;
    int ret = kimg_file_size(s->file, &c->file_size);
    if (ret < 0) {
        c->res->check_errors++;
        return ret;
    }
    uint64_t fc = qcow2_align_up(c->file_size, s->cluster_size) >> s->cluster_bits;
    if (fc > QCOW2_CHECK_MAX_CLUSTERS) {
        c->res->check_errors++;
        return kimg_fail(-EFBIG, "Image too large to check: %" PRIu64 " host clusters "
                         "(at most %llu)", fc, (unsigned long long)QCOW2_CHECK_MAX_CLUSTERS);
    }
    free(c->refs);
    /* A sane image walks each L2 table once per L1 table at most, and its
     * L2 tables fit in the file: past that budget the image is hostile. */
    c->l2_budget = ((uint64_t)s->nb_snapshots + 1) * (c->file_size / 8);
    if (c->l2_budget < QCOW2_CHECK_MIN_L2_BUDGET)
        c->l2_budget = QCOW2_CHECK_MIN_L2_BUDGET;
    c->cap = fc + 1;
    c->nb = fc;
    c->refs = calloc(c->cap, sizeof(*c->refs));
    if (!c->refs) {
        c->res->check_errors++;
        return kimg_fail(-ENOMEM, "Cannot allocate the reference counters");
    }
    return 0;
}

/* Count one reference to each cluster touched by [offset, offset+size).
 * Returns 1 (and reports a corruption) when the region ends one cluster or
 * more past the end of the file, as qemu allows a partial last cluster. */
static int inc_range(struct chk *c, uint64_t offset, uint64_t size)
{
    struct qcow2_state *s = c->s;
    if (!size)
        return 0;
    uint64_t end = offset + size;
    if (end < offset || (end > c->file_size && end - c->file_size >= s->cluster_size)) {
        logline(c, "ERROR: counting reference for region exceeding the end of the file "
                "by one cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64,
                offset, size);
        c->res->corruptions++;
        return 1;
    }
    uint64_t first = offset >> s->cluster_bits, last = (end - 1) >> s->cluster_bits;
    for (uint64_t k = first; k <= last; k++) {
        if (k >= c->cap)    /* cannot happen given the test above */
            break;
        if (k >= c->nb)
            c->nb = k + 1;
        if (c->refs[k] >= c->limit) {
            logline(c, "ERROR: overflow cluster offset=0x%" PRIx64, k << s->cluster_bits);
            logline(c, "Use qemu-img amend to increase the refcount entry width or "
                    "qemu-img convert to create a clean copy if the image cannot be "
                    "opened for writing");
            c->res->corruptions++;
            continue;
        }
        c->refs[k]++;
    }
    return 0;
}

/* ---- stored refcounts ------------------------------------------------- */

static int stored_refcount(struct chk *c, uint64_t ci, uint64_t *out)
{
    struct qcow2_state *s = c->s;
    uint64_t ti = ci >> s->rb_bits;

    *out = 0;
    if (ti >= s->rt_entries)
        return 0;
    uint64_t off = s->rt[ti] & QCOW2_RTE_OFFSET_MASK;
    if (!off)
        return 0;
    if ((off & s->cluster_mask) || off >= QCOW2_MAX_HOST_OFFSET)
        return -EIO;
    if (!c->rbbuf_valid || c->rbbuf_off != off) {
        c->rbbuf_valid = false;
        int ret = kimg_file_pread_zero_eof(s->file, c->rbbuf, s->cluster_size, off);
        if (ret < 0)
            return ret;
        c->rbbuf_off = off;
        c->rbbuf_valid = true;
    }
    *out = qcow2_rb_entry_get(s, c->rbbuf, ci & (s->rb_entries - 1));
    return 0;
}

static int set_refcount(struct chk *c, uint64_t ci, uint64_t v)
{
    struct qcow2_state *s = c->s;
    int ret = qcow2_refcount_set(s, ci, v);
    if (ret < 0)
        return ret;
    if (v == 0) {
        qcow2_cache_discard(&s->l2_cache, ci << s->cluster_bits);
        qcow2_cache_discard(&s->rb_cache, ci << s->cluster_bits);
    }
    uint64_t ti = ci >> s->rb_bits;
    if (c->rbbuf_valid && ti < s->rt_entries &&
        (s->rt[ti] & QCOW2_RTE_OFFSET_MASK) == c->rbbuf_off)
        qcow2_rb_entry_set(s, c->rbbuf, ci & (s->rb_entries - 1), v);
    return 0;
}

/* ---- writing repaired entries ----------------------------------------- */

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

/* May a repaired L2 table at OFF be written?  Not over other metadata. */
static bool l2_writable(struct chk *c, uint64_t off)
{
    struct qcow2_state *s = c->s;
    if (!s->file->writable || (off & s->cluster_mask) || off == 0 ||
        off >= c->file_size)
        return false;
    if (qcow2_overlaps_main(s, off, s->cluster_size))
        return false;
    for (uint64_t i = 0; i < s->rt_entries; i++) {
        uint64_t o = s->rt[i] & QCOW2_RTE_OFFSET_MASK;
        if (o && overlaps(off, s->cluster_size, o, s->cluster_size))
            return false;
    }
    return true;
}

static int write_l2_entry(struct chk *c, uint64_t l2off, uint64_t idx, uint64_t entry,
                          uint64_t bitmap)
{
    struct qcow2_state *s = c->s;
    uint8_t b[16];

    if (!l2_writable(c, l2off))
        return -EPERM;
    qcow2_put_be64(b, entry);
    qcow2_put_be64(b + 8, bitmap);
    int ret = kimg_file_pwrite(s->file, b, s->l2_entry_size, l2off + idx * s->l2_entry_size);
    qcow2_cache_discard(&s->l2_cache, l2off);
    s->zcache_valid = false;
    if (ret < 0)
        return ret;
    c->wrote = true;
    return 0;
}

static int write_l1_entry(struct chk *c, uint64_t l1off, uint32_t idx, uint64_t v,
                          bool active)
{
    struct qcow2_state *s = c->s;
    uint8_t b[8];

    if (!s->file->writable)
        return -EPERM;
    qcow2_put_be64(b, v);
    int ret = kimg_file_pwrite(s->file, b, 8, l1off + (uint64_t)idx * 8);
    if (ret < 0)
        return ret;
    if (active)
        s->l1[idx] = v;
    c->wrote = true;
    return 0;
}

/*
 * Repairs keep what the guest reads.  An L2 repair may change what the guest
 * reads only within the damaged cluster, and only where the damage destroyed
 * that cluster's own data; every other subcluster keeps reading what it read
 * before: a zero subcluster zeros, an unallocated one the backing file (or
 * zeros without one).  Two cases:
 *
 *  - kept_entry: the host offset is broken but no subcluster reads from it
 *    (a preallocated zero cluster, or extended L2 with no allocated bit).
 *    Only the offset is cleared; the zero flag and the subcluster bitmap are
 *    kept as they are (qemu-img's repair too).  Turning every subcluster into
 *    zeros here would hide the backing file's data behind the overlay.
 *  - lost_entry: the cluster's data is gone (its host range is past the end
 *    of the file).  Subclusters that held data read zeros from now on where
 *    the format can say so (v3, extended L2); unallocated ones stay
 *    unallocated and zero ones zero.
 */
static void kept_entry(const struct qcow2_state *s, uint64_t e, uint64_t bm,
                       uint64_t *entry, uint64_t *bitmap)
{
    /* A v2 image cannot hold the zero flag (qemu's reader refuses it as a
     * corruption, though qemu-img's repair writes it): unallocated there. */
    *entry = s->ext_l2 || s->version < 3 ? 0 : (e & QCOW2_OFLAG_ZERO);
    *bitmap = s->ext_l2 ? bm : 0;
}

static void lost_entry(const struct qcow2_state *s, uint64_t e, uint64_t bm,
                       uint64_t *entry, uint64_t *bitmap)
{
    *bitmap = 0;
    if (s->ext_l2) {
        /* compressed: the whole cluster was data */
        uint32_t gone = (e & QCOW2_OFLAG_COMPRESSED) ? 0xffffffffU : (uint32_t)bm;
        *entry = 0;
        *bitmap = (uint64_t)(gone | (uint32_t)(bm >> 32)) << 32;
    } else {
        *entry = s->version >= 3 ? QCOW2_OFLAG_ZERO : 0;
    }
}

/* ---- the walk ---------------------------------------------------------- */

static enum ctype cluster_type(const struct qcow2_state *s, uint64_t e)
{
    if (e & QCOW2_OFLAG_COMPRESSED)
        return CT_COMPRESSED;
    if ((e & QCOW2_OFLAG_ZERO) && !s->ext_l2)
        return (e & QCOW2_L2E_OFFSET_MASK) ? CT_ZERO_ALLOC : CT_ZERO_PLAIN;
    if (!(e & QCOW2_L2E_OFFSET_MASK))
        return s->has_data_file && (e & QCOW2_OFLAG_COPIED) ? CT_NORMAL : CT_UNALLOC;
    return CT_NORMAL;
}

static int check_l2(struct chk *c, uint64_t l2off, bool stats)
{
    struct qcow2_state *s = c->s;
    struct kimg_check *r = c->res;
    uint64_t next = 0;
    int ret;

    if (c->l2_visits > c->l2_budget - s->l2_entries) {
        r->check_errors++;
        logline(c, "ERROR: too many L2 table references; the check was stopped");
        return kimg_fail(-EFBIG, "Too many L2 table references to check");
    }
    c->l2_visits += s->l2_entries;
    if (l2off >= c->file_size)
        return 0;               /* reads as zeros: nothing allocated */
    ret = kimg_file_pread_zero_eof(s->file, c->l2buf, s->cluster_size, l2off);
    if (ret < 0) {
        logline(c, "ERROR: I/O error in check_refcounts_l2");
        r->check_errors++;
        return ret;
    }
    for (uint64_t j = 0; j < s->l2_entries; j++) {
        const uint8_t *p = c->l2buf + j * s->l2_entry_size;
        uint64_t e = qcow2_be64(p);
        uint64_t bm = s->ext_l2 ? qcow2_be64(p + 8) : 0;
        enum ctype t = cluster_type(s, e);

        if (t != CT_COMPRESSED && (e & QCOW2_L2E_STD_RESERVED)) {
            logline(c, "ERROR found l2 entry with reserved bits set: %" PRIx64, e);
            r->corruptions++;
        }
        switch (t) {
        case CT_COMPRESSED: {
            if (e & QCOW2_OFLAG_COPIED) {
                logline(c, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set "
                        "for compressed clusters", e & s->coffset_mask);
                e &= ~QCOW2_OFLAG_COPIED;
                r->corruptions++;
            }
            if (s->has_data_file) {
                logline(c, "ERROR compressed cluster %" PRIu64 " with data file, "
                        "entry=0x%" PRIx64, j, e);
                r->corruptions++;
                break;
            }
            if (bm) {
                logline(c, "ERROR compressed cluster %" PRIu64 " with non-zero subcluster "
                        "allocation bitmap, entry=0x%" PRIx64, j, e);
                r->corruptions++;
                break;
            }
            uint64_t host, len;
            qcow2_compressed_range(s, e, &host, &len);
            if (inc_range(c, host, len) == 1 &&
                (c->fix & KIMG_CHECK_FIX_ERRORS) && QCOW2_CHECK_CLEAR_PAST_EOF) {
                uint64_t ne, nbm;
                lost_entry(s, e, bm, &ne, &nbm);
                if (write_l2_entry(c, l2off, j, ne, nbm) == 0) {
                    logline(c, "Repairing coffset=0x%" PRIx64 ": Compressed cluster is "
                            "outside the image; L2 entry cleared.", host);
                    r->corruptions--;
                    r->corruptions_fixed++;
                    break;
                }
            }
            if (stats) {
                r->allocated_clusters++;
                r->compressed_clusters++;
                r->fragmented_clusters++;   /* compressed ones are, by nature */
            }
            break;
        }
        case CT_ZERO_ALLOC:
        case CT_NORMAL: {
            uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
            if ((bm >> 32) & bm) {
                r->corruptions++;
                logline(c, "ERROR offset=%" PRIx64 ": Allocated cluster has corrupted "
                        "subcluster allocation bitmap", off);
            }
            if (off & s->cluster_mask) {
                bool data = s->ext_l2 ? (bm & 0xffffffffULL) != 0
                                      : !(e & QCOW2_OFLAG_ZERO);
                r->corruptions++;
                if (!data) {
                    bool fixing = c->fix & KIMG_CHECK_FIX_ERRORS;
                    logline(c, "%s offset=%" PRIx64 ": Preallocated cluster is not "
                            "properly aligned; L2 entry corrupted.",
                            fixing ? "Repairing" : "ERROR", off);
                    if (fixing) {
                        uint64_t ne, nbm;
                        kept_entry(s, e, bm, &ne, &nbm);
                        ret = write_l2_entry(c, l2off, j, ne, nbm);
                        if (ret == 0) {
                            r->corruptions--;
                            r->corruptions_fixed++;
                            continue;   /* the cluster is not used any more */
                        }
                        r->check_errors++;
                    }
                } else {
                    logline(c, "ERROR offset=%" PRIx64 ": Data cluster is not properly "
                            "aligned; L2 entry corrupted.", off);
                }
            }
            if (stats) {
                r->allocated_clusters++;
                if (next && off != next)
                    r->fragmented_clusters++;
                next = off + s->cluster_size;
            }
            if (!s->has_data_file &&
                inc_range(c, off, s->cluster_size) == 1 &&
                (c->fix & KIMG_CHECK_FIX_ERRORS) && QCOW2_CHECK_CLEAR_PAST_EOF) {
                uint64_t ne, nbm;
                lost_entry(s, e, bm, &ne, &nbm);
                if (write_l2_entry(c, l2off, j, ne, nbm) == 0) {
                    logline(c, "Repairing offset=%" PRIx64 ": Data cluster is outside the "
                            "image; L2 entry cleared.", off);
                    r->corruptions--;
                    r->corruptions_fixed++;
                }
            }
            break;
        }
        case CT_ZERO_PLAIN:
            break;
        case CT_UNALLOC:
            if (bm & 0xffffffffULL) {
                r->corruptions++;
                logline(c, "ERROR: Unallocated cluster has non-zero subcluster "
                        "allocation map");
            }
            break;
        }
    }
    return 0;
}

/* Walk the first N entries of one L1 table (L1, stored at L1OFF). */
static int walk_l1(struct chk *c, uint64_t l1off, uint32_t n, const uint64_t *l1,
                   bool active)
{
    struct qcow2_state *s = c->s;
    struct kimg_check *r = c->res;

    for (uint32_t i = 0; i < n; i++) {
        uint64_t e = l1[i];
        if (!e)
            continue;
        if (e & QCOW2_L1E_RESERVED) {
            logline(c, "ERROR found L1 entry with reserved bits set: %" PRIx64, e);
            r->corruptions++;
        }
        uint64_t l2off = e & QCOW2_L1E_OFFSET_MASK;
        if (inc_range(c, l2off, s->cluster_size) == 1 &&
            (c->fix & KIMG_CHECK_FIX_ERRORS) && QCOW2_CHECK_CLEAR_PAST_EOF &&
            write_l1_entry(c, l1off, i, 0, active) == 0) {
            logline(c, "Repairing l1_index=%" PRIu32 " l1_entry=%" PRIx64 ": L2 table is "
                    "outside the image; L1 entry cleared.", i, e);
            r->corruptions--;
            r->corruptions_fixed++;
            continue;
        }
        if (l2off & s->cluster_mask) {
            logline(c, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; "
                    "L1 entry corrupted", l2off);
            r->corruptions++;
        }
        int ret = check_l2(c, l2off, active);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Count and walk one L1 table (L1, L1_SIZE entries, stored at L1OFF). */
static int check_l1(struct chk *c, uint64_t l1off, uint32_t l1_size, const uint64_t *l1,
                    bool active)
{
    if (!l1_size)
        return 0;
    inc_range(c, l1off, (uint64_t)l1_size * 8);
    return walk_l1(c, l1off, l1_size, l1, active);
}

static int check_bitmaps(struct chk *c)
{
    struct qcow2_state *s = c->s;
    struct kimg_check *r = c->res;

    if (!s->has_bitmaps_ext || !s->bitmaps || !s->nb_bitmaps)
        return 0;
    inc_range(c, s->bitmap_dir_offset, s->bitmap_dir_size);
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *b = &s->bitmaps[i];
        uint64_t bytes = (uint64_t)b->table_size * 8;
        if (!bytes)
            continue;
        inc_range(c, b->table_offset, bytes);
        if (bytes > QCOW2_MAX_L1_BYTES || b->table_offset > c->file_size ||
            bytes > c->file_size - b->table_offset) {
            r->corruptions++;
            break;
        }
        uint8_t *t = kimg_alloc_aligned(bytes);
        if (!t) {
            r->check_errors++;
            return kimg_fail(-ENOMEM, "Cannot allocate a bitmap table");
        }
        int ret = kimg_file_pread(s->file, t, bytes, b->table_offset);
        if (ret < 0) {
            free(t);
            r->corruptions++;
            break;
        }
        for (uint32_t j = 0; j < b->table_size; j++) {
            uint64_t e = qcow2_be64(t + (uint64_t)j * 8);
            uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
            if ((e & 0xff000000000001feULL) || (off & s->cluster_mask) ||
                (off && (e & 1))) {
                r->corruptions++;
                continue;
            }
            if (off)
                inc_range(c, off, s->cluster_size);
        }
        free(t);
    }
    return 0;
}

static void check_refblocks(struct chk *c)
{
    struct qcow2_state *s = c->s;
    struct kimg_check *r = c->res;

    for (uint64_t i = 0; i < s->rt_entries; i++) {
        uint64_t e = s->rt[i];
        uint64_t off = e & QCOW2_RTE_OFFSET_MASK;
        uint64_t cl = off >> s->cluster_bits;
        if (e & QCOW2_RTE_RESERVED) {
            logline(c, "ERROR refcount table entry %" PRIu64 " has reserved bits set", i);
            r->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (off & s->cluster_mask) {
            logline(c, "ERROR refcount block %" PRIu64 " is not cluster aligned; refcount "
                    "table entry corrupted", i);
            r->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (cl >= c->nb) {
            bool fixing = c->fix & KIMG_CHECK_FIX_ERRORS;
            r->corruptions++;
            logline(c, "%s refcount block %" PRIu64 " is outside image",
                    fixing ? "Repairing" : "ERROR", i);
            if (fixing)
                c->rebuild = true;      /* the rebuild drops it */
            continue;
        }
        if (off) {
            inc_range(c, off, s->cluster_size);
            if (c->refs[cl] != 1) {
                logline(c, "ERROR refcount block %" PRIu64 " refcount=%" PRIu32, i,
                        c->refs[cl]);
                r->corruptions++;
                c->rebuild = true;
            }
        }
    }
}

/* Count every reference in the image into c->refs (zeroed). */
static int calculate(struct chk *c)
{
    struct qcow2_state *s = c->s;
    struct kimg_check *r = c->res;
    int ret;

    inc_range(c, 0, s->cluster_size);
    ret = check_l1(c, s->l1_offset, s->l1_size, s->l1, true);
    if (ret < 0)
        return ret;
    if (s->has_data_file && s->nb_snapshots) {
        logline(c, "ERROR %" PRIu32 " snapshots in image with data file", s->nb_snapshots);
        r->corruptions++;
    }
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        uint64_t *l1 = NULL;
        if (sn->l1_offset & s->cluster_mask) {
            logline(c, "ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table is not "
                    "cluster aligned; snapshot table entry corrupted", sn->id, sn->name,
                    sn->l1_offset);
            r->corruptions++;
            continue;
        }
        if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
            logline(c, "ERROR snapshot %s (%s) l1_size=%#" PRIx32 ": L1 table is too "
                    "large; snapshot table entry corrupted", sn->id, sn->name, sn->l1_size);
            r->corruptions++;
            continue;
        }
        if (!sn->l1_size)
            continue;
        /* An L1 table past the end of the file (accepted under repair,
         * l1_invalid): as qemu, its region is counted (or reported when it
         * ends a cluster or more past the end) and the part inside the file
         * is walked, zeros past it; nothing is ever written through it. */
        uint32_t n = 0;
        inc_range(c, sn->l1_offset, (uint64_t)sn->l1_size * 8);
        ret = qcow2_snapshot_l1_in_file(s, sn, c->file_size, &l1, &n);
        if (ret < 0) {
            logline(c, "ERROR: I/O error in check_refcounts_l1");
            r->check_errors++;
            return ret;
        }
        unsigned fix = c->fix;
        if (sn->l1_invalid)
            c->fix = 0;
        ret = walk_l1(c, sn->l1_offset, n, l1, false);
        c->fix = fix;
        free(l1);
        if (ret < 0)
            return ret;
    }
    if (s->nb_snapshots)
        inc_range(c, s->snapshots_offset, s->snapshots_size);
    inc_range(c, s->rt_offset, (uint64_t)s->rt_clusters << s->cluster_bits);
    if (s->has_crypto_ext)      /* the LUKS area, as qemu's check counts it */
        inc_range(c, s->crypto_hdr_offset, s->crypto_hdr_length);
    ret = check_bitmaps(c);
    if (ret < 0)
        return ret;
    check_refblocks(c);
    return 0;
}

/* Compare computed and stored refcounts; with FIX, repair what may be. */
static int compare(struct chk *c, unsigned fix, uint64_t *highest)
{
    struct qcow2_state *s = c->s;
    struct kimg_check *r = c->res;
    int ret;

    for (uint64_t i = 0; i < c->nb; i++) {
        uint64_t r1, r2 = c->refs[i];
        ret = stored_refcount(c, i, &r1);
        if (ret < 0) {
            logline(c, "Can't get refcount for cluster %" PRIu64 ": %s", i, strerror(-ret));
            r->check_errors++;
            continue;
        }
        if (r1 || r2)
            *highest = i;
        if (r1 == r2)
            continue;
        uint64_t *fixed = NULL;
        if (r1 == 0)
            c->rebuild = true;
        else if (r1 > r2 && (fix & KIMG_CHECK_FIX_LEAKS))
            fixed = &r->leaks_fixed;
        else if (r1 < r2 && (fix & KIMG_CHECK_FIX_ERRORS))
            fixed = &r->corruptions_fixed;
        logline(c, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
                fixed ? "Repairing" : r1 < r2 ? "ERROR" : "Leaked", i, r1, r2);
        if (fixed) {
            /* references fixed earlier must be durable before a refcount
             * drops on their account */
            if (r1 > r2 && c->wrote) {
                ret = kimg_file_sync(s->file);
                if (ret < 0) {
                    r->check_errors++;
                    return ret;
                }
                c->wrote = false;
            }
            if (set_refcount(c, i, r2) == 0) {
                (*fixed)++;
                continue;
            }
        }
        if (r1 < r2)
            r->corruptions++;
        else
            r->leaks++;
    }
    return 0;
}

static int check_oflag_copied(struct chk *c)
{
    struct qcow2_state *s = c->s;
    struct kimg_check *r = c->res;
    bool repair;
    int ret;

    if (c->fix & KIMG_CHECK_FIX_ERRORS)
        repair = true;
    else if (c->fix & KIMG_CHECK_FIX_LEAKS)
        repair = !r->check_errors && !r->corruptions && !r->leaks;
    else
        repair = false;

    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t e = s->l1[i], rc;
        uint64_t l2off = e & QCOW2_L1E_OFFSET_MASK;
        if (!l2off)
            continue;
        if (stored_refcount(c, l2off >> s->cluster_bits, &rc) < 0)
            continue;
        if ((rc == 1) != ((e & QCOW2_OFLAG_COPIED) != 0)) {
            r->corruptions++;
            logline(c, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu32 " l1_entry=%" PRIx64
                    " refcount=%" PRIu64, repair ? "Repairing" : "ERROR", i, e, rc);
            if (repair) {
                uint64_t ne = rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED;
                ret = write_l1_entry(c, s->l1_offset, i, ne, true);
                if (ret < 0) {
                    r->check_errors++;
                    return ret;
                }
                r->corruptions--;
                r->corruptions_fixed++;
            }
        }
        if (l2off >= c->file_size)
            continue;           /* reads as zeros */
        ret = kimg_file_pread_zero_eof(s->file, c->l2buf, s->cluster_size, l2off);
        if (ret < 0) {
            logline(c, "ERROR: Could not read L2 table: %s", strerror(-ret));
            r->check_errors++;
            return ret;
        }
        uint64_t dirty = 0;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint8_t *p = c->l2buf + j * s->l2_entry_size;
            uint64_t le = qcow2_be64(p);
            enum ctype t = cluster_type(s, le);
            if (t != CT_NORMAL && t != CT_ZERO_ALLOC)
                continue;
            if (s->has_data_file)
                rc = 1;
            else if (stored_refcount(c, (le & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits,
                                     &rc) < 0)
                continue;
            if ((rc == 1) == ((le & QCOW2_OFLAG_COPIED) != 0))
                continue;
            r->corruptions++;
            logline(c, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%"
                    PRIu64, repair ? "Repairing" : "ERROR", le, rc);
            if (repair) {
                qcow2_put_be64(p, rc == 1 ? le | QCOW2_OFLAG_COPIED
                                          : le & ~QCOW2_OFLAG_COPIED);
                dirty++;
            }
        }
        if (dirty) {
            if (!l2_writable(c, l2off)) {
                logline(c, "ERROR: Could not write L2 table; metadata overlap check "
                        "failed: %s", strerror(EIO));
                r->check_errors++;
                return kimg_fail(-EIO, "Could not write L2 table at %#" PRIx64, l2off);
            }
            ret = kimg_file_pwrite(s->file, c->l2buf, s->cluster_size, l2off);
            qcow2_cache_discard(&s->l2_cache, l2off);
            if (ret < 0) {
                logline(c, "ERROR: Could not write L2 table: %s", strerror(-ret));
                r->check_errors++;
                return ret;
            }
            c->wrote = true;
            r->corruptions -= dirty;
            r->corruptions_fixed += dirty;
        }
    }
    return 0;
}

/* Make every in-memory refcount table entry the rebuild cannot use (it
 * reads s->rt) empty; the rebuild replaces the table on disk anyway. */
static void drop_bad_rt_entries(struct chk *c)
{
    struct qcow2_state *s = c->s;
    for (uint64_t i = 0; i < s->rt_entries; i++) {
        uint64_t off = s->rt[i] & QCOW2_RTE_OFFSET_MASK;
        if ((off & s->cluster_mask) || (off >> s->cluster_bits) >= c->nb)
            s->rt[i] = 0;
    }
}

static int rebuild(struct chk *c, unsigned fix, uint64_t *highest)
{
    struct qcow2_state *s = c->s;
    struct kimg_check *r = c->res;
    struct kimg_check old = *r;
    uint64_t *old_rt = NULL, old_rt_entries = s->rt_entries;
    uint64_t old_rt_off = s->rt_offset, old_rt_clusters = s->rt_clusters;
    int ret;

    logline(c, "Rebuilding refcount structure");
    if (c->wrote) {
        ret = kimg_file_sync(s->file);
        if (ret < 0)
            goto fail;
        c->wrote = false;
    }
    drop_bad_rt_entries(c);
    old_rt = malloc((old_rt_entries ? old_rt_entries : 1) * sizeof(*old_rt));
    if (!old_rt) {
        ret = -ENOMEM;
        goto fail;
    }
    memcpy(old_rt, s->rt, old_rt_entries * sizeof(*old_rt));
    ret = qcow2_cache_flush(&s->rb_cache);
    if (ret < 0)
        goto fail;
    qcow2_cache_clear(&s->rb_cache);
    c->rbbuf_valid = false;
    ret = qcow2_rebuild_refcounts(s);
    c->rbbuf_valid = false;
    if (ret < 0)
        goto fail;

    /* count again against the new structure */
    r->corruptions = 0;
    r->leaks = 0;
    r->allocated_clusters = r->fragmented_clusters = r->compressed_clusters = 0;
    c->rebuild = false;
    c->fix = 0;
    ret = setup_counters(c);
    if (ret < 0)
        goto out;
    ret = calculate(c);
    if (ret < 0)
        goto out;
    uint64_t fresh_leaks = 0;
    if (fix & KIMG_CHECK_FIX_LEAKS) {
        /* The old structure is free space now.  qemu's rebuild leaves it
         * leaked and repairs that next; say so the same way. */
        for (uint64_t k = old_rt_off >> s->cluster_bits;
             k < (old_rt_off >> s->cluster_bits) + old_rt_clusters && k < c->nb; k++)
            logline(c, "Repairing cluster %" PRIu64 " refcount=%" PRIu64 " reference=%"
                    PRIu32, k, (uint64_t)c->refs[k] + 1, c->refs[k]);
        for (uint64_t i = 0; i < old_rt_entries; i++) {
            uint64_t k = (old_rt[i] & QCOW2_RTE_OFFSET_MASK) >> s->cluster_bits;
            if (k && k < c->nb)
                logline(c, "Repairing cluster %" PRIu64 " refcount=%" PRIu64 " reference=%"
                        PRIu32, k, (uint64_t)c->refs[k] + 1, c->refs[k]);
        }
        struct kimg_check saved = *r;
        r->corruptions = r->leaks = r->check_errors = 0;
        r->corruptions_fixed = r->leaks_fixed = 0;
        ret = compare(c, KIMG_CHECK_FIX_LEAKS, highest);
        if (c->rebuild)
            logline(c, "ERROR rebuilt refcount structure is still broken");
        fresh_leaks = r->leaks;
        uint64_t errs = r->check_errors;
        *r = saved;
        r->check_errors += errs;
        if (ret < 0)
            goto out;
    }
    if (r->corruptions < old.corruptions)
        r->corruptions_fixed += old.corruptions - r->corruptions;
    if (r->leaks < old.leaks)
        r->leaks_fixed += old.leaks - r->leaks;
    r->leaks += fresh_leaks;
    ret = 0;
    goto out;
fail:
    r->check_errors++;
out:
    free(old_rt);
    return ret;
}

/* qemu's check reads the snapshot table first: each incomplete entry of a
 * version 3 image is one corruption, repaired (with FIX_ERRORS) by writing
 * the whole table anew once the refcounts are sound (the last repair). */
static uint32_t report_incomplete_snapshots(struct chk *c, unsigned fix)
{
    struct qcow2_state *s = c->s;
    uint32_t n = 0;
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        if (!qcow2_snapshot_incomplete(s, &s->snapshots[i]))
            continue;
        logline(c, "%s snapshot table entry %" PRIu32 " is incomplete",
                (fix & KIMG_CHECK_FIX_ERRORS) ? "Repairing" : "ERROR", i);
        n++;
    }
    return n;
}

static int fix_incomplete_snapshots(struct chk *c, unsigned fix, uint32_t n)
{
    struct kimg_check *r = c->res;
    if (!n)
        return 0;
    if (!(fix & KIMG_CHECK_FIX_ERRORS) || r->corruptions || r->check_errors || c->rebuild) {
        r->corruptions += n;
        return 0;
    }
    int ret = qcow2_snapshot_table_rewrite(c->s, true);
    if (ret < 0) {
        logline(c, "ERROR failed to update snapshot table: %s", strerror(-ret));
        r->check_errors++;
        r->corruptions += n;
        return ret;
    }
    r->corruptions_fixed += n;
    return 0;
}

static void log_dropped(void *opaque, const char *name)
{
    logline(opaque, "Repairing bitmap '%s': inconsistent (in use), removed", name);
}

static int check_locked(struct chk *c, unsigned fix)
{
    struct qcow2_state *s = c->s;
    struct kimg_check *r = c->res;
    uint64_t highest = 0;
    int ret;

    qcow2_assert_locked(s);
    if (fix && !s->file->writable)
        return kimg_fail(-EROFS, "Cannot repair a read-only image");
    /* the file must hold everything the caches know */
    ret = qcow2_cache_flush(&s->l2_cache);
    if (ret == 0)
        ret = qcow2_cache_flush(&s->rb_cache);
    if (ret < 0) {
        r->check_errors++;
        return ret;
    }
    /* -r all, kimg's addition: an inconsistent bitmap can never be used
     * again (qemu refuses it; a backup then fails), so it goes; the leak
     * repair below frees its clusters once nothing references them */
    if (fix & KIMG_CHECK_FIX_ERRORS) {
        ret = qcow2_bitmaps_drop_in_use(s, log_dropped, c);
        if (ret < 0) {
            r->check_errors++;
            return ret;
        }
    }
    c->limit = s->refcount_max < UINT32_MAX ? s->refcount_max : UINT32_MAX;
    c->fix = fix;
    ret = setup_counters(c);
    if (ret < 0)
        return ret;
    r->total_clusters = qcow2_align_up(s->img->size, s->cluster_size) >> s->cluster_bits;
    r->has_stats = true;
    uint32_t incomplete = report_incomplete_snapshots(c, fix);

    ret = calculate(c);
    if (ret < 0)
        return ret;

    struct kimg_check pre = *r;
    ret = compare(c, 0, &highest);
    if (ret < 0)
        return ret;
    if (c->rebuild && (fix & KIMG_CHECK_FIX_ERRORS)) {
        ret = rebuild(c, fix, &highest);
        if (ret < 0)
            return ret;
    } else if (fix) {
        if (c->rebuild) {
            logline(c, "ERROR need to rebuild refcount structures");
            r->check_errors++;
            return -EIO;
        }
        if (r->leaks || r->corruptions) {
            *r = pre;
            ret = compare(c, fix, &highest);
            if (ret < 0)
                return ret;
        }
    }
    if (fix) {
        /* new refcounts on disk before COPIED flags rely on them */
        ret = qcow2_cache_flush(&s->rb_cache);
        if (ret < 0) {
            r->check_errors++;
            return ret;
        }
        c->rbbuf_valid = false;
    }
    c->fix = fix;
    ret = check_oflag_copied(c);
    if (ret < 0)
        return ret;
    r->image_end_offset = (highest + 1) << s->cluster_bits;
    ret = fix_incomplete_snapshots(c, fix, incomplete);
    if (ret < 0)
        return ret;

    if (fix) {
        ret = qcow2_cache_flush(&s->l2_cache);
        if (ret == 0)
            ret = qcow2_cache_flush(&s->rb_cache);
        if (ret == 0)
            ret = kimg_file_sync(s->file);
        if (ret < 0) {
            r->check_errors++;
            return ret;
        }
        c->wrote = false;
        if (!r->check_errors && !r->corruptions) {
            ret = qcow2_update_incompat(s, 0, QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT);
            if (ret < 0)
                return ret;
            s->corrupt_signalled = false;
        }
    }
    return 0;
}

int qcow2_check(struct kimg *img, struct kimg_check *res, unsigned fix)
{
    struct qcow2_state *s = img->state;
    struct chk c = { .s = s, .res = res };
    int ret;

    c.l2buf = kimg_alloc_aligned(s->cluster_size);
    c.rbbuf = kimg_alloc_aligned(s->cluster_size);
    if (!c.l2buf || !c.rbbuf) {
        free(c.l2buf);
        free(c.rbbuf);
        res->check_errors++;
        return kimg_fail(-ENOMEM, "Cannot allocate check buffers");
    }
    ret = check_locked(&c, fix);
    free(c.refs);
    free(c.l2buf);
    free(c.rbbuf);
    return ret;
}
