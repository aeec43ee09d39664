/*
 * resize.c — qcow2 truncate (qemu-img resize, amend -o size), as qemu's
 * qcow2_co_truncate: growing (L1 table growth, the new area zeroed where a
 * backing file would show through, preallocation, an external data file
 * resized along) and shrinking (clusters past the new end dropped, L2
 * tables and refcount blocks left unused freed, the file cut after its
 * last used cluster).
 *
 * Crash order: a grow prepares everything past the old end (invisible
 * until the size changes) and writes the new size last; a shrink writes
 * the new size first, then drops what lies past it (references cleared
 * and synced before refcounts are lowered), then punches the clusters it
 * freed and cuts the file last.  Either way a crash leaves the old or the
 * new content, with leaked clusters at worst.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

static int write_size(struct qcow2_state *s, uint64_t size)
{
    uint8_t b[8];
    qcow2_put_be64(b, size);
    int ret = kimg_file_pwrite(s->file, b, 8, 24);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        return ret;
    if (s->hdr_raw && s->hdr_raw_len >= 32)
        memcpy(s->hdr_raw + 24, b, 8);
    s->img->size = size;
    return 0;
}

/* L1 entries needed for SIZE bytes of guest data. */
static uint64_t l1_entries_for(const struct qcow2_state *s, uint64_t size)
{
    uint64_t span_bits = s->cluster_bits + s->l2_bits;
    return (size >> span_bits) + ((size & ((1ULL << span_bits) - 1)) != 0);
}

/* An external data file follows the virtual size (qemu passes the
 * truncate on with exact=true). */
static int resize_data_file(struct qcow2_state *s, uint64_t size)
{
    if (!s->has_data_file || !s->data_file || s->data_file == s->file)
        return 0;
    int ret = kimg_file_truncate(s->data_file, size);
    if (ret < 0) {
        kimg_clear_error();
        return kimg_fail(ret, "Could not resize file: %s", strerror(-ret));
    }
    return 0;
}

/* ---- shrinking ------------------------------------------------------------ */

/* Clear the L1 entries from NEW_SIZE on (on disk first, synced), then free
 * the L2 tables they pointed at; the table keeps its size, as qemu's. */
static int shrink_l1(struct qcow2_state *s, uint64_t new_size)
{
    if (new_size >= s->l1_size)
        return 0;
    uint64_t n = s->l1_size - new_size;
    uint8_t *z = kimg_alloc_aligned_zero((size_t)n * 8);
    if (!z)
        return -ENOMEM;
    int ret = kimg_file_pwrite(s->file, z, n * 8, s->l1_offset + new_size * 8);
    free(z);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        return ret;
    for (uint64_t i = new_size; i < s->l1_size; i++) {
        uint64_t l2 = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
        s->l1[i] = 0;
        if (!l2)
            continue;
        qcow2_cache_discard(&s->l2_cache, l2);
        ret = qcow2_free_clusters(s, l2, s->cluster_size);
        if (ret < 0)
            return ret;
    }
    return qcow2_flush_caches(s);
}

/* Is refcount block RB (table index TI, at host offset OFF) empty, its own
 * entry aside when it describes itself? */
static bool refblock_unused(struct qcow2_state *s, const uint8_t *rb, uint64_t ti,
                            uint64_t off)
{
    uint64_t self = (off >> s->cluster_bits) >> s->rb_bits == ti
                        ? (off >> s->cluster_bits) & (s->rb_entries - 1) : UINT64_MAX;
    for (uint64_t i = 0; i < s->rb_entries; i++)
        if (i != self && qcow2_rb_entry_get(s, rb, i))
            return false;
    return true;
}

/* qemu's qcow2_shrink_reftable: refcount blocks that count nothing (but
 * perhaps themselves) leave the table (written and synced first); a block
 * counted elsewhere is then freed there. */
static int shrink_reftable(struct qcow2_state *s)
{
    uint64_t *drop = calloc(s->rt_entries ? s->rt_entries : 1, sizeof(*drop));
    uint64_t ndrop = 0;
    int ret = 0;

    if (!drop)
        return -ENOMEM;
    for (uint64_t i = 0; i < s->rt_entries; i++) {
        uint64_t off = s->rt[i] & QCOW2_RTE_OFFSET_MASK;
        uint8_t *rb;
        if (!off)
            continue;
        ret = qcow2_cache_get(&s->rb_cache, off, &rb);
        if (ret < 0)
            goto out;
        bool unused = refblock_unused(s, rb, i, off);
        qcow2_cache_put(&s->rb_cache, rb);
        if (unused)
            drop[ndrop++] = i;
    }
    if (!ndrop)
        goto out;
    /* the table without them, whole (as qemu writes it), synced */
    uint64_t bytes = (uint64_t)s->rt_clusters << s->cluster_bits;
    uint8_t *t = kimg_alloc_aligned_zero(bytes);
    if (!t) {
        ret = -ENOMEM;
        goto out;
    }
    for (uint64_t i = 0, k = 0; i < s->rt_entries; i++) {
        bool dropped = k < ndrop && drop[k] == i;
        if (dropped)
            k++;
        else
            qcow2_put_be64(t + i * 8, s->rt[i]);
    }
    ret = kimg_file_pwrite(s->file, t, bytes, s->rt_offset);
    free(t);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        goto out;
    for (uint64_t k = 0; k < ndrop; k++) {
        uint64_t ti = drop[k], off = s->rt[ti] & QCOW2_RTE_OFFSET_MASK;
        qcow2_cache_discard(&s->rb_cache, off);
        s->rt[ti] = 0;
        if (((off >> s->cluster_bits) >> s->rb_bits) != ti) {
            ret = qcow2_free_clusters(s, off, s->cluster_size);
            if (ret < 0)
                goto out;
        } else {
            qcow2_note_freed(s, off >> s->cluster_bits);  /* counted itself */
        }
    }
    ret = qcow2_flush_caches(s);
out:
    free(drop);
    return ret;
}

/* Index of the last cluster with a non-zero refcount, or -1 if none. */
static int64_t last_used_cluster(struct qcow2_state *s)
{
    for (uint64_t i = s->rt_entries; i-- > 0;) {
        uint64_t off = s->rt[i] & QCOW2_RTE_OFFSET_MASK;
        uint8_t *rb;
        if (!off)
            continue;
        int ret = qcow2_cache_get(&s->rb_cache, off, &rb);
        if (ret < 0)
            return ret;
        for (uint64_t j = s->rb_entries; j-- > 0;) {
            if (qcow2_rb_entry_get(s, rb, j)) {
                qcow2_cache_put(&s->rb_cache, rb);
                return (int64_t)((i << s->rb_bits) + j);
            }
        }
        qcow2_cache_put(&s->rb_cache, rb);
    }
    return -1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Punch clusters [a, b) where their refcount is still 0 (none was taken
 * again since it was freed) and no main metadata lies.  Returns 0, or <0
 * to stop: discard unsupported or failed. */
static int discard_run(struct qcow2_state *s, uint64_t a, uint64_t b)
{
    bool check_main = qcow2_overlaps_main(s, a << s->cluster_bits,
                                          (b - a) << s->cluster_bits);
    uint64_t start = a;
    for (uint64_t c = a; c <= b; c++) {
        uint64_t rc = 1;
        if (c < b) {
            int ret = qcow2_refcount_get(s, c, &rc);
            if (ret < 0)
                return ret;
            if (!rc && check_main &&
                qcow2_overlaps_main(s, c << s->cluster_bits, s->cluster_size))
                rc = 1;
        }
        if (!rc)
            continue;
        if (c > start) {
            int ret = kimg_file_discard(s->file, start << s->cluster_bits,
                                        (c - start) << s->cluster_bits);
            if (ret < 0)
                return ret;
        }
        start = c + 1;
    }
    return 0;
}

/* qemu discards every cluster a shrink frees (QCOW2_DISCARD_ALWAYS: L2
 * entries past the new end, L2 tables, refcount blocks): the file keeps
 * its size there but gives the space back.  Here after the lowered
 * refcounts are on disk, below END (the cluster the file will be cut at),
 * best effort as qemu's (a host that cannot punch holes keeps them). */
static void discard_freed(struct qcow2_state *s, struct qcow2_freed *f, uint64_t end)
{
    /* sort the runs by start (START and COUNT side by side: as pairs) */
    uint64_t *pairs = malloc((f->n ? f->n : 1) * 2 * sizeof(*pairs));
    if (!pairs)
        return;
    for (size_t i = 0; i < f->n; i++) {
        pairs[2 * i] = f->start[i];
        pairs[2 * i + 1] = f->start[i] + f->count[i];
    }
    qsort(pairs, f->n, 2 * sizeof(*pairs), cmp_u64);
    for (size_t i = 0; i < f->n;) {
        uint64_t a = pairs[2 * i], b = pairs[2 * i + 1];
        for (i++; i < f->n && pairs[2 * i] <= b; i++)
            if (pairs[2 * i + 1] > b)
                b = pairs[2 * i + 1];
        if (b > end)
            b = end;
        if (a < b && discard_run(s, a, b) < 0) {
            kimg_clear_error();
            break;
        }
    }
    free(pairs);
}

static int shrink_steps(struct qcow2_state *s, uint64_t size, uint64_t old,
                        struct qcow2_freed *freed)
{
    int ret = qcow2_flush_caches(s);
    if (ret < 0)
        return ret;
    /* the new size first: from here on the image reads as the new state */
    ret = write_size(s, size);
    if (ret < 0)
        return ret;
    uint64_t a = qcow2_align_up(size, s->cluster_size);
    uint64_t b = qcow2_align_up(old, s->cluster_size);
    if (a < b) {
        ret = qcow2_zero_clusters(s, a, b - a, 3);
        if (ret == 0)
            ret = qcow2_flush_caches(s);
        if (ret < 0)
            return ret;
    }
    ret = shrink_l1(s, l1_entries_for(s, size));
    if (ret < 0)
        return ret;
    ret = shrink_reftable(s);
    if (ret < 0)
        return ret;
    int64_t last = last_used_cluster(s);
    if (last < 0)
        return (int)last;
    discard_freed(s, freed, (uint64_t)last + 1);
    uint64_t end = ((uint64_t)last + 1) << s->cluster_bits, fsz = 0;
    ret = kimg_file_size(s->file, &fsz);
    if (ret == 0 && end < fsz)
        ret = kimg_file_truncate(s->file, end);
    if (ret < 0)
        return ret;
    s->alloc_end = (uint64_t)last + 1;
    if (s->free_hint > s->alloc_end)
        s->free_hint = s->alloc_end;
    s->compressed_next = 0;
    return resize_data_file(s, size);
}

static int do_shrink(struct qcow2_state *s, uint64_t size, uint64_t old)
{
    struct qcow2_freed freed = { 0 };
    s->freed = &freed;
    int ret = shrink_steps(s, size, old, &freed);
    s->freed = NULL;
    free(freed.start);
    free(freed.count);
    return ret;
}

/* ---- growing ---------------------------------------------------------------- */

/* Zero [off, end) of the new area (END the new virtual size): whole
 * (sub)clusters get zero flags, an unaligned head is written as zeros. */
static int zero_new_area(struct qcow2_state *s, uint64_t off, uint64_t end)
{
    uint64_t gran = s->ext_l2 ? s->subcluster_size : s->cluster_size;
    uint64_t a = qcow2_align_up(off, gran);
    int ret = 0;
    if (a > off)
        ret = qcow2_zero_bytes(s, off, (a < end ? a : end) - off);
    if (ret == 0 && a < end)
        ret = qcow2_zero_clusters(s, a, qcow2_align_up(end, gran) - a, 0);
    return ret;
}

/* Does any L2 entry of [a, b) (cluster aligned, inside the L1 table) say
 * anything but "unallocated"?  Reads only the L2 tables that exist. */
static int any_allocated(struct qcow2_state *s, uint64_t a, uint64_t b, bool *found)
{
    uint64_t span_bits = s->cluster_bits + s->l2_bits;
    *found = false;
    while (a < b) {
        uint64_t l1i = a >> span_bits;
        uint64_t next = (l1i + 1) << span_bits;
        uint64_t l2off = s->l1[l1i] & QCOW2_L1E_OFFSET_MASK;
        if (next > b)
            next = b;
        if (l2off) {
            uint8_t *l2;
            int ret = qcow2_cache_get(&s->l2_cache, l2off, &l2);
            if (ret < 0)
                return ret;
            for (uint64_t o = a; o < next && !*found; o += s->cluster_size) {
                const uint8_t *p = l2 + ((o >> s->cluster_bits) & (s->l2_entries - 1)) *
                                            s->l2_entry_size;
                *found = qcow2_be64(p) || (s->ext_l2 && qcow2_be64(p + 8));
            }
            qcow2_cache_put(&s->l2_cache, l2);
            if (*found)
                return 0;
        }
        a = next;
    }
    return 0;
}

/* How much of guest range [lo, hi) of the cluster at CSTART (entry E, type
 * TY) holds stored non-zero bytes: *NZ is the length up to the end of the
 * last 4 KiB block with one (0: all zeros; past the file end is zeros). */
static int stored_nonzero(struct qcow2_state *s, uint64_t e, enum qcow2_sc_type ty,
                          uint64_t cstart, uint64_t lo, uint64_t hi, uint64_t *nz)
{
    uint8_t *buf = kimg_alloc_aligned(s->cluster_size);
    int ret;
    if (!buf)
        return -ENOMEM;
    if (ty == QCOW2_SC_COMPRESSED) {
        ret = qcow2_read_compressed(s, e, buf);
        if (ret == 0)
            memmove(buf, buf + (lo - cstart), hi - lo);
    } else if (!s->data_file) {
        ret = kimg_fail(-EIO, "The external data file is not open");
    } else {
        ret = kimg_file_pread_zero_eof(s->data_file, buf, hi - lo,
                                       (e & QCOW2_L2E_OFFSET_MASK) + (lo - cstart));
    }
    *nz = 0;
    for (uint64_t i = hi - lo; ret == 0 && i-- > 0;)
        if (buf[i]) {
            *nz = qcow2_align_up(lo + i + 1, 4096) - lo;
            break;
        }
    if (*nz > hi - lo)
        *nz = hi - lo;
    free(buf);
    return ret;
}

/* Zero what the cluster holding OLD (the old end, unaligned) stores past
 * it, up to END, as far as it is not zero already. */
static int zero_old_tail(struct qcow2_state *s, uint64_t old, uint64_t end)
{
    uint64_t e, bm;
    if (!(old & s->cluster_mask) || end <= old)
        return 0;
    int ret = qcow2_get_l2_entry(s, old, &e, &bm);
    if (ret < 0 || !e)
        return ret;
    unsigned first = s->ext_l2 ? (unsigned)((old & s->cluster_mask) >> s->subcluster_bits) : 0;
    unsigned last = s->ext_l2 ? 31 : 0;
    uint64_t cstart = old & ~s->cluster_mask;
    for (unsigned sc = first; sc <= last; sc++) {
        enum qcow2_sc_type ty;
        ret = qcow2_sc_type(s, e, bm, sc, &ty);
        if (ret < 0)
            return ret;
        if (ty != QCOW2_SC_NORMAL && ty != QCOW2_SC_COMPRESSED)
            continue;
        uint64_t lo = s->ext_l2 ? cstart + ((uint64_t)sc << s->subcluster_bits) : cstart;
        uint64_t hi = s->ext_l2 ? lo + s->subcluster_size : cstart + s->cluster_size;
        uint64_t nz;
        if (lo < old)
            lo = old;
        if (hi > end)
            hi = end;
        if (lo >= hi)
            continue;
        ret = stored_nonzero(s, e, ty, cstart, lo, hi, &nz);
        if (ret == 0 && nz)
            ret = qcow2_zero_bytes(s, lo, nz);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Extended L2: mark every subcluster of the clusters in [A, END) that
 * have a host cluster but no subcluster allocated (just preallocated) as
 * allocated.  Their L2 tables were made writable by the preallocation. */
static int allocate_subclusters(struct qcow2_state *s, uint64_t a, uint64_t end)
{
    uint64_t span_bits = s->cluster_bits + s->l2_bits;
    while (a < end) {
        uint64_t l1i = a >> span_bits;
        uint64_t next = (l1i + 1) << span_bits;
        uint64_t l2off = qcow2_l1_has_table(s, l1i) ? s->l1[l1i] & QCOW2_L1E_OFFSET_MASK : 0;
        uint8_t *l2;
        if (next > end)
            next = end;
        if (!l2off) {
            a = next;
            continue;
        }
        int ret = qcow2_cache_get(&s->l2_cache, l2off, &l2);
        if (ret < 0)
            return ret;
        bool dirty = false;
        for (; a < next; a += s->cluster_size) {
            uint8_t *p = l2 + ((a >> s->cluster_bits) & (s->l2_entries - 1)) * s->l2_entry_size;
            uint64_t e = qcow2_be64(p);
            if ((e & QCOW2_L2E_OFFSET_MASK) && !(e & QCOW2_OFLAG_COMPRESSED) &&
                qcow2_be64(p + 8) == 0) {
                qcow2_put_be64(p + 8, 0xffffffffULL);
                dirty = true;
            }
        }
        if (dirty)
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
        qcow2_cache_put(&s->l2_cache, l2);
        a = next;
    }
    return 0;
}

/* The refusals of a grow, before anything changes: an L1 table past
 * qemu's limit; a backing file that covers part of the new area, which
 * must not show through it (qemu's BDRV_REQ_ZERO_WRITE), on v2, which has
 * no zero clusters.  *ZERO_NEW: the new area must be zeroed. */
static int grow_check(struct qcow2_state *s, uint64_t size, uint64_t old, bool *zero_new)
{
    struct kimg *img = s->img;
    *zero_new = false;
    if (l1_entries_for(s, size) > QCOW2_MAX_L1_BYTES / 8)
        return kimg_fail(-EFBIG, "Failed to grow the L1 table: %s", strerror(EFBIG));
    if (img->backing && kimg_size(img->backing) > old) {
        if (s->version < 3)
            return kimg_fail(-ENOTSUP, "Failed to zero out new clusters: %s",
                             strerror(ENOTSUP));
        *zero_new = true;
    }
    return 0;
}

static int do_grow(struct qcow2_state *s, uint64_t size, uint64_t old,
                   enum kimg_prealloc prealloc)
{
    uint64_t need = l1_entries_for(s, size);
    bool zero_new;
    int ret;

    ret = grow_check(s, size, old, &zero_new);
    if (ret < 0)
        return ret;
    ret = qcow2_flush_caches(s);
    if (ret < 0)
        return ret;
    /* Nothing past the old end may survive into the new area: drop any
     * allocation there (left by an interrupted shrink) and zero the rest
     * of the old last cluster, which may hold bytes from before a shrink.
     * qemu leaves those bytes readable; a grown raw file reads zeros. */
    uint64_t covered = (uint64_t)s->l1_size << (s->cluster_bits + s->l2_bits);
    uint64_t a = qcow2_align_up(old, s->cluster_size);
    uint64_t b = qcow2_align_up(size, s->cluster_size);
    if (b > covered)
        b = covered;
    if (a < b) {
        bool found = false;
        ret = any_allocated(s, a, b, &found);
        if (ret == 0 && found)
            ret = qcow2_zero_clusters(s, a, b - a, 3);
        if (ret < 0)
            return ret;
    }
    ret = zero_old_tail(s, old, a < size ? a : size);
    if (ret < 0)
        return ret;
    ret = qcow2_grow_l1(s, need);
    if (ret < 0)
        return ret;
    if (s->has_data_file && s->data_file_raw && prealloc == KIMG_PREALLOC_OFF)
        prealloc = KIMG_PREALLOC_METADATA;  /* the data file stays a raw image */
    if (prealloc == KIMG_PREALLOC_OFF)
        ret = resize_data_file(s, size);
    else
        ret = qcow2_preallocate(s, old, size - old, prealloc);
    if (ret < 0)
        return ret;
    if (zero_new) {
        /* clusters preallocated with falloc/full read zeros already (their
         * host space is zeroed): as qemu, only the old last cluster needs
         * zeroing, and with extended L2 the new clusters' subclusters are
         * marked allocated so the backing file stays hidden */
        bool host_zeroed = (prealloc == KIMG_PREALLOC_FALLOC || prealloc == KIMG_PREALLOC_FULL) &&
                           !s->has_data_file;
        uint64_t head_end = host_zeroed && a < size ? a : size;
        ret = zero_new_area(s, old, head_end);
        if (ret == 0 && host_zeroed && s->ext_l2 && a < size)
            ret = allocate_subclusters(s, a, size);
        if (ret < 0)
            return ret;
    }
    ret = qcow2_flush_caches(s);
    if (ret < 0)
        return ret;
    /* everything the new area needs is on disk: now the size */
    return write_size(s, size);
}

int qcow2_truncate(struct kimg *img, uint64_t size, enum kimg_prealloc prealloc)
{
    struct qcow2_state *s = img->state;
    uint64_t old = s->img->size;
    int ret;

    qcow2_assert_locked(s);
    s->zcache_valid = false;
    if (size & 511) {
        ret = kimg_fail(-EINVAL, "The new size must be a multiple of 512");
        goto out;
    }
    if (s->nb_snapshots && s->version < 3) {
        ret = kimg_fail(-ENOTSUP, "Can't resize a v2 image which has snapshots");
        goto out;
    }
    if (size < old && prealloc != KIMG_PREALLOC_OFF) {
        ret = kimg_fail(-EINVAL, "Preallocation can't be used for shrinking an image");
        goto out;
    }
    /* persistent bitmaps: marked in_use before the size changes, stored
     * with tables for the new size after (bitmap.c); a grow that will be
     * refused is refused before that */
    if (size > old) {
        bool zero_new;
        ret = grow_check(s, size, old, &zero_new);
        if (ret < 0)
            goto out;
    }
    if (size != old) {
        ret = qcow2_bitmaps_resize_begin(s, size);
        if (ret < 0)
            goto out;
    }
    if (size < old) {
        ret = do_shrink(s, size, old);
    } else if (size > old || prealloc != KIMG_PREALLOC_OFF) {
        ret = do_grow(s, size, old, prealloc);
    } else {
        ret = resize_data_file(s, size);
    }
    if (ret == 0 && size != old)
        ret = qcow2_bitmaps_resize_end(s, old);
out:
    return ret;
}
