/*
 * write.c — guest writes: L2 table allocation and copy-on-write of shared
 * tables, cluster allocation, COW of partial (sub)clusters from the backing
 * file, of clusters shared with snapshots and of compressed clusters; zero
 * writes (KIMG_ZERO_WIDEN: a partly covered cluster whose rest reads as
 * zeros becomes a zero cluster, as qemu's), discard, flush, L1 growth,
 * preallocation, compressed writes.  Ordering: refcounts reach the disk before the L2 entries that
 * need them (cache dependency), a new L2 table before its L1 entry, and
 * old clusters are freed only after the entries that dropped them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* ---- small helpers --------------------------------------------------- */

static int write_l1_entry(struct qcow2_state *s, uint64_t l1i);

int qcow2_flush_caches(struct qcow2_state *s)
{
    int ret = qcow2_cache_flush(&s->l2_cache);
    if (ret < 0)
        return ret;
    ret = qcow2_cache_flush(&s->rb_cache);
    if (ret < 0)
        return ret;
    /* the L2 tables are on disk: now the L1 entries pointing at them */
    if (s->nb_l1_pending) {
        for (size_t i = 0; i < s->nb_l1_pending; i++) {
            if (s->l1_pending[i] >= s->l1_size)
                continue;
            ret = write_l1_entry(s, s->l1_pending[i]);
            if (ret < 0)
                return ret;
        }
        s->nb_l1_pending = 0;
    }
    ret = kimg_file_sync(s->file);
    if (ret < 0)
        return ret;
    if (s->data_file && s->data_file != s->file)
        ret = kimg_file_sync(s->data_file);
    return ret;
}

/* Called first by every writing entry point, lock held.  The core's door
 * has refused read-only and fenced images already (driver.h: drivers do
 * not re-check); a write only makes the zero-run cache stale.  Returns 0
 * (kept as int for its callers). */
static int check_writable(struct qcow2_state *s)
{
    s->zcache_valid = false;
    return 0;
}

static int write_l1_entry(struct qcow2_state *s, uint64_t l1i)
{
    uint8_t b[8];
    qcow2_put_be64(b, s->l1[l1i]);
    return kimg_file_pwrite(s->file, b, 8, s->l1_offset + l1i * 8);
}

/* Get the L2 table for guest offset OFF ready for modification: allocated,
 * and not shared with a snapshot.  Returns the table held in the cache. */
static int get_l2_for_write(struct qcow2_state *s, uint64_t off, uint8_t **table)
{
    uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
    int ret;

    if (l1i >= s->l1_size) {
        ret = qcow2_grow_l1(s, l1i + 1);
        if (ret < 0)
            return ret;
    }
    uint64_t e = s->l1[l1i];
    uint64_t old = e & QCOW2_L1E_OFFSET_MASK;
    if (old) {
        if (old & s->cluster_mask)
            return qcow2_signal_corruption(s, "L2 table offset %#" PRIx64 " unaligned "
                                           "(L1 index: %#" PRIx64 ")", old, l1i);
        if (qcow2_overlaps_main(s, old, s->cluster_size))
            return qcow2_signal_corruption(s, "L2 table at %#" PRIx64 " overlaps other "
                                           "metadata (L1 index: %#" PRIx64 ")", old, l1i);
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

static uint8_t *l2_slot(struct qcow2_state *s, uint8_t *l2, uint64_t off)
{
    return l2 + ((off >> s->cluster_bits) & (s->l2_entries - 1)) * s->l2_entry_size;
}

/* Guest data of the backing chain for [off, off+len) of this layer,
 * zeros past the virtual size. */
static int read_below(struct qcow2_state *s, uint8_t *buf, uint64_t off, uint64_t len)
{
    if (off >= s->size) {
        memset(buf, 0, len);
        return 0;
    }
    if (off + len > s->size) {
        memset(buf + (s->size - off), 0, off + len - s->size);
        len = s->size - off;
    }
    return kimg_read_backing(s->img, buf, off, len);
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

/* Content of subcluster range [a, b) (cluster-relative) for a cluster whose
 * old state is TYPES[], read into OUT. */
static int fill_old(struct qcow2_state *s, uint64_t cstart, uint64_t entry,
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

static void set_entry(struct qcow2_state *s, uint8_t *slot, uint64_t entry, uint64_t bitmap)
{
    qcow2_put_be64(slot, entry);
    if (s->ext_l2)
        qcow2_put_be64(slot + 8, bitmap);
}

/* Old host ranges to free once the entries that dropped them are on disk. */
struct freelist {
    uint64_t *off, *len;
    size_t n, cap;
};

static int freelist_add(struct freelist *f, uint64_t off, uint64_t len)
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

static int freelist_run(struct qcow2_state *s, struct freelist *f)
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

static void freelist_free(struct freelist *f)
{
    free(f->off);
    free(f->len);
}

/* ---- one cluster of a guest write ------------------------------------- */

static int write_one(struct qcow2_state *s, uint8_t *l2, const uint8_t *data,
                     uint64_t off, uint64_t n, struct wpend *wp, struct freelist *fl)
{
    uint64_t in = off & s->cluster_mask;
    uint64_t cstart = off - in;
    uint8_t *slot = l2_slot(s, l2, off);
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
                set_entry(s, slot, entry, bitmap);
                qcow2_cache_mark_dirty(&s->l2_cache, l2);
            }
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
    if (ra == in && rb == in + n) {
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
            ret = fill_old(s, cstart, entry, types, decomp, rbuf, ra, in);
            if (ret < 0)
                goto out;
        }
        if (in + n < rb) {
            ret = fill_old(s, cstart, entry, types, decomp, rbuf + (in + n - ra), in + n, rb);
            if (ret < 0)
                goto out;
        }
        memcpy(rbuf + (in - ra), data, n);
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
    set_entry(s, slot, ne, nb);
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    if (need_new) {
        uint64_t fo, flen;
        qcow2_entry_ref(s, entry, &fo, &flen);
        if (flen)
            ret = freelist_add(fl, fo, flen);
    }
out:
    free(decomp);
    free(rbuf);
    return ret;
}

static int do_write(struct qcow2_state *s, const uint8_t *buf, uint64_t off, uint64_t len)
{
    struct wpend wp = { 0 };
    struct freelist fl = { 0 };
    uint8_t *l2 = NULL;
    uint64_t cur_l1i = UINT64_MAX;
    int ret = 0;

    if (!s->data_file)
        return kimg_fail(-EIO, "Cannot write guest data: the external data file is not open");
    while (len) {
        uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
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
            ret = freelist_run(s, &fl);
            if (ret < 0)
                break;
            ret = get_l2_for_write(s, off, &l2);
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
        ret = freelist_run(s, &fl);
    freelist_free(&fl);
    return ret;
}

int qcow2_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = img->state;
    pthread_mutex_lock(&s->lock);
    int ret = check_writable(s);
    if (ret == 0)
        ret = do_write(s, buf, off, len);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* ---- zeroes and discard ------------------------------------------------- */

static int write_zero_bytes(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
    uint8_t *z = kimg_alloc_aligned_zero(chunk);
    int ret = 0;
    if (!z)
        return -ENOMEM;
    while (len && ret == 0) {
        uint64_t n = len < chunk ? len : chunk;
        ret = do_write(s, z, off, n);
        off += n;
        len -= n;
    }
    free(z);
    return ret;
}

/* MODE: 0 zero-write keeping allocation, 1 zero-write may unmap,
 * 2 discard (qemu: v3 reads zeros afterwards, v2 unallocated),
 * 3 full discard (entries become unallocated: shrinking). */
static int zero_clusters(struct qcow2_state *s, uint64_t off, uint64_t len, int mode)
{
    struct freelist fl = { 0 };
    uint8_t *l2 = NULL;
    uint64_t cur_l1i = UINT64_MAX;
    int ret = 0;

    while (len) {
        uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
        uint64_t n = s->cluster_size - (off & s->cluster_mask);
        if (n > len)
            n = len;
        if (l1i != cur_l1i) {
            if (l2)
                qcow2_cache_put(&s->l2_cache, l2);
            l2 = NULL;
            ret = freelist_run(s, &fl);
            if (ret < 0)
                break;
            if (mode >= 2 && (l1i >= s->l1_size ||
                              !(s->l1[l1i] & QCOW2_L1E_OFFSET_MASK)) &&
                (s->version < 3 || !s->img->backing_name || mode == 3)) {
                /* nothing allocated here; with v3 and a backing file the
                 * zero flags must still hide the backing data */
                uint64_t span = (l1i + 1) << (s->cluster_bits + s->l2_bits);
                uint64_t step = span - off < len ? span - off : len;
                off += step;
                len -= step;
                continue;
            }
            ret = get_l2_for_write(s, off, &l2);
            if (ret < 0)
                break;
            cur_l1i = l1i;
        }
        uint8_t *slot = l2_slot(s, l2, off);
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
                bool keep = mode == 0 && t0 != QCOW2_SC_COMPRESSED && !shared &&
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
            bool keep = mode == 0 && t0 != QCOW2_SC_COMPRESSED && !shared && h;
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
            set_entry(s, slot, ne, nb);
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
        }
        if (flen) {
            ret = freelist_add(&fl, fo, flen);
            if (ret < 0)
                break;
        }
        off += n;
        len -= n;
    }
    if (l2)
        qcow2_cache_put(&s->l2_cache, l2);
    if (ret == 0)
        ret = freelist_run(s, &fl);
    freelist_free(&fl);
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
    uint64_t g = off & ~(gran - 1), ge = end == s->size ? end : g + gran;
    uint64_t entry, bitmap;
    enum qcow2_sc_type t;
    if (ge > s->size || !(flags & KIMG_ZERO_WIDEN))
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

int qcow2_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct qcow2_state *s = img->state;
    int ret;

    pthread_mutex_lock(&s->lock);
    ret = check_writable(s);
    if (ret < 0)
        goto out;
    if (s->version < 3 && (img->backing_name || !(flags & KIMG_ZERO_MAY_UNMAP))) {
        ret = write_zero_bytes(s, off, len);
        goto out;
    }
    if (s->data_file_raw) {
        /* the data file must stay a valid raw image: zero it for real */
        ret = write_zero_bytes(s, off, len);
        goto out;
    }
    uint64_t gran = s->ext_l2 ? s->subcluster_size : s->cluster_size;
    uint64_t end = off + len;
    uint64_t a = qcow2_align_up(off, gran);
    uint64_t b = end == s->size ? qcow2_align_up(end, gran) : end & ~(gran - 1);
    int mode = (flags & KIMG_ZERO_MAY_UNMAP) ? 1 : 0;
    if (off < a) {
        ret = zero_partial(s, off, a < end ? a : end, gran, mode, flags);
        if (ret < 0)
            goto out;
    }
    /* whole granules, cluster by cluster (partial-cluster runs of
     * subclusters are handled inside zero_clusters) */
    if (a < b) {
        ret = zero_clusters(s, a, b - a, mode);
        if (ret < 0)
            goto out;
    }
    if (a <= b && b < end)
        ret = zero_partial(s, b, end, gran, mode, flags);
out:
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int qcow2_discard(struct kimg *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = img->state;
    int ret;

    pthread_mutex_lock(&s->lock);
    ret = check_writable(s);
    if (ret < 0)
        goto out;
    uint64_t end = off + len;
    uint64_t a = qcow2_align_up(off, s->cluster_size);
    uint64_t b = end == s->size ? qcow2_align_up(end, s->cluster_size)
                                : end & ~s->cluster_mask;
    /* a raw data file must read as the guest sees it: zero it for real */
    if (a < b && s->data_file_raw)
        ret = write_zero_bytes(s, a, (b < s->size ? b : s->size) - a);
    else if (a < b)
        ret = zero_clusters(s, a, b - a, 2);
out:
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int qcow2_flush(struct kimg *img)
{
    struct qcow2_state *s = img->state;
    pthread_mutex_lock(&s->lock);
    int ret = qcow2_can_write(s) ? qcow2_flush_caches(s) : 0;
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* ---- L1 growth, preallocation, truncate ---------------------------------- */

int qcow2_grow_l1(struct qcow2_state *s, uint64_t min_size)
{
    uint64_t bytes, noff;
    uint8_t *buf;
    uint64_t *nl1;
    int ret;

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

int qcow2_preallocate(struct qcow2_state *s, uint64_t off, uint64_t len,
                      enum kimg_prealloc mode)
{
    uint8_t *l2 = NULL;
    uint64_t end = off + len, last_end = 0;
    int ret = 0;

    if (mode == KIMG_PREALLOC_OFF || !len)
        return 0;
    off &= ~s->cluster_mask;
    while (off < end) {
        uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
        uint64_t span_end = (l1i + 1) << (s->cluster_bits + s->l2_bits);
        if (span_end > end)
            span_end = qcow2_align_up(end, s->cluster_size);
        ret = get_l2_for_write(s, off, &l2);
        if (ret < 0)
            return ret;
        while (off < span_end) {
            /* a run of unallocated entries */
            uint64_t n = 0;
            while (off + (n << s->cluster_bits) < span_end) {
                uint8_t *slot = l2_slot(s, l2, off + (n << s->cluster_bits));
                if (qcow2_be64(slot) & ~QCOW2_OFLAG_ZERO)
                    break;
                n++;
            }
            if (!n) {
                off += s->cluster_size;
                continue;
            }
            uint64_t host;
            if (s->has_data_file) {
                host = off;
            } else {
                ret = qcow2_alloc_clusters(s, n, &host);
                if (ret < 0)
                    goto out;
            }
            for (uint64_t i = 0; i < n; i++) {
                uint8_t *slot = l2_slot(s, l2, off + (i << s->cluster_bits));
                /* with extended L2 qemu leaves the subclusters unallocated
                 * (a backing file still shows through) */
                set_entry(s, slot, (host + (i << s->cluster_bits)) | QCOW2_OFLAG_COPIED, 0);
            }
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
            uint64_t bytes = n << s->cluster_bits;
            /* reused space may hold old data: preallocated clusters read zeros */
            uint64_t fsz = 0;
            ret = kimg_file_size(s->data_file, &fsz);
            if (ret == 0 && host < fsz)
                ret = kimg_file_zero(s->data_file, host, fsz - host < bytes ? fsz - host : bytes,
                                     mode == KIMG_PREALLOC_METADATA);
            if (ret < 0)
                goto out;
            if (mode == KIMG_PREALLOC_FALLOC) {
                ret = kimg_file_allocate(s->data_file, host, bytes);
            } else if (mode == KIMG_PREALLOC_FULL) {
                {
                    /* full: the blocks are really written */
                    uint8_t *z = kimg_alloc_aligned_zero(1u << 20);
                    if (!z) {
                        ret = -ENOMEM;
                    } else {
                        for (uint64_t p = 0; ret == 0 && p < bytes; p += 1u << 20)
                            ret = kimg_file_pwrite(s->data_file, z,
                                                   bytes - p < (1u << 20) ? bytes - p
                                                                          : 1u << 20,
                                                   host + p);
                        free(z);
                    }
                }
            }
            if (ret < 0)
                goto out;
            if (host + bytes > last_end)
                last_end = host + bytes;
            off += bytes;
        }
        qcow2_cache_put(&s->l2_cache, l2);
        l2 = NULL;
    }
    /* the data clusters lie inside the file */
    if (last_end && mode == KIMG_PREALLOC_METADATA) {
        uint64_t fsz = 0;
        ret = kimg_file_size(s->data_file, &fsz);
        if (ret == 0 && fsz < last_end)
            ret = kimg_file_truncate(s->data_file, last_end);
    }
out:
    if (l2)
        qcow2_cache_put(&s->l2_cache, l2);
    if (ret == 0)
        ret = qcow2_flush_caches(s);
    return ret;
}

/* For resize.c (qcow2_truncate): zero bytes through guest writes, and the
 * cluster-granular zeroing/discard of zero_clusters (MODE as there); both
 * called with the lock held. */
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

/* ---- compressed writes --------------------------------------------------- */

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
           (len == s->cluster_size || off + len == s->size);
}

int qcow2_write_compressed(struct qcow2_state *s, const void *buf, uint64_t off,
                           uint64_t len)
{
    uint8_t *dst = NULL;
    int ret;

    ret = check_writable(s);
    if (ret < 0)
        return ret;
    if (!qcow2_can_compress(s, off, len))
        return do_write(s, buf, off, len);
    dst = kimg_alloc_aligned(s->cluster_size);
    if (!dst)
        return -ENOMEM;
    int64_t clen = qcow2_compress_cluster(s, buf, len, dst, s->cluster_size);
    if (clen == -ENOSPC)
        ret = do_write(s, buf, off, len);
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
    return ret < 0 ? ret : do_write(s, buf, off, len);
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

    /* the L2 table first (allocated if new), the data after it: the file
     * then ends right after the compressed data, as qemu's does */
    ret = get_l2_for_write(s, off, &l2);
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
    uint8_t *slot = l2_slot(s, l2, off);
    uint64_t old = qcow2_be64(slot), fo, flen;
    qcow2_entry_ref(s, old, &fo, &flen);
    set_entry(s, slot, entry, 0);
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

    pthread_mutex_lock(&s->lock);
    ret = check_writable(s);
    if (ret < 0)
        goto out;
    /* an external data file keeps guest offsets: the ordinary path */
    if (s->has_data_file || !s->data_file || (off & s->cluster_mask) ||
        len < s->cluster_size || off + s->cluster_size > s->size) {
        ret = 0;
        goto out;
    }
    uint64_t span = s->cluster_size << s->l2_bits;
    uint64_t end = off + (len & ~s->cluster_mask);
    if (end > (off / span + 1) * span)
        end = (off / span + 1) * span;
    if (end > (s->size & ~s->cluster_mask))
        end = s->size & ~s->cluster_mask;
    ret = get_l2_for_write(s, off, &l2);
    if (ret < 0)
        goto out;
    uint64_t n = 0, max = (end - off) >> s->cluster_bits;
    while (n < max && entry_fresh(qcow2_be64(l2_slot(s, l2, off + (n << s->cluster_bits)))))
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
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* The driver's commit_data: the data of [off, off+len) is at HOST now;
 * point the L2 entries at it (they must still be fresh). */
int qcow2_commit_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t host)
{
    struct qcow2_state *s = img->state;
    uint8_t *l2 = NULL;
    int ret;

    pthread_mutex_lock(&s->lock);
    ret = check_writable(s);
    if (ret == 0)
        ret = get_l2_for_write(s, off, &l2);
    for (uint64_t p = 0; ret == 0 && p < len; p += s->cluster_size) {
        uint8_t *slot = l2_slot(s, l2, off + p);
        if (!entry_fresh(qcow2_be64(slot))) {
            ret = kimg_fail(-EIO, "qcow2: cluster at guest offset %#" PRIx64
                            " was allocated twice", off + p);
            break;
        }
        set_entry(s, slot, (host + p) | QCOW2_OFLAG_COPIED, s->ext_l2 ? 0xffffffffULL : 0);
    }
    if (l2) {
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        qcow2_cache_put(&s->l2_cache, l2);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}
