/*
 * write_compressed.c — compressed clusters: compressing one guest cluster
 * (thread-safe, no I/O: the copy engine's workers call it without the
 * lock) and storing compressed data for a guest cluster (lock held):
 * packed after the previous compressed cluster, refcounts first, then the
 * L2 entry; the cluster it replaces is freed last.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* Compress the guest data of one cluster (LEN bytes, LEN < cluster size
 * only for the image's last cluster: zero-padded) into DST (CAP bytes).
 * Thread-safe and without I/O: the copy engine calls it from its workers.
 * Returns the compressed length, or -ENOSPC when it would not shrink the
 * cluster (store it uncompressed then). */
int64_t qcow2_compress_cluster(struct qcow2_state *s, const void *buf, uint64_t len,
                               uint8_t *dst, size_t cap)
{
    const uint8_t *src = buf;
    uint8_t *padded = NULL;
    if (len > s->cluster_size)
        return -EINVAL;
    if (len < s->cluster_size) {
        padded = kimg_alloc_aligned_zero(s->cluster_size);
        if (!padded)
            return -ENOMEM;
        memcpy(padded, buf, len);
        src = padded;
    }
    /* a compressed cluster must leave room: at most cluster size - 512 */
    size_t limit = s->cluster_size - 512 < cap ? s->cluster_size - 512 : cap;
    int64_t clen = qcow2_compress_level(s->compression_type, s->compression_level, dst, limit,
                                        src, s->cluster_size);
    free(padded);
    return clen;
}

/* Whether a compressed write of [off, off+len) can be stored compressed. */
bool qcow2_can_compress(const struct qcow2_state *s, uint64_t off, uint64_t len)
{
    return !s->has_data_file && !(off & s->cluster_mask) && len <= s->cluster_size &&
           (len == s->cluster_size || off + len == s->img->size);
}

/* Store one already compressed cluster (CLEN bytes at CDATA) for the guest
 * cluster at OFF: placement right after the previous compressed cluster,
 * refcounts first, then the L2 entry; the old cluster is freed last.
 * Called with the lock held. */
int qcow2_store_compressed(struct qcow2_state *s, uint64_t off, const uint8_t *cdata,
                           int64_t clen)
{
    uint8_t *l2 = NULL;
    int ret;

    qcow2_assert_locked(s);
    /* the L2 table first (allocated if new), the data after it: the file
     * then ends right after the compressed data, as qemu's does */
    ret = qcow2_l2_for_write(s, off, &l2);
    if (ret < 0)
        return ret;
    /* Place the data right after the previous compressed cluster: in the
     * rest of its host cluster, running on into freshly allocated clusters
     * when those come right after it (compressed data may span host
     * clusters), so compressed images are packed as tightly as qemu's. */
    uint64_t host, ulen = (uint64_t)clen;
    uint64_t nxt = s->compressed_next;
    uint64_t rem = (nxt & s->cluster_mask) ? s->cluster_size - (nxt & s->cluster_mask) : 0;
    if (rem >= ulen) {
        host = nxt;
        ret = qcow2_refcount_update(s, host, ulen, 1);
        if (ret < 0)
            goto out;
    } else {
        uint64_t need = ulen - rem;
        uint64_t n = qcow2_align_up(need, s->cluster_size) >> s->cluster_bits;
        uint64_t fresh;
        ret = qcow2_alloc_clusters(s, n, &fresh);
        if (ret < 0)
            goto out;
        if (rem && fresh == nxt + rem) {
            /* contiguous: the partly used cluster gains a reference */
            host = nxt;
            ret = qcow2_refcount_update(s, nxt, rem, 1);
        } else if (rem) {
            /* not contiguous: start the data in fresh clusters of its own */
            ret = qcow2_free_clusters(s, fresh, n << s->cluster_bits);
            if (ret == 0) {
                n = qcow2_align_up(ulen, s->cluster_size) >> s->cluster_bits;
                ret = qcow2_alloc_clusters(s, n, &host);
            }
        } else {
            host = fresh;
        }
        if (ret < 0)
            goto out;
    }
    s->compressed_next = host + (uint64_t)clen;
    ret = kimg_file_pwrite_packed(s->file, cdata, (size_t)clen, host);
    if (ret < 0)
        goto out;
    uint64_t nsec = ((host + (uint64_t)clen + 511) >> 9) - (host >> 9);
    uint64_t entry = QCOW2_OFLAG_COMPRESSED | host | ((nsec - 1) << s->csize_shift);
    uint8_t *slot = qcow2_l2_slot(s, l2, off);
    uint64_t old = qcow2_be64(slot), fo, flen;
    qcow2_entry_ref(s, old, &fo, &flen);
    qcow2_l2_set(s, slot, entry, 0);
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    qcow2_cache_put(&s->l2_cache, l2);
    l2 = NULL;
    if (flen) {
        ret = qcow2_cache_flush(&s->l2_cache);
        if (ret == 0)
            ret = qcow2_free_clusters(s, fo, flen);
    }
out:
    if (l2)
        qcow2_cache_put(&s->l2_cache, l2);
    return ret;
}
