/*
 * refcount.c — host cluster reference counts: the refcount table and
 * blocks (every width from 1 to 64 bits), table growth, cluster allocation
 * (free-space search from a hint, never over metadata), freeing, counting
 * every reference in the image, and rebuilding the whole refcount structure.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* ---- one refcount block entry ----------------------------------------- */

uint64_t qcow2_rb_entry_get(const struct qcow2_state *s, const uint8_t *rb, uint64_t i)
{
    switch (s->refcount_order) {
    case 0: return (rb[i >> 3] >> (i & 7)) & 1;
    case 1: return (rb[i >> 2] >> ((i & 3) * 2)) & 3;
    case 2: return (rb[i >> 1] >> ((i & 1) * 4)) & 15;
    case 3: return rb[i];
    case 4: return qcow2_be16(rb + i * 2);
    case 5: return qcow2_be32(rb + i * 4);
    default: return qcow2_be64(rb + i * 8);
    }
}

void qcow2_rb_entry_set(const struct qcow2_state *s, uint8_t *rb, uint64_t i, uint64_t v)
{
    unsigned sh, mask;
    switch (s->refcount_order) {
    case 0: sh = i & 7; mask = 1; rb += i >> 3; break;
    case 1: sh = (i & 3) * 2; mask = 3; rb += i >> 2; break;
    case 2: sh = (i & 1) * 4; mask = 15; rb += i >> 1; break;
    case 3: rb[i] = (uint8_t)v; return;
    case 4: qcow2_put_be16(rb + i * 2, (uint16_t)v); return;
    case 5: qcow2_put_be32(rb + i * 4, (uint32_t)v); return;
    default: qcow2_put_be64(rb + i * 8, v); return;
    }
    *rb = (uint8_t)((*rb & ~(mask << sh)) | ((v & mask) << sh));
}

/* ---- overlap checks ----------------------------------------------------- */

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    if (!alen || !blen)
        return false;
    return a < b + blen && b < a + alen;
}

bool qcow2_overlaps_main(struct qcow2_state *s, uint64_t offset, uint64_t len)
{
    if (ranges_overlap(offset, len, 0, s->cluster_size))
        return true;
    if (s->l1_size && ranges_overlap(offset, len, s->l1_offset,
                                     qcow2_align_up((uint64_t)s->l1_size * 8, s->cluster_size)))
        return true;
    if (ranges_overlap(offset, len, s->rt_offset, (uint64_t)s->rt_clusters << s->cluster_bits))
        return true;
    if (s->nb_snapshots &&
        ranges_overlap(offset, len, s->snapshots_offset,
                       qcow2_align_up(s->snapshots_size, s->cluster_size)))
        return true;
    /* a damaged snapshot L1 entry (l1_invalid) past the end of the file is
     * still kept clear of; an unaligned or too large one has no range */
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++)
        if (s->snapshots[i].l1_size &&
            !(s->snapshots[i].l1_invalid &&
              ((s->snapshots[i].l1_offset & s->cluster_mask) ||
               (uint64_t)s->snapshots[i].l1_size * 8 > QCOW2_MAX_L1_BYTES)) &&
            ranges_overlap(offset, len, s->snapshots[i].l1_offset,
                           qcow2_align_up((uint64_t)s->snapshots[i].l1_size * 8,
                                          s->cluster_size)))
            return true;
    if (s->has_bitmaps_ext && s->bitmaps &&
        ranges_overlap(offset, len, s->bitmap_dir_offset,
                       qcow2_align_up(s->bitmap_dir_size, s->cluster_size)))
        return true;
    /* the LUKS header and key material of an encrypted image */
    if (s->has_crypto_ext && s->crypto_hdr_length &&
        ranges_overlap(offset, len, s->crypto_hdr_offset,
                       qcow2_align_up(s->crypto_hdr_length, s->cluster_size)))
        return true;
    return false;
}

bool qcow2_overlaps_metadata(struct qcow2_state *s, uint64_t offset, uint64_t len)
{
    if (qcow2_overlaps_main(s, offset, len))
        return true;
    for (uint64_t i = 0; i < s->rt_entries; i++) {
        uint64_t o = s->rt[i] & QCOW2_RTE_OFFSET_MASK;
        if (o && ranges_overlap(offset, len, o, s->cluster_size))
            return true;
    }
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t o = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (o && ranges_overlap(offset, len, o, s->cluster_size))
            return true;
    }
    return false;
}

/* ---- the table ---------------------------------------------------------- */

int qcow2_load_refcount_table(struct qcow2_state *s, uint64_t file_size)
{
    uint64_t bytes = (uint64_t)s->rt_clusters << s->cluster_bits;
    uint8_t *buf = kimg_alloc_aligned(bytes);
    int ret;

    s->rt_entries = bytes / 8;
    s->rt = calloc(s->rt_entries, 8);
    if (!buf || !s->rt) {
        free(buf);
        return -ENOMEM;
    }
    ret = kimg_file_pread_zero_eof(s->file, buf, bytes, s->rt_offset);
    if (ret < 0) {
        free(buf);
        return ret;
    }
    for (uint64_t i = 0; i < s->rt_entries; i++)
        s->rt[i] = qcow2_be64(buf + i * 8);
    free(buf);
    (void)file_size;
    return 0;
}

/* Offset of the refcount block for table index TI, 0 if none; -EIO on an
 * invalid entry. */
static int64_t rt_block(struct qcow2_state *s, uint64_t ti)
{
    if (ti >= s->rt_entries)
        return 0;
    uint64_t e = s->rt[ti];
    if (!e)
        return 0;
    uint64_t o = e & QCOW2_RTE_OFFSET_MASK;
    if ((e & QCOW2_RTE_RESERVED) || (o & s->cluster_mask) || o == 0 ||
        o >= QCOW2_MAX_HOST_OFFSET)
        return qcow2_signal_corruption(s, "Refblock offset %#" PRIx64 " unaligned "
                                       "(reftable index: %#" PRIx64 ")", e, ti);
    /* a block on the active L1 or the refcount table would have refcounts
     * written over them (checked here in O(1): this runs per lookup) */
    if ((s->l1_size && ranges_overlap(o, s->cluster_size, s->l1_offset,
                                      (uint64_t)s->l1_size * 8)) ||
        ranges_overlap(o, s->cluster_size, s->rt_offset,
                       (uint64_t)s->rt_clusters << s->cluster_bits))
        return qcow2_signal_corruption(s, "Refblock at %#" PRIx64 " overlaps other metadata "
                                       "(reftable index: %#" PRIx64 ")", o, ti);
    return (int64_t)o;
}

int qcow2_refcount_get(struct qcow2_state *s, uint64_t ci, uint64_t *out)
{
    uint64_t ti = ci >> s->rb_bits;
    int64_t b = rt_block(s, ti);
    uint8_t *rb;
    int ret;

    *out = 0;
    if (b <= 0)
        return (int)b;
    ret = qcow2_cache_get(&s->rb_cache, (uint64_t)b, &rb);
    if (ret < 0)
        return ret;
    *out = qcow2_rb_entry_get(s, rb, ci & (s->rb_entries - 1));
    qcow2_cache_put(&s->rb_cache, rb);
    return 0;
}

int qcow2_refcount_peek(struct qcow2_state *s, uint64_t ci, uint64_t *out)
{
    uint64_t ti = ci >> s->rb_bits;
    uint8_t *rb;

    *out = 0;
    if (ti >= s->rt_entries || !s->rt[ti])
        return 0;
    uint64_t e = s->rt[ti], o = e & QCOW2_RTE_OFFSET_MASK;
    if ((e & QCOW2_RTE_RESERVED) || (o & s->cluster_mask) || o == 0 ||
        o >= QCOW2_MAX_HOST_OFFSET ||
        (s->l1_size && ranges_overlap(o, s->cluster_size, s->l1_offset,
                                      (uint64_t)s->l1_size * 8)) ||
        ranges_overlap(o, s->cluster_size, s->rt_offset,
                       (uint64_t)s->rt_clusters << s->cluster_bits))
        return -EIO;
    int ret = qcow2_cache_get(&s->rb_cache, o, &rb);
    if (ret < 0)
        return ret;
    *out = qcow2_rb_entry_get(s, rb, ci & (s->rb_entries - 1));
    qcow2_cache_put(&s->rb_cache, rb);
    return 0;
}

static int write_header_rt(struct qcow2_state *s, uint64_t rt_offset, uint32_t clusters)
{
    uint8_t b[12];
    qcow2_put_be64(b, rt_offset);
    qcow2_put_be32(b + 8, clusters);
    int ret = kimg_file_pwrite(s->file, b, sizeof(b), 48);
    if (ret < 0)
        return ret;
    if (s->hdr_raw && s->hdr_raw_len >= 60)
        memcpy(s->hdr_raw + 48, b, 12);
    return kimg_file_sync(s->file);
}

static uint64_t file_clusters(struct qcow2_state *s)
{
    uint64_t sz = 0;
    if (kimg_file_size(s->file, &sz) < 0)
        sz = 0;
    return qcow2_align_up(sz, s->cluster_size) >> s->cluster_bits;
}

/* Point refcount table entry TI at the new block at OFF (dirty in the
 * cache): the block reaches the disk before the entry that points at it,
 * and both are synced before the caller relies on them. */
static int link_refblock(struct qcow2_state *s, uint64_t ti, uint64_t off)
{
    int ret = qcow2_cache_flush(&s->rb_cache);
    if (ret < 0)
        return ret;
    uint8_t e[8];
    qcow2_put_be64(e, off);
    ret = kimg_file_pwrite(s->file, e, 8, s->rt_offset + ti * 8);
    if (ret < 0)
        return ret;
    s->rt[ti] = off;
    return kimg_file_sync(s->file);
}

/* Write a refcount table of ENTRIES host-endian entries as TC clusters at
 * OFFSET (big-endian, zero-padded to the clusters). */
static int write_reftable(struct qcow2_state *s, const uint64_t *rt, uint64_t entries,
                          uint64_t tc, uint64_t offset)
{
    uint8_t *tb = kimg_alloc_aligned_zero((size_t)tc * s->cluster_size);
    if (!tb)
        return -ENOMEM;
    for (uint64_t i = 0; i < entries; i++)
        qcow2_put_be64(tb + i * 8, rt[i]);
    int ret = kimg_file_pwrite(s->file, tb, tc << s->cluster_bits, offset);
    free(tb);
    return ret;
}

/* Move the refcount table to a new, larger area at the end of the image
 * holding at least MIN_ENTRIES entries; the area carries the refcount
 * blocks that describe itself. */
static int grow_table(struct qcow2_state *s, uint64_t min_entries)
{
    uint64_t A = file_clusters(s);
    uint64_t old = s->rt_entries;
    uint64_t entries = min_entries > old ? min_entries : old;
    uint64_t nb = 0, tc, end, first_r, last_r;
    uint64_t *nrt = NULL;
    uint8_t *blocks = NULL;
    int ret;

    if (s->alloc_end > A)
        A = s->alloc_end;
    /* leave room: grow by at least half again */
    if (entries < old + old / 2)
        entries = old + old / 2;
    for (int iter = 0;; iter++) {
        tc = qcow2_align_up(entries * 8, s->cluster_size) >> s->cluster_bits;
        end = A + nb + tc;
        first_r = A >> s->rb_bits;
        last_r = (end - 1) >> s->rb_bits;
        uint64_t need = 0;
        for (uint64_t r = first_r; r <= last_r; r++)
            if (r >= old || !s->rt[r])
                need++;
        if (need == nb && entries > last_r)
            break;
        nb = need;
        if (entries <= last_r)
            entries = last_r + 1;
        if (iter > 64)
            return kimg_fail(-EIO, "qcow2: cannot lay out a new refcount table");
    }
    if ((tc << s->cluster_bits) > QCOW2_MAX_RT_BYTES)
        return kimg_fail(-EFBIG, "Reference count table would exceed the maximum size");
    if ((end << s->cluster_bits) >= QCOW2_MAX_HOST_OFFSET)
        return kimg_fail(-EFBIG, "Image file would exceed the maximum offset");

    uint64_t new_entries = (tc << s->cluster_bits) / 8;
    nrt = calloc(new_entries, 8);
    blocks = nb ? kimg_alloc_aligned_zero((size_t)nb * s->cluster_size) : NULL;
    if (!nrt || (nb && !blocks)) {
        ret = -ENOMEM;
        goto out;
    }
    memcpy(nrt, s->rt, old * 8);
    uint64_t k = 0;
    for (uint64_t r = first_r; r <= last_r; r++)
        if (r >= old || !s->rt[r])
            nrt[r] = (A + k++) << s->cluster_bits;
    /* refcounts of the new area */
    for (uint64_t c = A; c < end; c++) {
        uint64_t r = c >> s->rb_bits;
        if (r >= old || !s->rt[r]) {
            uint64_t bi = (nrt[r] >> s->cluster_bits) - A;
            qcow2_rb_entry_set(s, blocks + bi * s->cluster_size,
                               c & (s->rb_entries - 1), 1);
        }
    }
    for (uint64_t c = A; c < end; c++) {
        uint64_t r = c >> s->rb_bits;
        if (r < old && s->rt[r]) {
            ret = qcow2_refcount_set(s, c, 1);
            if (ret < 0)
                goto out;
        }
    }
    if (nb) {
        ret = kimg_file_pwrite(s->file, blocks, nb * s->cluster_size, A << s->cluster_bits);
        if (ret < 0)
            goto out;
    }
    ret = write_reftable(s, nrt, new_entries, tc, (A + nb) << s->cluster_bits);
    if (ret < 0)
        goto out;
    ret = qcow2_cache_flush(&s->rb_cache);
    if (ret < 0)
        goto out;
    ret = kimg_file_sync(s->file);
    if (ret < 0)
        goto out;
    uint64_t old_off = s->rt_offset;
    uint32_t old_clusters = s->rt_clusters;
    ret = write_header_rt(s, (A + nb) << s->cluster_bits, (uint32_t)tc);
    if (ret < 0)
        goto out;
    free(s->rt);
    s->rt = nrt;
    nrt = NULL;
    s->rt_entries = new_entries;
    s->rt_offset = (A + nb) << s->cluster_bits;
    s->rt_clusters = (uint32_t)tc;
    if (end > s->alloc_end)
        s->alloc_end = end;
    ret = qcow2_free_clusters(s, old_off, (uint64_t)old_clusters << s->cluster_bits);
out:
    free(nrt);
    free(blocks);
    return ret;
}

/* Make sure table index TI has a refcount block.  *PREFP (PREFP NULL:
 * none): where the new block should go, the cluster right after the data
 * being allocated; it advances past a block placed there, so the blocks
 * of a long run line up after it instead of cutting it up.  A range
 * without a block at *PREFP first gets its own block there. */
static int ensure_block(struct qcow2_state *s, uint64_t ti, uint64_t *prefp)
{
    uint64_t pref = prefp ? *prefp : UINT64_MAX;
    int64_t b;
    int ret;

    if (ti >= s->rt_entries) {
        ret = grow_table(s, ti + 1);
        if (ret < 0)
            return ret;
    }
    b = rt_block(s, ti);
    if (b != 0)
        return b < 0 ? (int)b : 0;

    if (pref != UINT64_MAX && (pref >> s->rb_bits) != ti &&
        (pref << s->cluster_bits) < QCOW2_MAX_HOST_OFFSET &&
        rt_block(s, pref >> s->rb_bits) == 0) {
        ret = ensure_block(s, pref >> s->rb_bits, prefp);
        if (ret < 0)
            return ret;
        pref = *prefp;
    }
    if (pref != UINT64_MAX && (pref >> s->rb_bits) != ti &&
        (pref << s->cluster_bits) < QCOW2_MAX_HOST_OFFSET &&
        rt_block(s, pref >> s->rb_bits) > 0 &&
        !qcow2_overlaps_main(s, pref << s->cluster_bits, s->cluster_size)) {
        uint64_t rc;
        ret = qcow2_refcount_get(s, pref, &rc);
        if (ret < 0)
            return ret;
        if (rc == 0) {
            /* the first free cluster: no hole left before the data */
            uint64_t off = pref << s->cluster_bits;
            uint8_t *rb;
            ret = qcow2_refcount_set(s, pref, 1);
            if (ret < 0)
                return ret;
            ret = qcow2_cache_get_empty(&s->rb_cache, off, &rb);
            if (ret < 0)
                return ret;
            qcow2_cache_mark_dirty(&s->rb_cache, rb);
            qcow2_cache_put(&s->rb_cache, rb);
            *prefp = pref + 1;
            return link_refblock(s, ti, off);
        }
    }

    /* Every cluster of range TI has refcount 0: place the block in the
     * range itself (so it counts itself), clear of the main metadata, at
     * PREF if that lies in the range (right after the data, as qemu). */
    uint64_t c = ti << s->rb_bits, lim = c + s->rb_entries;
    if (pref != UINT64_MAX && pref >> s->rb_bits == ti)
        c = pref;
    while (c < lim && qcow2_overlaps_main(s, c << s->cluster_bits, s->cluster_size))
        c++;
    if (c == lim || (c << s->cluster_bits) >= QCOW2_MAX_HOST_OFFSET)
        return kimg_fail(-ENOSPC, "qcow2: no room for a refcount block");
    uint64_t off = c << s->cluster_bits;
    uint8_t *rb;
    ret = qcow2_cache_get_empty(&s->rb_cache, off, &rb);
    if (ret < 0)
        return ret;
    qcow2_rb_entry_set(s, rb, c & (s->rb_entries - 1), 1);
    qcow2_cache_mark_dirty(&s->rb_cache, rb);
    qcow2_cache_put(&s->rb_cache, rb);
    if (c + 1 > s->alloc_end)
        s->alloc_end = c + 1;
    if (c == pref)
        *prefp = pref + 1;
    return link_refblock(s, ti, off);
}

int qcow2_refcount_set(struct qcow2_state *s, uint64_t ci, uint64_t value)
{
    uint64_t ti = ci >> s->rb_bits;
    uint8_t *rb;
    int ret;

    if (value > s->refcount_max)
        return kimg_fail(-ERANGE, "qcow2: refcount overflow for cluster %#" PRIx64,
                         ci << s->cluster_bits);
    if (value == 0 && (ti >= s->rt_entries || !s->rt[ti]))
        return 0;
    ret = ensure_block(s, ti, NULL);
    if (ret < 0)
        return ret;
    int64_t b = rt_block(s, ti);
    if (b <= 0)
        return b < 0 ? (int)b : -EIO;
    ret = qcow2_cache_get(&s->rb_cache, (uint64_t)b, &rb);
    if (ret < 0)
        return ret;
    qcow2_rb_entry_set(s, rb, ci & (s->rb_entries - 1), value);
    qcow2_cache_mark_dirty(&s->rb_cache, rb);
    qcow2_cache_put(&s->rb_cache, rb);
    if (value == 0 && ci < s->free_hint)
        s->free_hint = ci;
    if (value && ci + 1 > s->alloc_end)
        s->alloc_end = ci + 1;
    return 0;
}

int qcow2_refcount_update(struct qcow2_state *s, uint64_t offset, uint64_t len,
                          int64_t delta)
{
    qcow2_assert_locked(s);
    if (!len)
        return 0;
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    for (uint64_t c = first; c <= last; c++) {
        uint64_t rc;
        int ret = qcow2_refcount_get(s, c, &rc);
        if (ret < 0)
            return ret;
        if (delta < 0 && rc < (uint64_t)-delta)
            return qcow2_signal_corruption(s, "Preventing invalid free of cluster %#"
                                           PRIx64 " (refcount %" PRIu64 ")",
                                           c << s->cluster_bits, rc);
        if (delta > 0 && rc > s->refcount_max - (uint64_t)delta)
            return kimg_fail(-ERANGE, "qcow2: refcount overflow for cluster %#" PRIx64,
                             c << s->cluster_bits);
        uint64_t nv = rc + (uint64_t)delta;
        ret = qcow2_refcount_set(s, c, nv);
        if (ret < 0)
            return ret;
        if (nv == 0) {
            qcow2_cache_discard(&s->l2_cache, c << s->cluster_bits);
            qcow2_cache_discard(&s->rb_cache, c << s->cluster_bits);
            qcow2_note_freed(s, c);
        }
    }
    return 0;
}

void qcow2_note_freed(struct qcow2_state *s, uint64_t ci)
{
    struct qcow2_freed *f = s->freed;
    if (!f)
        return;
    if (f->n && f->start[f->n - 1] + f->count[f->n - 1] == ci) {
        f->count[f->n - 1]++;
        return;
    }
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 64;
        if (f->cap >= QCOW2_FREED_MAX)
            return;
        uint64_t *a = realloc(f->start, nc * sizeof(*a));
        if (!a)
            return;
        f->start = a;
        uint64_t *b = realloc(f->count, nc * sizeof(*b));
        if (!b)
            return;
        f->count = b;
        f->cap = nc;
    }
    f->start[f->n] = ci;
    f->count[f->n] = 1;
    f->n++;
}

int qcow2_free_clusters(struct qcow2_state *s, uint64_t offset, uint64_t len)
{
    return qcow2_refcount_update(s, offset, len, -1);
}

int qcow2_alloc_clusters(struct qcow2_state *s, uint64_t n, uint64_t *offset)
{
    uint64_t start = s->free_hint;
    int ret;

    qcow2_assert_locked(s);
    if (n == 0)
        return -EINVAL;
    for (int restarts = 0;; restarts++) {
        uint64_t run_start = start, run_len = 0, c = start;
        while (run_len < n) {
            if ((c + 1) << s->cluster_bits > QCOW2_MAX_HOST_OFFSET || c + 1 == 0)
                return kimg_fail(-ENOSPC, "qcow2: image file is full");
            uint64_t ti = c >> s->rb_bits;
            int64_t b = rt_block(s, ti);
            if (b < 0)
                return (int)b;
            if (b == 0) {
                /* a whole range without a block: free, except metadata */
                uint64_t lim = (ti + 1) << s->rb_bits;
                for (; c < lim && run_len < n; c++) {
                    if (qcow2_overlaps_main(s, c << s->cluster_bits, s->cluster_size)) {
                        run_start = c + 1;
                        run_len = 0;
                    } else {
                        run_len++;
                    }
                }
                continue;
            }
            uint8_t *rb;
            ret = qcow2_cache_get(&s->rb_cache, (uint64_t)b, &rb);
            if (ret < 0)
                return ret;
            uint64_t lim = (ti + 1) << s->rb_bits;
            for (; c < lim && run_len < n; c++) {
                if (qcow2_rb_entry_get(s, rb, c & (s->rb_entries - 1)) ||
                    qcow2_overlaps_main(s, c << s->cluster_bits, s->cluster_size)) {
                    run_start = c + 1;
                    run_len = 0;
                } else {
                    run_len++;
                }
            }
            qcow2_cache_put(&s->rb_cache, rb);
        }
        /* blocks for the ranges the run touches */
        bool changed = false;
        uint64_t r0 = run_start >> s->rb_bits, r1 = (run_start + n - 1) >> s->rb_bits;
        /* a run (and a block per range after it) reaching past the table:
         * grow the table first, placed after the run, then search again */
        uint64_t reach = (run_start + n + (r1 - r0) + 2) >> s->rb_bits;
        if (reach >= s->rt_entries) {
            if (restarts > 16)
                return kimg_fail(-EIO, "qcow2: cluster allocation does not converge");
            if (s->alloc_end < run_start + n)
                s->alloc_end = run_start + n;
            ret = grow_table(s, reach + 1);
            if (ret < 0)
                return ret;
            continue;
        }
        /* new blocks go after the run, or after everything in use */
        uint64_t pref = run_start + n > s->alloc_end ? run_start + n : s->alloc_end;
        for (uint64_t r = r0; r <= r1; r++) {
            if (r < s->rt_entries && s->rt[r])
                continue;
            ret = ensure_block(s, r, &pref);
            if (ret < 0)
                return ret;
            changed = true;
        }
        if (changed) {
            if (restarts > 16)
                return kimg_fail(-EIO, "qcow2: cluster allocation does not converge");
            continue;   /* the new blocks may sit in the run: search again */
        }
        for (uint64_t i = 0; i < n; i++) {
            ret = qcow2_refcount_set(s, run_start + i, 1);
            if (ret < 0)
                return ret;
        }
        if (n == 1 || run_start == s->free_hint)
            s->free_hint = run_start + n;
        *offset = run_start << s->cluster_bits;
        return 0;
    }
}

/* ---- counting references ------------------------------------------------- */

struct refcounter {
    struct qcow2_state *s;
    uint32_t *refs;
    uint64_t nb;
    uint64_t *bad;
};

static void count_range(struct refcounter *rc, uint64_t offset, uint64_t len)
{
    if (!len)
        return;
    uint64_t first = offset >> rc->s->cluster_bits;
    uint64_t last = (offset + len - 1) >> rc->s->cluster_bits;
    for (uint64_t c = first; c <= last; c++) {
        if (c >= rc->nb) {
            if (rc->bad)
                (*rc->bad)++;
            continue;
        }
        if (rc->refs[c] != UINT32_MAX)
            rc->refs[c]++;
    }
}

static int count_l1(struct refcounter *rc, const uint64_t *l1, uint32_t l1_size)
{
    struct qcow2_state *s = rc->s;
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2off)
            continue;
        uint64_t l2c = l2off >> s->cluster_bits;
        if ((l2off & s->cluster_mask) || l2c >= rc->nb) {
            if (rc->bad)
                (*rc->bad)++;
            continue;
        }
        /* a table seen more often than there are L1 tables is corrupt;
         * do not walk it again (bounds the work on hostile images) */
        bool walk = rc->refs[l2c] < (uint64_t)s->nb_snapshots + 1;
        count_range(rc, l2off, s->cluster_size);
        if (!walk)
            continue;
        uint8_t *l2;
        int ret = qcow2_cache_get(&s->l2_cache, l2off, &l2);
        if (ret < 0)
            return ret;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = qcow2_be64(l2 + j * s->l2_entry_size);
            if (e & QCOW2_OFLAG_COMPRESSED) {
                uint64_t host, len;
                qcow2_compressed_range(s, e, &host, &len);
                count_range(rc, host, len);
                continue;
            }
            uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
            if (!off || s->has_data_file)
                continue;
            if (off & s->cluster_mask) {
                if (rc->bad)
                    (*rc->bad)++;
                continue;
            }
            count_range(rc, off, s->cluster_size);
        }
        qcow2_cache_put(&s->l2_cache, l2);
    }
    return 0;
}

int qcow2_count_references(struct qcow2_state *s, uint32_t *refs, uint64_t nb,
                           uint64_t *bad)
{
    struct refcounter rc = { s, refs, nb, bad };
    int ret;

    count_range(&rc, 0, s->cluster_size);
    if (s->has_crypto_ext)
        count_range(&rc, s->crypto_hdr_offset, s->crypto_hdr_length);
    count_range(&rc, s->l1_offset, (uint64_t)s->l1_size * 8);
    ret = count_l1(&rc, s->l1, s->l1_size);
    if (ret < 0)
        return ret;
    count_range(&rc, s->rt_offset, (uint64_t)s->rt_clusters << s->cluster_bits);
    for (uint64_t i = 0; i < s->rt_entries; i++) {
        uint64_t o = s->rt[i] & QCOW2_RTE_OFFSET_MASK;
        if (o)
            count_range(&rc, o, s->cluster_size);
    }
    if (s->nb_snapshots) {
        count_range(&rc, s->snapshots_offset, s->snapshots_size);
        for (uint32_t i = 0; i < s->nb_snapshots; i++) {
            struct qcow2_snapshot *sn = &s->snapshots[i];
            uint64_t *l1 = NULL;
            uint32_t n = 0;
            if (!sn->l1_size)
                continue;
            /* a damaged entry counts as qemu's check counts it: unaligned
             * or too large, not at all; past the end of the file, the part
             * of the table inside the file.  That frees what only it
             * references: check -r alone may (as qemu's); a rebuild of a
             * dirty image or a downgrade refuses (qemu's message). */
            if (sn->l1_invalid && !(s->img && (s->img->flags & KIMG_OPEN_REPAIR)))
                return qcow2_snapshot_check_l1(s, sn);
            if (sn->l1_invalid && ((sn->l1_offset & s->cluster_mask) ||
                                   (uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES))
                continue;
            uint64_t fsz = 0;
            ret = kimg_file_size(s->file, &fsz);
            if (ret < 0)
                return ret;
            if (!sn->l1_invalid || !qcow2_snapshot_l1_past_eof(s, sn, fsz))
                count_range(&rc, sn->l1_offset, (uint64_t)sn->l1_size * 8);
            ret = qcow2_snapshot_l1_in_file(s, sn, fsz, &l1, &n);
            if (ret < 0)
                return ret;
            ret = count_l1(&rc, l1, n);
            free(l1);
            if (ret < 0)
                return ret;
        }
    }
    if (s->has_bitmaps_ext && s->bitmaps) {
        count_range(&rc, s->bitmap_dir_offset, s->bitmap_dir_size);
        for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
            struct qcow2_bitmap *b = &s->bitmaps[i];
            uint64_t bytes = (uint64_t)b->table_size * 8;
            if (!bytes)
                continue;
            count_range(&rc, b->table_offset, bytes);
            uint8_t *t = kimg_alloc_aligned(bytes);
            if (!t)
                return -ENOMEM;
            ret = kimg_file_pread(s->file, t, bytes, b->table_offset);
            if (ret < 0) {
                free(t);
                return ret;
            }
            for (uint32_t j = 0; j < b->table_size; j++) {
                uint64_t o = qcow2_be64(t + (uint64_t)j * 8) & QCOW2_L2E_OFFSET_MASK;
                if (o)
                    count_range(&rc, o, s->cluster_size);
            }
            free(t);
        }
    }
    return 0;
}

/* ---- rebuild -------------------------------------------------------------- */

#define QCOW2_MAX_REBUILD_CLUSTERS (1ULL << 28)

/* The rebuild's layout (qemu's in-memory refcount table): counts for TOT
 * clusters (REFS, grown with zeros past the file), the new table RT. */
struct layout {
    struct qcow2_state *s;
    uint32_t *refs;
    uint64_t tot;
    uint64_t cap;
    uint64_t *rt;               /* host offsets of the new refcount blocks */
    uint64_t rt_entries;
};

/* qemu's alloc_clusters_imrt: the first N contiguous free clusters from
 * *FIRST_FREE (growing the counts past their end), set to 1. */
static int lay_alloc(struct layout *L, uint64_t n, uint64_t *first_free, uint64_t *out)
{
    uint64_t c, run = 0;
    bool first_gap = true;

    for (c = *first_free; c < L->tot && run < n; c++) {
        if (!L->refs[c]) {
            run++;
            if (first_gap) {
                *first_free = c;
                first_gap = false;
            }
        } else {
            run = 0;
        }
    }
    uint64_t start = c - run;
    if (start + n > L->tot) {
        uint64_t want = start + n;
        if (want > 2 * QCOW2_MAX_REBUILD_CLUSTERS)
            return kimg_fail(-EFBIG, "Image too large to rebuild its refcounts");
        if (want > L->cap) {
            uint64_t ncap = want + want / 8 + 16;
            uint32_t *v = realloc(L->refs, ncap * sizeof(*v));
            if (!v)
                return -ENOMEM;
            memset(v + L->cap, 0, (ncap - L->cap) * sizeof(*v));
            L->refs = v;
            L->cap = ncap;
        }
        L->tot = want;
    }
    for (uint64_t i = 0; i < n; i++)
        L->refs[start + i] = 1;
    *out = start;
    return 0;
}

/* qemu's rebuild_refcounts_write_refblocks (placement only): a refcount
 * block for each range of [FIRST, END) holding a used cluster.  Returns 1
 * if the table had to grow, 0, or -errno. */
static int lay_refblocks(struct layout *L, uint64_t first, uint64_t end)
{
    struct qcow2_state *s = L->s;
    uint64_t ff = 0;
    int grown = 0;

    for (uint64_t c = first; c < end; c++) {
        if (c >= L->tot || !L->refs[c])
            continue;
        uint64_t ri = c >> s->rb_bits, rs = ri << s->rb_bits;
        if (ri >= L->rt_entries || !L->rt[ri]) {
            uint64_t bc;
            if (ff < rs)
                ff = rs;
            int ret = lay_alloc(L, 1, &ff, &bc);
            if (ret < 0)
                return ret;
            if (bc >= end)
                end = bc + 1;
            if (ri >= L->rt_entries) {
                uint64_t ne = qcow2_align_up((ri + 1) * 8, s->cluster_size) / 8;
                if (ne * 8 > QCOW2_MAX_RT_BYTES)
                    return kimg_fail(-EFBIG, "Reference count table would exceed the "
                                     "maximum size");
                uint64_t *v = realloc(L->rt, ne * sizeof(*v));
                if (!v)
                    return -ENOMEM;
                memset(v + L->rt_entries, 0, (ne - L->rt_entries) * sizeof(*v));
                L->rt = v;
                L->rt_entries = ne;
                grown = 1;
            }
            L->rt[ri] = bc << s->cluster_bits;
        }
        c = rs + s->rb_entries - 1;
    }
    return grown;
}

int qcow2_rebuild_refcounts(struct qcow2_state *s)
{
    uint64_t nb, bad = 0;
    uint32_t *refs = NULL;
    uint64_t *nrt = NULL;
    uint8_t *buf = NULL;
    int ret;

    qcow2_assert_locked(s);
    ret = qcow2_cache_flush(&s->l2_cache);
    if (ret < 0)
        return ret;
    nb = file_clusters(s);
    if (s->alloc_end > nb)
        nb = s->alloc_end;
    if (nb > QCOW2_MAX_REBUILD_CLUSTERS)
        return kimg_fail(-EFBIG, "Image too large to rebuild its refcounts");
    refs = calloc(nb ? nb : 1, sizeof(*refs));
    if (!refs)
        return -ENOMEM;
    s->rebuilding = true;
    ret = qcow2_count_references(s, refs, nb, &bad);
    if (ret < 0)
        goto out;
    if (bad) {
        ret = kimg_fail(-EIO, "Cannot rebuild refcounts: %" PRIu64 " references point "
                        "outside the image or are misaligned", bad);
        goto out;
    }
    /* Layout as qemu's rebuild_refcount_structure: each refcount block
     * first-fit (at or after the start of the range it covers) in clusters
     * the computed refcounts show free, the old structure counted as used
     * (it stays intact until the header switches to the new one), then the
     * table first-fit and contiguous, again while its size changes. */
    struct layout L = { s, refs, nb, nb, NULL, 0 };
    refs = NULL;        /* owned by L now */
    ret = lay_refblocks(&L, 0, L.tot);
    uint64_t tstart = 0, tc = 0;
    for (int iter = 0; ret > 0; iter++) {
        uint64_t ff = 0;
        tc = (L.rt_entries * 8) >> s->cluster_bits;
        if (iter > 64 || (tc << s->cluster_bits) > QCOW2_MAX_RT_BYTES) {
            ret = kimg_fail(-EFBIG, "Reference count table would exceed the maximum size");
            break;
        }
        ret = lay_alloc(&L, tc, &ff, &tstart);
        if (ret < 0)
            break;
        ret = lay_refblocks(&L, tstart, tstart + tc);
        if (ret > 0)
            for (uint64_t i = 0; i < tc; i++)
                L.refs[tstart + i] = 0;
    }
    refs = L.refs;
    nrt = L.rt;
    if (ret < 0)
        goto out;
    /* the old refcount structures are dropped: they become free space */
    {
        uint64_t first = s->rt_offset >> s->cluster_bits;
        for (uint64_t c = first; c < first + s->rt_clusters && c < nb; c++)
            if (refs[c])
                refs[c]--;
        for (uint64_t i = 0; i < s->rt_entries; i++) {
            uint64_t c = (s->rt[i] & QCOW2_RTE_OFFSET_MASK) >> s->cluster_bits;
            if (c && c < nb && refs[c])
                refs[c]--;
        }
    }
    uint64_t new_entries = L.rt_entries;
    uint64_t end = L.tot;
    buf = kimg_alloc_aligned(s->cluster_size);
    if (!buf) {
        ret = -ENOMEM;
        goto out;
    }
    for (uint64_t r = 0; r < new_entries; r++) {
        if (!nrt[r])
            continue;
        uint64_t c0 = r << s->rb_bits, c1 = c0 + s->rb_entries;
        memset(buf, 0, s->cluster_size);
        for (uint64_t c = c0; c < c1 && c < end; c++) {
            uint64_t v = refs[c];
            if (v > s->refcount_max) {
                ret = kimg_fail(-ERANGE, "Cannot rebuild refcounts: cluster %#" PRIx64
                                " has %" PRIu64 " references, more than %u-bit "
                                "refcounts hold", c << s->cluster_bits, v,
                                s->refcount_bits);
                goto out;
            }
            if (v)
                qcow2_rb_entry_set(s, buf, c - c0, v);
        }
        ret = kimg_file_pwrite(s->file, buf, s->cluster_size, nrt[r]);
        if (ret < 0)
            goto out;
    }
    ret = write_reftable(s, nrt, new_entries, tc, tstart << s->cluster_bits);
    if (ret < 0)
        goto out;
    ret = kimg_file_sync(s->file);
    if (ret < 0)
        goto out;
    ret = write_header_rt(s, tstart << s->cluster_bits, (uint32_t)tc);
    if (ret < 0)
        goto out;
    qcow2_cache_clear(&s->rb_cache);
    free(s->rt);
    s->rt = nrt;
    nrt = NULL;
    s->rt_entries = new_entries;
    s->rt_offset = tstart << s->cluster_bits;
    s->rt_clusters = (uint32_t)tc;
    if (end > s->alloc_end)
        s->alloc_end = end;
    s->free_hint = 0;
    ret = 0;
out:
    s->rebuilding = false;
    free(refs);
    free(nrt);
    free(buf);
    return ret;
}
