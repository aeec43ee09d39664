/*
 * cluster.c — the cluster layer: L1/L2 lookup (one validated walk for the
 * read and the write paths), classification of L2 entries, L2 tables made
 * ready for writing (allocated, or copied when shared with a snapshot), the
 * copy-on-write reads of a cluster's old content (decrypted if encrypted),
 * L1 growth, the pending-L1 write-out and the deferred freeing of dropped
 * clusters.  Ordering: a new
 * L2 table reaches the disk before its L1 entry (pending L1 entries are
 * written by qcow2_flush_caches after the L2 cache); refcounts reach the
 * disk before the L2 entries that need them; old clusters are freed only
 * after the entries that dropped them.  Everything here runs under s->lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* ---- L1 table ----------------------------------------------------------- */

int qcow2_read_l1(struct qcow2_state *s, uint64_t offset, uint32_t l1_size, uint64_t **out)
{
    uint64_t fsz = 0, bytes = (uint64_t)l1_size * 8;
    uint8_t *buf;
    uint64_t *l1;
    int ret;

    *out = NULL;
    if (bytes > QCOW2_MAX_L1_BYTES)
        return kimg_fail(-EFBIG, "L1 table too large");
    ret = kimg_file_size(s->file, &fsz);
    if (ret < 0)
        return ret;
    if ((offset & s->cluster_mask) || offset > fsz || bytes > fsz - offset)
        return kimg_fail(-EINVAL, "L1 table offset %#" PRIx64 " invalid", offset);
    l1 = calloc(l1_size ? l1_size : 1, 8);
    buf = kimg_alloc_aligned(bytes);
    if (!l1 || !buf) {
        free(l1);
        free(buf);
        return -ENOMEM;
    }
    if (bytes) {
        ret = kimg_file_pread(s->file, buf, bytes, offset);
        if (ret < 0) {
            free(l1);
            free(buf);
            return ret;
        }
    }
    for (uint32_t i = 0; i < l1_size; i++)
        l1[i] = qcow2_be64(buf + (uint64_t)i * 8);
    free(buf);
    *out = l1;
    return 0;
}

/* The L2 table offset of L1 entry L1I, validated (aligned, clear of the
 * main metadata): 0 when no table is allocated or L1I lies past the table.
 * The one L1 walk of the read and the write paths. */
static int l1_table(struct qcow2_state *s, uint64_t l1i, uint64_t *l2off)
{
    *l2off = 0;
    if (l1i >= s->l1_size)
        return 0;
    uint64_t t = s->l1[l1i] & QCOW2_L1E_OFFSET_MASK;
    if (!t)
        return 0;
    if (t & s->cluster_mask)
        return qcow2_signal_corruption(s, "L2 table offset %#" PRIx64 " unaligned "
                                       "(L1 index: %#" PRIx64 ")", t, l1i);
    if (qcow2_overlaps_main(s, t, s->cluster_size))
        return qcow2_signal_corruption(s, "L2 table at %#" PRIx64 " overlaps other "
                                       "metadata (L1 index: %#" PRIx64 ")", t, l1i);
    *l2off = t;
    return 0;
}

static int write_l1_entry(struct qcow2_state *s, uint64_t l1i)
{
    uint8_t b[8];
    qcow2_put_be64(b, s->l1[l1i]);
    return kimg_file_pwrite(s->file, b, 8, s->l1_offset + l1i * 8);
}

int qcow2_l1_write_pending(struct qcow2_state *s)
{
    qcow2_assert_locked(s);
    for (size_t i = 0; i < s->nb_l1_pending; i++) {
        if (s->l1_pending[i] >= s->l1_size)
            continue;
        int ret = write_l1_entry(s, s->l1_pending[i]);
        if (ret < 0)
            return ret;
    }
    s->nb_l1_pending = 0;
    return 0;
}

int qcow2_grow_l1(struct qcow2_state *s, uint64_t min_size)
{
    uint64_t bytes, noff;
    uint8_t *buf;
    uint64_t *nl1;
    int ret;

    qcow2_assert_locked(s);
    if (min_size <= s->l1_size)
        return 0;
    if (min_size > QCOW2_MAX_L1_BYTES / 8)
        return kimg_fail(-EFBIG, "L1 table would exceed the maximum size");
    /* the copy must not point at tables that are not on disk yet */
    ret = qcow2_flush_caches(s);
    if (ret < 0)
        return ret;
    bytes = qcow2_align_up(min_size * 8, s->cluster_size);
    nl1 = calloc(min_size, 8);
    buf = kimg_alloc_aligned_zero(bytes);
    if (!nl1 || !buf) {
        free(nl1);
        free(buf);
        return -ENOMEM;
    }
    if (s->l1_size)
        memcpy(nl1, s->l1, (size_t)s->l1_size * 8);
    for (uint64_t i = 0; i < min_size; i++)
        qcow2_put_be64(buf + i * 8, nl1[i]);
    ret = qcow2_alloc_clusters(s, bytes >> s->cluster_bits, &noff);
    if (ret < 0)
        goto out;
    ret = qcow2_cache_flush(&s->rb_cache);
    if (ret < 0)
        goto out;
    /* only the entries: the file ends right after the table, as qemu's */
    ret = kimg_file_pwrite(s->file, buf, min_size * 8, noff);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        goto out;
    uint8_t h[12];
    qcow2_put_be32(h, (uint32_t)min_size);
    qcow2_put_be64(h + 4, noff);
    ret = kimg_file_pwrite(s->file, h, 12, 36);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        goto out;
    if (s->hdr_raw && s->hdr_raw_len >= 48)
        memcpy(s->hdr_raw + 36, h, 12);
    uint64_t old_off = s->l1_offset, old_bytes = (uint64_t)s->l1_size * 8;
    free(s->l1);
    s->l1 = nl1;
    nl1 = NULL;
    s->l1_size = (uint32_t)min_size;
    s->l1_offset = noff;
    if (old_bytes)
        ret = qcow2_free_clusters(s, old_off, qcow2_align_up(old_bytes, s->cluster_size));
out:
    free(nl1);
    free(buf);
    return ret;
}

/* ---- lookup ------------------------------------------------------------- */

int qcow2_get_l2_entry(struct qcow2_state *s, uint64_t off, uint64_t *entry,
                       uint64_t *bitmap)
{
    uint64_t l1i = qcow2_l1_index(s, off);
    uint64_t l2i = (off >> s->cluster_bits) & (s->l2_entries - 1);
    uint8_t *l2;
    int ret;

    qcow2_assert_locked(s);
    *entry = 0;
    *bitmap = 0;
    uint64_t l2off;
    ret = l1_table(s, l1i, &l2off);
    if (ret < 0 || !l2off)
        return ret;
    ret = qcow2_cache_get(&s->l2_cache, l2off, &l2);
    if (ret < 0)
        return ret;
    *entry = qcow2_be64(l2 + l2i * s->l2_entry_size);
    if (s->ext_l2)
        *bitmap = qcow2_be64(l2 + l2i * s->l2_entry_size + 8);
    qcow2_cache_put(&s->l2_cache, l2);
    return 0;
}

int qcow2_sc_type(struct qcow2_state *s, uint64_t entry, uint64_t bitmap,
                  unsigned sc, enum qcow2_sc_type *type)
{
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        uint64_t host, len;
        if (s->has_data_file)
            return qcow2_signal_corruption(s, "Compressed cluster in an image with an "
                                           "external data file");
        if (bitmap)
            return qcow2_signal_corruption(s, "Compressed cluster entry %#" PRIx64
                                           " has a non-zero subcluster bitmap", entry);
        qcow2_compressed_range(s, entry, &host, &len);
        if (host >= QCOW2_MAX_HOST_OFFSET || host < s->cluster_size)
            return qcow2_signal_corruption(s, "Compressed cluster at %#" PRIx64
                                           " has an invalid offset", host);
        *type = QCOW2_SC_COMPRESSED;
        return 0;
    }
    uint64_t off = entry & QCOW2_L2E_OFFSET_MASK;
    if (off & s->cluster_mask)
        return qcow2_signal_corruption(s, "Cluster allocation offset %#" PRIx64
                                       " unaligned", off);
    bool present = off || (s->has_data_file && (entry & QCOW2_OFLAG_COPIED));
    if (!s->ext_l2) {
        if (entry & QCOW2_OFLAG_ZERO)
            *type = present ? QCOW2_SC_ZERO_ALLOC : QCOW2_SC_ZERO_PLAIN;
        else
            *type = present ? QCOW2_SC_NORMAL : QCOW2_SC_UNALLOC;
        return 0;
    }
    uint32_t alloc = (uint32_t)bitmap, zero = (uint32_t)(bitmap >> 32);
    if (alloc & zero)
        return qcow2_signal_corruption(s, "Subcluster bitmap %#" PRIx64 " marks "
                                       "subclusters both allocated and zero", bitmap);
    if (!present) {
        if (alloc)
            return qcow2_signal_corruption(s, "Subclusters allocated in an "
                                           "unallocated cluster (bitmap %#" PRIx64 ")",
                                           bitmap);
        *type = (zero >> sc) & 1 ? QCOW2_SC_ZERO_PLAIN : QCOW2_SC_UNALLOC;
        return 0;
    }
    if ((alloc >> sc) & 1)
        *type = QCOW2_SC_NORMAL;
    else if ((zero >> sc) & 1)
        *type = QCOW2_SC_ZERO_ALLOC;
    else
        *type = QCOW2_SC_UNALLOC_ALLOC;
    return 0;
}

void qcow2_entry_ref(const struct qcow2_state *s, uint64_t entry, uint64_t *off,
                     uint64_t *len)
{
    *off = *len = 0;
    if (s->has_data_file)
        return;
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        qcow2_compressed_range(s, entry, off, len);
        return;
    }
    uint64_t h = entry & QCOW2_L2E_OFFSET_MASK;
    if (h) {
        *off = h;
        *len = s->cluster_size;
    }
}

/* ---- L2 tables for writing ---------------------------------------------- */

int qcow2_l2_for_write(struct qcow2_state *s, uint64_t off, uint8_t **table)
{
    uint64_t l1i = qcow2_l1_index(s, off);
    int ret;

    qcow2_assert_locked(s);
    if (l1i >= s->l1_size) {
        ret = qcow2_grow_l1(s, l1i + 1);
        if (ret < 0)
            return ret;
    }
    uint64_t e = s->l1[l1i], old;
    ret = l1_table(s, l1i, &old);
    if (ret < 0)
        return ret;
    if (old) {
        if (e & QCOW2_OFLAG_COPIED)
            return qcow2_cache_get(&s->l2_cache, old, table);
        uint64_t rc;
        ret = qcow2_refcount_get(s, old >> s->cluster_bits, &rc);
        if (ret < 0)
            return ret;
        if (rc == 1) {
            s->l1[l1i] = old | QCOW2_OFLAG_COPIED;
            ret = write_l1_entry(s, l1i);
            if (ret < 0)
                return ret;
            return qcow2_cache_get(&s->l2_cache, old, table);
        }
        if (rc == 0)
            return qcow2_signal_corruption(s, "L2 table at %#" PRIx64 " has refcount 0",
                                           old);
    }
    uint64_t noff;
    if (!old) {
        /* a new, empty table: it lives in the cache (dirty) and its L1
         * entry reaches the disk at the next flush, after the table */
        uint8_t *t;
        if (s->nb_l1_pending == s->l1_pending_cap) {
            size_t nc = s->l1_pending_cap ? s->l1_pending_cap * 2 : 64;
            uint64_t *v = realloc(s->l1_pending, nc * sizeof(*v));
            if (!v)
                return -ENOMEM;
            s->l1_pending = v;
            s->l1_pending_cap = nc;
        }
        ret = qcow2_alloc_clusters(s, 1, &noff);
        if (ret < 0)
            return ret;
        ret = qcow2_cache_get_empty(&s->l2_cache, noff, &t);
        if (ret < 0)
            return ret;
        qcow2_cache_mark_dirty(&s->l2_cache, t);
        s->l1[l1i] = noff | QCOW2_OFLAG_COPIED;
        s->l1_pending[s->nb_l1_pending++] = l1i;
        *table = t;
        return 0;
    }
    /* a copy of the shared table */
    uint8_t *buf = kimg_alloc_aligned(s->cluster_size);
    if (!buf)
        return -ENOMEM;
    {
        uint8_t *src;
        ret = qcow2_cache_get(&s->l2_cache, old, &src);
        if (ret < 0)
            goto out;
        memcpy(buf, src, s->cluster_size);
        qcow2_cache_put(&s->l2_cache, src);
        /* entries in a copy are shared too: none may claim refcount 1 */
        for (uint64_t i = 0; i < s->l2_entries; i++) {
            uint8_t *p = buf + i * s->l2_entry_size;
            uint64_t v = qcow2_be64(p);
            if (!s->has_data_file)
                qcow2_put_be64(p, v & ~QCOW2_OFLAG_COPIED);
        }
    }
    ret = qcow2_alloc_clusters(s, 1, &noff);
    if (ret < 0)
        goto out;
    /* refcount on disk, then the table, then the L1 entry */
    ret = qcow2_cache_flush(&s->rb_cache);
    if (ret < 0)
        goto out;
    ret = qcow2_cache_flush(&s->l2_cache);
    if (ret < 0)
        goto out;
    ret = kimg_file_pwrite(s->file, buf, s->cluster_size, noff);
    if (ret < 0)
        goto out;
    ret = kimg_file_sync(s->file);
    if (ret < 0)
        goto out;
    s->l1[l1i] = noff | QCOW2_OFLAG_COPIED;
    ret = write_l1_entry(s, l1i);
    if (ret < 0)
        goto out;
    if (old) {
        ret = kimg_file_sync(s->file);
        if (ret < 0)
            goto out;
        ret = qcow2_free_clusters(s, old, s->cluster_size);
        if (ret < 0)
            goto out;
    }
    uint8_t *t;
    ret = qcow2_cache_get(&s->l2_cache, noff, &t);
    if (ret < 0)
        goto out;
    *table = t;
out:
    free(buf);
    return ret;
}

/* ---- copy-on-write ------------------------------------------------------ */

/* Guest data of the backing chain for [off, off+len) of this layer,
 * zeros past the virtual size. */
static int read_below(struct qcow2_state *s, uint8_t *buf, uint64_t off, uint64_t len)
{
    if (off >= s->img->size) {
        memset(buf, 0, len);
        return 0;
    }
    if (off + len > s->img->size) {
        memset(buf + (s->img->size - off), 0, off + len - s->img->size);
        len = s->img->size - off;
    }
    return kimg_read_backing(s->img, buf, off, len);
}

int qcow2_cow_read(struct qcow2_state *s, uint64_t cstart, uint64_t entry,
                   const enum qcow2_sc_type *types, const uint8_t *decomp,
                   uint8_t *out, uint64_t a, uint64_t b)
{
    uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
    while (a < b) {
        unsigned sc = s->ext_l2 ? (unsigned)(a >> s->subcluster_bits) : 0;
        uint64_t e = s->ext_l2 ? ((uint64_t)sc + 1) << s->subcluster_bits : s->cluster_size;
        if (e > b)
            e = b;
        int ret = 0;
        switch (types[sc]) {
        case QCOW2_SC_NORMAL:
            if (!s->data_file)
                return kimg_fail(-EIO, "The external data file is not open");
            if (qcow2_encrypted(s))
                ret = qcow2_crypto_pread(s, out, e - a, host + a, cstart + a);
            else
                ret = kimg_file_pread_zero_eof(s->data_file, out, e - a, host + a);
            break;
        case QCOW2_SC_ZERO_PLAIN:
        case QCOW2_SC_ZERO_ALLOC:
            memset(out, 0, e - a);
            break;
        case QCOW2_SC_UNALLOC:
        case QCOW2_SC_UNALLOC_ALLOC:
            ret = read_below(s, out, cstart + a, e - a);
            break;
        case QCOW2_SC_COMPRESSED:
            memcpy(out, decomp + a, e - a);
            break;
        }
        if (ret < 0)
            return ret;
        out += e - a;
        a = e;
    }
    return 0;
}

/* ---- deferred frees ----------------------------------------------------- */

int qcow2_freelist_add(struct qcow2_freelist *f, uint64_t off, uint64_t len)
{
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 16;
        uint64_t *a = realloc(f->off, nc * sizeof(*a));
        if (!a)
            return -ENOMEM;
        f->off = a;
        uint64_t *b = realloc(f->len, nc * sizeof(*b));
        if (!b)
            return -ENOMEM;
        f->len = b;
        f->cap = nc;
    }
    f->off[f->n] = off;
    f->len[f->n] = len;
    f->n++;
    return 0;
}

int qcow2_freelist_run(struct qcow2_state *s, struct qcow2_freelist *f)
{
    int ret = 0;
    if (!f->n)
        return 0;
    /* the L2 entries that dropped these references go first */
    ret = qcow2_cache_flush(&s->l2_cache);
    for (size_t i = 0; ret == 0 && i < f->n; i++)
        ret = qcow2_free_clusters(s, f->off[i], f->len[i]);
    f->n = 0;
    return ret;
}

void qcow2_freelist_free(struct qcow2_freelist *f)
{
    free(f->off);
    free(f->len);
}
