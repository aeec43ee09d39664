/*
 * bitmap_ops.c — managing persistent dirty bitmaps (kimg bitmap, qemu-img
 * bitmap): add, remove, clear, enable, disable and merge one bitmap, and
 * the dirty-run query that merge (and any reader) uses.
 *
 * A change never touches a structure the image uses: new tables, bitmap
 * clusters and the new directory go to new clusters; they and their
 * refcounts are flushed and synced; then one header write switches the
 * bitmaps extension (count, directory size and offset; the extension and
 * its autoclear bit come with the first bitmap and go with the last), and
 * only after that sync are the clusters the old set alone used freed.  A
 * crash at any point leaves the old set or the new one, with leaked
 * clusters at worst (check -r leaks gives them back).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* qemu's limits (block/qcow2-bitmap.c, block/dirty-bitmap.c) */
#define BM_MIN_GRAN         512ULL
#define BM_MAX_GRAN         (1ULL << 31)
#define BM_MAX_NAME         1023u
#define BM_MAX_TABLE        0x8000000u
#define BM_MAX_PHYS         0x20000000u
#define BM_ALL_ONES         1ULL
#define BM_OFFSET_MASK      0x00fffffffffffe00ULL
#define BM_TYPE_DIRTY       1

/* The cache of qcow2_bitmap_dirty: one bitmap's table and one of its
 * clusters, valid until the next change (qcow2_bitmap_query_reset). */
struct qcow2_bm_query {
    uint32_t idx;
    uint64_t *table;
    uint32_t tsize;
    uint64_t cl_off;            /* the cluster in CL, 0: none */
    uint8_t *cl;
};

void qcow2_bitmap_query_reset(struct qcow2_state *s)
{
    struct qcow2_bm_query *q = s->bmq;
    if (!q)
        return;
    free(q->table);
    free(q->cl);
    free(q);
    s->bmq = NULL;
}

static uint32_t nb_bitmaps(const struct qcow2_state *s)
{
    return s->has_bitmaps_ext && s->bitmaps ? s->nb_bitmaps : 0;
}

static int find(const struct qcow2_state *s, const char *name)
{
    for (uint32_t i = 0; i < nb_bitmaps(s); i++)
        if (!strcmp(s->bitmaps[i].name, name))
            return (int)i;
    return -1;
}

/* The bitmap NAME, usable for bits (consistent, a known type, a sane
 * granularity and a table of the size the image needs), or -1 with
 * qemu's message. */
static int find_usable(struct qcow2_state *s, const char *name)
{
    int i = find(s, name);
    if (i < 0)
        return kimg_fail(-ENOENT, "Dirty bitmap '%s' not found", name);
    const struct qcow2_bitmap *b = &s->bitmaps[i];
    if (b->flags & QCOW2_BME_IN_USE)
        return kimg_fail(-EINVAL, "Bitmap '%s' is inconsistent and cannot be used (remove "
                         "it with --remove)", name);
    if (b->type != BM_TYPE_DIRTY || b->granularity_bits < 9 || b->granularity_bits > 31 ||
        b->table_size != qcow2_bm_table_size(s, b->granularity_bits))
        return kimg_fail(-EINVAL, "Could not read bitmap '%s' from image: Invalid argument",
                         name);
    return i;
}

int qcow2_bitmap_list(struct qcow2_state *s, struct kimg_bitmap_info **list, size_t *n)
{
    if (s->version < 3)
        return -ENOTSUP;        /* qemu: no persistent bitmaps in v2 */
    uint32_t nb = nb_bitmaps(s);
    if (!nb)
        return 0;
    struct kimg_bitmap_info *v = calloc(nb, sizeof(*v));
    if (!v)
        return -ENOMEM;
    *list = v;
    for (uint32_t i = 0; i < nb; i++) {
        const struct qcow2_bitmap *b = &s->bitmaps[i];
        v[i].name = strdup(b->name);
        if (!v[i].name)
            return -ENOMEM;
        *n = i + 1;
        v[i].granularity = b->granularity_bits < 64 ? 1ULL << b->granularity_bits : 0;
        v[i].enabled = b->flags & QCOW2_BME_AUTO;
        v[i].in_use = b->flags & QCOW2_BME_IN_USE;
    }
    return 0;
}

/* ---- the dirty-run query ------------------------------------------------ */

static int query_load(struct qcow2_state *s, uint32_t idx)
{
    struct qcow2_bm_query *q = s->bmq;
    uint64_t fsz;
    int ret;

    if (q && q->idx == idx)
        return 0;
    qcow2_bitmap_query_reset(s);
    q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->idx = idx;
    q->tsize = s->bitmaps[idx].table_size;
    q->cl = kimg_alloc_aligned(s->cluster_size);
    ret = q->cl ? kimg_file_size(s->file, &fsz) : -ENOMEM;
    if (ret == 0)
        ret = qcow2_bm_load_table(s, &s->bitmaps[idx], fsz, &q->table);
    if (ret < 0) {
        free(q->cl);
        free(q);
        return ret;
    }
    s->bmq = q;
    return 0;
}

static bool bit_at(const uint8_t *c, uint64_t i)
{
    return (c[i >> 3] >> (i & 7)) & 1;
}

int qcow2_bitmap_dirty(struct qcow2_state *s, const char *name, uint64_t off,
                       uint64_t len, bool *dirty, uint64_t *pnum)
{
    /* the bits recorded through this handle first: the query reads the
     * bitmap as stored */
    int ret = s->bm ? qcow2_bitmaps_store(s) : 0;
    if (ret < 0)
        return ret;
    int idx = find_usable(s, name);
    if (idx < 0)
        return idx;
    ret = query_load(s, (uint32_t)idx);
    if (ret < 0)
        return ret;

    struct qcow2_bm_query *q = s->bmq;
    uint32_t gb = s->bitmaps[idx].granularity_bits;
    uint64_t cbits = s->cluster_size * 8, nbits = (s->img->size + (1ULL << gb) - 1) >> gb;
    uint64_t g = off >> gb, c = g / cbits, first = g % cbits;
    uint64_t last = nbits - c * cbits < cbits ? nbits - c * cbits : cbits;   /* bits in chunk */
    uint64_t e = q->table[c], end;

    if (e == 0 || e == BM_ALL_ONES) {
        *dirty = e == BM_ALL_ONES;
        end = last;
    } else {
        uint64_t h = e & BM_OFFSET_MASK;
        if (q->cl_off != h) {
            q->cl_off = 0;
            ret = kimg_file_pread(s->file, q->cl, s->cluster_size, h);
            if (ret < 0)
                return ret;
            q->cl_off = h;
        }
        *dirty = bit_at(q->cl, first);
        end = first + 1;
        /* whole bytes of the same value go fast */
        while (end < last) {
            if (!(end & 7) && end + 8 <= last && q->cl[end >> 3] == (*dirty ? 0xff : 0)) {
                end += 8;
                continue;
            }
            if (bit_at(q->cl, end) != *dirty)
                break;
            end++;
        }
    }
    uint64_t run_end = ((c * cbits + end) << gb);
    if (run_end > s->img->size)
        run_end = s->img->size;
    *pnum = run_end - off < len ? run_end - off : len;
    return 0;
}

/* ---- building the new set --------------------------------------------- */

/* One entry of the directory being built (names borrowed). */
struct ent {
    uint64_t toff;
    uint32_t tsize, flags;
    uint8_t gb;
    const char *name;
};

/* Clusters made for the new set (given back on failure) and those only
 * the old set uses (freed after the switch). */
struct lists {
    struct qcow2_freelist fresh, old;
};

static int alloc_write(struct qcow2_state *s, struct lists *l, const void *buf,
                       uint64_t bytes, uint64_t *off)
{
    uint64_t n = qcow2_align_up(bytes, s->cluster_size);
    int ret = qcow2_alloc_clusters(s, n >> s->cluster_bits, off);
    if (ret == 0)
        ret = qcow2_freelist_add(&l->fresh, *off, n);
    if (ret == 0)
        ret = kimg_file_pwrite(s->file, buf, n, *off);
    return ret;
}

/* Write TABLE (TSIZE entries) to new clusters at *OFF. */
static int write_table(struct qcow2_state *s, struct lists *l, const uint64_t *table,
                       uint32_t tsize, uint64_t *off)
{
    uint64_t bytes = qcow2_align_up((uint64_t)tsize * 8, s->cluster_size);
    uint8_t *raw = kimg_alloc_aligned_zero(bytes);
    if (!raw)
        return -ENOMEM;
    for (uint32_t i = 0; table && i < tsize; i++)
        qcow2_put_be64(raw + (uint64_t)i * 8, table[i]);
    int ret = alloc_write(s, l, raw, bytes, off);
    free(raw);
    return ret;
}

/* List bitmap B's table and chunk clusters as the old set's. */
static int list_old(struct qcow2_state *s, struct lists *l, const struct qcow2_bitmap *b)
{
    uint64_t fsz, *t = NULL;
    int ret = kimg_file_size(s->file, &fsz);
    if (ret == 0)
        ret = qcow2_bm_load_table(s, b, fsz, &t);
    for (uint32_t i = 0; ret == 0 && i < b->table_size; i++)
        if (t[i] & BM_OFFSET_MASK)
            ret = qcow2_freelist_add(&l->old, t[i] & BM_OFFSET_MASK, s->cluster_size);
    if (ret == 0)
        ret = qcow2_freelist_add(&l->old, b->table_offset,
                                 qcow2_align_up((uint64_t)b->table_size * 8, s->cluster_size));
    free(t);
    return ret;
}

static void set_bits(uint8_t *c, uint64_t from, uint64_t to)   /* [from, to) */
{
    for (uint64_t i = from; i < to; i++) {
        if (!(i & 7) && i + 8 <= to) {
            c[i >> 3] = 0xff;
            i += 7;
            continue;
        }
        c[i >> 3] |= (uint8_t)(1u << (i & 7));
    }
}

/* The dirty runs of the merge source over [a, b) of the guest. */
static int src_dirty(struct qcow2_state *s, const struct kimg_bitmap_op *op, uint64_t a,
                     uint64_t b, bool *dirty, uint64_t *pnum)
{
    if (!op->src || op->src == s->img)
        return qcow2_bitmap_dirty(s, op->src_name, a, b - a, dirty, pnum);
    return kimg_bitmap_dirty(op->src, op->src_name, a, b - a, dirty, pnum);
}

/* Merge the source's bits into bitmap D (entry E): its table anew. */
static int merge_into(struct qcow2_state *s, struct lists *l, const struct qcow2_bitmap *d,
                      struct ent *e, const struct kimg_bitmap_op *op)
{
    uint64_t fsz, *t = NULL, cbits = s->cluster_size * 8;
    uint64_t size = s->img->size, gran = 1ULL << d->granularity_bits;
    uint8_t *buf = kimg_alloc_aligned(s->cluster_size), *orig = kimg_alloc_aligned(s->cluster_size);
    bool changed_any = false;
    int ret = buf && orig ? kimg_file_size(s->file, &fsz) : -ENOMEM;

    if (ret == 0)
        ret = qcow2_bm_load_table(s, d, fsz, &t);
    for (uint32_t c = 0; ret == 0 && c < d->table_size; c++) {
        uint64_t b0 = (uint64_t)c * cbits * gran, b1 = b0 + cbits * gran;
        if (b1 > size || b1 < b0)
            b1 = size;
        uint64_t ent = t[c], h = ent & BM_OFFSET_MASK;
        if (ent == BM_ALL_ONES || b0 >= b1)
            continue;
        if (h)
            ret = kimg_file_pread(s->file, buf, s->cluster_size, h);
        else
            memset(buf, 0, s->cluster_size);
        if (ret < 0)
            break;
        memcpy(orig, buf, s->cluster_size);
        for (uint64_t o = b0; ret == 0 && o < b1;) {
            bool dirty;
            uint64_t n;
            ret = src_dirty(s, op, o, b1, &dirty, &n);
            if (ret == 0 && dirty)
                set_bits(buf, (o - b0) / gran, (o + n - b0 + gran - 1) / gran);
            o += n;
        }
        if (ret < 0 || !memcmp(buf, orig, s->cluster_size))
            continue;
        uint64_t nh;
        ret = alloc_write(s, l, buf, s->cluster_size, &nh);
        if (ret == 0 && h)
            ret = qcow2_freelist_add(&l->old, h, s->cluster_size);
        t[c] = nh;
        changed_any = true;
    }
    if (ret == 0 && changed_any) {
        ret = qcow2_freelist_add(&l->old, d->table_offset,
                                 qcow2_align_up((uint64_t)d->table_size * 8, s->cluster_size));
        if (ret == 0)
            ret = write_table(s, l, t, d->table_size, &e->toff);
    }
    free(t);
    free(buf);
    free(orig);
    return ret;
}

/* The directory for ENTS as qemu lays it out (entries 8-byte aligned, no
 * extra data) into *OUT, *LEN bytes (a page-aligned buffer of whole
 * clusters, zero-filled past *LEN). */
static int encode_dir(const struct qcow2_state *s, const struct ent *ents, uint32_t n,
                      uint8_t **out, uint64_t *len)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += qcow2_align_up(24 + strlen(ents[i].name), 8);
    if (total > QCOW2_MAX_BITMAP_DIR)
        return kimg_fail(-EFBIG, "Not enough space in the bitmap directory");
    uint8_t *d = kimg_alloc_aligned_zero(qcow2_align_up(total ? total : 1, s->cluster_size));
    if (!d)
        return -ENOMEM;
    uint64_t o = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t nl = strlen(ents[i].name);
        qcow2_put_be64(d + o, ents[i].toff);
        qcow2_put_be32(d + o + 8, ents[i].tsize);
        qcow2_put_be32(d + o + 12, ents[i].flags);
        d[o + 16] = BM_TYPE_DIRTY;
        d[o + 17] = ents[i].gb;
        qcow2_put_be16(d + o + 18, (uint16_t)nl);
        memcpy(d + o + 24, ents[i].name, nl);
        o += qcow2_align_up(24 + nl, 8);
    }
    *out = d;
    *len = total;
    return 0;
}

/* qemu's checks before a new persistent bitmap (qcow2_co_can_store_new_
 * dirty_bitmap and block-dirty-bitmap-add), in its order. */
static int check_add(struct qcow2_state *s, const struct kimg_bitmap_op *op, uint64_t gran)
{
    const char *file = s->img->filename;
    if (find(s, op->name) >= 0)
        return kimg_fail(-EEXIST, "Bitmap already exists: %s", op->name);
    if (!*op->name)
        return kimg_fail(-EINVAL, "Bitmap name cannot be empty");
    if (gran < BM_MIN_GRAN || gran > BM_MAX_GRAN || (gran & (gran - 1)))
        return kimg_fail(-EINVAL, "Granularity must be power of 2 and at least 512");
    if (s->version < 3)
        return kimg_fail(-ENOTSUP, "Can't make bitmap '%s' persistent in '%s': Cannot store "
                         "dirty bitmaps in qcow2 v2 files", op->name, file);
    if (strlen(op->name) > BM_MAX_NAME)
        return kimg_fail(-EINVAL, "Can't make bitmap '%s' persistent in '%s': Name length "
                         "exceeds maximum (%u characters)", op->name, file, BM_MAX_NAME);
    if (nb_bitmaps(s) >= QCOW2_MAX_BITMAPS)
        return kimg_fail(-ENOSPC, "Can't make bitmap '%s' persistent in '%s': Maximum "
                         "number of persistent bitmaps is already reached", op->name, file);
    uint32_t gb = (uint32_t)__builtin_ctzll(gran);
    uint64_t tsize = qcow2_bm_table_size(s, gb);
    if (tsize > BM_MAX_TABLE || tsize * s->cluster_size > BM_MAX_PHYS)
        return kimg_fail(-EINVAL, "Can't make bitmap '%s' persistent in '%s': Too much "
                         "space will be occupied by the bitmap. Use larger granularity",
                         op->name, file);
    return 0;
}

/* The header names the directory DIR (LEN bytes at OFF, N entries; N 0:
 * no bitmaps, the extension and its autoclear bit go): one header write,
 * synced. */
static int switch_header(struct qcow2_state *s, uint32_t n, uint64_t len, uint64_t off)
{
    uint8_t ext[24] = { 0 };
    int ret;
    if (n) {
        qcow2_put_be32(ext, n);
        qcow2_put_be64(ext + 8, len);
        qcow2_put_be64(ext + 16, off);
        ret = qcow2_set_ext(s, QCOW2_EXT_BITMAPS, ext, sizeof(ext));
        s->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
    } else {
        ret = qcow2_set_ext(s, QCOW2_EXT_BITMAPS, NULL, 0);
        s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    }
    if (ret == 0)
        ret = qcow2_write_header(s);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    return ret;
}

/* The in-memory list from ENTS after the switch (names copied). */
static int adopt(struct qcow2_state *s, const struct ent *ents, uint32_t n, uint64_t len,
                 uint64_t off)
{
    struct qcow2_bitmap *v = n ? calloc(n, sizeof(*v)) : NULL;
    int ret = n && !v ? -ENOMEM : 0;
    for (uint32_t i = 0; ret == 0 && i < n; i++) {
        v[i].table_offset = ents[i].toff;
        v[i].table_size = ents[i].tsize;
        v[i].flags = ents[i].flags;
        v[i].type = BM_TYPE_DIRTY;
        v[i].granularity_bits = ents[i].gb;
        v[i].name = strdup(ents[i].name);
        if (!v[i].name)
            ret = -ENOMEM;
    }
    if (ret < 0) {
        for (uint32_t i = 0; v && i < n; i++)
            free(v[i].name);
        free(v);
        return ret;
    }
    for (uint32_t i = 0; s->bitmaps && i < s->nb_bitmaps; i++)
        free(s->bitmaps[i].name);
    free(s->bitmaps);
    s->bitmaps = v;
    s->nb_bitmaps = n;
    s->bitmap_dir_size = len;
    s->bitmap_dir_offset = off;
    s->has_bitmaps_ext = n > 0;
    return 0;
}

/* Build the new entry list for OP into ENTS (room for nb_bitmaps + 1),
 * *N entries, writing what it needs to new clusters. */
static int build(struct qcow2_state *s, const struct kimg_bitmap_op *op, struct ent *ents,
                 uint32_t *n, struct lists *l)
{
    uint32_t cur = nb_bitmaps(s);
    int idx = -1, ret = 0;

    for (uint32_t i = 0; i < cur; i++) {
        const struct qcow2_bitmap *b = &s->bitmaps[i];
        ents[i] = (struct ent){ b->table_offset, b->table_size, b->flags,
                                b->granularity_bits, b->name };
    }
    *n = cur;
    if (op->action == KIMG_BITMAP_ADD) {
        uint64_t gran = op->granularity;
        if (!gran)      /* qemu: the cluster size, between 4 KiB and 64 KiB */
            gran = s->cluster_size < 4096 ? 4096 : s->cluster_size > 65536 ? 65536
                                                                          : s->cluster_size;
        ret = check_add(s, op, gran);
        if (ret < 0)
            return ret;
        struct ent *e = &ents[(*n)++];
        e->gb = (uint8_t)__builtin_ctzll(gran);
        e->tsize = (uint32_t)qcow2_bm_table_size(s, e->gb);
        e->flags = op->disabled ? 0 : QCOW2_BME_AUTO;
        e->name = op->name;
        return write_table(s, l, NULL, e->tsize, &e->toff);
    }
    if (op->action == KIMG_BITMAP_REMOVE) {
        idx = find(s, op->name);
        if (idx < 0)
            return kimg_fail(-ENOENT, "Dirty bitmap '%s' not found", op->name);
        /* an inconsistent bitmap's clusters are not trusted: leaked */
        if (!(s->bitmaps[idx].flags & QCOW2_BME_IN_USE))
            ret = list_old(s, l, &s->bitmaps[idx]);
        memmove(&ents[idx], &ents[idx + 1], (size_t)(cur - (uint32_t)idx - 1) * sizeof(*ents));
        (*n)--;
        return ret;
    }
    idx = find_usable(s, op->name);
    if (idx < 0)
        return idx;
    struct ent *e = &ents[idx];
    switch (op->action) {
    case KIMG_BITMAP_ENABLE:
        e->flags |= QCOW2_BME_AUTO;
        return 0;
    case KIMG_BITMAP_DISABLE:
        e->flags &= ~QCOW2_BME_AUTO;
        return 0;
    case KIMG_BITMAP_CLEAR:
        ret = list_old(s, l, &s->bitmaps[idx]);
        return ret < 0 ? ret : write_table(s, l, NULL, e->tsize, &e->toff);
    case KIMG_BITMAP_MERGE:
        if (!op->src || op->src == s->img) {
            int si = find_usable(s, op->src_name);
            if (si < 0)
                return si;
        } else if (kimg_size(op->src) != s->img->size) {
            return kimg_fail(-EINVAL, "Bitmaps are incompatible and can't be merged");
        }
        return merge_into(s, l, &s->bitmaps[idx], e, op);
    default:
        return kimg_fail(-EINVAL, "unknown bitmap operation");
    }
}

int qcow2_bitmap_change(struct qcow2_state *s, const struct kimg_bitmap_op *op)
{
    struct lists l = { 0 };
    struct ent *ents = NULL;
    uint8_t *dir = NULL;
    uint64_t dlen = 0, doff = 0;
    uint32_t n = 0;
    bool switched = false;
    int ret;

    qcow2_assert_locked(s);
    /* the bits tracked so far reach the disk first: the set on disk is
     * the whole truth while it changes */
    ret = s->bm ? qcow2_bitmaps_store(s) : 0;
    if (ret < 0)
        return ret;
    ents = calloc(nb_bitmaps(s) + 1, sizeof(*ents));
    if (!ents)
        return -ENOMEM;
    ret = build(s, op, ents, &n, &l);
    if (ret == 0 && n)
        ret = encode_dir(s, ents, n, &dir, &dlen);
    if (ret == 0 && n)
        ret = alloc_write(s, &l, dir, dlen, &doff);
    /* the new structures and their refcounts, then the switch */
    if (ret == 0)
        ret = qcow2_flush_caches(s);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret == 0 && nb_bitmaps(s))
        ret = qcow2_freelist_add(&l.old, s->bitmap_dir_offset,
                                 qcow2_align_up(s->bitmap_dir_size, s->cluster_size));
    if (ret == 0) {
        ret = switch_header(s, n, dlen, doff);
        switched = true;        /* even on a failed sync: never give back */
    }
    if (ret == 0)
        ret = adopt(s, ents, n, dlen, doff);
    qcow2_bitmap_query_reset(s);
    if (ret == 0) {
        /* tracking starts over on the new set */
        uint64_t fsz;
        qcow2_bitmaps_free(s);
        ret = kimg_file_size(s->file, &fsz);
        if (ret == 0)
            ret = qcow2_bitmaps_open(s, fsz);
        if (ret == 0)
            ret = qcow2_freelist_run(s, &l.old);
        if (ret == 0)
            ret = qcow2_flush_caches(s);
    } else if (!switched) {
        /* nothing names the new clusters: give them back */
        (void)qcow2_freelist_run(s, &l.fresh);
    }
    qcow2_freelist_free(&l.fresh);
    qcow2_freelist_free(&l.old);
    free(ents);
    free(dir);
    return ret;
}

int qcow2_bitmaps_drop_in_use(struct qcow2_state *s,
                              void (*named)(void *opaque, const char *name), void *opaque)
{
    int ret = 0;
    if (!s->bitmaps_valid)
        return 0;       /* a set that failed validation is not touched */
    for (uint32_t i = 0; ret == 0 && i < nb_bitmaps(s);) {
        if (!(s->bitmaps[i].flags & QCOW2_BME_IN_USE)) {
            i++;
            continue;
        }
        char *name = strdup(s->bitmaps[i].name);
        if (!name)
            return -ENOMEM;
        struct kimg_bitmap_op op = { .action = KIMG_BITMAP_REMOVE, .name = name };
        ret = qcow2_bitmap_change(s, &op);
        if (ret == 0 && named)
            named(opaque, name);
        free(name);
    }
    return ret;
}
