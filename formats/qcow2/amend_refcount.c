/*
 * amend_refcount.c — amend -o refcount_bits: the whole refcount structure
 * rewritten in the new width.  The new refcount blocks and table are laid
 * out past everything in use (they describe themselves, and count the old
 * structure as free: no leak once switched), written and synced; then one
 * header write switches refcount_order, table offset and size together.
 * A crash before that switch leaves the old structure untouched (the new
 * clusters past it are unreferenced and uncounted); after it, the new one
 * complete.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* Sequential reader of the old refcounts (one old block buffered). */
struct old_rc {
    struct qcow2_state *s;
    uint64_t file_size;
    uint8_t *buf;
    uint64_t loaded;            /* table index in buf, UINT64_MAX: none */
};

static int old_get(struct old_rc *r, uint64_t c, uint64_t *v)
{
    struct qcow2_state *s = r->s;
    uint64_t ti = c >> s->rb_bits;
    *v = 0;
    if (ti >= s->rt_entries)
        return 0;
    uint64_t e = s->rt[ti], off = e & QCOW2_RTE_OFFSET_MASK;
    if (!off)
        return 0;
    if (ti != r->loaded) {
        if ((e & QCOW2_RTE_RESERVED) || (off & s->cluster_mask) ||
            off > r->file_size - s->cluster_size || r->file_size < s->cluster_size)
            return qcow2_signal_corruption(s, "Refblock offset %#" PRIx64 " invalid "
                                           "(reftable index: %#" PRIx64 ")", e, ti);
        int ret = kimg_file_pread(s->file, r->buf, s->cluster_size, off);
        if (ret < 0)
            return ret;
        r->loaded = ti;
    }
    *v = qcow2_rb_entry_get(s, r->buf, c & (s->rb_entries - 1));
    return 0;
}

/* An entry of a refcount block of width 1 << ORDER. */
static void rb_set(uint32_t order, uint8_t *rb, uint64_t i, uint64_t v)
{
    if (order >= 3) {
        unsigned bytes = 1u << (order - 3);
        for (unsigned k = 0; k < bytes; k++)
            rb[i * bytes + k] = (uint8_t)(v >> (8 * (bytes - 1 - k)));
        return;
    }
    unsigned bits = 1u << order, per = 8 / bits;
    unsigned sh = (unsigned)(i % per) * bits, mask = (1u << bits) - 1;
    uint8_t *p = rb + i / per;
    *p = (uint8_t)((*p & ~(mask << sh)) | ((v & mask) << sh));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The clusters of the old structure (table and blocks), sorted. */
static int old_structure(struct qcow2_state *s, uint64_t **out, size_t *n)
{
    size_t cap = s->rt_clusters, k = 0;
    for (uint64_t i = 0; i < s->rt_entries; i++)
        if (s->rt[i] & QCOW2_RTE_OFFSET_MASK)
            cap++;
    uint64_t *v = malloc((cap ? cap : 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->rt_clusters; i++)
        v[k++] = (s->rt_offset >> s->cluster_bits) + i;
    for (uint64_t i = 0; i < s->rt_entries; i++)
        if (s->rt[i] & QCOW2_RTE_OFFSET_MASK)
            v[k++] = (s->rt[i] & QCOW2_RTE_OFFSET_MASK) >> s->cluster_bits;
    qsort(v, k, sizeof(*v), cmp_u64);
    *out = v;
    *n = k;
    return 0;
}

static bool in_sorted(const uint64_t *v, size_t n, uint64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else if (v[mid] > x)
            hi = mid;
        else
            return true;
    }
    return false;
}

#define MAX_NEED_BITS (1ULL << 34)

int qcow2_change_refcount_order(struct qcow2_state *s, uint32_t order)
{
    uint32_t bits = 1u << order;
    uint64_t max = order >= 6 ? UINT64_MAX : (1ULL << bits) - 1;
    uint32_t nrb_bits = qcow2_rb_bits_of(s->cluster_bits, order);  /* log2(entries per block) */
    struct old_rc r = { s, 0, NULL, UINT64_MAX };
    uint64_t *olds = NULL, *nrt = NULL;
    uint8_t *need = NULL, *blk = NULL;
    size_t nolds = 0;
    int ret;

    if (order == s->refcount_order)
        return 0;
    ret = qcow2_flush_caches(s);
    if (ret < 0)
        return ret;
    ret = kimg_file_size(s->file, &r.file_size);
    if (ret < 0)
        return ret;
    uint64_t A = qcow2_align_up(r.file_size, s->cluster_size) >> s->cluster_bits;
    if (s->alloc_end > A)
        A = s->alloc_end;
    r.buf = kimg_alloc_aligned(s->cluster_size);
    blk = kimg_alloc_aligned(s->cluster_size);
    ret = old_structure(s, &olds, &nolds);
    if (!r.buf || !blk || ret < 0) {
        ret = ret < 0 ? ret : -ENOMEM;
        goto out;
    }

    /* which new blocks the data needs; a refcount the new width cannot
     * hold refuses the change (qemu's message, first such cluster) */
    uint64_t nj = (A >> nrb_bits) + 1;
    if (nj > MAX_NEED_BITS) {
        ret = kimg_fail(-EFBIG, "Image too large to change its refcount width");
        goto out;
    }
    need = calloc((nj + 7) / 8, 1);
    if (!need) {
        ret = -ENOMEM;
        goto out;
    }
    uint64_t nneed = 0, last_j = 0;
    for (uint64_t c = 0; c < A; c++) {
        uint64_t v;
        ret = old_get(&r, c, &v);
        if (ret < 0)
            goto out;
        if (!v || in_sorted(olds, nolds, c))
            continue;
        if (v > max) {
            ret = kimg_fail(-EINVAL, "Cannot decrease refcount entry width to %u bits: "
                            "Cluster at offset %#" PRIx64 " has a refcount of %" PRIu64,
                            bits, c << s->cluster_bits, v);
            goto out;
        }
        uint64_t j = c >> nrb_bits;
        if (!(need[j / 8] & (1u << (j % 8)))) {
            need[j / 8] |= (uint8_t)(1u << (j % 8));
            nneed++;
            last_j = j;
        }
    }

    /* layout past everything: NB blocks, then the TC-cluster table; the
     * area's own clusters may need blocks of their own (fixed point) */
    uint64_t nb = nneed, tc = 1, end = 0, extra = 0, max_j = last_j;
    for (int iter = 0;; iter++) {
        end = A + nb + tc;
        extra = 0;
        max_j = last_j;
        for (uint64_t j = A >> nrb_bits; j <= (end - 1) >> nrb_bits; j++) {
            if (j >= nj || !(need[j / 8] & (1u << (j % 8))))
                extra++;
            if (j > max_j)
                max_j = j;
        }
        uint64_t ntc = qcow2_align_up((max_j + 1) * 8, s->cluster_size) >> s->cluster_bits;
        if (nneed + extra == nb && ntc == tc)
            break;
        nb = nneed + extra;
        tc = ntc;
        if (iter > 64) {
            ret = kimg_fail(-EIO, "qcow2: cannot lay out the new refcount structure");
            goto out;
        }
    }
    if ((tc << s->cluster_bits) > QCOW2_MAX_RT_BYTES) {
        ret = kimg_fail(-EFBIG, "Reference count table would exceed the maximum size");
        goto out;
    }
    if ((end << s->cluster_bits) >= QCOW2_MAX_HOST_OFFSET) {
        ret = kimg_fail(-EFBIG, "Image file would exceed the maximum offset");
        goto out;
    }
    uint64_t nrt_entries = (tc << s->cluster_bits) / 8;
    nrt = calloc(nrt_entries, 8);
    if (!nrt) {
        ret = -ENOMEM;
        goto out;
    }
    uint64_t k = 0, area_j0 = A >> nrb_bits, area_j1 = (end - 1) >> nrb_bits;
    for (uint64_t j = 0; j <= max_j; j++)
        if ((j < nj && (need[j / 8] & (1u << (j % 8)))) || (j >= area_j0 && j <= area_j1))
            nrt[j] = (A + k++) << s->cluster_bits;

    /* the blocks: old counts (the old structure now free), the new area 1 */
    for (uint64_t j = 0; j <= max_j; j++) {
        if (!nrt[j])
            continue;
        memset(blk, 0, s->cluster_size);
        uint64_t c0 = j << nrb_bits, c1 = c0 + (1ULL << nrb_bits);
        for (uint64_t c = c0; c < c1 && c < end; c++) {
            uint64_t v = 1;
            if (c < A) {
                ret = old_get(&r, c, &v);
                if (ret < 0)
                    goto out;
                if (v && in_sorted(olds, nolds, c))
                    v = 0;
            }
            if (v)
                rb_set(order, blk, c - c0, v);
        }
        ret = kimg_file_pwrite(s->file, blk, s->cluster_size, nrt[j]);
        if (ret < 0)
            goto out;
    }
    uint8_t *tb = kimg_alloc_aligned_zero((size_t)tc * s->cluster_size);
    if (!tb) {
        ret = -ENOMEM;
        goto out;
    }
    for (uint64_t i = 0; i < nrt_entries; i++)
        qcow2_put_be64(tb + i * 8, nrt[i]);
    ret = kimg_file_pwrite(s->file, tb, tc << s->cluster_bits, (A + nb) << s->cluster_bits);
    free(tb);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        goto out;

    /* the switch: order, table offset and size in one header write */
    uint32_t old_order = s->refcount_order, old_clusters = s->rt_clusters;
    uint64_t old_offset = s->rt_offset;
    s->refcount_order = order;
    s->rt_offset = (A + nb) << s->cluster_bits;
    s->rt_clusters = (uint32_t)tc;
    ret = qcow2_write_header(s);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0) {
        s->refcount_order = old_order;
        s->rt_offset = old_offset;
        s->rt_clusters = old_clusters;
        goto out;
    }
    qcow2_cache_clear(&s->rb_cache);
    free(s->rt);
    s->rt = nrt;
    nrt = NULL;
    s->rt_entries = nrt_entries;
    qcow2_set_geometry(s);      /* refcount_order is ORDER now */
    if (end > s->alloc_end)
        s->alloc_end = end;
    s->free_hint = 0;
out:
    free(r.buf);
    free(blk);
    free(olds);
    free(need);
    free(nrt);
    return ret;
}
