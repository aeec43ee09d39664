/*
 * qcow2.c — the qcow2 driver table: probe, open (header, tables, caches,
 * external data file, lazy-refcount dirty recovery, autoclear bits) and
 * close.  The per-concern work lives in the other files of this folder.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

static int qcow2_probe(const uint8_t *buf, size_t len, const char *filename)
{
    if (len < 8)
        return 0;
    if (qcow2_be32(buf) != QCOW2_MAGIC)
        return 0;
    uint32_t v = qcow2_be32(buf + 4);
    (void)v;   /* any version: open then names the unsupported one */
    return 100;
}

static int clamp_int(uint64_t v, int lo, int hi)
{
    if (v < (uint64_t)lo)
        return lo;
    if (v > (uint64_t)hi)
        return hi;
    return (int)v;
}

static void free_state(struct qcow2_state *s)
{
    if (s->own_data_file && s->data_file)
        kimg_file_close(s->data_file);
    s->data_file = NULL;
    s->own_data_file = false;
    qcow2_bitmaps_free(s);
    qcow2_cache_destroy(&s->l2_cache);
    qcow2_cache_destroy(&s->rb_cache);
    qcow2_free_snapshots(s);
    qcow2_free_header(s);
    free(s->l1);
    s->l1 = NULL;
    free(s->l1_pending);
    s->l1_pending = NULL;
    s->nb_l1_pending = s->l1_pending_cap = 0;
    free(s->rt);
    s->rt = NULL;
    free(s->zcache);
    s->zcache = NULL;
    free(s->luks);
    s->luks = NULL;
    if (s->lock_init)
        pthread_mutex_destroy(&s->lock);
    s->lock_init = false;
}

/* Does a bitmap record guest writes (so a write we do not record makes
 * the bitmaps inconsistent)? */
static bool bitmaps_track_writes(const struct qcow2_state *s)
{
    for (uint32_t i = 0; s->bitmaps && i < s->nb_bitmaps; i++)
        if (s->bitmaps[i].flags & (QCOW2_BME_AUTO | QCOW2_BME_IN_USE))
            return true;
    return false;
}

/* Clear the autoclear bits outside KEEP in the header (that field only,
 * synced); without the bitmaps bit, the bitmaps are forgotten. */
static int clear_autoclear(struct qcow2_state *s, uint64_t keep)
{
    if (s->version < 3 || !(s->autoclear & ~keep))
        return 0;
    uint8_t b[8];
    qcow2_put_be64(b, s->autoclear & keep);
    int ret = kimg_file_pwrite(s->file, b, 8, 88);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        return ret;
    s->autoclear &= keep;
    if (s->hdr_raw && s->hdr_raw_len >= 96)
        memcpy(s->hdr_raw + 88, b, 8);
    if (!(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS) && s->bitmaps) {
        /* the bitmaps are now inconsistent: forget them here */
        for (uint32_t i = 0; i < s->nb_bitmaps; i++)
            free(s->bitmaps[i].name);
        free(s->bitmaps);
        s->bitmaps = NULL;
        s->has_bitmaps_ext = false;
    }
    return 0;
}

/* Before any guest data changes in an image opened under KIMG_OPEN_REPAIR
 * whose bitmaps were kept: clear the bitmaps bit (as open does otherwise). */
static int before_guest_write(struct qcow2_state *s)
{
    if (!__atomic_load_n(&s->bitmaps_clear_on_write, __ATOMIC_ACQUIRE))
        return 0;
    pthread_mutex_lock(&s->lock);
    int ret = 0;
    if (s->bitmaps_clear_on_write) {
        ret = clear_autoclear(s, s->autoclear & ~QCOW2_AUTOCLEAR_BITMAPS);
        if (ret == 0)
            __atomic_store_n(&s->bitmaps_clear_on_write, false, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* Before guest data of [off, off+len) changes: the autoclear bit under
 * repair, the dirty bitmaps (bitmap.c). */
static int guest_write(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    int ret = before_guest_write(s);
    return ret < 0 ? ret : qcow2_bitmaps_write(s, off, len);
}

int qcow2_do_open(struct kimg *img)
{
    struct qcow2_state *s = img->state;
    uint64_t fsz;
    int ret;

    memset(s, 0, sizeof(*s));
    s->img = img;
    s->file = img->file;
    s->meta_prealloc = -1;
    if (pthread_mutex_init(&s->lock, NULL))
        return -ENOMEM;
    s->lock_init = true;

    ret = kimg_file_size(s->file, &fsz);
    if (ret < 0)
        goto fail;
    ret = qcow2_parse_header(s, fsz);
    if (ret < 0)
        goto fail;
    ret = qcow2_crypto_open(s, fsz, img->flags, img->writable);
    if (ret < 0)
        goto fail;
    if ((s->incompat & QCOW2_INCOMPAT_CORRUPT) && img->writable &&
        !(img->flags & KIMG_OPEN_REPAIR)) {
        ret = kimg_fail(-EACCES, "qcow2: Image is corrupt; cannot be opened read/write");
        goto fail;
    }
    ret = qcow2_read_l1(s, s->l1_offset, s->l1_size, &s->l1);
    if (ret < 0)
        goto fail;
    ret = qcow2_load_refcount_table(s, fsz);
    if (ret < 0)
        goto fail;
    ret = qcow2_read_snapshots(s, fsz, (img->flags & KIMG_OPEN_REPAIR) != 0);
    if (ret < 0)
        goto fail;
    ret = qcow2_read_bitmaps(s, fsz);
    if (ret < 0)
        goto fail;

    ret = qcow2_cache_init(&s->l2_cache, s, clamp_int((8u << 20) >> s->cluster_bits, 4, 128),
                           s->cluster_size, "L2 table");
    if (ret < 0)
        goto fail;
    ret = qcow2_cache_init(&s->rb_cache, s, clamp_int((1u << 20) >> s->cluster_bits, 4, 32),
                           s->cluster_size, "refcount block");
    if (ret < 0)
        goto fail;
    s->l2_cache.depends = &s->rb_cache;
    s->alloc_end = qcow2_align_up(fsz, s->cluster_size) >> s->cluster_bits;

    if (s->has_data_file) {
        if (!s->data_file_name) {
            ret = kimg_fail(-EINVAL, "Missing external data file name: the image needs "
                            "a data file");
            goto fail;
        } else if (img->flags & KIMG_OPEN_NO_BACKING) {
            s->data_file = NULL;
        } else {
            ret = kimg_open_aux_file(img, s->data_file_name, img->writable, &s->data_file);
            if (ret < 0)
                goto fail;
            s->own_data_file = true;
        }
    } else {
        s->data_file = s->file;
    }

    if (img->writable) {
        if ((s->incompat & QCOW2_INCOMPAT_DIRTY) && !(img->flags & KIMG_OPEN_REPAIR)) {
            ret = qcow2_rebuild_refcounts(s);
            if (ret < 0)
                goto fail;
            ret = qcow2_update_incompat(s, 0, QCOW2_INCOMPAT_DIRTY);
            if (ret < 0)
                goto fail;
        }
        /* autoclear bits we do not maintain are cleared before writing:
         * unknown ones.  The bitmaps bit stays: bitmap.c keeps the bitmaps
         * consistent across writes, after validating them as qemu does (a
         * bad directory or table fails the open, as in qemu).  Under
         * KIMG_OPEN_REPAIR (check -r, which writes no guest data) bitmaps
         * that fail validation are kept as they are; should a guest write
         * come anyway, the bit is cleared first (see before_guest_write). */
        uint64_t keep = QCOW2_AUTOCLEAR_DATA_RAW | QCOW2_AUTOCLEAR_BITMAPS;
        ret = qcow2_bitmaps_open(s, fsz);
        if (ret < 0 && !(img->flags & KIMG_OPEN_REPAIR))
            goto fail;
        if (ret < 0) {
            kimg_clear_error();
            if (bitmaps_track_writes(s))
                s->bitmaps_clear_on_write = true;
        }
        ret = clear_autoclear(s, keep);
        if (ret < 0)
            goto fail;
    }

    img->size = s->size;
    img->cluster_size = s->cluster_size;
    if (s->backing_name) {
        img->backing_name = strdup(s->backing_name);
        if (!img->backing_name) {
            ret = -ENOMEM;
            goto fail;
        }
        if (s->backing_format) {
            img->backing_format = strdup(s->backing_format);
            if (!img->backing_format) {
                free(img->backing_name);
                img->backing_name = NULL;
                ret = -ENOMEM;
                goto fail;
            }
        }
    }
    return 0;
fail:
    free_state(s);
    return ret;
}

void qcow2_do_close(struct kimg *img)
{
    struct qcow2_state *s = img->state;
    if (qcow2_can_write(s)) {
        qcow2_bitmaps_flush(s);
        qcow2_flush_caches(s);
    }
    free_state(s);
}

static int qcow2_open(struct kimg *img)
{
    return qcow2_do_open(img);
}

static void qcow2_close(struct kimg *img)
{
    qcow2_do_close(img);
}

static int64_t qcow2_compress_cluster_cb(struct kimg *img, uint64_t off, const void *buf,
                                         uint64_t len, void *dst, size_t cap)
{
    struct qcow2_state *s = img->state;
    if (s->crypt_method != QCOW2_CRYPT_NONE)
        return qcow2_crypto_refuse();
    /* only fields fixed while the engine copies are read: no lock */
    if (!qcow2_can_compress(s, off, len))
        return -ENOTSUP;
    return qcow2_compress_cluster(s, buf, len, dst, cap);
}

static int qcow2_write_compressed_data_cb(struct kimg *img, uint64_t off, uint64_t len,
                                          const void *cdata, size_t clen)
{
    struct qcow2_state *s = img->state;
    if (s->crypt_method != QCOW2_CRYPT_NONE)
        return qcow2_crypto_refuse();
    if (!qcow2_can_compress(s, off, len) || clen > s->cluster_size - 512)
        return kimg_fail(-EINVAL, "bad compressed cluster write");
    int ret = guest_write(s, off, len);
    if (ret < 0)
        return ret;
    pthread_mutex_lock(&s->lock);
    ret = qcow2_store_compressed(s, off, cdata, (int64_t)clen);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* Guest data of an encrypted image (open only under KIMG_OPEN_NO_IO) is
 * never read or written: ciphertext is not content.  Not -ENOTSUP, which
 * would send the core to its generic fallbacks. */
static bool encrypted(struct kimg *img)
{
    return ((struct qcow2_state *)img->state)->crypt_method != QCOW2_CRYPT_NONE;
}

static int qcow2_read_cb(struct kimg *img, void *buf, uint64_t off, uint64_t len)
{
    return encrypted(img) ? qcow2_crypto_refuse() : qcow2_read(img, buf, off, len);
}

static int qcow2_write_cb(struct kimg *img, const void *buf, uint64_t off, uint64_t len)
{
    if (encrypted(img))
        return qcow2_crypto_refuse();
    int ret = guest_write(img->state, off, len);
    return ret < 0 ? ret : qcow2_write(img, buf, off, len);
}

static int qcow2_write_zeroes_cb(struct kimg *img, uint64_t off, uint64_t len, unsigned flags)
{
    if (encrypted(img))
        return qcow2_crypto_refuse();
    int ret = guest_write(img->state, off, len);
    return ret < 0 ? ret : qcow2_write_zeroes(img, off, len, flags);
}

static int qcow2_discard_cb(struct kimg *img, uint64_t off, uint64_t len)
{
    if (encrypted(img))
        return qcow2_crypto_refuse();
    int ret = guest_write(img->state, off, len);
    return ret < 0 ? ret : qcow2_discard(img, off, len);
}

static int qcow2_block_status_cb(struct kimg *img, uint64_t off, uint64_t len,
                                 struct kimg_extent *ext)
{
    return encrypted(img) ? qcow2_crypto_refuse() : qcow2_block_status(img, off, len, ext);
}

/* qemu reads an L2 table's worth of entries per block-status call (its
 * L2 cache entry is one cluster, the whole table), reports compressed
 * clusters one at a time, and ends a run of clusters before one whose
 * subclusters change status (observed with qemu-img 7.2's convert -p). */
static void qcow2_status_units(struct kimg *img, uint64_t *span, uint64_t *cluster,
                               bool *subclusters)
{
    struct qcow2_state *s = img->state;
    *span = 1ull << (s->cluster_bits + s->l2_bits);
    *cluster = s->cluster_size;
    *subclusters = s->ext_l2;
}

static int qcow2_truncate_cb(struct kimg *img, uint64_t size, enum kimg_prealloc prealloc)
{
    if (encrypted(img))
        return qcow2_crypto_refuse();
    int ret = before_guest_write(img->state);
    return ret < 0 ? ret : qcow2_truncate(img, size, prealloc);
}

static int qcow2_check_cb(struct kimg *img, struct kimg_check *res, unsigned fix)
{
    return encrypted(img) ? qcow2_crypto_refuse() : qcow2_check(img, res, fix);
}

static int qcow2_write_compressed_cb(struct kimg *img, const void *buf, uint64_t off,
                                     uint64_t len)
{
    struct qcow2_state *s = img->state;
    if (encrypted(img))
        return qcow2_crypto_refuse();
    int ret = guest_write(s, off, len);
    if (ret < 0)
        return ret;
    pthread_mutex_lock(&s->lock);
    ret = qcow2_write_compressed(s, buf, off, len);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* The copy engine's allocation: the range's bits are set before
 * commit_data links it (guest data changes only then). */
static int64_t qcow2_alloc_data_cb(struct kimg *img, uint64_t off, uint64_t len,
                                   uint64_t *host, struct kimg_file **file)
{
    int64_t n = qcow2_alloc_data(img, off, len, host, file);
    if (n > 0) {
        int ret = guest_write(img->state, off, (uint64_t)n);
        if (ret < 0)
            return ret;
    }
    return n;
}

/* Flush: the dirty bitmaps are stored (consistent on disk) too. */
static int qcow2_flush_cb(struct kimg *img)
{
    int ret = qcow2_bitmaps_flush(img->state);
    int r = qcow2_flush(img);
    return ret < 0 ? ret : r;
}

const struct kimg_driver kimg_qcow2_driver = {
    .name = "qcow2",
    .state_size = sizeof(struct qcow2_state),
    .create_opts = qcow2_create_opts,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .create = qcow2_create,
    .read = qcow2_read_cb,
    .write = qcow2_write_cb,
    .write_zeroes = qcow2_write_zeroes_cb,
    .discard = qcow2_discard_cb,
    .flush = qcow2_flush_cb,
    .block_status = qcow2_block_status_cb,
    .truncate = qcow2_truncate_cb,
    .info = qcow2_info,
    .check = qcow2_check_cb,
    .snapshot_create = qcow2_snapshot_create,
    .snapshot_apply = qcow2_snapshot_apply,
    .snapshot_delete = qcow2_snapshot_delete,
    .snapshot_load = qcow2_snapshot_load,
    .write_compressed = qcow2_write_compressed_cb,
    .compress_cluster = qcow2_compress_cluster_cb,
    .write_compressed_data = qcow2_write_compressed_data_cb,
    .alloc_data = qcow2_alloc_data_cb,
    .commit_data = qcow2_commit_data,
    .set_write_option = qcow2_set_write_option,
    .change_backing = qcow2_change_backing,
    .make_empty = qcow2_make_empty,
    .amend = qcow2_amend,
    .measure = qcow2_measure,
    .status_units = qcow2_status_units,
    .formatting_opts = qcow2_formatting_opts,
    .amend_opts = qcow2_amend_opts,
    .create_opts_like = qcow2_create_opts_like,
    .has_bitmaps = qcow2_has_bitmaps,
};
