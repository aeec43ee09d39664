/*
 * map.c — guest reads (backing reads for the unallocated parts, host runs
 * coalesced, compressed clusters decompressed, encrypted data decrypted,
 * read plans carried out without the lock) and block status, on top of
 * the cluster layer's lookup and classification (cluster.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

int qcow2_read_compressed(struct qcow2_state *s, uint64_t entry, uint8_t *out)
{
    uint64_t host, len;
    uint8_t *in;
    int ret;

    if (s->zcache_valid && s->zcache_entry == entry && s->zcache) {
        memcpy(out, s->zcache, s->cluster_size);
        return 0;
    }
    qcow2_compressed_range(s, entry, &host, &len);
    in = kimg_scratch(0, len);
    if (!in)
        return -ENOMEM;
    ret = kimg_file_pread_zero_eof(s->file, in, len, host);
    if (ret == 0)
        ret = qcow2_decompress(s->compression_type, out, s->cluster_size, in, len);
    kimg_scratch_done();
    if (ret < 0)
        return ret;
    if (!s->zcache)
        s->zcache = kimg_alloc_aligned(s->cluster_size);
    if (s->zcache) {
        memcpy(s->zcache, out, s->cluster_size);
        s->zcache_entry = entry;
        s->zcache_valid = true;
    }
    return 0;
}

static int need_data_file(struct qcow2_state *s)
{
    if (s->data_file)
        return 0;
    return kimg_fail(-EIO, "Cannot read guest data: the external data file is not open");
}

/* Pending coalesced transfer. */
/*
 * Read plans.  For a read-only image the mapping (L1/L2 through the cache)
 * is done under the lock and recorded as a plan; the data reads and the
 * decompression then run without the lock, so several threads read and
 * decompress one image at once (the copy engine's workers).  Only fields
 * fixed at open are used outside the lock.
 */
enum seg_kind { SEG_HOST = 1, SEG_BACKING = 2, SEG_COMPRESSED = 3 };
struct qcow2_read_seg {
    enum seg_kind kind;
    uint8_t *buf;
    uint64_t where;     /* host offset, guest offset, or compressed L2 entry */
    uint64_t pos;       /* compressed: offset inside the cluster; host data:
                           its guest offset (the IV of legacy AES) */
    uint64_t len;
};

static int plan_add(struct qcow2_read_plan *pl, enum seg_kind kind, uint8_t *buf, uint64_t where,
                    uint64_t pos, uint64_t len)
{
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? pl->cap * 2 : 16;
        struct qcow2_read_seg *v = realloc(pl->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        pl->v = v;
        pl->cap = cap;
    }
    pl->v[pl->n++] = (struct qcow2_read_seg){ kind, buf, where, pos, len };
    return 0;
}

struct pend {
    int kind;           /* 0 none, 1 host read, 2 backing read */
    uint8_t *buf;
    uint64_t host;      /* host offset (kind 1) or guest offset (kind 2) */
    uint64_t guest;     /* the guest offset of host's first byte (kind 1) */
    uint64_t len;
    struct qcow2_read_plan *plan;  /* record instead of reading */
};

static int pend_flush(struct kimg *img, struct qcow2_state *s, struct pend *p)
{
    int ret = 0;
    if (p->plan && p->kind) {
        ret = plan_add(p->plan, (enum seg_kind)p->kind, p->buf, p->host, p->guest, p->len);
    } else if (p->kind == 1 && qcow2_encrypted(s)) {
        ret = qcow2_crypto_pread(s, p->buf, p->len, p->host, p->guest);
    } else if (p->kind == 1) {
        ret = need_data_file(s);
        if (ret == 0)
            ret = kimg_file_pread_zero_eof(s->data_file, p->buf, p->len, p->host);
    } else if (p->kind == 2) {
        ret = kimg_read_backing(img, p->buf, p->host, p->len);
    }
    p->kind = 0;
    p->len = 0;
    return ret;
}

static int pend_add(struct kimg *img, struct qcow2_state *s, struct pend *p, int kind,
                    uint8_t *buf, uint64_t where, uint64_t guest, uint64_t len)
{
    if (p->kind == kind && p->buf + p->len == buf && p->host + p->len == where &&
        p->len + len <= (64u << 20)) {
        p->len += len;
        return 0;
    }
    int ret = pend_flush(img, s, p);
    if (ret < 0)
        return ret;
    p->kind = kind;
    p->buf = buf;
    p->host = where;
    p->guest = guest;
    p->len = len;
    return 0;
}

static int do_read(struct kimg *img, struct qcow2_state *s, uint8_t *buf,
                   uint64_t off, uint64_t len, struct qcow2_read_plan *plan)
{
    struct pend p = { .plan = plan };
    uint8_t *cbuf = NULL;
    int ret = 0;

    while (len) {
        uint64_t in = off & s->cluster_mask;
        uint64_t n = s->cluster_size - in;
        uint64_t entry, bitmap;
        if (n > len)
            n = len;
        ret = qcow2_get_l2_entry(s, off, &entry, &bitmap);
        if (ret < 0)
            break;
        uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
        /* subcluster runs inside this cluster */
        uint64_t done = 0;
        while (done < n) {
            uint64_t pos = in + done;
            unsigned sc = (unsigned)(pos >> s->subcluster_bits);
            enum qcow2_sc_type t;
            ret = qcow2_sc_type(s, entry, bitmap, s->ext_l2 ? sc : 0, &t);
            if (ret < 0)
                goto out;
            uint64_t run = n - done;
            if (s->ext_l2 && t != QCOW2_SC_COMPRESSED) {
                /* extend over following subclusters of the same type */
                uint64_t end = ((uint64_t)sc + 1) << s->subcluster_bits;
                while (end < in + n) {
                    enum qcow2_sc_type t2;
                    ret = qcow2_sc_type(s, entry, bitmap,
                                        (unsigned)(end >> s->subcluster_bits), &t2);
                    if (ret < 0)
                        goto out;
                    if (t2 != t)
                        break;
                    end += s->subcluster_size;
                }
                if (end < in + n)
                    run = end - pos;
            }
            uint8_t *dst = buf + done;
            switch (t) {
            case QCOW2_SC_NORMAL:
                ret = pend_add(img, s, &p, 1, dst, host + pos, off + done, run);
                break;
            case QCOW2_SC_UNALLOC:
            case QCOW2_SC_UNALLOC_ALLOC:
                ret = pend_add(img, s, &p, 2, dst, off + done, off + done, run);
                break;
            case QCOW2_SC_ZERO_PLAIN:
            case QCOW2_SC_ZERO_ALLOC:
                memset(dst, 0, run);
                break;
            case QCOW2_SC_COMPRESSED:
                if (plan) {
                    ret = pend_flush(img, s, &p);
                    if (ret == 0)
                        ret = plan_add(plan, SEG_COMPRESSED, dst, entry, pos, run);
                    break;
                }
                if (!cbuf && !(cbuf = kimg_alloc_aligned(s->cluster_size))) {
                    ret = -ENOMEM;
                    break;
                }
                ret = qcow2_read_compressed(s, entry, cbuf);
                if (ret == 0)
                    memcpy(dst, cbuf + pos, run);
                break;
            }
            if (ret < 0)
                goto out;
            done += run;
        }
        buf += n;
        off += n;
        len -= n;
    }
    if (ret == 0)
        ret = pend_flush(img, s, &p);
out:
    free(cbuf);
    return ret;
}

/*
 * Compressed segments of a plan are read in windows: sorted by host
 * offset, neighbours whose stored data lies at most CWIN_GAP apart share
 * one read of up to CWIN_MAX bytes (more only for a single segment, whose
 * stored length is capped at two clusters by the entry's format), and
 * each cluster is decompressed from that buffer.  A compressed image made
 * in guest order (or by -W, which scatters clusters a little) stores a
 * 2 MiB guest range within about 2.5 MiB of the file, so one read replaces
 * some 32.  Hostile entries (overlapping, far apart, past the end of the
 * file) only change how the reads are cut: past-EOF bytes read as zeros
 * as before, and every cluster is still decompressed on its own range.
 */
#define CWIN_MAX (4u << 20)
#define CWIN_GAP (64u << 10)

struct cseg {
    uint64_t host, len;     /* stored range */
    const struct qcow2_read_seg *g;
};

static int cseg_cmp(const void *a, const void *b)
{
    const struct cseg *x = a, *y = b;
    return x->host < y->host ? -1 : x->host > y->host;
}

/* Decompress one segment from IN (its stored bytes; scratch slot 0). */
static int decompress_seg(struct qcow2_state *s, const struct qcow2_read_seg *g, const uint8_t *in,
                          uint64_t clen)
{
    if (g->pos == 0 && g->len == s->cluster_size)
        /* a whole cluster: straight into the caller's buffer */
        return qcow2_decompress(s->compression_type, g->buf, s->cluster_size, in, clen);
    uint8_t *cbuf = kimg_scratch(1, s->cluster_size);
    if (!cbuf)
        return -ENOMEM;
    int ret = qcow2_decompress(s->compression_type, cbuf, s->cluster_size, in, clen);
    if (ret == 0)
        memcpy(g->buf, cbuf + g->pos, g->len);
    return ret;
}

static int run_compressed(struct qcow2_state *s, const struct qcow2_read_plan *pl, size_t nc)
{
    struct cseg *v = malloc(nc * sizeof(*v));
    uint8_t *in;
    size_t n = 0;
    int ret = 0;

    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < pl->n; i++) {
        if (pl->v[i].kind != SEG_COMPRESSED)
            continue;
        qcow2_compressed_range(s, pl->v[i].where, &v[n].host, &v[n].len);
        v[n++].g = &pl->v[i];
    }
    qsort(v, n, sizeof(*v), cseg_cmp);
    for (size_t a = 0; a < n && ret == 0;) {
        /* the window [start, end) and its segments [a, b) */
        uint64_t start = v[a].host, end = start + v[a].len;
        size_t b = a + 1;
        while (b < n && v[b].host <= end + CWIN_GAP &&
               (v[b].host + v[b].len > end ? v[b].host + v[b].len : end) - start <= CWIN_MAX) {
            if (v[b].host + v[b].len > end)
                end = v[b].host + v[b].len;
            b++;
        }
        if (!(in = kimg_scratch(0, end - start))) {
            ret = -ENOMEM;
            break;
        }
        ret = kimg_file_pread_zero_eof(s->file, in, end - start, start);
        for (size_t i = a; i < b && ret == 0; i++)
            ret = decompress_seg(s, v[i].g, in + (v[i].host - start), v[i].len);
        a = b;
    }
    kimg_scratch_done();
    free(v);
    return ret;
}

int qcow2_read_plan_run(struct kimg *img, const struct qcow2_read_plan *pl)
{
    struct qcow2_state *s = img->state;
    size_t nc = 0;
    int ret = 0;
    for (size_t i = 0; i < pl->n && ret == 0; i++) {
        const struct qcow2_read_seg *g = &pl->v[i];
        switch (g->kind) {
        case SEG_HOST:
            /* encrypted: decrypted here, on the caller's thread */
            if (qcow2_encrypted(s)) {
                ret = qcow2_crypto_pread(s, g->buf, g->len, g->where, g->pos);
                break;
            }
            ret = need_data_file(s);
            if (ret == 0)
                ret = kimg_file_pread_zero_eof(s->data_file, g->buf, g->len, g->where);
            break;
        case SEG_BACKING:
            ret = kimg_read_backing(img, g->buf, g->where, g->len);
            break;
        case SEG_COMPRESSED:
            nc++;
            break;
        }
    }
    if (ret == 0 && nc)
        ret = run_compressed(s, pl, nc);
    return ret;
}

int qcow2_read(struct kimg *img, void *buf, uint64_t off, uint64_t len,
               struct qcow2_read_plan *pl)
{
    struct qcow2_state *s = img->state;
    qcow2_assert_locked(s);
    if (img->writable) {
        /* writes may move clusters: map and read under the lock (also
         * once fenced: a write that passed the door may still run) */
        return do_read(img, s, buf, off, len, NULL);
    }
    return do_read(img, s, buf, off, len, pl);
}

static unsigned type_flags(enum qcow2_sc_type t)
{
    switch (t) {
    case QCOW2_SC_NORMAL: return KIMG_BS_DATA | KIMG_BS_ALLOCATED | KIMG_BS_OFFSET_VALID;
    case QCOW2_SC_ZERO_PLAIN: return KIMG_BS_ZERO | KIMG_BS_ALLOCATED;
    case QCOW2_SC_ZERO_ALLOC: return KIMG_BS_ZERO | KIMG_BS_ALLOCATED | KIMG_BS_OFFSET_VALID;
    case QCOW2_SC_COMPRESSED: return KIMG_BS_DATA | KIMG_BS_ALLOCATED | KIMG_BS_COMPRESSED;
    case QCOW2_SC_UNALLOC_ALLOC: return KIMG_BS_OFFSET_VALID;
    default: return 0;
    }
}

static int do_block_status(struct qcow2_state *s, uint64_t off, uint64_t len,
                           struct kimg_extent *ext)
{
    bool first = true;
    unsigned flags = 0;
    uint64_t next_host = 0, total = 0;
    int ret;

    while (total < len) {
        uint64_t entry, bitmap, pos = off + total;
        uint64_t l1i = qcow2_l1_index(s, pos);
        if (!qcow2_l1_has_table(s, l1i)) {
            /* a whole L2 span unallocated */
            uint64_t span_end = (l1i + 1) << (s->cluster_bits + s->l2_bits);
            uint64_t step = span_end - pos;
            if (step > len - total)
                step = len - total;
            if (first) {
                flags = 0;
                first = false;
            } else if (flags != 0) {
                goto done;
            }
            total += step;
            continue;
        }
        ret = qcow2_get_l2_entry(s, pos, &entry, &bitmap);
        if (ret < 0)
            return ret;
        uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
        uint64_t in = pos & s->cluster_mask;
        while (in < s->cluster_size && total < len) {
            unsigned sc = (unsigned)(in >> s->subcluster_bits);
            enum qcow2_sc_type t;
            ret = qcow2_sc_type(s, entry, bitmap, s->ext_l2 ? sc : 0, &t);
            if (ret < 0)
                return ret;
            if (t == QCOW2_SC_COMPRESSED)
                sc = 0;
            uint64_t step_end = t == QCOW2_SC_COMPRESSED || !s->ext_l2
                              ? s->cluster_size
                              : ((uint64_t)sc + 1) << s->subcluster_bits;
            uint64_t step = step_end - in;
            if (step > len - total)
                step = len - total;
            unsigned f = type_flags(t);
            uint64_t h = host + in;
            if (first) {
                flags = f;
                ext->offset = (f & KIMG_BS_OFFSET_VALID) ? h : 0;
                first = false;
            } else if (f != flags || ((f & KIMG_BS_OFFSET_VALID) && h != next_host)) {
                goto done;
            }
            next_host = h + step;
            total += step;
            in += step;
        }
    }
done:
    ext->start = off;
    ext->length = total;
    ext->flags = flags;
    ext->depth = 0;
    ext->file = (flags & KIMG_BS_OFFSET_VALID) && s->data_file ? s->data_file->path : NULL;
    ext->host_file = ext->file ? s->data_file : NULL;
    if (!(flags & KIMG_BS_OFFSET_VALID))
        ext->offset = 0;
    /* an encrypted image's host bytes are not its content: no offset, as
     * qemu (and no probing of the file for holes below) */
    if ((flags & KIMG_BS_OFFSET_VALID) && (!s->data_file || qcow2_encrypted(s))) {
        ext->flags &= ~KIMG_BS_OFFSET_VALID;
        ext->offset = 0;
        ext->file = NULL;
        ext->host_file = NULL;
    }
    /* like qemu: a metadata-preallocated image has data clusters that are
     * holes in the file; they read as zeros */
    if ((ext->flags & (KIMG_BS_DATA | KIMG_BS_OFFSET_VALID)) ==
        (KIMG_BS_DATA | KIMG_BS_OFFSET_VALID) && s->data_file) {
        if (s->meta_prealloc < 0) {
            uint64_t fsz = 0;
            int64_t real = kimg_file_allocated(s->file);
            s->meta_prealloc = 0;
            if (real >= 0 && kimg_file_size(s->file, &fsz) == 0 && fsz) {
                /* in use: clusters of the file with a non-zero refcount,
                 * counted up to the threshold (read without side effects:
                 * a damaged refcount block counts as not in use, the test
                 * only tunes how holes read) */
                uint64_t real_c = (uint64_t)real >> s->cluster_bits;
                uint64_t thr = real_c * 10 / 9 > real_c + 2 ? real_c * 10 / 9 : real_c + 2;
                uint64_t end = qcow2_align_up(fsz, s->cluster_size) >> s->cluster_bits;
                uint64_t used = 0;
                bool had_error = kimg_last_error() != NULL;
                /* clusters past the refcount table, or under a table entry
                 * with no block, have refcount 0: not visited one by one */
                if (s->rt_entries <= (UINT64_MAX >> s->rb_bits) &&
                    end > (s->rt_entries << s->rb_bits))
                    end = s->rt_entries << s->rb_bits;
                for (uint64_t ci = 0; ci < end && used < thr; ci++) {
                    uint64_t rc = 0;
                    if (!(s->rt[ci >> s->rb_bits] & QCOW2_RTE_OFFSET_MASK)) {
                        ci |= s->rb_entries - 1;        /* the next block */
                        continue;
                    }
                    if (qcow2_refcount_peek(s, ci, &rc) == 0 && rc)
                        used++;
                }
                if (!had_error)
                    kimg_clear_error();   /* a cache read error's message */
                s->meta_prealloc = used >= thr;
            }
        }
        if (s->meta_prealloc == 1) {
            bool is_data;
            uint64_t pnum;
            if (kimg_file_data_status(s->data_file, ext->offset, ext->length,
                                      &is_data, &pnum) == 0 && pnum >= 1) {
                if (pnum < ext->length)
                    ext->length = pnum;
                if (!is_data)
                    ext->flags |= KIMG_BS_ZERO;
            }
        }
    }
    return 0;
}

int qcow2_block_status(struct kimg *img, uint64_t off, uint64_t len,
                       struct kimg_extent *ext)
{
    struct qcow2_state *s = img->state;
    qcow2_assert_locked(s);
    return do_block_status(s, off, len, ext);
}
