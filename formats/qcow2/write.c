/*
 * write.c — guest data writes: the writable entries (write, zeroes,
 * discard, flush, compressed writes, the copy engine's alloc_data and
 * commit_data), and the write of guest data cluster by cluster: in place
 * where the cluster is the image's own, else to a new cluster with the
 * copy-on-write of the parts not written (from the old cluster, a
 * compressed one, or the backing chain).  Data reaches the file before
 * the L2 entries pointing at it, and for an encrypted image only
 * encrypted (whole sectors; crypto.c); zeroing lives in zero.c,
 * compressed clusters in write_compressed.c, L2/L1 tables in cluster.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* ---- small helpers --------------------------------------------------- */

/* Called first by every writing entry point, lock held.  The core's door
 * has refused read-only and fenced images already (driver.h: drivers do
 * not re-check); a write only makes the zero-run cache stale.  Returns 0
 * (kept as int for its callers). */
static int check_writable(struct qcow2_state *s)
{
    s->zcache_valid = false;
    return 0;
}

/* Pending data write straight from the caller's buffer (contiguous runs
 * coalesced); flushed before any L2 table can be evicted. */
struct wpend {
    const uint8_t *buf;
    uint64_t host, len;
};

static int wpend_flush(struct qcow2_state *s, struct wpend *p)
{
    int ret = 0;
    if (p->len)
        ret = kimg_file_pwrite(s->data_file, p->buf, p->len, p->host);
    p->len = 0;
    return ret;
}

static int wpend_add(struct qcow2_state *s, struct wpend *p, const uint8_t *buf,
                     uint64_t host, uint64_t len)
{
    if (p->len && p->buf + p->len == buf && p->host + p->len == host &&
        p->len + len <= (32u << 20)) {
        p->len += len;
        return 0;
    }
    int ret = wpend_flush(s, p);
    p->buf = buf;
    p->host = host;
    p->len = len;
    return ret;
}

/* ---- one cluster of a guest write ------------------------------------- */

/* An encrypted image's data written in place (the cluster is its own):
 * whole sectors, the parts of the first and last one the write does not
 * cover read back (decrypted) first, then encrypted and written. */
static int write_sealed(struct qcow2_state *s, uint64_t cstart, uint64_t entry,
                        const enum qcow2_sc_type *types, const uint8_t *data, uint64_t in,
                        uint64_t n, struct wpend *wp)
{
    uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
    uint64_t ra = in & ~(uint64_t)511, rb = qcow2_align_up(in + n, 512);
    uint8_t *rbuf = kimg_alloc_aligned(rb - ra);
    int ret = 0;
    if (!rbuf)
        return -ENOMEM;
    if (ra < in)
        ret = qcow2_cow_read(s, cstart, entry, types, NULL, rbuf, ra, in);
    if (ret == 0 && in + n < rb)
        ret = qcow2_cow_read(s, cstart, entry, types, NULL, rbuf + (in + n - ra), in + n, rb);
    if (ret == 0) {
        memcpy(rbuf + (in - ra), data, n);
        ret = qcow2_crypto_run(s, true, cstart + ra, host + ra, rbuf, rb - ra);
    }
    if (ret == 0)
        ret = wpend_flush(s, wp);
    if (ret == 0)
        ret = kimg_file_pwrite(s->data_file, rbuf, rb - ra, host + ra);
    free(rbuf);
    return ret;
}

static int write_one(struct qcow2_state *s, uint8_t *l2, const uint8_t *data,
                     uint64_t off, uint64_t n, struct wpend *wp, struct qcow2_freelist *fl)
{
    uint64_t in = off & s->cluster_mask;
    uint64_t cstart = off - in;
    uint8_t *slot = qcow2_l2_slot(s, l2, off);
    uint64_t entry = qcow2_be64(slot);
    uint64_t bitmap = s->ext_l2 ? qcow2_be64(slot + 8) : 0;
    unsigned nsc = s->ext_l2 ? 32 : 1;
    enum qcow2_sc_type types[32];
    uint8_t *decomp = NULL, *rbuf = NULL;
    int ret;

    for (unsigned i = 0; i < nsc; i++) {
        ret = qcow2_sc_type(s, entry, bitmap, i, &types[i]);
        if (ret < 0)
            return ret;
    }
    bool compressed = types[0] == QCOW2_SC_COMPRESSED;
    uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
    bool present = !compressed && (host || (s->has_data_file && (entry & QCOW2_OFLAG_COPIED)));
    bool need_new = false;

    if (compressed) {
        need_new = true;
    } else if (present && !(entry & QCOW2_OFLAG_COPIED) && !s->has_data_file) {
        uint64_t rc;
        ret = qcow2_refcount_get(s, host >> s->cluster_bits, &rc);
        if (ret < 0)
            return ret;
        if (rc == 1)
            entry |= QCOW2_OFLAG_COPIED;   /* sole owner after all */
        else if (rc == 0)
            return qcow2_signal_corruption(s, "Data cluster at %#" PRIx64
                                           " has refcount 0", host);
        else
            need_new = true;
    } else if (!present) {
        need_new = true;
    }

    unsigned sc0 = (unsigned)(in >> s->subcluster_bits);
    unsigned sc1 = (unsigned)((in + n - 1) >> s->subcluster_bits);
    if (!s->ext_l2 || compressed) {
        sc0 = 0;
        sc1 = nsc - 1;
    }
    /* the whole touched region already holds data in place: write through */
    if (!need_new) {
        bool all_normal = true;
        for (unsigned i = sc0; i <= sc1; i++)
            all_normal &= types[s->ext_l2 ? i : 0] == QCOW2_SC_NORMAL;
        if (all_normal) {
            if (!s->has_data_file && qcow2_overlaps_metadata(s, host + in, n))
                return qcow2_signal_corruption(s, "Preventing a data write to %#" PRIx64
                                               ": it overlaps metadata", host + in);
            if (!(qcow2_be64(slot) & QCOW2_OFLAG_COPIED)) {
                qcow2_l2_set(s, slot, entry, bitmap);
                qcow2_cache_mark_dirty(&s->l2_cache, l2);
            }
            if (qcow2_encrypted(s))
                return write_sealed(s, cstart, entry, types, data, in, n, wp);
            return wpend_add(s, wp, data, host + in, n);
        }
    }

    if (compressed) {
        decomp = kimg_alloc_aligned(s->cluster_size);
        if (!decomp)
            return -ENOMEM;
        ret = qcow2_read_compressed(s, entry, decomp);
        if (ret < 0)
            goto out;
    }

    uint64_t new_host = host;
    if (need_new) {
        if (s->has_data_file) {
            new_host = cstart;
        } else {
            ret = qcow2_alloc_clusters(s, 1, &new_host);
            if (ret < 0)
                goto out;
        }
    }

    /* region [ra, rb) of the cluster that gets written */
    uint64_t ra = (uint64_t)sc0 << s->subcluster_bits;
    uint64_t rb = s->ext_l2 && !compressed ? ((uint64_t)sc1 + 1) << s->subcluster_bits
                                           : s->cluster_size;
    /* moving a cluster that has data elsewhere in it: copy the whole cluster */
    if (need_new && present && s->ext_l2) {
        ra = 0;
        rb = s->cluster_size;
    }
    if (ra == in && rb == in + n && !qcow2_encrypted(s)) {
        /* fully covered: no fill */
        ret = wpend_add(s, wp, data, new_host + in, n);
        if (ret < 0)
            goto out;
    } else {
        rbuf = kimg_alloc_aligned(rb - ra);
        if (!rbuf) {
            ret = -ENOMEM;
            goto out;
        }
        if (in > ra) {
            ret = qcow2_cow_read(s, cstart, entry, types, decomp, rbuf, ra, in);
            if (ret < 0)
                goto out;
        }
        if (in + n < rb) {
            ret = qcow2_cow_read(s, cstart, entry, types, decomp, rbuf + (in + n - ra), in + n, rb);
            if (ret < 0)
                goto out;
        }
        memcpy(rbuf + (in - ra), data, n);
        /* (sub)cluster-aligned, so whole sectors: encrypted as a whole */
        ret = qcow2_crypto_run(s, true, cstart + ra, new_host + ra, rbuf, rb - ra);
        if (ret < 0)
            goto out;
        if (!need_new && !s->has_data_file &&
            qcow2_overlaps_metadata(s, new_host + ra, rb - ra)) {
            ret = qcow2_signal_corruption(s, "Preventing a data write to %#" PRIx64
                                          ": it overlaps metadata", new_host + ra);
            goto out;
        }
        ret = wpend_flush(s, wp);
        if (ret < 0)
            goto out;
        ret = kimg_file_pwrite(s->data_file, rbuf, rb - ra, new_host + ra);
        if (ret < 0)
            goto out;
    }

    /* the new entry */
    uint64_t ne = new_host | QCOW2_OFLAG_COPIED;
    uint64_t nb = 0;
    if (s->ext_l2) {
        if (compressed) {
            nb = 0xffffffffULL;
        } else {
            uint32_t alloc = (uint32_t)bitmap, zero = (uint32_t)(bitmap >> 32);
            uint32_t mask = (uint32_t)((sc1 - sc0 == 31) ? 0xffffffffu
                                      : (((1u << (sc1 - sc0 + 1)) - 1) << sc0));
            if (!present)
                alloc = 0;
            alloc |= mask;
            zero &= ~mask;
            nb = ((uint64_t)zero << 32) | alloc;
        }
    }
    qcow2_l2_set(s, slot, ne, nb);
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    if (need_new) {
        uint64_t fo, flen;
        qcow2_entry_ref(s, entry, &fo, &flen);
        if (flen)
            ret = qcow2_freelist_add(fl, fo, flen);
    }
out:
    free(decomp);
    free(rbuf);
    return ret;
}

int qcow2_write_data(struct qcow2_state *s, const void *vbuf, uint64_t off, uint64_t len)
{
    const uint8_t *buf = vbuf;
    struct wpend wp = { 0 };
    struct qcow2_freelist fl = { 0 };
    uint8_t *l2 = NULL;
    uint64_t cur_l1i = UINT64_MAX;
    int ret = 0;

    qcow2_assert_locked(s);
    if (!s->data_file)
        return kimg_fail(-EIO, "Cannot write guest data: the external data file is not open");
    while (len) {
        uint64_t l1i = qcow2_l1_index(s, off);
        uint64_t n = s->cluster_size - (off & s->cluster_mask);
        if (n > len)
            n = len;
        if (l1i != cur_l1i) {
            if (l2) {
                qcow2_cache_put(&s->l2_cache, l2);
                l2 = NULL;
            }
            /* data before any table that may point at it is evicted */
            ret = wpend_flush(s, &wp);
            if (ret < 0)
                break;
            ret = qcow2_freelist_run(s, &fl);
            if (ret < 0)
                break;
            ret = qcow2_l2_for_write(s, off, &l2);
            if (ret < 0)
                break;
            cur_l1i = l1i;
        }
        ret = write_one(s, l2, buf, off, n, &wp, &fl);
        if (ret < 0)
            break;
        buf += n;
        off += n;
        len -= n;
    }
    if (l2)
        qcow2_cache_put(&s->l2_cache, l2);
    int r2 = wpend_flush(s, &wp);
    if (ret == 0)
        ret = r2;
    if (ret == 0)
        ret = qcow2_freelist_run(s, &fl);
    qcow2_freelist_free(&fl);
    return ret;
}

int qcow2_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = img->state;
    qcow2_assert_locked(s);
    int ret = check_writable(s);
    if (ret == 0)
        ret = qcow2_write_data(s, buf, off, len);
    return ret;
}

/* ---- zeroes, discard, flush --------------------------------------------- */

int qcow2_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct qcow2_state *s = img->state;
    int ret;

    qcow2_assert_locked(s);
    ret = check_writable(s);
    if (ret < 0)
        goto out;
    ret = qcow2_zero_range(s, off, len, flags);
out:
    return ret;
}

int qcow2_discard(struct kimg *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = img->state;
    int ret;

    qcow2_assert_locked(s);
    ret = check_writable(s);
    if (ret < 0)
        goto out;
    ret = qcow2_discard_range(s, off, len);
out:
    return ret;
}

int qcow2_flush(struct kimg *img)
{
    struct qcow2_state *s = img->state;
    qcow2_assert_locked(s);
    int ret = qcow2_can_write(s) ? qcow2_flush_caches(s) : 0;
    return ret;
}

/* ---- compressed writes --------------------------------------------------- */

int qcow2_write_compressed(struct qcow2_state *s, const void *buf, uint64_t off,
                           uint64_t len)
{
    uint8_t *dst = NULL;
    int ret;

    ret = check_writable(s);
    if (ret < 0)
        return ret;
    if (!qcow2_can_compress(s, off, len))
        return qcow2_write_data(s, buf, off, len);
    dst = kimg_alloc_aligned(s->cluster_size);
    if (!dst)
        return -ENOMEM;
    int64_t clen = qcow2_compress_cluster(s, buf, len, dst, s->cluster_size);
    if (clen == -ENOSPC)
        ret = qcow2_write_data(s, buf, off, len);
    else if (clen < 0)
        ret = kimg_fail((int)clen, "Compression failed");
    else
        ret = qcow2_store_compressed(s, off, dst, clen);
    free(dst);
    return ret;
}

/* The stored-as-is fallback for a cluster that did not compress. */
int qcow2_write_plain(struct qcow2_state *s, const void *buf, uint64_t off, uint64_t len)
{
    int ret = check_writable(s);
    return ret < 0 ? ret : qcow2_write_data(s, buf, off, len);
}

/* ---- parallel data writes (the copy engine) ------------------------------- */

/* Whether an entry leaves its cluster free for new data: no host cluster
 * (unallocated or a plain zero cluster) and not compressed. */
static bool entry_fresh(uint64_t entry)
{
    return !(entry & QCOW2_L2E_OFFSET_MASK) && !(entry & QCOW2_OFLAG_COMPRESSED);
}

/* The driver's alloc_data (driver.h): new clusters for whole guest
 * clusters at OFF that hold no host cluster yet, within one L2 table.
 * Refcounts and the L2 table itself are allocated now (in call order:
 * the layout), the L2 entries only by qcow2_commit_data. */
int64_t qcow2_alloc_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t *host,
                         struct kimg_file **file)
{
    struct qcow2_state *s = img->state;
    uint8_t *l2 = NULL;
    int64_t ret;

    qcow2_assert_locked(s);
    ret = check_writable(s);
    if (ret < 0)
        goto out;
    /* an external data file keeps guest offsets: the ordinary path */
    if (s->has_data_file || !s->data_file || (off & s->cluster_mask) ||
        len < s->cluster_size || off + s->cluster_size > s->img->size) {
        ret = 0;
        goto out;
    }
    uint64_t span = s->cluster_size << s->l2_bits;
    uint64_t end = off + (len & ~s->cluster_mask);
    if (end > (off / span + 1) * span)
        end = (off / span + 1) * span;
    if (end > (s->img->size & ~s->cluster_mask))
        end = s->img->size & ~s->cluster_mask;
    ret = qcow2_l2_for_write(s, off, &l2);
    if (ret < 0)
        goto out;
    uint64_t n = 0, max = (end - off) >> s->cluster_bits;
    while (n < max && entry_fresh(qcow2_be64(qcow2_l2_slot(s, l2, off + (n << s->cluster_bits)))))
        n++;
    if (n) {
        uint64_t h;
        ret = qcow2_alloc_clusters(s, n, &h);
        if (ret < 0)
            goto out;
        *host = h;
        *file = s->data_file;
        ret = (int64_t)(n << s->cluster_bits);
    }
out:
    if (l2)
        qcow2_cache_put(&s->l2_cache, l2);
    return ret;
}

/* The driver's commit_data: the data of [off, off+len) is at HOST now;
 * point the L2 entries at it (they must still be fresh). */
int qcow2_commit_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t host)
{
    struct qcow2_state *s = img->state;
    uint8_t *l2 = NULL;
    int ret;

    qcow2_assert_locked(s);
    ret = check_writable(s);
    if (ret == 0)
        ret = qcow2_l2_for_write(s, off, &l2);
    for (uint64_t p = 0; ret == 0 && p < len; p += s->cluster_size) {
        uint8_t *slot = qcow2_l2_slot(s, l2, off + p);
        if (!entry_fresh(qcow2_be64(slot))) {
            ret = kimg_fail(-EIO, "qcow2: cluster at guest offset %#" PRIx64
                            " was allocated twice", off + p);
            break;
        }
        qcow2_l2_set(s, slot, (host + p) | QCOW2_OFLAG_COPIED, s->ext_l2 ? 0xffffffffULL : 0);
    }
    if (l2) {
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        qcow2_cache_put(&s->l2_cache, l2);
    }
    return ret;
}
