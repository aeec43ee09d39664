/*
 * zero.c — zero writes and discard (lock held, image writable): whole
 * (sub)clusters become zero clusters or are unallocated, a partly covered
 * granule is written as data (KIMG_ZERO_WIDEN: widened to a zero granule
 * when the rest of it already reads as zeros, as qemu does), dropped host
 * clusters are freed after the L2 entries that dropped them are on disk.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

static int write_zero_bytes(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
    uint8_t *z = kimg_alloc_aligned_zero(chunk);
    int ret = 0;
    if (!z)
        return -ENOMEM;
    while (len && ret == 0) {
        uint64_t n = len < chunk ? len : chunk;
        ret = qcow2_write_data(s, z, off, n);
        off += n;
        len -= n;
    }
    free(z);
    return ret;
}

/* MODE: 0 zero-write keeping allocation, 1 zero-write may unmap,
 * 2 discard (qemu: v3 reads zeros afterwards, v2 unallocated),
 * 3 full discard (entries become unallocated: shrinking).  With the open
 * option discard-no-unref, modes 1 and 2 keep allocations as mode 0 does
 * (qemu 8.1+: a data cluster stays allocated, now reading zeros; a
 * compressed one is still freed).  Unlike qemu, a cluster a snapshot
 * shares is released whatever the mode, and a kept cluster's old bytes
 * are not discarded in the file (qemu's pass-discard-request). */
static int zero_clusters(struct qcow2_state *s, uint64_t off, uint64_t len, int mode)
{
    struct qcow2_freelist fl = { 0 };
    uint8_t *l2 = NULL;
    uint64_t cur_l1i = UINT64_MAX;
    int ret = 0;
    bool keep_mode = mode == 0 || (s->discard_no_unref && (mode == 1 || mode == 2));

    while (len) {
        uint64_t l1i = qcow2_l1_index(s, off);
        uint64_t n = s->cluster_size - (off & s->cluster_mask);
        if (n > len)
            n = len;
        if (l1i != cur_l1i) {
            if (l2)
                qcow2_cache_put(&s->l2_cache, l2);
            l2 = NULL;
            ret = qcow2_freelist_run(s, &fl);
            if (ret < 0)
                break;
            if (mode >= 2 && !qcow2_l1_has_table(s, l1i) &&
                (s->version < 3 || !s->img->backing_name || mode == 3)) {
                /* nothing allocated here; with v3 and a backing file the
                 * zero flags must still hide the backing data */
                uint64_t span = (l1i + 1) << (s->cluster_bits + s->l2_bits);
                uint64_t step = span - off < len ? span - off : len;
                off += step;
                len -= step;
                continue;
            }
            ret = qcow2_l2_for_write(s, off, &l2);
            if (ret < 0)
                break;
            cur_l1i = l1i;
        }
        uint8_t *slot = qcow2_l2_slot(s, l2, off);
        uint64_t entry = qcow2_be64(slot);
        uint64_t bitmap = s->ext_l2 ? qcow2_be64(slot + 8) : 0;
        enum qcow2_sc_type t0;
        ret = qcow2_sc_type(s, entry, bitmap, 0, &t0);
        if (ret < 0)
            break;
        uint64_t ne, nb = 0, fo = 0, flen = 0;
        bool shared = !(entry & QCOW2_OFLAG_COPIED);
        if (s->ext_l2) {
            uint32_t alloc = (uint32_t)bitmap, zero = (uint32_t)(bitmap >> 32);
            uint32_t mask = (uint32_t)(n == s->cluster_size ? 0xffffffffu
                : (((1ULL << (n >> s->subcluster_bits)) - 1) <<
                   ((off & s->cluster_mask) >> s->subcluster_bits)));
            if (t0 == QCOW2_SC_COMPRESSED || mask == 0xffffffffu) {
                qcow2_entry_ref(s, entry, &fo, &flen);
                bool keep = keep_mode && t0 != QCOW2_SC_COMPRESSED && !shared &&
                            (entry & QCOW2_L2E_OFFSET_MASK);
                if (keep || (s->has_data_file && (entry & QCOW2_OFLAG_COPIED) && mode != 2)) {
                    ne = entry;
                    flen = 0;
                } else {
                    ne = 0;
                }
                nb = (uint64_t)0xffffffffu << 32;
            } else {
                ne = entry;
                alloc &= ~mask;
                zero |= mask;
                nb = ((uint64_t)zero << 32) | alloc;
            }
        } else if (s->version >= 3) {
            qcow2_entry_ref(s, entry, &fo, &flen);
            uint64_t h = entry & QCOW2_L2E_OFFSET_MASK;
            bool keep = keep_mode && t0 != QCOW2_SC_COMPRESSED && !shared && h;
            if (s->has_data_file && (entry & QCOW2_OFLAG_COPIED) && mode != 2)
                keep = true;
            if (keep) {
                ne = h | QCOW2_OFLAG_COPIED | QCOW2_OFLAG_ZERO;
                flen = 0;
            } else {
                ne = QCOW2_OFLAG_ZERO;
            }
        } else {
            qcow2_entry_ref(s, entry, &fo, &flen);
            ne = 0;
        }
        if (mode == 3) {
            qcow2_entry_ref(s, entry, &fo, &flen);
            ne = 0;
            nb = 0;
        } else if (mode == 2 && entry == 0 && bitmap == 0 && !s->img->backing_name) {
            ne = 0;     /* unallocated without a backing file reads zeros */
        }
        if (ne != entry || nb != bitmap) {
            qcow2_l2_set(s, slot, ne, nb);
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
        }
        if (flen) {
            ret = qcow2_freelist_add(&fl, fo, flen);
            if (ret < 0)
                break;
        }
        off += n;
        len -= n;
    }
    if (l2)
        qcow2_cache_put(&s->l2_cache, l2);
    if (ret == 0)
        ret = qcow2_freelist_run(s, &fl);
    qcow2_freelist_free(&fl);
    return ret;
}

/* Does [off, off+len) of this layer's backing chain read as zeros, by
 * block status alone?  As qemu asks it ("is zero, fast"): one answer must
 * cover the whole range; past the backing file's end, or with no backing
 * file, it reads zeros; a backing file not opened is not known to. */
static bool below_reads_zero(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    struct kimg *b = s->img->backing;
    struct kimg_extent e;
    if (!len || !s->img->backing_name)
        return true;
    if (!b)
        return false;
    if (off >= b->size)
        return true;
    if (len > b->size - off)
        return false;
    if (kimg_block_status(b, off, len, &e) < 0) {
        kimg_clear_error();
        return false;
    }
    return (e.flags & KIMG_BS_ZERO) && e.length == len;
}

/* A zero write [off, end) covering part of one granule (cluster, or
 * subcluster with extended L2) is written as data; with KIMG_ZERO_WIDEN,
 * qemu's rule: if the rest of the granule already reads as zeros and the
 * granule holds no data of its own (unallocated, or zero), the whole
 * granule becomes zero instead.  A write that reaches the image's end has
 * nothing after it to check; a granule that runs past the end otherwise
 * does not count as zero. */
static int zero_partial(struct qcow2_state *s, uint64_t off, uint64_t end, uint64_t gran, int mode,
                        unsigned flags)
{
    uint64_t g = off & ~(gran - 1), ge = end == s->img->size ? end : g + gran;
    uint64_t entry, bitmap;
    enum qcow2_sc_type t;
    if (ge > s->img->size || !(flags & KIMG_ZERO_WIDEN))
        return write_zero_bytes(s, off, end - off);
    int ret = qcow2_get_l2_entry(s, g, &entry, &bitmap);
    if (ret == 0)
        ret = qcow2_sc_type(s, entry, bitmap,
                            s->ext_l2 ? (unsigned)((g & s->cluster_mask) >> s->subcluster_bits) : 0,
                            &t);
    if (ret < 0)
        return ret;
    bool zero = t == QCOW2_SC_ZERO_PLAIN || t == QCOW2_SC_ZERO_ALLOC ||
                ((t == QCOW2_SC_UNALLOC || t == QCOW2_SC_UNALLOC_ALLOC) &&
                 below_reads_zero(s, g, off - g) && below_reads_zero(s, end, ge - end));
    if (!zero)
        return write_zero_bytes(s, off, end - off);
    return zero_clusters(s, g, gran, mode);
}

/* Fast zero (KIMG_DRV_FAST_ZERO): whether [off, off+len) can be zeroed
 * in the L2 tables alone (whole granules made zero clusters, or
 * unallocated in a v2 image with no backing file), writing no data. */
bool qcow2_zero_is_fast(const struct qcow2_state *s, uint64_t off, uint64_t len, unsigned flags)
{
    uint64_t gran = s->ext_l2 ? s->subcluster_size : s->cluster_size;
    uint64_t end = off + len;
    bool to_end = end == s->img->size;
    return !(s->version < 3 && (s->img->backing_name || !(flags & KIMG_ZERO_MAY_UNMAP))) &&
           !s->data_file_raw && !(off & (gran - 1)) && (to_end || !(end & (gran - 1)));
}

int qcow2_zero_range(struct qcow2_state *s, uint64_t off, uint64_t len, unsigned flags)
{
    int ret = 0;

    qcow2_assert_locked(s);
    if ((flags & KIMG_ZERO_FAST) && !qcow2_zero_is_fast(s, off, len, flags))
        return -ENOTSUP;
    uint64_t gran = s->ext_l2 ? s->subcluster_size : s->cluster_size;
    uint64_t end = off + len;
    uint64_t a = qcow2_align_up(off, gran);
    uint64_t b = end == s->img->size ? qcow2_align_up(end, gran) : end & ~(gran - 1);
    s->zcache_valid = false;
    if (s->version < 3 && (s->img->backing_name || !(flags & KIMG_ZERO_MAY_UNMAP))) {
        ret = write_zero_bytes(s, off, len);
        return ret;
    }
    if (s->data_file_raw) {
        /* the data file must stay a valid raw image: zero it for real */
        ret = write_zero_bytes(s, off, len);
        return ret;
    }
    int mode = (flags & KIMG_ZERO_MAY_UNMAP) ? 1 : 0;
    if (off < a) {
        ret = zero_partial(s, off, a < end ? a : end, gran, mode, flags);
        if (ret < 0)
            return ret;
    }
    /* whole granules, cluster by cluster (partial-cluster runs of
     * subclusters are handled inside zero_clusters) */
    if (a < b) {
        ret = zero_clusters(s, a, b - a, mode);
        if (ret < 0)
            return ret;
    }
    if (a <= b && b < end)
        ret = zero_partial(s, b, end, gran, mode, flags);
    return ret;
}

int qcow2_discard_range(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    int ret = 0;

    qcow2_assert_locked(s);
    s->zcache_valid = false;
    uint64_t end = off + len;
    uint64_t a = qcow2_align_up(off, s->cluster_size);
    uint64_t b = end == s->img->size ? qcow2_align_up(end, s->cluster_size)
                                : end & ~s->cluster_mask;
    /* a raw data file must read as the guest sees it: zero it for real */
    if (a < b && s->data_file_raw)
        ret = write_zero_bytes(s, a, (b < s->img->size ? b : s->img->size) - a);
    else if (a < b)
        ret = zero_clusters(s, a, b - a, 2);
    return ret;
}

int qcow2_zero_bytes(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    s->zcache_valid = false;
    return write_zero_bytes(s, off, len);
}

int qcow2_zero_clusters(struct qcow2_state *s, uint64_t off, uint64_t len, int mode)
{
    s->zcache_valid = false;
    return zero_clusters(s, off, len, mode);
}
