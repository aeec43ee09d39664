/*
 * amend_compat.c — amend -o compat: version 2 <-> 3, as qemu's
 * qcow2_upgrade / qcow2_downgrade.  Up: snapshot entries given the extra
 * data v3 requires (a new table, switched to in the same header write as
 * the version), the feature name table added.  Down: refused for what v2
 * cannot hold (refcount width, data file, snapshots of another size or a
 * VM state past 4 GiB, incompatible features, zstd-compressed clusters);
 * zero clusters expanded first (every state in between reads the same),
 * then one header write makes the image v2; persistent bitmaps, which v2
 * cannot keep, are dropped with it and their clusters freed after.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* ---- upgrade ---------------------------------------------------------- */

int qcow2_amend_upgrade(struct qcow2_state *s)
{
    uint64_t new_sn = 0, sn_len = 0, fsz = 0;
    uint8_t *t = NULL;
    bool rewrite = false;
    int ret;

    /* v3 snapshot entries carry the 64-bit VM state size and disk size */
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (s->snapshots[i].extra_len < 16)
            rewrite = true;
    if (rewrite) {
        ret = qcow2_snapshot_encode(s, s->snapshots, s->nb_snapshots, &t, &sn_len);
        if (ret == 0)
            ret = qcow2_alloc_clusters(s, qcow2_align_up(sn_len, s->cluster_size) >>
                                              s->cluster_bits, &new_sn);
        if (ret == 0)
            ret = qcow2_flush_caches(s);
        if (ret == 0)
            ret = kimg_file_pwrite(s->file, t, sn_len, new_sn);
        if (ret == 0)
            ret = kimg_file_sync(s->file);
        free(t);
        if (ret < 0)
            return kimg_fail(ret, "Failed to update the snapshot table: %s", strerror(-ret));
    }
    uint64_t old_sn = s->snapshots_offset, old_sn_size = s->snapshots_size;
    s->version = 3;
    s->header_length = QCOW2_HEADER_LEN_CT;
    s->compression_type = QCOW2_COMPRESSION_ZLIB;
    s->incompat = s->compat = s->autoclear = 0;
    s->refcount_order = 4;
    ret = s->cluster_size >= 8192 ? qcow2_add_feature_table(s) : 0;
    if (rewrite)
        s->snapshots_offset = new_sn;
    if (ret == 0)
        ret = qcow2_write_header(s);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0) {
        s->version = 2;
        s->header_length = QCOW2_V2_HEADER_LEN;
        s->snapshots_offset = old_sn;
        return kimg_fail(ret, "Failed to update the image header: %s", strerror(-ret));
    }
    if (!rewrite)
        return 0;
    /* the old table is free now; the entries are read back as written */
    s->snapshots_size = sn_len;
    ret = qcow2_free_clusters(s, old_sn, qcow2_align_up(old_sn_size, s->cluster_size));
    if (ret == 0)
        ret = kimg_file_size(s->file, &fsz);
    if (ret == 0) {
        qcow2_free_snapshots(s);
        ret = qcow2_read_snapshots(s, fsz, false);
    }
    return ret;
}

/* ---- walking every L2 table once ------------------------------------------ */

/* Visit each L2 table referenced by the active L1 table or a snapshot's,
 * once, calling FN(s, l2_offset, l2_refcount, opaque). */
struct l2_walk {
    uint8_t *seen;              /* one bit per host cluster of the file */
    uint64_t nclusters;
};

static int walk_l1(struct qcow2_state *s, struct l2_walk *w, const uint64_t *l1, uint32_t n,
                   int (*fn)(struct qcow2_state *, uint64_t, uint64_t, void *), void *opaque)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2 = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2)
            continue;
        uint64_t c = l2 >> s->cluster_bits;
        if ((l2 & s->cluster_mask) || c >= w->nclusters)
            return qcow2_signal_corruption(s, "L2 table offset %#" PRIx64 " invalid "
                                           "(L1 index: %#" PRIx32 ")", l2, i);
        if (w->seen[c / 8] & (1u << (c % 8)))
            continue;
        w->seen[c / 8] |= (uint8_t)(1u << (c % 8));
        uint64_t rc;
        int ret = qcow2_refcount_get(s, c, &rc);
        if (ret == 0)
            ret = fn(s, l2, rc, opaque);
        if (ret)
            return ret;
    }
    return 0;
}

static int walk_all_l2(struct qcow2_state *s,
                       int (*fn)(struct qcow2_state *, uint64_t, uint64_t, void *), void *opaque)
{
    struct l2_walk w;
    uint64_t fsz;
    int ret = kimg_file_size(s->file, &fsz);
    if (ret < 0)
        return ret;
    w.nclusters = qcow2_align_up(fsz, s->cluster_size) >> s->cluster_bits;
    w.seen = calloc(w.nclusters / 8 + 1, 1);
    if (!w.seen)
        return -ENOMEM;
    ret = walk_l1(s, &w, s->l1, s->l1_size, fn, opaque);
    for (uint32_t i = 0; ret == 0 && i < s->nb_snapshots; i++) {
        uint64_t *l1 = NULL;
        ret = qcow2_snapshot_check_l1(s, &s->snapshots[i]);     /* as qemu, even if empty */
        if (ret < 0)
            break;
        if (!s->snapshots[i].l1_size)
            continue;
        ret = qcow2_read_l1(s, s->snapshots[i].l1_offset, s->snapshots[i].l1_size, &l1);
        if (ret == 0)
            ret = walk_l1(s, &w, l1, s->snapshots[i].l1_size, fn, opaque);
        free(l1);
    }
    free(w.seen);
    return ret;
}

/* ---- zstd and compressed clusters --------------------------------------- */

static int find_compressed(struct qcow2_state *s, uint64_t l2off, uint64_t l2rc, void *opaque)
{
    uint8_t *l2;
    int ret = qcow2_cache_get(&s->l2_cache, l2off, &l2), found = 0;
    if (ret < 0)
        return ret;
    for (uint64_t j = 0; j < s->l2_entries && !found; j++)
        found = (qcow2_be64(l2 + j * s->l2_entry_size) & QCOW2_OFLAG_COMPRESSED) != 0;
    qcow2_cache_put(&s->l2_cache, l2);
    (void)l2rc;
    (void)opaque;
    return found;   /* 1 stops the walk */
}

/* ---- zero cluster expansion ------------------------------------------------ */

/* One L2 table: zero clusters become data clusters holding zeros (or, with
 * no backing file, unallocated clusters), as qemu's
 * expand_zero_clusters_in_l1.  New clusters get the L2 table's refcount
 * (a table shared with snapshots counts once per owner).  Order: new
 * refcounts on disk, zeros written and synced, then the L2 entries;
 * clusters no longer referenced are freed last. */
static int expand_l2(struct qcow2_state *s, uint64_t l2off, uint64_t l2rc, void *opaque)
{
    bool backing = *(bool *)opaque;
    uint64_t *newe = NULL, *zero_at = NULL, *old_free = NULL;
    uint64_t nz = 0, nfree = 0;
    uint8_t *l2 = NULL;
    int ret;

    newe = calloc(s->l2_entries, sizeof(*newe));
    zero_at = calloc(s->l2_entries, sizeof(*zero_at));
    old_free = calloc(s->l2_entries, sizeof(*old_free));
    if (!newe || !zero_at || !old_free) {
        ret = -ENOMEM;
        goto out;
    }
    ret = qcow2_cache_get(&s->l2_cache, l2off, &l2);
    if (ret < 0)
        goto out;
    bool any = false;
    for (uint64_t j = 0; j < s->l2_entries; j++) {
        uint64_t e = qcow2_be64(l2 + j * s->l2_entry_size);
        enum qcow2_sc_type ty;
        newe[j] = e;
        ret = qcow2_sc_type(s, e, 0, 0, &ty);
        if (ret < 0)
            goto out;
        if (ty != QCOW2_SC_ZERO_PLAIN && ty != QCOW2_SC_ZERO_ALLOC)
            continue;
        any = true;
        uint64_t host = e & QCOW2_L2E_OFFSET_MASK, rc = 0;
        if (ty == QCOW2_SC_ZERO_ALLOC) {
            ret = qcow2_refcount_get(s, host >> s->cluster_bits, &rc);
            if (ret < 0)
                goto out;
            if (rc == 0) {
                ret = qcow2_signal_corruption(s, "Zero cluster at %#" PRIx64 " has "
                                              "refcount 0", host);
                goto out;
            }
        }
        if (ty == QCOW2_SC_ZERO_PLAIN && !backing) {
            newe[j] = 0;        /* unallocated reads zeros without a backing file */
            continue;
        }
        if (ty == QCOW2_SC_ZERO_ALLOC && rc <= l2rc) {
            /* referenced through this table only: zeroed in place */
            zero_at[nz++] = host;
            newe[j] = host | (rc == 1 ? QCOW2_OFLAG_COPIED : 0);
            continue;
        }
        /* unallocated (a backing file would show through), or a cluster
         * other tables reference too (a snapshot's): a fresh cluster of
         * zeros, counted once per owner of this table */
        uint64_t fresh;
        qcow2_cache_put(&s->l2_cache, l2);
        l2 = NULL;
        ret = qcow2_alloc_clusters(s, 1, &fresh);
        if (ret == 0 && l2rc > 1)
            ret = qcow2_refcount_set(s, fresh >> s->cluster_bits, l2rc);
        if (ret == 0)
            ret = qcow2_cache_get(&s->l2_cache, l2off, &l2);
        if (ret < 0)
            goto out;
        zero_at[nz++] = fresh;
        newe[j] = fresh | (l2rc == 1 ? QCOW2_OFLAG_COPIED : 0);
        if (host)
            old_free[nfree++] = host;
    }
    if (!any)
        goto out;
    qcow2_cache_put(&s->l2_cache, l2);
    l2 = NULL;
    ret = qcow2_cache_flush(&s->rb_cache);
    /* zeroed on the host as qemu's bdrv_pwrite_zeroes: kept allocated */
    for (uint64_t i = 0; ret == 0 && i < nz; i++) {
        if (qcow2_overlaps_metadata(s, zero_at[i], s->cluster_size))
            ret = qcow2_signal_corruption(s, "Preventing a zero write to %#" PRIx64
                                          ": it overlaps metadata", zero_at[i]);
        else
            ret = kimg_file_zero(s->file, zero_at[i], s->cluster_size, false);
    }
    if (ret == 0 && nz)
        ret = kimg_file_sync(s->file);
    if (ret == 0)
        ret = qcow2_cache_get(&s->l2_cache, l2off, &l2);
    if (ret < 0)
        goto out;
    for (uint64_t j = 0; j < s->l2_entries; j++)
        qcow2_put_be64(l2 + j * s->l2_entry_size, newe[j]);
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    qcow2_cache_put(&s->l2_cache, l2);
    l2 = NULL;
    ret = qcow2_cache_flush(&s->l2_cache);
    for (uint64_t i = 0; ret == 0 && i < nfree; i++)
        ret = qcow2_refcount_update(s, old_free[i], s->cluster_size, -(int64_t)l2rc);
out:
    if (l2)
        qcow2_cache_put(&s->l2_cache, l2);
    free(newe);
    free(zero_at);
    free(old_free);
    return ret;
}

/* ---- bitmaps, which v2 cannot keep --------------------------------------- */

struct freelist {
    uint64_t *off;
    size_t n, cap;
};

static int fl_add(struct freelist *f, uint64_t off)
{
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 64;
        uint64_t *v = realloc(f->off, nc * sizeof(*v));
        if (!v)
            return -ENOMEM;
        f->off = v;
        f->cap = nc;
    }
    f->off[f->n++] = off;
    return 0;
}

/* Queue the cluster at OFF to be freed, unless it is not a cluster of the
 * file or is other metadata: a hostile table must not free those (left
 * alone, a bad one leaks at worst). */
static int fl_add_checked(struct qcow2_state *s, struct freelist *f, uint64_t off,
                          uint64_t file_size)
{
    if ((off & s->cluster_mask) || off >= file_size ||
        qcow2_overlaps_metadata(s, off, s->cluster_size))
        return 0;
    return fl_add(f, off);
}

/* Every cluster the bitmaps hold that can be freed: directory, tables and
 * bitmap data.  The tables of in-use bitmaps were never validated
 * (bitmap.c reads only the others), so every cluster is checked here:
 * one a table names on other metadata or past the file is left alone. */
static int bitmap_clusters(struct qcow2_state *s, struct freelist *f)
{
    uint64_t file_size = 0;
    int ret = kimg_file_size(s->file, &file_size);
    /* the directory counts as main metadata while the extension is on */
    bool had = s->has_bitmaps_ext;
    s->has_bitmaps_ext = false;
    for (uint64_t o = 0; ret == 0 && o < s->bitmap_dir_size; o += s->cluster_size)
        ret = fl_add_checked(s, f, (s->bitmap_dir_offset & ~s->cluster_mask) + o, file_size);
    for (uint32_t i = 0; ret == 0 && i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *b = &s->bitmaps[i];
        uint64_t bytes = (uint64_t)b->table_size * 8;
        if (!bytes || b->table_offset > file_size ||
            bytes > file_size - b->table_offset)
            continue;
        uint8_t *t = kimg_alloc_aligned(bytes);
        if (!t) {
            ret = -ENOMEM;
            break;
        }
        ret = kimg_file_pread(s->file, t, bytes, b->table_offset);
        for (uint64_t o = 0; ret == 0 && o < bytes; o += s->cluster_size)
            ret = fl_add_checked(s, f, b->table_offset + o, file_size);
        for (uint32_t j = 0; ret == 0 && j < b->table_size; j++) {
            uint64_t d = qcow2_be64(t + (uint64_t)j * 8) & QCOW2_L2E_OFFSET_MASK;
            if (d)
                ret = fl_add_checked(s, f, d, file_size);
        }
        free(t);
    }
    s->has_bitmaps_ext = had;
    return ret;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void forget_bitmaps(struct qcow2_state *s)
{
    qcow2_bitmaps_free(s);
    if (s->bitmaps)
        for (uint32_t i = 0; i < s->nb_bitmaps; i++)
            free(s->bitmaps[i].name);
    free(s->bitmaps);
    s->bitmaps = NULL;
    s->nb_bitmaps = 0;
    s->has_bitmaps_ext = false;
}

/* ---- downgrade ------------------------------------------------------------- */

int qcow2_amend_downgrade(struct qcow2_state *s)
{
    struct freelist bm = { 0 };
    int ret;

    if (s->refcount_order != 4)
        return kimg_fail(-ENOTSUP, "compat=0.10 requires refcount_bits=16");
    if (s->has_data_file)
        return kimg_fail(-ENOTSUP, "Cannot downgrade an image with a data file");
    /* zero clusters would become host zeros, which decrypt to garbage
     * (qemu 7.2 does just that): refused instead */
    if (qcow2_encrypted(s))
        return kimg_fail(-ENOTSUP, "Cannot downgrade an encrypted image (its zero clusters "
                         "cannot be expanded)");
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (sn->vm_state_size > UINT32_MAX || (sn->has_disk_size && sn->disk_size != s->img->size))
            return kimg_fail(-ENOTSUP, "Internal snapshots prevent downgrade of image");
    }
    if (s->incompat & QCOW2_INCOMPAT_DIRTY) {
        ret = qcow2_rebuild_refcounts(s);
        if (ret == 0)
            ret = qcow2_update_incompat(s, 0, QCOW2_INCOMPAT_DIRTY);
        if (ret < 0)
            return kimg_fail(ret, "Failed to make the image clean: %s", strerror(-ret));
    }
    if (s->incompat & ~QCOW2_INCOMPAT_COMPRESS)
        return kimg_fail(-ENOTSUP, "Cannot downgrade an image with incompatible features "
                         "%#" PRIx64 " set", (uint64_t)(s->incompat & ~QCOW2_INCOMPAT_COMPRESS));
    /* qemu refuses a damaged snapshot L1 table when its expansion of zero
     * clusters reaches it: kimg before anything changes */
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        ret = qcow2_snapshot_check_l1(s, &s->snapshots[i]);
        if (ret < 0)
            return ret;
    }
    /* zstd data cannot be read by a v2 reader (zlib only): checked before
     * anything changes (qemu checks after expanding zero clusters) */
    if (s->incompat & QCOW2_INCOMPAT_COMPRESS) {
        ret = walk_all_l2(s, find_compressed, NULL);
        if (ret < 0)
            return kimg_fail(-EINVAL, "Failed to check block status");
        if (ret > 0)
            return kimg_fail(-ENOTSUP, "Cannot downgrade an image with zstd compression "
                             "type and existing compressed clusters");
    }
    bool backing = s->img->backing_name != NULL;
    ret = walk_all_l2(s, expand_l2, &backing);
    if (ret < 0)
        return kimg_fail(ret, "Failed to turn zero into data clusters: %s", strerror(-ret));
    ret = qcow2_flush_caches(s);
    if (ret < 0)
        return ret;

    bool drop_bitmaps = s->has_bitmaps_ext && s->bitmaps;
    if (drop_bitmaps && (ret = bitmap_clusters(s, &bm)) < 0)
        goto out;
    /* one header write: v2, no feature bits, no v3 extensions */
    uint32_t old_hlen = s->header_length;
    uint64_t old_incompat = s->incompat, old_compat = s->compat, old_autoclear = s->autoclear;
    uint8_t old_ct = s->compression_type;
    s->version = 2;
    s->header_length = QCOW2_V2_HEADER_LEN;
    s->incompat = s->compat = s->autoclear = 0;
    s->compression_type = QCOW2_COMPRESSION_ZLIB;
    ret = qcow2_set_ext(s, QCOW2_EXT_FEATURES, NULL, 0);
    if (ret == 0)
        ret = qcow2_set_ext(s, QCOW2_EXT_BITMAPS, NULL, 0);
    if (ret == 0)
        ret = qcow2_write_header(s);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0) {
        s->version = 3;
        s->header_length = old_hlen;
        s->incompat = old_incompat;
        s->compat = old_compat;
        s->autoclear = old_autoclear;
        s->compression_type = old_ct;
        ret = kimg_fail(ret, "Failed to update the image header: %s", strerror(-ret));
        goto out;
    }
    if (drop_bitmaps) {
        forget_bitmaps(s);
        qsort(bm.off, bm.n, sizeof(*bm.off), cmp_u64);
        for (size_t i = 0; ret == 0 && i < bm.n; i++)
            if (i == 0 || bm.off[i] != bm.off[i - 1])
                ret = qcow2_free_clusters(s, bm.off[i], s->cluster_size);
    }
out:
    free(bm.off);
    return ret;
}
