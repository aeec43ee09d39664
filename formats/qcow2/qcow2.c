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
    /* version 1 is qemu's "qcow" format (img/foreign.c names it); any
     * later version is ours, and open names an unsupported one */
    return qcow2_be32(buf + 4) >= 2 ? 100 : 0;
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
    qcow2_bitmap_query_reset(s);
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
    qcow2_crypto_close(s);
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

/* Lock held.  Before any guest data changes in an image opened under
 * KIMG_OPEN_REPAIR whose bitmaps were kept: clear the bitmaps bit (as open
 * does otherwise). */
static int before_guest_write(struct qcow2_state *s)
{
    qcow2_assert_locked(s);
    if (!s->bitmaps_clear_on_write)
        return 0;
    int ret = clear_autoclear(s, s->autoclear & ~QCOW2_AUTOCLEAR_BITMAPS);
    if (ret == 0)
        s->bitmaps_clear_on_write = false;
    return ret;
}

/* Lock held.  Before guest data of [off, off+len) changes: the autoclear
 * bit under repair, the dirty bitmaps (bitmap.c). */
static int guest_write(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    int ret = before_guest_write(s);
    return ret < 0 ? ret : qcow2_bitmaps_write(s, off, len);
}

/* The open option discard-no-unref (QEMU 8.1's, with its message for a
 * v2 image; a bad value as every boolean option's).  Proxmox's convert
 * passes "--target-image-opts driver=qcow2,discard-no-unref=true,
 * file.driver=host_device,file.filename=DEV" for qcow2 on LVM. */
static int open_discard_no_unref(struct kimg *img, struct qcow2_state *s)
{
    const char *v = kimg_open_opt(img, "discard-no-unref");
    bool b = false;
    if (!v)
        return 0;
    if (kimg_parse_bool(v, &b) < 0)
        return kimg_fail(-EINVAL, "Parameter 'discard-no-unref' expects 'on' or 'off'");
    if (b && s->version < 3)
        return kimg_fail(-EINVAL, "discard-no-unref is only supported since qcow2 version 3");
    s->discard_no_unref = b;
    return 0;
}

/* The open, lock held; on failure the caller frees the state. */
static int open_locked(struct kimg *img, struct qcow2_state *s)
{
    uint64_t fsz;
    int ret;

    ret = kimg_file_size(s->file, &fsz);
    if (ret < 0)
        goto fail;
    ret = qcow2_parse_header(s, fsz);
    if (ret < 0)
        goto fail;
    ret = open_discard_no_unref(img, s);
    if (ret < 0)
        goto fail;
    ret = qcow2_crypto_open(s, fsz);
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
        s->bitmaps_valid = ret == 0;
        if (ret < 0) {
            kimg_clear_error();
            if (bitmaps_track_writes(s))
                s->bitmaps_clear_on_write = true;
        }
        ret = clear_autoclear(s, keep);
        if (ret < 0)
            goto fail;
    }

    /* img->size, backing_name and backing_format were set by the header */
    img->cluster_size = s->cluster_size;
    return 0;
fail:
    return ret;
}

int qcow2_do_open(struct kimg *img)
{
    struct qcow2_state *s = img->state;

    memset(s, 0, sizeof(*s));
    s->img = img;
    s->file = img->file;
    s->meta_prealloc = -1;
    if (pthread_mutex_init(&s->lock, NULL))
        return -ENOMEM;
    s->lock_init = true;
    qcow2_lock(s);
    int ret = open_locked(img, s);
    qcow2_unlock(s);
    if (ret < 0)
        free_state(s);
    return ret;
}

void qcow2_do_close(struct kimg *img)
{
    struct qcow2_state *s = img->state;
    if (qcow2_can_write(s)) {
        qcow2_lock(s);
        qcow2_bitmaps_flush(s);
        qcow2_flush_caches(s);
        qcow2_unlock(s);
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

static int qcow2_create(const struct kimg_create_args *args)
{
    struct qcow2_state *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    if (pthread_mutex_init(&s->lock, NULL)) {
        free(s);
        return -ENOMEM;
    }
    qcow2_lock(s);
    int ret = qcow2_create_in(s, args);
    qcow2_unlock(s);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return ret;
}

/*
 * The driver's entry points.  Each takes s->lock around the work, except
 * where driver.h lets the copy engine call without it: compress_cluster
 * (thread-safe, no I/O, fields fixed at open only) and the unlocked half
 * of a read-only read (the plan map.c recorded under the lock).  Nothing
 * below qcow2.c takes the lock: it asserts it (qcow2_assert_locked).
 */

static int64_t qcow2_compress_cluster_cb(struct kimg *img, uint64_t off, const void *buf,
                                         uint64_t len, void *dst, size_t cap)
{
    struct qcow2_state *s = img->state;
    if (qcow2_encrypted(s))
        return kimg_fail(-ENOTSUP, "Compression and encryption not supported at the same time");
    /* only fields fixed while the engine copies are read: no lock */
    if (!qcow2_can_compress(s, off, len))
        return -ENOTSUP;
    return qcow2_compress_cluster(s, buf, len, dst, cap);
}

static int qcow2_write_compressed_data_cb(struct kimg *img, uint64_t off, uint64_t len,
                                          const void *cdata, size_t clen)
{
    struct qcow2_state *s = img->state;
    if (qcow2_encrypted(s))
        return kimg_fail(-ENOTSUP, "Compression and encryption not supported at the same time");
    if (!qcow2_can_compress(s, off, len) || clen > s->cluster_size - 512)
        return kimg_fail(-EINVAL, "bad compressed cluster write");
    qcow2_lock(s);
    int ret = guest_write(s, off, len);
    if (ret == 0)
        ret = qcow2_store_compressed(s, off, cdata, (int64_t)clen);
    qcow2_unlock(s);
    return ret;
}

/* Guest data of an encrypted image opened without its key (only a
 * KIMG_OPEN_NO_IO open gets that far) is never read or written:
 * ciphertext is not content.  Not -ENOTSUP, which would send the core to
 * its generic fallbacks.  With the key, data is encrypted and decrypted
 * below (write.c, map.c, crypto.c). */
static bool encrypted(struct kimg *img)
{
    return qcow2_crypto_check_io(img->state) < 0;
}

/* A read-only image's read maps under the lock and reads without it. */
static int qcow2_read_cb(struct kimg *img, void *buf, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = img->state;
    struct qcow2_read_plan pl = { 0 };
    if (encrypted(img))
        return qcow2_crypto_refuse();
    qcow2_lock(s);
    int ret = qcow2_read(img, buf, off, len, &pl);
    qcow2_unlock(s);
    if (ret == 0 && pl.n)
        ret = qcow2_read_plan_run(img, &pl);
    free(pl.v);
    return ret;
}

static int qcow2_write_cb(struct kimg *img, const void *buf, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = img->state;
    if (encrypted(img))
        return qcow2_crypto_refuse();
    qcow2_lock(s);
    int ret = guest_write(s, off, len);
    if (ret == 0)
        ret = qcow2_write(img, buf, off, len);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_write_zeroes_cb(struct kimg *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct qcow2_state *s = img->state;
    if (encrypted(img))
        return (flags & KIMG_ZERO_FAST) ? -ENOTSUP : qcow2_crypto_refuse();
    qcow2_lock(s);
    /* a fast zero that cannot be is refused before the image is touched */
    int ret = (flags & KIMG_ZERO_FAST) && !qcow2_zero_is_fast(s, off, len, flags) ? -ENOTSUP
                                                                                : guest_write(s, off, len);
    if (ret == 0)
        ret = qcow2_write_zeroes(img, off, len, flags);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_discard_cb(struct kimg *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = img->state;
    if (encrypted(img))
        return qcow2_crypto_refuse();
    qcow2_lock(s);
    int ret = guest_write(s, off, len);
    if (ret == 0)
        ret = qcow2_discard(img, off, len);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_block_status_cb(struct kimg *img, uint64_t off, uint64_t len,
                                 struct kimg_extent *ext)
{
    struct qcow2_state *s = img->state;
    if (encrypted(img))
        return qcow2_crypto_refuse();
    qcow2_lock(s);
    int ret = qcow2_block_status(img, off, len, ext);
    qcow2_unlock(s);
    return ret;
}

/* qemu reads an L2 table's worth of entries per block-status call (its
 * L2 cache entry is one cluster, the whole table) and reports compressed
 * clusters one at a time; qemu-img aligns replies to the cluster size
 * (observed with qemu-img 7.2's convert -p).  Geometry only: fixed at
 * open, no lock. */
static void qcow2_status_units(struct kimg *img, uint64_t *span, uint64_t *cluster)
{
    struct qcow2_state *s = img->state;
    *span = 1ull << (s->cluster_bits + s->l2_bits);
    *cluster = s->cluster_size;
}

static int qcow2_truncate_cb(struct kimg *img, uint64_t size, enum kimg_prealloc prealloc)
{
    struct qcow2_state *s = img->state;
    if (encrypted(img))
        return qcow2_crypto_refuse();
    qcow2_lock(s);
    int ret = before_guest_write(s);
    if (ret == 0)
        ret = qcow2_truncate(img, size, prealloc);
    qcow2_unlock(s);
    return ret;
}

/* An external data file is the one file opened beside the image file. */
static size_t qcow2_aux_files_cb(struct kimg *img, struct kimg_aux_file *out, size_t max)
{
    struct qcow2_state *s = img->state;
    if (!max || !s->data_file || s->data_file == s->file)
        return 0;
    snprintf(out[0].name, sizeof(out[0].name), "data-file");
    out[0].file = s->data_file;
    out[0].path = s->data_file->path;
    return 1;
}

static int qcow2_info_cb(struct kimg *img, struct kimg_info *info)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_info(img, info);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_check_cb(struct kimg *img, struct kimg_check *res, unsigned fix)
{
    struct qcow2_state *s = img->state;
    if (encrypted(img))
        return qcow2_crypto_refuse();
    if (s->lock_init)
        qcow2_lock(s);
    int ret = qcow2_check(img, res, fix);
    if (s->lock_init)
        qcow2_unlock(s);
    return ret;
}

static int qcow2_snapshot_create_cb(struct kimg *img, const char *name)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_snapshot_create(s, name);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_snapshot_apply_cb(struct kimg *img, const char *id_or_name)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_snapshot_apply(s, id_or_name);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_snapshot_delete_cb(struct kimg *img, const char *id_or_name)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_snapshot_delete(s, id_or_name);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_snapshot_load_cb(struct kimg *img, const char *id, const char *name)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_snapshot_load(s, id, name);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_write_compressed_cb(struct kimg *img, const void *buf, uint64_t off,
                                     uint64_t len)
{
    struct qcow2_state *s = img->state;
    if (qcow2_encrypted(s))
        return kimg_fail(-ENOTSUP, "Compression and encryption not supported at the same time");
    qcow2_lock(s);
    int ret = guest_write(s, off, len);
    if (ret == 0)
        ret = qcow2_write_compressed(s, buf, off, len);
    qcow2_unlock(s);
    return ret;
}

/* The copy engine's allocation (called from its workers): the range's
 * bits are set before commit_data links it (guest data changes only
 * then); one lock hold for both. */
static int64_t qcow2_alloc_data_cb(struct kimg *img, uint64_t off, uint64_t len,
                                   uint64_t *host, struct kimg_file **file)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int64_t n = qcow2_alloc_data(img, off, len, host, file);
    if (n > 0) {
        int ret = guest_write(s, off, (uint64_t)n);
        if (ret < 0)
            n = ret;
    }
    qcow2_unlock(s);
    return n;
}

static int qcow2_commit_data_cb(struct kimg *img, uint64_t off, uint64_t len, uint64_t host)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_commit_data(img, off, len, host);
    qcow2_unlock(s);
    return ret;
}

/* The copy engine's encryption of data for clusters alloc_data gave:
 * on its workers, no lock (the key is fixed after open). */
static int qcow2_transform_data_cb(struct kimg *img, uint64_t off, uint64_t host, void *buf,
                                   uint64_t len)
{
    struct qcow2_state *s = img->state;
    if (!qcow2_encrypted(s))
        return -ENOTSUP;
    if (!len)
        return 0;
    return qcow2_crypto_run(s, true, off, host, buf, len);
}

/* Flush: the dirty bitmaps are stored (consistent on disk) too. */
static int qcow2_flush_cb(struct kimg *img)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_bitmaps_flush(s);
    int r = qcow2_flush(img);
    qcow2_unlock(s);
    return ret < 0 ? ret : r;
}

static int qcow2_change_backing_cb(struct kimg *img, const char *name, const char *format)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_change_backing(img, name, format);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_make_empty_cb(struct kimg *img)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_make_empty(img);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_amend_cb(struct kimg *img, struct kimg_opts *opts, bool force)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_amend(img, opts, force);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_create_opts_like_cb(struct kimg *img, struct kimg_opts **opts)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_create_opts_like(img, opts);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_bitmap_change_cb(struct kimg *img, const struct kimg_bitmap_op *op)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_bitmap_change(s, op);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_bitmap_dirty_cb(struct kimg *img, const char *name, uint64_t off,
                                 uint64_t len, bool *dirty, uint64_t *pnum)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_bitmap_dirty(s, name, off, len, dirty, pnum);
    qcow2_unlock(s);
    return ret;
}

static int qcow2_bitmap_list_cb(struct kimg *img, struct kimg_bitmap_info **list, size_t *n)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    int ret = qcow2_bitmap_list(s, list, n);
    qcow2_unlock(s);
    return ret;
}

static bool qcow2_has_bitmaps_cb(struct kimg *img)
{
    struct qcow2_state *s = img->state;
    qcow2_lock(s);
    bool has = qcow2_has_bitmaps(img);
    qcow2_unlock(s);
    return has;
}

const struct kimg_driver kimg_qcow2_driver = {
    .name = "qcow2",
    .flags = KIMG_DRV_FAST_ZERO,
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
    .info = qcow2_info_cb,
    .aux_files = qcow2_aux_files_cb,
    .check = qcow2_check_cb,
    .snapshot_create = qcow2_snapshot_create_cb,
    .snapshot_apply = qcow2_snapshot_apply_cb,
    .snapshot_delete = qcow2_snapshot_delete_cb,
    .snapshot_load = qcow2_snapshot_load_cb,
    .write_compressed = qcow2_write_compressed_cb,
    .compress_cluster = qcow2_compress_cluster_cb,
    .write_compressed_data = qcow2_write_compressed_data_cb,
    .alloc_data = qcow2_alloc_data_cb,
    .commit_data = qcow2_commit_data_cb,
    .set_write_option = qcow2_set_write_option,
    .change_backing = qcow2_change_backing_cb,
    .make_empty = qcow2_make_empty_cb,
    .amend = qcow2_amend_cb,
    .measure = qcow2_measure,
    .status_units = qcow2_status_units,
    .formatting_opts = qcow2_formatting_opts,
    .amend_opts = qcow2_amend_opts,
    .create_opts_like = qcow2_create_opts_like_cb,
    .has_bitmaps = qcow2_has_bitmaps_cb,
    .transform_data = qcow2_transform_data_cb,
    .bitmap_change = qcow2_bitmap_change_cb,
    .bitmap_dirty = qcow2_bitmap_dirty_cb,
    .bitmap_list = qcow2_bitmap_list_cb,
};
