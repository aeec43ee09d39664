/*
 * snapshot_commit.c — how a snapshot operation (create, apply, delete)
 * changes a qcow2 image in one atomic step.  The new state (the active L1
 * entries, the virtual size, the snapshot list) is described in memory;
 * its reference counts are counted from scratch; every structure that
 * changes is written to clusters the old state does not use (its L1 and L2
 * tables, snapshot table and refcount structure stay intact); then one
 * header write switches the active L1, the refcount table, the snapshot
 * table and the size at once.  A crash before that write leaves the old
 * image (the new clusters are unreferenced and free in its refcounts), a
 * crash after it the new one, exact: qemu-img check is clean at every point.
 *
 * Why not in place, as qemu does: raising a cluster's refcount and clearing
 * QCOW_OFLAG_COPIED in the L2 entry that points at it are two writes to two
 * clusters, and qemu-img check reports either half alone as a corruption.
 * So an active L2 table whose COPIED flags change is copied (the copy gets
 * the new flags, the old table stays with the old state); one whose flags
 * stay is shared, as qemu shares it.  The old structures need no freeing:
 * the new refcounts count them as free.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* Reference counts of the new state, one per host cluster (grows). */
struct counts {
    uint32_t *refs;
    uint64_t n;                 /* clusters covered */
    uint64_t limit;             /* never grow past this */
};

/* A host byte range [start, end). */
struct range {
    uint64_t start, end;
};

static int cmp_range(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* One operation's work: the counts, what the old state uses, placement. */
struct txn {
    struct qcow2_state *s;
    struct counts c;
    uint8_t *old_used;          /* bit per cluster < nb_old: old refcount > 0 */
    uint64_t nb_old;
    uint64_t nb_file;           /* clusters the file covers (references beyond: bad) */
    uint64_t file_size;         /* bytes, before the operation */
    uint64_t hint;              /* placement: no free cluster below this */
    uint64_t top;               /* 1 + highest cluster with a reference */
    uint8_t *seen;              /* bit per cluster: L2 tables of the tree being counted */
    uint32_t *trees;            /* per cluster: how many trees name it as an L2 table
                                   (allocated with the first L2 table counted) */
    struct range *meta;         /* qcow2_overlaps_main's ranges, by start */
    uint64_t *meta_end;         /* meta_end[i]: the largest end of meta[0..i] */
    uint32_t nb_meta;
};

/* An active L2 table of the new state and what it becomes. */
struct l2_plan {
    uint64_t old;               /* its offset */
    uint64_t copy;              /* offset of the copy with new flags, or 0 */
    uint8_t *buf;               /* the copy's content (copy != 0) */
};

static int grow(struct counts *c, uint64_t want)
{
    if (want <= c->n)
        return 0;
    if (want > c->limit)
        return kimg_fail(-EFBIG, "qcow2: image too large for a snapshot operation");
    uint64_t ncap = want + want / 8 + 64;
    if (ncap > c->limit)
        ncap = c->limit;
    uint32_t *v = realloc(c->refs, ncap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    memset(v + c->n, 0, (ncap - c->n) * sizeof(*v));
    c->refs = v;
    c->n = ncap;
    return 0;
}

static int bad_ref(struct txn *t, const char *what, uint64_t off)
{
    return kimg_fail(-EIO, "qcow2: %s at %#" PRIx64 " is invalid or past the end of the "
                     "file; the image is corrupt (see 'check')", what, off);
}

/* N more references (saturating) to each cluster of the host range
 * [off, off+len). */
static int ref_range_n(struct txn *t, uint64_t off, uint64_t len, uint32_t n,
                       const char *what)
{
    if (!len)
        return 0;
    uint64_t first = off >> t->s->cluster_bits;
    uint64_t last = (off + len - 1) >> t->s->cluster_bits;
    if (off >= QCOW2_MAX_HOST_OFFSET || last >= t->nb_file)
        return bad_ref(t, what, off);
    for (uint64_t c = first; c <= last; c++)
        t->c.refs[c] = t->c.refs[c] > UINT32_MAX - n ? UINT32_MAX : t->c.refs[c] + n;
    if (last + 1 > t->top)
        t->top = last + 1;
    return 0;
}

static int ref_range(struct txn *t, uint64_t off, uint64_t len, const char *what)
{
    return ref_range_n(t, off, len, 1, what);
}

/* The host range an L2 entry references (0 length: none); -EIO if bad. */
static int entry_range(struct txn *t, uint64_t e, uint64_t *off, uint64_t *len)
{
    struct qcow2_state *s = t->s;
    *off = *len = 0;
    if (e & QCOW2_OFLAG_COMPRESSED) {
        qcow2_compressed_range(s, e, off, len);
        if (*off < s->cluster_size)
            return bad_ref(t, "Compressed cluster", *off);
        return 0;
    }
    uint64_t h = e & QCOW2_L2E_OFFSET_MASK;
    if (h & s->cluster_mask)
        return bad_ref(t, "Data cluster", h);
    if (h) {
        *off = h;
        *len = s->cluster_size;
    }
    return 0;
}

static void add_meta(struct txn *t, uint64_t start, uint64_t len)
{
    if (len && start <= UINT64_MAX - len) {
        t->meta[t->nb_meta].start = start;
        t->meta[t->nb_meta].end = start + len;
        t->nb_meta++;
    }
}

/* The ranges qcow2_overlaps_main keeps clear of, sorted once, so that the
 * test costs a binary search and not a walk over every snapshot (which
 * made placing and counting quadratic in the number of snapshots). */
static int load_meta(struct txn *t)
{
    struct qcow2_state *s = t->s;
    uint64_t cs = s->cluster_size;
    t->meta = calloc((size_t)s->nb_snapshots + 6, sizeof(*t->meta));
    t->meta_end = calloc((size_t)s->nb_snapshots + 6, sizeof(*t->meta_end));
    if (!t->meta || !t->meta_end)
        return -ENOMEM;
    add_meta(t, 0, cs);
    if (s->l1_size)
        add_meta(t, s->l1_offset, qcow2_align_up((uint64_t)s->l1_size * 8, cs));
    add_meta(t, s->rt_offset, (uint64_t)s->rt_clusters << s->cluster_bits);
    if (s->nb_snapshots)
        add_meta(t, s->snapshots_offset, qcow2_align_up(s->snapshots_size, cs));
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (sn->l1_size && !(sn->l1_invalid && ((sn->l1_offset & s->cluster_mask) ||
                                                (uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES)))
            add_meta(t, sn->l1_offset, qcow2_align_up((uint64_t)sn->l1_size * 8, cs));
    }
    if (s->has_bitmaps_ext && s->bitmaps)
        add_meta(t, s->bitmap_dir_offset, qcow2_align_up(s->bitmap_dir_size, cs));
    if (s->has_crypto_ext && s->crypto_hdr_length)
        add_meta(t, s->crypto_hdr_offset, qcow2_align_up(s->crypto_hdr_length, cs));
    qsort(t->meta, t->nb_meta, sizeof(*t->meta), cmp_range);
    for (uint32_t i = 0; i < t->nb_meta; i++)
        t->meta_end[i] = i && t->meta_end[i - 1] > t->meta[i].end ? t->meta_end[i - 1]
                                                                  : t->meta[i].end;
    return 0;
}

/* qcow2_overlaps_main(s, off, len) for the old state, in O(log n). */
static bool overlaps_meta(const struct txn *t, uint64_t off, uint64_t len)
{
    uint32_t lo = 0, hi = t->nb_meta;       /* count of ranges starting before off+len */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->meta[mid].start < off + len)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo && t->meta_end[lo - 1] > off;
}

/* Count the L2 table at L2OFF (0: none) for the tree being counted: the
 * table once, and one more tree naming it (its data clusters are counted
 * once per tree by count_data).  A tree naming a table twice is corrupt. */
static int count_l2(struct txn *t, uint64_t l2off)
{
    struct qcow2_state *s = t->s;
    if (!l2off)
        return 0;
    if (l2off & s->cluster_mask)
        return bad_ref(t, "L2 table", l2off);
    int ret = ref_range(t, l2off, s->cluster_size, "L2 table");
    if (ret < 0)
        return ret;
    uint64_t c = l2off >> s->cluster_bits;
    if ((t->seen[c >> 3] >> (c & 7)) & 1)
        return bad_ref(t, "L2 table (named twice by one L1 table)", l2off);
    t->seen[c >> 3] |= (uint8_t)(1u << (c & 7));
    if (!t->trees && !(t->trees = calloc(t->nb_file + 1, sizeof(*t->trees))))
        return -ENOMEM;
    if (t->trees[c] != UINT32_MAX)
        t->trees[c]++;
    return 0;
}

/* Count one L1 table's tree (its L2 tables; their entries: count_data). */
static int count_tree(struct txn *t, const uint64_t *l1, uint32_t n)
{
    struct qcow2_state *s = t->s;
    int ret = 0;
    uint32_t i;
    for (i = 0; i < n && ret == 0; i++)
        ret = count_l2(t, l1[i] & QCOW2_L1E_OFFSET_MASK);
    /* forget this tree's tables (only entries count_l2 may have marked) */
    for (uint32_t k = 0; k < i; k++) {
        uint64_t c = (l1[k] & QCOW2_L1E_OFFSET_MASK) >> s->cluster_bits;
        if (c && c < t->nb_file)
            t->seen[c >> 3] &= (uint8_t)~(1u << (c & 7));
    }
    return ret;
}

/* The data clusters of every L2 table counted: each entry's cluster once
 * per tree naming the table (as qemu's refcounts count them).  Each table
 * is read once however many snapshots share it, so the cost is linear in
 * the file, not in snapshots times tables. */
static int count_data(struct txn *t)
{
    struct qcow2_state *s = t->s;
    int ret = 0;
    for (uint64_t c = 0; t->trees && c < t->nb_file && ret == 0; c++) {
        uint32_t n = t->trees[c];
        if (!n)
            continue;
        uint64_t l2off = c << s->cluster_bits;
        if (overlaps_meta(t, l2off, s->cluster_size))
            return bad_ref(t, "L2 table", l2off);
        uint8_t *l2;
        ret = qcow2_cache_get(&s->l2_cache, l2off, &l2);
        if (ret < 0)
            return ret;
        for (uint64_t j = 0; j < s->l2_entries && ret == 0; j++) {
            uint64_t off, len;
            ret = entry_range(t, qcow2_be64(l2 + j * s->l2_entry_size), &off, &len);
            if (ret == 0)
                ret = ref_range_n(t, off, len, n, "Data cluster");
        }
        qcow2_cache_put(&s->l2_cache, l2);
    }
    return ret;
}

/* Snapshot L1 tables share no cluster: qemu gives each its own, and a
 * table named by many entries would make a small file cost a table read
 * per entry.  Damaged entries (l1_invalid) are refused later. */
static int l1_tables_disjoint(const struct qcow2_snapshot *sns, uint32_t nb, uint64_t cs)
{
    struct range *r = calloc(nb ? nb : 1, sizeof(*r));
    uint32_t n = 0;
    int ret = 0;
    if (!r)
        return -ENOMEM;
    for (uint32_t i = 0; i < nb; i++)
        if (sns[i].l1_size && !sns[i].l1_invalid) {
            r[n].start = sns[i].l1_offset;
            r[n].end = sns[i].l1_offset + qcow2_align_up((uint64_t)sns[i].l1_size * 8, cs);
            n++;
        }
    qsort(r, n, sizeof(*r), cmp_range);
    for (uint32_t i = 1; i < n && ret == 0; i++)
        if (r[i].start < r[i - 1].end)
            ret = kimg_fail(-EIO, "qcow2: snapshot L1 tables overlap at %#" PRIx64 "; the "
                            "image is corrupt (see 'check')", r[i].start);
    free(r);
    return ret;
}

/* The references a snapshot operation leaves alone (the header cluster,
 * the bitmaps): qemu's count of an image with no L1 table, no snapshot
 * and no refcount structure, so whatever else qcow2_count_references
 * learns to count is counted here too. */
static int count_fixed(struct txn *t)
{
    struct qcow2_state *s = t->s;
    uint32_t l1_size = s->l1_size, nb_sn = s->nb_snapshots, rt_clusters = s->rt_clusters;
    uint64_t rt_entries = s->rt_entries, bad = 0;

    s->l1_size = 0;
    s->nb_snapshots = 0;
    s->rt_clusters = 0;
    s->rt_entries = 0;
    int ret = qcow2_count_references(s, t->c.refs, t->nb_file, &bad);
    s->l1_size = l1_size;
    s->nb_snapshots = nb_sn;
    s->rt_clusters = rt_clusters;
    s->rt_entries = rt_entries;
    if (ret == 0 && bad)
        ret = kimg_fail(-EIO, "qcow2: bitmap metadata points past the end of the file; "
                        "the image is corrupt (see 'check')");
    for (uint64_t c = t->nb_file; ret == 0 && c-- > 0;)
        if (t->c.refs[c]) {
            if (c + 1 > t->top)
                t->top = c + 1;
            break;
        }
    return ret;
}

/* Which clusters the old state's refcounts mark used. */
static int load_old_used(struct txn *t)
{
    struct qcow2_state *s = t->s;
    t->old_used = calloc((t->nb_old + 7) / 8 + 1, 1);
    if (!t->old_used)
        return -ENOMEM;
    for (uint64_t ti = 0; ti < s->rt_entries && (ti << s->rb_bits) < t->nb_old; ti++) {
        uint64_t b = s->rt[ti] & QCOW2_RTE_OFFSET_MASK;
        if (!b)
            continue;
        if ((s->rt[ti] & QCOW2_RTE_RESERVED) || (b & s->cluster_mask))
            return kimg_fail(-EIO, "qcow2: refcount block offset %#" PRIx64 " invalid; "
                             "the image is corrupt (see 'check')", b);
        uint8_t *rb;
        int ret = qcow2_cache_get(&s->rb_cache, b, &rb);
        if (ret < 0)
            return ret;
        for (uint64_t i = 0; i < s->rb_entries; i++) {
            uint64_t c = (ti << s->rb_bits) + i;
            if (c >= t->nb_old)
                break;
            if (qcow2_rb_entry_get(s, rb, i))
                t->old_used[c >> 3] |= (uint8_t)(1u << (c & 7));
        }
        qcow2_cache_put(&s->rb_cache, rb);
    }
    return 0;
}

static int old_used(struct txn *t, uint64_t c, bool *used)
{
    if (c < t->nb_old) {
        *used = (t->old_used[c >> 3] >> (c & 7)) & 1;
        return 0;
    }
    uint64_t rc;
    int ret = qcow2_refcount_get(t->s, c, &rc);
    *used = rc != 0;
    return ret;
}

/* N contiguous clusters free in both states (unused by the old state,
 * unreferenced by the new one); they count as referenced from now on. */
static int place(struct txn *t, uint64_t n, uint64_t *off)
{
    struct qcow2_state *s = t->s;
    uint64_t c = t->hint > 1 ? t->hint : 1, start = c, run = 0;
    bool first = true;

    while (run < n) {
        if ((c + 1) << s->cluster_bits > QCOW2_MAX_HOST_OFFSET)
            return kimg_fail(-ENOSPC, "qcow2: image file is full");
        int ret = grow(&t->c, c + 1);
        if (ret < 0)
            return ret;
        bool used;
        ret = old_used(t, c, &used);
        if (ret < 0)
            return ret;
        if (used || t->c.refs[c] ||
            overlaps_meta(t, c << s->cluster_bits, s->cluster_size)) {
            run = 0;
            start = c + 1;
        } else {
            if (first) {
                t->hint = c;
                first = false;
            }
            run++;
        }
        c++;
    }
    for (uint64_t i = 0; i < n; i++)
        t->c.refs[start + i] = 1;
    if (start + n > t->top)
        t->top = start + n;
    if (start == t->hint)
        t->hint = start + n;
    *off = start << s->cluster_bits;
    return 0;
}

static void unplace(struct txn *t, uint64_t off, uint64_t n)
{
    uint64_t c = off >> t->s->cluster_bits;
    for (uint64_t i = 0; i < n; i++)
        t->c.refs[c + i] = 0;
    if (c < t->hint)
        t->hint = c;
}

/* The L2 entry as the new active state must have it: COPIED exactly when
 * the cluster it references has refcount 1 (never for compressed ones). */
static uint64_t wanted_entry(struct txn *t, uint64_t e)
{
    uint64_t h = e & QCOW2_L2E_OFFSET_MASK;
    if ((e & QCOW2_OFLAG_COMPRESSED) || !h)
        return e & ~QCOW2_OFLAG_COPIED;
    if (t->c.refs[h >> t->s->cluster_bits] == 1)
        return e | QCOW2_OFLAG_COPIED;
    return e & ~QCOW2_OFLAG_COPIED;
}

/* Decide, for each active L2 table, whether its entries' flags change
 * (then it gets a copy, placed later) and build the copies. */
static int plan_active(struct txn *t, const uint64_t *l1, uint32_t n, struct l2_plan *p)
{
    struct qcow2_state *s = t->s;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        p[i].old = l2off;
        if (!l2off)
            continue;
        uint8_t *l2;
        int ret = qcow2_cache_get(&s->l2_cache, l2off, &l2);
        if (ret < 0)
            return ret;
        bool same = true;
        for (uint64_t j = 0; j < s->l2_entries && same; j++) {
            uint64_t e = qcow2_be64(l2 + j * s->l2_entry_size);
            same = wanted_entry(t, e) == e;
        }
        if (!same) {
            p[i].buf = kimg_alloc_aligned(s->cluster_size);
            if (!p[i].buf) {
                qcow2_cache_put(&s->l2_cache, l2);
                return -ENOMEM;
            }
            memcpy(p[i].buf, l2, s->cluster_size);
            for (uint64_t j = 0; j < s->l2_entries; j++) {
                uint8_t *q = p[i].buf + j * s->l2_entry_size;
                qcow2_put_be64(q, wanted_entry(t, qcow2_be64(q)));
            }
        }
        qcow2_cache_put(&s->l2_cache, l2);
    }
    /* the copies take the active state's reference off the old tables */
    for (uint32_t i = 0; i < n; i++) {
        if (!p[i].buf)
            continue;
        int ret = place(t, 1, &p[i].copy);
        if (ret < 0)
            return ret;
        t->c.refs[p[i].old >> s->cluster_bits]--;
    }
    return 0;
}

static int check_limits(struct txn *t)
{
    struct qcow2_state *s = t->s;
    for (uint64_t c = 0; c < t->top; c++)
        if (t->c.refs[c] > s->refcount_max)
            return kimg_fail(-ERANGE, "cluster %#" PRIx64 " would have %" PRIu32
                             " references, more than refcount_bits=%u holds",
                             c << s->cluster_bits, t->c.refs[c], s->refcount_bits);
    return 0;
}

/* Lay out a refcount structure for the counts: a block for each range
 * holding a referenced cluster and one contiguous table, all in free
 * clusters (which then need counting themselves: repeat until stable). */
static int lay_refcounts(struct txn *t, uint64_t **rt_out, uint64_t *rt_entries,
                         uint64_t *rt_off, uint64_t *rt_clusters)
{
    struct qcow2_state *s = t->s;
    uint64_t *rt = NULL, entries = 0, toff = 0, tc = 0;
    int ret = 0;

    for (int iter = 0;; iter++) {
        bool changed = false;
        if (iter > 64) {
            ret = kimg_fail(-EIO, "qcow2: cannot lay out a refcount table");
            goto fail;
        }
        for (uint64_t r = 0; (r << s->rb_bits) < t->top; r++) {
            if (r >= entries) {
                uint64_t ne = r + 1 + 64;
                uint64_t *v = realloc(rt, ne * sizeof(*v));
                if (!v) {
                    ret = -ENOMEM;
                    goto fail;
                }
                memset(v + entries, 0, (ne - entries) * sizeof(*v));
                rt = v;
                entries = ne;
            }
            if (rt[r])
                continue;
            uint64_t c0 = r << s->rb_bits, c1 = c0 + s->rb_entries;
            bool any = false;
            for (uint64_t c = c0; c < c1 && c < t->top && !any; c++)
                any = t->c.refs[c] != 0;
            if (!any)
                continue;
            ret = place(t, 1, &rt[r]);
            if (ret < 0)
                goto fail;
            changed = true;
        }
        uint64_t ranges = (t->top + s->rb_entries - 1) >> s->rb_bits;
        uint64_t need = qcow2_align_up(ranges * 8, s->cluster_size) >> s->cluster_bits;
        if (need == 0)
            need = 1;
        if ((need << s->cluster_bits) > QCOW2_MAX_RT_BYTES) {
            ret = kimg_fail(-EFBIG, "Reference count table would exceed the maximum size");
            goto fail;
        }
        if (need != tc) {
            if (tc)
                unplace(t, toff, tc);
            ret = place(t, need, &toff);
            if (ret < 0)
                goto fail;
            tc = need;
            changed = true;
        }
        if (!changed)
            break;
    }
    /* the table as stored: all its clusters' entries, zeros past the ranges */
    uint64_t full = (tc << s->cluster_bits) / 8;
    uint64_t *v = realloc(rt, full * sizeof(*v));
    if (!v) {
        ret = -ENOMEM;
        goto fail;
    }
    if (full > entries)
        memset(v + entries, 0, (full - entries) * sizeof(*v));
    *rt_out = v;
    *rt_entries = full;
    *rt_off = toff;
    *rt_clusters = tc;
    return 0;
fail:
    free(rt);
    return ret;
}

static int write_padded(struct qcow2_state *s, const uint8_t *data, uint64_t len, uint64_t off)
{
    uint64_t n = qcow2_align_up(len, s->cluster_size);
    if (!n)
        return 0;
    uint8_t *buf = kimg_alloc_aligned_zero(n);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, data, len);
    int ret = kimg_file_pwrite(s->file, buf, n, off);
    free(buf);
    return ret;
}

static int write_refcounts(struct txn *t, const uint64_t *rt, uint64_t entries,
                           uint64_t toff, uint64_t tc)
{
    struct qcow2_state *s = t->s;
    uint8_t *buf = kimg_alloc_aligned_zero(tc << s->cluster_bits > s->cluster_size
                                 ? tc << s->cluster_bits : s->cluster_size);
    int ret = 0;
    if (!buf)
        return -ENOMEM;
    for (uint64_t r = 0; r < entries && ret == 0; r++) {
        if (!rt[r])
            continue;
        memset(buf, 0, s->cluster_size);
        uint64_t c0 = r << s->rb_bits;
        for (uint64_t i = 0; i < s->rb_entries && c0 + i < t->top; i++)
            if (t->c.refs[c0 + i])
                qcow2_rb_entry_set(s, buf, i, t->c.refs[c0 + i]);
        ret = kimg_file_pwrite(s->file, buf, s->cluster_size, rt[r]);
    }
    if (ret == 0) {
        memset(buf, 0, tc << s->cluster_bits);
        for (uint64_t i = 0; i < entries; i++)
            qcow2_put_be64(buf + i * 8, rt[i]);
        ret = kimg_file_pwrite(s->file, buf, tc << s->cluster_bits, toff);
    }
    free(buf);
    return ret;
}

/* Give the clusters the new state no longer uses back to the file system
 * (qemu discards freed snapshot clusters too).  Best effort: they are
 * free already, whatever happens here. */
static void punch_freed(struct txn *t)
{
    struct qcow2_state *s = t->s;
    uint64_t run = 0, start = 0;
    for (uint64_t c = 1; c <= t->nb_file; c++) {
        bool freed = c < t->nb_file && c < t->nb_old &&
                     ((t->old_used[c >> 3] >> (c & 7)) & 1) && !t->c.refs[c];
        if (freed) {
            if (!run)
                start = c;
            run++;
            continue;
        }
        uint64_t a = start << s->cluster_bits, b = (start + run) << s->cluster_bits;
        if (b > t->file_size)
            b = t->file_size;       /* never grow the file for this */
        if (run && a < b && kimg_file_zero(s->file, a, b - a, true) < 0) {
            kimg_clear_error();
            return;
        }
        run = 0;
    }
}

/* The header fields from the size to the snapshot table (bytes 24..71):
 * one write inside the first sector switches the whole state. */
static int switch_header(struct qcow2_state *s, uint64_t size, uint32_t l1_size,
                         uint64_t l1_off, uint64_t rt_off, uint32_t rt_clusters,
                         uint32_t nb_sn, uint64_t sn_off, uint8_t out[48])
{
    qcow2_put_be64(out, size);
    qcow2_put_be32(out + 8, s->crypt_method);
    qcow2_put_be32(out + 12, l1_size);
    qcow2_put_be64(out + 16, l1_off);
    qcow2_put_be64(out + 24, rt_off);
    qcow2_put_be32(out + 32, rt_clusters);
    qcow2_put_be32(out + 36, nb_sn);
    qcow2_put_be64(out + 40, sn_off);
    int ret = kimg_file_pwrite(s->file, out, 48, 24);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    return ret;
}

int qcow2_sn_commit(struct qcow2_state *s, const struct qcow2_sn_change *ch)
{
    struct txn t = { .s = s };
    struct l2_plan *plan = NULL;
    uint64_t *nl1 = NULL, *nrt = NULL, rt_entries = 0, rt_off = 0, rt_clusters = 0;
    uint64_t l1_off = s->l1_offset, sn_off = 0, sn_len = 0, fsz;
    uint8_t *table = NULL, *l1buf = NULL;
    int ret;

    qcow2_assert_locked(s);
    ret = kimg_check_writable(s->img);   /* a step before may have fenced it */
    if (ret < 0)
        return ret;
    ret = qcow2_flush_caches(s);
    if (ret < 0)
        return ret;
    ret = kimg_file_size(s->file, &fsz);
    if (ret < 0)
        return ret;
    t.file_size = fsz;
    t.nb_file = qcow2_align_up(fsz, s->cluster_size) >> s->cluster_bits;
    if (s->alloc_end > t.nb_file)
        t.nb_file = s->alloc_end;
    t.nb_old = t.nb_file;
    /* room to place new structures past the end (they are small) */
    t.c.limit = t.nb_file + (QCOW2_MAX_RT_BYTES >> s->cluster_bits) +
                ((uint64_t)ch->l1_size << 1) + (QCOW2_MAX_SN_TABLE_BYTES >> s->cluster_bits) +
                (1u << 20);
    if (t.nb_file > (1ULL << 28))
        return kimg_fail(-EFBIG, "qcow2: image too large for a snapshot operation");
    ret = grow(&t.c, t.nb_file);
    if (ret < 0)
        goto out;
    ret = load_old_used(&t);
    if (ret == 0)
        ret = load_meta(&t);
    if (ret < 0)
        goto out;
    t.seen = calloc(t.nb_file / 8 + 1, 1);
    if (!t.seen) {
        ret = -ENOMEM;
        goto out;
    }

    /* the counts of the new state, the new structures not placed yet */
    ret = l1_tables_disjoint(ch->sns, ch->nb_sns, s->cluster_size);
    if (ret == 0)
        ret = count_fixed(&t);
    for (uint32_t i = 0; ret == 0 && i < ch->nb_sns; i++) {
        const struct qcow2_snapshot *sn = &ch->sns[i];
        uint64_t *l1 = NULL;
        if (!sn->l1_size)
            continue;
        if (sn->l1_invalid) {
            ret = kimg_fail(-EIO, "qcow2: snapshot %s has an invalid L1 table; the image "
                            "is corrupt (see 'check')", sn->id);
            break;
        }
        ret = ref_range(&t, sn->l1_offset, (uint64_t)sn->l1_size * 8, "Snapshot L1 table");
        if (ret == 0)
            ret = qcow2_read_l1(s, sn->l1_offset, sn->l1_size, &l1);
        if (ret == 0)
            ret = count_tree(&t, l1, sn->l1_size);
        free(l1);
    }
    if (ret == 0)
        ret = count_tree(&t, ch->l1, ch->l1_size);
    if (ret == 0)
        ret = count_data(&t);
    if (ret < 0)
        goto out;

    /* the active tables: shared as they are, or copied with new flags */
    plan = calloc(ch->l1_size ? ch->l1_size : 1, sizeof(*plan));
    nl1 = calloc(ch->l1_size ? ch->l1_size : 1, sizeof(*nl1));
    if (!plan || !nl1) {
        ret = -ENOMEM;
        goto out;
    }
    ret = plan_active(&t, ch->l1, ch->l1_size, plan);
    if (ret < 0)
        goto out;
    ret = check_limits(&t);
    if (ret < 0)
        goto out;
    for (uint32_t i = 0; i < ch->l1_size; i++) {
        uint64_t o = plan[i].copy ? plan[i].copy : plan[i].old;
        nl1[i] = o && t.c.refs[o >> s->cluster_bits] == 1 ? o | QCOW2_OFLAG_COPIED : o;
    }

    /* the new active L1 table and snapshot table, then the refcounts */
    uint64_t l1_bytes = (uint64_t)ch->l1_size * 8;
    if (l1_bytes) {
        ret = place(&t, qcow2_align_up(l1_bytes, s->cluster_size) >> s->cluster_bits, &l1_off);
        if (ret < 0)
            goto out;
    }
    ret = qcow2_snapshot_encode(s, ch->sns, ch->nb_sns, &table, &sn_len);
    if (ret == 0 && sn_len)
        ret = place(&t, qcow2_align_up(sn_len, s->cluster_size) >> s->cluster_bits, &sn_off);
    if (ret == 0)
        ret = lay_refcounts(&t, &nrt, &rt_entries, &rt_off, &rt_clusters);
    if (ret < 0)
        goto out;

    /* write everything, then switch */
    for (uint32_t i = 0; ret == 0 && i < ch->l1_size; i++)
        if (plan[i].copy)
            ret = kimg_file_pwrite(s->file, plan[i].buf, s->cluster_size, plan[i].copy);
    if (ret == 0 && l1_bytes) {
        l1buf = kimg_alloc_aligned(l1_bytes);
        if (!l1buf)
            ret = -ENOMEM;
        for (uint32_t i = 0; ret == 0 && i < ch->l1_size; i++)
            qcow2_put_be64(l1buf + (uint64_t)i * 8, nl1[i]);
        if (ret == 0)
            ret = write_padded(s, l1buf, l1_bytes, l1_off);
    }
    if (ret == 0 && sn_len)
        ret = write_padded(s, table, sn_len, sn_off);
    if (ret == 0)
        ret = write_refcounts(&t, nrt, rt_entries, rt_off, rt_clusters);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        goto out;
    uint8_t hdr[48];
    ret = switch_header(s, ch->size, ch->l1_size, l1_off, rt_off, (uint32_t)rt_clusters,
                        ch->nb_sns, sn_off, hdr);
    if (ret < 0) {
        /* the header may or may not have changed: touch nothing more */
        kimg_fence(s->img);
        kimg_error("qcow2: switching the image header failed; reopen the image");
        goto out;
    }

    /* the new state is on disk: the in-memory state follows it */
    qcow2_cache_clear(&s->l2_cache);
    qcow2_cache_clear(&s->rb_cache);
    if (s->hdr_raw && s->hdr_raw_len >= 72)
        memcpy(s->hdr_raw + 24, hdr, sizeof(hdr));
    free(s->l1);
    s->l1 = nl1;
    nl1 = NULL;
    s->l1_size = ch->l1_size;
    s->l1_offset = l1_off;
    free(s->rt);
    s->rt = nrt;
    nrt = NULL;
    s->rt_entries = rt_entries;
    s->rt_offset = rt_off;
    s->rt_clusters = (uint32_t)rt_clusters;
    s->img->size = ch->size;
    if (t.top > s->alloc_end)
        s->alloc_end = t.top;
    s->free_hint = 0;
    s->compressed_next = 0;
    s->zcache_valid = false;
    qcow2_free_snapshots(s);
    s->nb_snapshots = ch->nb_sns;
    s->snapshots_offset = sn_off;
    if (kimg_file_size(s->file, &fsz) < 0 || qcow2_read_snapshots(s, fsz, false) < 0) {
        /* cannot happen with the table just written; stay safe anyway */
        s->nb_snapshots = 0;
        kimg_fence(s->img);
        ret = kimg_fail(-EIO, "qcow2: rereading the new snapshot table failed; reopen the "
                        "image");
        goto out;
    }
    punch_freed(&t);
out:
    for (uint32_t i = 0; plan && i < ch->l1_size; i++)
        free(plan[i].buf);
    free(plan);
    free(nl1);
    free(nrt);
    free(table);
    free(l1buf);
    free(t.c.refs);
    free(t.old_used);
    free(t.seen);
    free(t.trees);
    free(t.meta);
    free(t.meta_end);
    return ret;
}
