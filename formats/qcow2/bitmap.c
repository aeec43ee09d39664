/*
 * bitmap.c — persistent dirty bitmaps (the "Bitmaps" extension) kept
 * consistent across kimg's writes, as qemu keeps them: on a read-write open
 * the directory and the tables of the consistent bitmaps are validated as
 * hostile input (qemu's constraints, plus no sharing with other metadata);
 * before the first guest write the enabled ("auto") consistent bitmaps are
 * marked in_use in the directory (flag words rewritten in place, synced);
 * every guest write sets their bits in memory; a flush (and close) stores
 * them: changed bitmap clusters and tables go to new clusters, then the
 * directory with in_use cleared (in place when no table moved, else at a
 * new place switched to by the 8-byte directory offset in the header
 * extension), and only then are the old clusters freed.  A crash at any
 * point leaves in_use bitmaps (inconsistent: qemu ignores their data) or
 * consistent ones holding every write, and at worst leaked clusters.
 * Disabled and already in_use bitmaps are never changed, but by a resize:
 * every bitmap is marked in_use before the size changes, then each gets a
 * table for the new size (bits past a shrunk end dropped, a grown area
 * clean) and the directory is switched as in a store.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "tunables.h"

/* qemu's limits (block/qcow2-bitmap.c) */
#define BME_MAX_TABLE_SIZE       0x8000000u
#define BME_MAX_PHYS_SIZE        0x20000000u
#define BME_MIN_GRANULARITY_BITS 9
#define BME_MAX_GRANULARITY_BITS 31
#define BME_MAX_NAME_SIZE        1023u
#define BME_RESERVED_FLAGS       0xfffffffcu
#define BME_TABLE_RESERVED       0xff000000000001feULL
#define BME_TABLE_OFFSET_MASK    0x00fffffffffffe00ULL
#define BME_TABLE_ALL_ONES       1ULL
#define BT_DIRTY_TRACKING        1

/* Dirty bits live in pages of at most 4 KiB of bits (never more than one
 * bitmap cluster), reached through blocks of 512 page pointers, all
 * allocated on first touch; a page whose bits are all set is freed and
 * marked FULL.  Past BM_MEM_BUDGET bytes of pages the bitmaps are stored
 * (as on flush) and tracking starts over, so memory stays bounded whatever
 * the writes, the image size and the number of bitmaps.  Tests lower the
 * budget with KIMG_BITMAP_MEM=BYTES in the environment (1: a store after
 * every write). */
#define BM_PAGE_MAX   4096u
#define BM_BLOCK_BITS 9
#define BM_MEM_BUDGET (64u << 20)

struct bm_page {
    uint32_t nset;              /* bits set in bits[] */
    uint8_t bits[];
};
#define BM_PAGE_FULL ((struct bm_page *)(uintptr_t)1)

/* One tracked bitmap: enabled and consistent at open. */
struct bm_track {
    uint32_t idx;               /* in s->bitmaps and in directory order */
    uint32_t gran_bits;
    uint64_t nbits;             /* granules of the virtual size */
    uint64_t npages;
    uint64_t nblocks;
    struct bm_page ***blocks;   /* nblocks, each NULL or 1 << BM_BLOCK_BITS pages */
    bool touched;
};

struct qcow2_bm_state {
    uint8_t *dir;               /* the directory as on disk (dir_size bytes) */
    uint64_t *entry_pos;        /* each entry's byte offset in dir */
    struct bm_track *t;
    uint32_t nt;
    uint32_t page_bytes;        /* min(4 KiB, cluster size) */
    size_t mem;                 /* bytes of pages and blocks */
    size_t budget;              /* BM_MEM_BUDGET or KIMG_BITMAP_MEM */
    bool in_use_on_disk;        /* the tracked entries say in_use on disk */
    bool broken;                /* a store failed: in_use stays, no tracking */
};

/* ---- validation (qemu's check_dir_entry and check_table_entry) --------- */

static uint64_t div_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

/* The table size a consistent bitmap of granularity 2^GB needs. */
static uint64_t table_size_for(const struct qcow2_state *s, uint32_t gb)
{
    return qcow2_bm_table_size(s, gb);
}

uint64_t qcow2_bm_table_size(const struct qcow2_state *s, uint32_t gb)
{
    uint64_t bits = div_up(s->img->size, 1ULL << gb);
    return div_up(bits, s->cluster_size * 8);
}

static bool table_entry_ok(const struct qcow2_state *s, uint64_t e, uint64_t file_size)
{
    uint64_t off = e & BME_TABLE_OFFSET_MASK;
    if (e & BME_TABLE_RESERVED)
        return false;
    if (!off)
        return true;
    return !(e & BME_TABLE_ALL_ONES) && !(off & s->cluster_mask) &&
           off < file_size && s->cluster_size <= file_size - off;
}

/* The sorted list of every cluster the consistent bitmaps and the directory
 * use: duplicates, or an overlap with the header, L1, refcount or snapshot
 * structures, refcount blocks or active L2 tables, mean a hostile image. */
struct clist {
    uint64_t *v;
    size_t n, cap;
    uint64_t max;               /* clusters in the file: more means sharing */
};

static int clist_add(struct clist *l, uint64_t off, uint64_t len, uint64_t cs)
{
    for (uint64_t o = off & ~(cs - 1); o < off + len; o += cs) {
        if (l->n >= l->max)
            return kimg_fail(-EINVAL, "Bitmap clusters overlap other metadata; the "
                             "image is corrupt (see 'check')");
        if (l->n == l->cap) {
            size_t nc = l->cap ? l->cap * 2 : 64;
            uint64_t *v = realloc(l->v, nc * sizeof(*v));
            if (!v)
                return -ENOMEM;
            l->v = v;
            l->cap = nc;
        }
        l->v[l->n++] = o;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool clist_has(const struct clist *l, uint64_t off)
{
    return off && bsearch(&off, l->v, l->n, sizeof(uint64_t), cmp_u64) != NULL;
}

static int check_sharing(struct qcow2_state *s, struct clist *l)
{
    /* the main structures but the directory itself (which is in the list) */
    bool had = s->has_bitmaps_ext, dup = false, main = false;
    qsort(l->v, l->n, sizeof(uint64_t), cmp_u64);
    s->has_bitmaps_ext = false;
    for (size_t i = 0; i < l->n && !dup && !main; i++) {
        dup = i && l->v[i] == l->v[i - 1];
        main = qcow2_overlaps_main(s, l->v[i], s->cluster_size);
    }
    s->has_bitmaps_ext = had;
    if (dup || main)
        goto bad;
    for (uint64_t i = 0; i < s->rt_entries; i++)
        if (clist_has(l, s->rt[i] & QCOW2_RTE_OFFSET_MASK))
            goto bad;
    for (uint32_t i = 0; i < s->l1_size; i++)
        if (clist_has(l, s->l1[i] & QCOW2_L1E_OFFSET_MASK))
            goto bad;
    /* a bitmap cluster counted free would be handed out again, and its old
     * copy freed after a store: refuse it, as qemu-img check reports it */
    for (size_t i = 0; i < l->n; i++) {
        uint64_t rc = 0;
        int ret = qcow2_refcount_get(s, l->v[i] >> s->cluster_bits, &rc);
        if (ret < 0)
            return ret;
        if (rc == 0)
            return kimg_fail(-EINVAL, "Bitmap cluster at offset %llu has refcount 0; the "
                             "image is corrupt (see 'check')", (unsigned long long)l->v[i]);
    }
    return 0;
bad:
    return kimg_fail(-EINVAL, "Bitmap clusters overlap other metadata; the image is "
                     "corrupt (see 'check')");
}

/* Read and validate bitmap B's table into *OUT (host-endian). */
static int load_table(struct qcow2_state *s, const struct qcow2_bitmap *b,
                      uint64_t file_size, uint64_t **out)
{
    uint64_t bytes = (uint64_t)b->table_size * 8;
    uint64_t *t = NULL;
    uint8_t *raw = NULL;
    int ret;

    *out = NULL;
    if (!bytes || b->table_offset > file_size || bytes > file_size - b->table_offset ||
        bytes > (uint64_t)BME_MAX_PHYS_SIZE / s->cluster_size * 8)
        goto bad;
    ret = -ENOMEM;
    t = malloc(bytes);
    raw = kimg_alloc_aligned(bytes);
    if (!t || !raw)
        goto out;
    ret = kimg_file_pread(s->file, raw, bytes, b->table_offset);
    if (ret < 0)
        goto out;
    for (uint32_t i = 0; i < b->table_size; i++) {
        t[i] = qcow2_be64(raw + (uint64_t)i * 8);
        if (!table_entry_ok(s, t[i], file_size))
            goto bad;
    }
    *out = t;
    t = NULL;
    ret = 0;
    goto out;
bad:
    ret = kimg_fail(-EINVAL, "Could not read bitmap_table table from image for bitmap "
                    "'%s': Invalid argument", b->name);
out:
    free(raw);
    free(t);
    return ret;
}

int qcow2_bm_load_table(struct qcow2_state *s, const struct qcow2_bitmap *b,
                        uint64_t file_size, uint64_t **out)
{
    return load_table(s, b, file_size, out);
}

/* qemu's bitmap_list_load and check_dir_entry over the directory DIR,
 * entry offsets into POS (nb_bitmaps). */
static int check_dir(struct qcow2_state *s, const uint8_t *dir, uint64_t *pos)
{
    uint64_t off = 0, size = s->bitmap_dir_size;
    uint32_t n = 0;

    if (size == 0)
        return kimg_fail(-EINVAL, "Requested bitmap directory size is zero");
    while (off < size) {
        if (size - off < 24)
            return kimg_fail(-EINVAL, "Broken bitmap directory");
        if (++n > s->nb_bitmaps)
            return kimg_fail(-EINVAL, "More bitmaps found than specified in header "
                             "extension");
        const uint8_t *e = dir + off;
        uint64_t toff = qcow2_be64(e);
        uint32_t tsize = qcow2_be32(e + 8), flags = qcow2_be32(e + 12);
        uint8_t type = e[16], gb = e[17];
        uint32_t name_size = qcow2_be16(e + 18), extra = qcow2_be32(e + 20);
        uint64_t esize = qcow2_align_up(24ULL + name_size + extra, 8);
        if (esize > size - off)
            return kimg_fail(-EINVAL, "Broken bitmap directory");
        if (extra)
            return kimg_fail(-EINVAL, "Bitmap extra data is not supported");
        uint64_t phys = (uint64_t)tsize * s->cluster_size;
        if (!tsize || !toff || (toff & s->cluster_mask) || tsize > BME_MAX_TABLE_SIZE ||
            gb > BME_MAX_GRANULARITY_BITS || gb < BME_MIN_GRANULARITY_BITS ||
            (flags & BME_RESERVED_FLAGS) || name_size > BME_MAX_NAME_SIZE ||
            type != BT_DIRTY_TRACKING || phys > BME_MAX_PHYS_SIZE ||
            (!(flags & QCOW2_BME_IN_USE) && s->img->size > ((phys * 8) << gb)))
            return kimg_fail(-EINVAL, "Bitmap '%.*s' doesn't satisfy the constraints",
                             (int)name_size, (const char *)e + 24);
        pos[n - 1] = off;
        off += esize;
    }
    if (n != s->nb_bitmaps)
        return kimg_fail(-EINVAL, "Less bitmaps found than specified in header extension");
    return 0;
}

/* ---- open / close ------------------------------------------------------- */

static void free_pages(struct qcow2_bm_state *st, struct bm_track *t)
{
    for (uint64_t b = 0; t->blocks && b < t->nblocks; b++) {
        struct bm_page **blk = t->blocks[b];
        if (!blk)
            continue;
        for (unsigned i = 0; i < (1u << BM_BLOCK_BITS); i++)
            if (blk[i] && blk[i] != BM_PAGE_FULL) {
                free(blk[i]);
                st->mem -= sizeof(struct bm_page) + st->page_bytes;
            }
        free(blk);
        st->mem -= sizeof(*blk) << BM_BLOCK_BITS;
        t->blocks[b] = NULL;
    }
    t->touched = false;
}

void qcow2_bitmaps_free(struct qcow2_state *s)
{
    struct qcow2_bm_state *st = s->bm;
    if (!st)
        return;
    for (uint32_t i = 0; i < st->nt; i++) {
        free_pages(st, &st->t[i]);
        free(st->t[i].blocks);
    }
    free(st->t);
    free(st->dir);
    free(st->entry_pos);
    free(st);
    s->bm = NULL;
}

int qcow2_bitmaps_open(struct qcow2_state *s, uint64_t file_size)
{
    struct qcow2_bm_state *st;
    struct clist cl = { 0 };
    int ret = -ENOMEM;

    if (!qcow2_can_write(s) || !s->has_bitmaps_ext || !s->bitmaps || !s->nb_bitmaps)
        return 0;
    st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    s->bm = st;
    st->page_bytes = s->cluster_size < BM_PAGE_MAX ? (uint32_t)s->cluster_size : BM_PAGE_MAX;
    st->budget = kimg_tunables()->bitmap_mem;
    if (st->budget == 0 || st->budget > BM_MEM_BUDGET)
        st->budget = BM_MEM_BUDGET;
    /* header.c checked the directory lies inside the file, below the cap */
    st->dir = malloc(s->bitmap_dir_size);
    st->entry_pos = calloc(s->nb_bitmaps, sizeof(*st->entry_pos));
    st->t = calloc(s->nb_bitmaps, sizeof(*st->t));
    if (!st->dir || !st->entry_pos || !st->t)
        goto fail;
    ret = kimg_file_pread(s->file, st->dir, s->bitmap_dir_size, s->bitmap_dir_offset);
    if (ret < 0)
        goto fail;
    ret = check_dir(s, st->dir, st->entry_pos);
    if (ret < 0)
        goto fail;
    cl.max = div_up(file_size, s->cluster_size);
    ret = clist_add(&cl, s->bitmap_dir_offset, s->bitmap_dir_size, s->cluster_size);
    for (uint32_t i = 0; ret == 0 && i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *b = &s->bitmaps[i];
        uint64_t *t;
        if (b->flags & QCOW2_BME_IN_USE)
            continue;           /* inconsistent: never read, never changed */
        if (b->table_size != table_size_for(s, b->granularity_bits)) {
            ret = kimg_fail(-EINVAL, "Could not read bitmap '%s' from image: Invalid "
                            "argument", b->name);
            break;
        }
        ret = load_table(s, b, file_size, &t);
        if (ret < 0)
            break;
        ret = clist_add(&cl, b->table_offset, (uint64_t)b->table_size * 8, s->cluster_size);
        for (uint32_t j = 0; ret == 0 && j < b->table_size; j++)
            if (t[j] & BME_TABLE_OFFSET_MASK)
                ret = clist_add(&cl, t[j] & BME_TABLE_OFFSET_MASK, 1, s->cluster_size);
        free(t);
        if (ret == 0 && (b->flags & QCOW2_BME_AUTO)) {
            struct bm_track *tr = &st->t[st->nt++];
            tr->idx = i;
            tr->gran_bits = b->granularity_bits;
            tr->nbits = div_up(s->img->size, 1ULL << tr->gran_bits);
            tr->npages = div_up(tr->nbits, (uint64_t)st->page_bytes * 8);
            tr->nblocks = div_up(tr->npages, 1u << BM_BLOCK_BITS);
        }
    }
    if (ret == 0)
        ret = check_sharing(s, &cl);
    free(cl.v);
    if (ret < 0)
        goto fail;
    if (st->nt == 0)
        qcow2_bitmaps_free(s);  /* nothing records writes: all stay as they are */
    return 0;
fail:
    qcow2_bitmaps_free(s);
    return ret;
}

/* ---- directory updates ---------------------------------------------------- */

static void set_entry_flags(struct qcow2_state *s, uint8_t *dir, bool in_use)
{
    struct qcow2_bm_state *st = s->bm;
    for (uint32_t i = 0; i < st->nt; i++) {
        uint8_t *e = dir + st->entry_pos[st->t[i].idx];
        uint32_t f = qcow2_be32(e + 12);
        qcow2_put_be32(e + 12, in_use ? f | QCOW2_BME_IN_USE : f & ~QCOW2_BME_IN_USE);
    }
}

static void dir_written(struct qcow2_state *s, const uint8_t *dir)
{
    struct qcow2_bm_state *st = s->bm;
    memcpy(st->dir, dir, s->bitmap_dir_size);
    for (uint32_t i = 0; i < st->nt; i++) {
        const uint8_t *e = dir + st->entry_pos[st->t[i].idx];
        struct qcow2_bitmap *b = &s->bitmaps[st->t[i].idx];
        b->table_offset = qcow2_be64(e);
        b->flags = qcow2_be32(e + 12);
    }
}

/* Mark the tracked bitmaps in_use: only their flag words change (each
 * inside one aligned 8-byte word, so no torn write mixes old and new
 * fields), written in place and synced before any guest write. */
static int set_in_use(struct qcow2_state *s)
{
    struct qcow2_bm_state *st = s->bm;
    uint8_t *d = malloc(s->bitmap_dir_size);
    if (!d)
        return -ENOMEM;
    memcpy(d, st->dir, s->bitmap_dir_size);
    set_entry_flags(s, d, true);
    int ret = kimg_file_pwrite(s->file, d, s->bitmap_dir_size, s->bitmap_dir_offset);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret == 0) {
        dir_written(s, d);
        st->in_use_on_disk = true;
    }
    free(d);
    return ret;
}

/* Where the bitmaps extension's data sits in the header on disk (the last
 * one, the one in effect, as header.c reads them), checked against what
 * the state says. */
static int find_ext(struct qcow2_state *s, uint64_t *pos)
{
    uint8_t *c = kimg_alloc_aligned(s->cluster_size);
    struct qcow2_ext_iter it;
    uint32_t type, len;
    uint64_t data, found = 0;
    int ret;

    if (!c)
        return -ENOMEM;
    ret = kimg_file_pread(s->file, c, s->cluster_size, 0);
    if (ret < 0)
        goto out;
    qcow2_ext_begin(s, &it);
    while ((ret = qcow2_ext_next(&it, c, &type, &len, &data)) > 0)
        if (type == QCOW2_EXT_BITMAPS)
            found = len == 24 ? data : 0;
    if (found && qcow2_be32(c + found) == s->nb_bitmaps &&
        qcow2_be64(c + found + 8) == s->bitmap_dir_size &&
        qcow2_be64(c + found + 16) == s->bitmap_dir_offset) {
        *pos = found;
        ret = 0;
    } else {
        ret = kimg_fail(-EIO, "qcow2: the bitmaps extension changed on disk");
    }
out:
    free(c);
    return ret;
}

/* ---- marking ------------------------------------------------------------ */

static int page_slot(struct qcow2_bm_state *st, struct bm_track *t, uint64_t p,
                     struct bm_page ***slot)
{
    if (!t->blocks) {
        t->blocks = calloc(t->nblocks, sizeof(*t->blocks));
        if (!t->blocks)
            return -ENOMEM;
        st->mem += t->nblocks * sizeof(*t->blocks);
    }
    struct bm_page ***blk = &t->blocks[p >> BM_BLOCK_BITS];
    if (!*blk) {
        *blk = calloc(1u << BM_BLOCK_BITS, sizeof(**blk));
        if (!*blk)
            return -ENOMEM;
        st->mem += sizeof(**blk) << BM_BLOCK_BITS;
    }
    *slot = &(*blk)[p & ((1u << BM_BLOCK_BITS) - 1)];
    return 0;
}

/* Set bits [lo, hi) of page P of T (VALID bits in the page). */
static int mark_page(struct qcow2_bm_state *st, struct bm_track *t, uint64_t p,
                     uint64_t lo, uint64_t hi, uint64_t valid)
{
    struct bm_page **slot;
    int ret = page_slot(st, t, p, &slot);
    if (ret < 0)
        return ret;
    if (*slot == BM_PAGE_FULL)
        return 0;
    if (lo == 0 && hi == valid) {
        if (*slot) {
            free(*slot);
            st->mem -= sizeof(struct bm_page) + st->page_bytes;
        }
        *slot = BM_PAGE_FULL;
        return 0;
    }
    if (!*slot) {
        *slot = calloc(1, sizeof(struct bm_page) + st->page_bytes);
        if (!*slot)
            return -ENOMEM;
        st->mem += sizeof(struct bm_page) + st->page_bytes;
    }
    struct bm_page *pg = *slot;
    for (uint64_t b = lo; b < hi;) {
        uint64_t byte = b >> 3;
        unsigned first = b & 7, last = (hi - (byte << 3)) < 8 ? (unsigned)(hi - (byte << 3)) : 8;
        uint8_t mask = (uint8_t)(((1u << last) - 1) & ~((1u << first) - 1));
        pg->nset += (uint32_t)__builtin_popcount(mask & ~pg->bits[byte]);
        pg->bits[byte] |= mask;
        b = (byte + 1) << 3;
    }
    if (pg->nset == valid) {
        free(pg);
        st->mem -= sizeof(struct bm_page) + st->page_bytes;
        *slot = BM_PAGE_FULL;
    }
    return 0;
}

static int mark(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    struct qcow2_bm_state *st = s->bm;
    uint64_t pbits = (uint64_t)st->page_bytes * 8;

    for (uint32_t i = 0; i < st->nt; i++) {
        struct bm_track *t = &st->t[i];
        uint64_t b0 = off >> t->gran_bits;
        uint64_t b1 = ((off + len - 1) >> t->gran_bits) + 1;
        if (b1 > t->nbits)
            b1 = t->nbits;
        for (uint64_t p = b0 / pbits; b0 < b1 && p <= (b1 - 1) / pbits; p++) {
            uint64_t base = p * pbits;
            uint64_t valid = t->nbits - base < pbits ? t->nbits - base : pbits;
            uint64_t lo = b0 > base ? b0 - base : 0;
            uint64_t hi = b1 - base < valid ? b1 - base : valid;
            int ret = mark_page(st, t, p, lo, hi, valid);
            if (ret < 0)
                return ret;
        }
        t->touched = true;
    }
    return 0;
}

int qcow2_bitmaps_write(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    qcow2_assert_locked(s);
    if (!s->bm || !len)
        return 0;
    struct qcow2_bm_state *st = s->bm;
    int ret = 0;
    if (!qcow2_can_write(s))
        goto out;               /* fenced by another thread: the write fails */
    if (st->broken)
        ret = kimg_fail(-EIO, "qcow2: the dirty bitmaps could not be stored; refusing "
                        "to write");
    if (ret == 0 && !st->in_use_on_disk)
        ret = set_in_use(s);
    if (ret == 0)
        ret = mark(s, off, len);
    if (ret == -ENOMEM)
        kimg_error("qcow2: no memory for the dirty bitmaps");
    if (ret == 0 && st->mem >= st->budget)
        ret = qcow2_bitmaps_store(s);
out:
    return ret;
}

/* ---- storing ------------------------------------------------------------ */

/* Clusters to free once the new directory is in place, or (on failure)
 * the new ones to give back. */
struct flist {
    uint64_t *off, *len;
    size_t n, cap;
};

static int flist_add(struct flist *f, uint64_t off, uint64_t len)
{
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 16;
        uint64_t *o = realloc(f->off, nc * sizeof(*o));
        if (!o)
            return -ENOMEM;
        f->off = o;
        uint64_t *l = realloc(f->len, nc * sizeof(*l));
        if (!l)
            return -ENOMEM;
        f->len = l;
        f->cap = nc;
    }
    f->off[f->n] = off;
    f->len[f->n++] = len;
    return 0;
}

/* Free what F lists, cluster by cluster, only where the refcount is 1 (a
 * cluster also counted elsewhere is leaked rather than taken from its
 * other user). */
static int flist_free(struct qcow2_state *s, struct flist *f)
{
    int ret = 0;
    for (size_t i = 0; i < f->n; i++)
        for (uint64_t o = f->off[i]; o < f->off[i] + f->len[i]; o += s->cluster_size) {
            uint64_t rc;
            int r = qcow2_refcount_get(s, o >> s->cluster_bits, &rc);
            if (r == 0 && rc == 1)
                r = qcow2_free_clusters(s, o, s->cluster_size);
            if (r < 0 && ret == 0)
                ret = r;
        }
    return ret;
}

static void flist_clear(struct flist *f)
{
    free(f->off);
    free(f->len);
    memset(f, 0, sizeof(*f));
}

/* OR the dirty pages of chunk C (one bitmap cluster) of T into BUF (the
 * chunk as stored); *changed if a bit was added, *full if every valid bit
 * of the chunk is now set. */
static void merge_chunk(struct qcow2_state *s, struct bm_track *t, uint64_t c, uint8_t *buf,
                        bool *changed, bool *full)
{
    struct qcow2_bm_state *st = s->bm;
    uint64_t ppc = s->cluster_size / st->page_bytes, pbits = (uint64_t)st->page_bytes * 8;
    uint64_t cbits = s->cluster_size * 8, cbase = c * cbits;
    uint64_t valid = t->nbits - cbase < cbits ? t->nbits - cbase : cbits;

    *changed = false;
    for (uint64_t k = 0; k < ppc; k++) {
        uint64_t p = c * ppc + k;
        if (p >= t->npages)
            break;
        struct bm_page **blk = t->blocks ? t->blocks[p >> BM_BLOCK_BITS] : NULL;
        struct bm_page *pg = blk ? blk[p & ((1u << BM_BLOCK_BITS) - 1)] : NULL;
        if (!pg)
            continue;
        uint8_t *dst = buf + k * st->page_bytes;
        uint64_t pvalid = t->nbits - p * pbits < pbits ? t->nbits - p * pbits : pbits;
        for (uint64_t byte = 0; byte < (pvalid + 7) / 8; byte++) {
            uint8_t m = pg == BM_PAGE_FULL ? 0xff : pg->bits[byte];
            if (pg == BM_PAGE_FULL && pvalid - byte * 8 < 8)
                m = (uint8_t)((1u << (pvalid - byte * 8)) - 1);
            if (m & ~dst[byte])
                *changed = true;
            dst[byte] |= m;
        }
    }
    *full = true;
    for (uint64_t byte = 0; *full && byte < valid / 8; byte++)
        if (buf[byte] != 0xff)
            *full = false;
    if (*full && (valid & 7)) {
        uint8_t m = (uint8_t)((1u << (valid & 7)) - 1);
        *full = (buf[valid / 8] & m) == m;
    }
}

/* The new table of T into NEWT (a copy of the old, OLDT): changed chunks
 * written to new clusters (listed in NEWC), the clusters they replace
 * listed in OLDC.  *moved if an entry changed. */
static int store_chunks(struct qcow2_state *s, struct bm_track *t, const uint64_t *oldt,
                        uint64_t *newt, uint32_t tsize, struct flist *newc,
                        struct flist *oldc, bool *moved)
{
    struct qcow2_bm_state *st = s->bm;
    uint64_t ppc = s->cluster_size / st->page_bytes;
    uint8_t *buf = kimg_alloc_aligned(s->cluster_size);
    int ret = 0;

    if (!buf)
        return -ENOMEM;
    *moved = false;
    for (uint32_t c = 0; ret == 0 && c < tsize; c++) {
        bool any = false;
        for (uint64_t k = 0; k < ppc && !any; k++) {
            uint64_t p = (uint64_t)c * ppc + k;
            if (p >= t->npages)
                break;
            struct bm_page **blk = t->blocks ? t->blocks[p >> BM_BLOCK_BITS] : NULL;
            any = blk && blk[p & ((1u << BM_BLOCK_BITS) - 1)];
        }
        uint64_t e = oldt[c], eoff = e & BME_TABLE_OFFSET_MASK;
        if (!any || e == BME_TABLE_ALL_ONES)
            continue;
        if (eoff)
            ret = kimg_file_pread(s->file, buf, s->cluster_size, eoff);
        else
            memset(buf, 0, s->cluster_size);
        if (ret < 0)
            break;
        bool changed, full;
        merge_chunk(s, t, c, buf, &changed, &full);
        if (!changed)
            continue;
        if (full) {
            newt[c] = BME_TABLE_ALL_ONES;
        } else {
            uint64_t h;
            ret = qcow2_alloc_clusters(s, 1, &h);
            if (ret == 0)
                ret = flist_add(newc, h, s->cluster_size);
            if (ret == 0)
                ret = kimg_file_pwrite(s->file, buf, s->cluster_size, h);
            if (ret < 0)
                break;
            newt[c] = h;
        }
        if (eoff)
            ret = flist_add(oldc, eoff, s->cluster_size);
        *moved = true;
    }
    free(buf);
    return ret;
}

/* Write the new table NEWT of TSIZE entries to new clusters at *OFF. */
static int write_table(struct qcow2_state *s, const uint64_t *newt, uint32_t tsize,
                       struct flist *newc, uint64_t *off)
{
    uint64_t bytes = qcow2_align_up((uint64_t)tsize * 8, s->cluster_size);
    uint8_t *raw = kimg_alloc_aligned_zero(bytes);
    int ret = -ENOMEM;
    if (!raw)
        return ret;
    for (uint32_t i = 0; i < tsize; i++)
        qcow2_put_be64(raw + (uint64_t)i * 8, newt[i]);
    ret = qcow2_alloc_clusters(s, bytes >> s->cluster_bits, off);
    if (ret == 0)
        ret = flist_add(newc, *off, bytes);
    if (ret == 0)
        ret = kimg_file_pwrite(s->file, raw, bytes, *off);
    free(raw);
    return ret;
}

/* Switch to the directory NEWD: in place if no table moved (only flag words
 * change), else at new clusters, the header extension's directory offset
 * (one aligned 8-byte word) switched after everything is synced. */
static int write_dir(struct qcow2_state *s, const uint8_t *newd, bool moved,
                     struct flist *newc, struct flist *oldc)
{
    uint64_t size = s->bitmap_dir_size, noff;
    int ret;

    if (!moved) {
        ret = kimg_file_pwrite(s->file, newd, size, s->bitmap_dir_offset);
        return ret < 0 ? ret : kimg_file_sync(s->file);
    }
    uint64_t pos = 0;
    ret = find_ext(s, &pos);
    if (ret < 0)
        return ret;
    ret = qcow2_alloc_clusters(s, qcow2_align_up(size, s->cluster_size) >> s->cluster_bits,
                               &noff);
    if (ret == 0)
        ret = flist_add(newc, noff, qcow2_align_up(size, s->cluster_size));
    if (ret == 0)
        ret = kimg_file_pwrite(s->file, newd, size, noff);
    if (ret == 0)
        ret = qcow2_flush_caches(s);        /* refcounts of every new cluster */
    if (ret < 0)
        return ret;
    uint8_t ext[24];
    qcow2_put_be32(ext, s->nb_bitmaps);
    qcow2_put_be32(ext + 4, 0);
    qcow2_put_be64(ext + 8, size);
    qcow2_put_be64(ext + 16, noff);
    ret = kimg_file_pwrite(s->file, ext + 16, 8, pos + 16);
    if (ret < 0)
        return ret;
    /* the header may point at the new directory from here on, even if the
     * sync fails: its clusters are never freed (leaked at worst) */
    newc->n = 0;
    ret = kimg_file_sync(s->file);
    if (ret < 0)
        return ret;
    /* switched: nothing may fail from here on.  The old directory goes
     * (leaked if the list cannot grow). */
    (void)flist_add(oldc, s->bitmap_dir_offset, qcow2_align_up(size, s->cluster_size));
    s->bitmap_dir_offset = noff;
    struct qcow2_ext *e = qcow2_find_ext(s, QCOW2_EXT_BITMAPS);
    if (e && e->len == sizeof(ext))
        memcpy(e->data, ext, sizeof(ext));
    return 0;
}

int qcow2_bitmaps_store(struct qcow2_state *s)
{
    struct qcow2_bm_state *st = s->bm;
    struct flist newc = { 0 }, oldc = { 0 };
    uint8_t *newd = NULL;
    bool any_moved = false;
    int ret;

    /* a corrupt (fenced) image keeps its bitmaps in use */
    if (!st || st->broken || !st->in_use_on_disk || !qcow2_can_write(s))
        return 0;
    /* everything the bits describe reaches the disk first */
    ret = qcow2_flush_caches(s);
    if (ret < 0)
        goto fail;
    newd = malloc(s->bitmap_dir_size);
    if (!newd) {
        ret = -ENOMEM;
        goto fail;
    }
    memcpy(newd, st->dir, s->bitmap_dir_size);
    for (uint32_t i = 0; i < st->nt; i++) {
        struct bm_track *t = &st->t[i];
        struct qcow2_bitmap *b = &s->bitmaps[t->idx];
        uint64_t *oldt = NULL, *newt = NULL;
        bool moved = false;
        if (!t->touched)
            continue;
        uint64_t fsz;
        ret = kimg_file_size(s->file, &fsz);
        if (ret == 0)
            ret = load_table(s, b, fsz, &oldt);
        if (ret == 0) {
            newt = malloc((uint64_t)b->table_size * 8);
            if (!newt)
                ret = -ENOMEM;
            else
                memcpy(newt, oldt, (uint64_t)b->table_size * 8);
        }
        if (ret == 0)
            ret = store_chunks(s, t, oldt, newt, b->table_size, &newc, &oldc, &moved);
        if (ret == 0 && moved) {
            uint64_t toff;
            ret = write_table(s, newt, b->table_size, &newc, &toff);
            if (ret == 0)
                ret = flist_add(&oldc, b->table_offset,
                                qcow2_align_up((uint64_t)b->table_size * 8, s->cluster_size));
            if (ret == 0)
                qcow2_put_be64(newd + st->entry_pos[t->idx], toff);
            any_moved = true;
        }
        free(oldt);
        free(newt);
        if (ret < 0)
            goto fail;
    }
    set_entry_flags(s, newd, false);
    /* new bitmap clusters and tables, their refcounts, before the directory */
    ret = qcow2_flush_caches(s);
    if (ret == 0)
        ret = write_dir(s, newd, any_moved, &newc, &oldc);
    if (ret < 0)
        goto fail;
    dir_written(s, newd);
    qcow2_bitmap_query_reset(s);        /* tables moved */
    st->in_use_on_disk = false;
    for (uint32_t i = 0; i < st->nt; i++)
        free_pages(st, &st->t[i]);
    ret = flist_free(s, &oldc);
    goto out;
fail:
    /* the bitmaps stay in_use on disk (inconsistent, as after a crash) */
    st->broken = true;
    for (uint32_t i = 0; i < st->nt; i++)
        free_pages(st, &st->t[i]);
    flist_free(s, &newc);
out:
    free(newd);
    flist_clear(&newc);
    flist_clear(&oldc);
    return ret;
}

int qcow2_bitmaps_flush(struct qcow2_state *s)
{
    qcow2_assert_locked(s);
    if (!s->bm)
        return 0;
    return qcow2_bitmaps_store(s);
}

/* ---- resize ---------------------------------------------------------------- */

/* Bits of the last chunk before BOUND (granules): a stored cluster with
 * bits at or past BOUND set, or an all-ones entry not wholly inside the
 * bitmap, is rewritten at a new cluster with only the bits below BOUND
 * (0 if none remain).  Returns the new entry in *NE. */
static int cut_chunk(struct qcow2_state *s, uint64_t e, uint64_t valid,
                     struct flist *newc, struct flist *oldc, uint64_t *ne)
{
    uint64_t eoff = e & BME_TABLE_OFFSET_MASK, cbits = s->cluster_size * 8;
    uint8_t *buf;
    int ret = 0;

    *ne = e;
    if (valid >= cbits || (!eoff && !(e & BME_TABLE_ALL_ONES)))
        return 0;
    buf = kimg_alloc_aligned(s->cluster_size);
    if (!buf)
        return -ENOMEM;
    if (eoff)
        ret = kimg_file_pread(s->file, buf, s->cluster_size, eoff);
    else
        memset(buf, 0xff, s->cluster_size);
    if (ret < 0)
        goto out;
    bool past = false, below = false;
    for (uint64_t byte = valid / 8; byte < s->cluster_size; byte++) {
        uint8_t keep = byte == valid / 8 ? (uint8_t)((1u << (valid & 7)) - 1) : 0;
        past |= (buf[byte] & ~keep) != 0;
        buf[byte] &= keep;
    }
    if (!past)
        goto out;
    for (uint64_t byte = 0; byte < s->cluster_size && !below; byte++)
        below = buf[byte] != 0;
    if (below) {
        uint64_t h;
        ret = qcow2_alloc_clusters(s, 1, &h);
        if (ret == 0)
            ret = flist_add(newc, h, s->cluster_size);
        if (ret == 0)
            ret = kimg_file_pwrite(s->file, buf, s->cluster_size, h);
        if (ret < 0)
            goto out;
        *ne = h;
    } else {
        *ne = 0;
    }
    if (eoff)
        ret = flist_add(oldc, eoff, s->cluster_size);
out:
    free(buf);
    return ret;
}

int qcow2_bitmaps_resize_begin(struct qcow2_state *s, uint64_t new_size)
{
    struct qcow2_bm_state *st = s->bm;
    uint8_t *d = NULL;
    uint64_t *pos = NULL;
    int ret;

    if (!s->has_bitmaps_ext || !s->bitmaps || !s->nb_bitmaps)
        return 0;
    if (st) {
        /* pending bits stored: every bitmap consistent or in_use by others */
        ret = qcow2_bitmaps_store(s);
        if (ret == 0 && st->broken)
            ret = kimg_fail(-EIO, "qcow2: the dirty bitmaps could not be stored");
        if (ret < 0)
            return ret;
    }
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *b = &s->bitmaps[i];
        if (b->flags & QCOW2_BME_IN_USE)
            return kimg_fail(-EINVAL, "Bitmap '%s' is inconsistent and cannot be used",
                             b->name);
        uint64_t bits = div_up(new_size, 1ULL << b->granularity_bits);
        uint64_t ts = div_up(bits, s->cluster_size * 8);
        if (ts > BME_MAX_TABLE_SIZE || ts * s->cluster_size > BME_MAX_PHYS_SIZE)
            return kimg_fail(-EFBIG, "Bitmap '%s' would be too large for the new size",
                             b->name);
    }
    /* all bitmaps in_use (flag words in place, synced) before the size
     * changes: until the new tables are in, qemu ignores their data */
    d = malloc(s->bitmap_dir_size);
    pos = calloc(s->nb_bitmaps, sizeof(*pos));
    ret = -ENOMEM;
    if (!d || !pos)
        goto out;
    ret = kimg_file_pread(s->file, d, s->bitmap_dir_size, s->bitmap_dir_offset);
    if (ret == 0)
        ret = check_dir(s, d, pos);
    if (ret < 0)
        goto out;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++)
        qcow2_put_be32(d + pos[i] + 12, qcow2_be32(d + pos[i] + 12) | QCOW2_BME_IN_USE);
    ret = kimg_file_pwrite(s->file, d, s->bitmap_dir_size, s->bitmap_dir_offset);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        goto out;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++)
        s->bitmaps[i].flags |= QCOW2_BME_IN_USE;
    if (st) {
        memcpy(st->dir, d, s->bitmap_dir_size);
        st->broken = true;      /* no store in between; resize_end resets */
    }
out:
    free(d);
    free(pos);
    return ret;
}

int qcow2_bitmaps_resize_end(struct qcow2_state *s, uint64_t old_size)
{
    struct qcow2_bm_state *st = s->bm;
    struct flist newc = { 0 }, oldc = { 0 };
    uint8_t *d = NULL;
    uint64_t *pos = NULL, fsz = 0;
    int ret;

    if (!s->has_bitmaps_ext || !s->bitmaps || !s->nb_bitmaps)
        return 0;
    d = malloc(s->bitmap_dir_size);
    pos = calloc(s->nb_bitmaps, sizeof(*pos));
    ret = -ENOMEM;
    if (!d || !pos)
        goto fail;
    ret = kimg_file_pread(s->file, d, s->bitmap_dir_size, s->bitmap_dir_offset);
    if (ret == 0)
        ret = check_dir(s, d, pos);
    if (ret == 0)
        ret = qcow2_flush_caches(s);
    if (ret == 0)
        ret = kimg_file_size(s->file, &fsz);
    for (uint32_t i = 0; ret == 0 && i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *b = &s->bitmaps[i];
        uint64_t gran = 1ULL << b->granularity_bits, cbits = s->cluster_size * 8;
        uint64_t bound = div_up(old_size < s->img->size ? old_size : s->img->size, gran);
        uint32_t nts = (uint32_t)table_size_for(s, b->granularity_bits);
        uint64_t *oldt = NULL, *newt = calloc(nts, 8), toff = 0;
        if (!newt) {
            ret = -ENOMEM;
            break;
        }
        ret = load_table(s, b, fsz, &oldt);
        for (uint32_t c = 0; ret == 0 && c < b->table_size; c++) {
            uint64_t e = oldt[c], eoff = e & BME_TABLE_OFFSET_MASK;
            if ((uint64_t)c * cbits >= bound) {         /* wholly past the kept bits */
                if (eoff)
                    ret = flist_add(&oldc, eoff, s->cluster_size);
                continue;
            }
            ret = cut_chunk(s, e, bound - (uint64_t)c * cbits, &newc, &oldc, &newt[c]);
        }
        if (ret == 0)
            ret = write_table(s, newt, nts, &newc, &toff);
        if (ret == 0)
            ret = flist_add(&oldc, b->table_offset,
                            qcow2_align_up((uint64_t)b->table_size * 8, s->cluster_size));
        if (ret == 0) {
            uint8_t *e = d + pos[i];
            qcow2_put_be64(e, toff);
            qcow2_put_be32(e + 8, nts);
            qcow2_put_be32(e + 12, qcow2_be32(e + 12) & ~QCOW2_BME_IN_USE);
        }
        free(oldt);
        free(newt);
    }
    /* new chunks and tables with their refcounts, then the directory */
    if (ret == 0)
        ret = qcow2_flush_caches(s);
    if (ret == 0)
        ret = write_dir(s, d, true, &newc, &oldc);
    if (ret < 0)
        goto fail;
    qcow2_bitmap_query_reset(s);        /* tables moved */
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const uint8_t *e = d + pos[i];
        s->bitmaps[i].table_offset = qcow2_be64(e);
        s->bitmaps[i].table_size = qcow2_be32(e + 8);
        s->bitmaps[i].flags = qcow2_be32(e + 12);
    }
    if (st) {
        /* tracking starts over at the new size (no bits pending) */
        memcpy(st->dir, d, s->bitmap_dir_size);
        st->in_use_on_disk = false;
        st->broken = false;
        for (uint32_t i = 0; i < st->nt; i++) {
            struct bm_track *t = &st->t[i];
            free_pages(st, t);
            if (t->blocks)
                st->mem -= t->nblocks * sizeof(*t->blocks);
            free(t->blocks);
            t->blocks = NULL;
            t->nbits = div_up(s->img->size, 1ULL << t->gran_bits);
            t->npages = div_up(t->nbits, (uint64_t)st->page_bytes * 8);
            t->nblocks = div_up(t->npages, 1u << BM_BLOCK_BITS);
        }
    }
    ret = flist_free(s, &oldc);
    if (ret == 0)
        ret = qcow2_flush_caches(s);
    goto out;
fail:
    /* the bitmaps stay in_use on disk (as after a crash) */
    flist_free(s, &newc);
out:
    free(d);
    free(pos);
    flist_clear(&newc);
    flist_clear(&oldc);
    return ret;
}
