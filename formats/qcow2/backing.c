/*
 * backing.c — the qcow2 layer's link to its backing file: rewriting the
 * backing file name and format in the header (rebase, amend), and emptying
 * the active layer so it reads through to the backing file again (commit).
 * Both are ordered so a crash at any point leaves a clean image (or one
 * with leaks only) that reads as the old or the new state; emptying goes
 * through the snapshot operations' atomic switch (snapshot_commit.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "tunables.h"

/* ---- change_backing ------------------------------------------------------ */

/* The bytes of header cluster C (as on disk) that the header uses: the
 * header, its extensions up to the end marker, and the backing name. */
static uint64_t header_used_end(const struct qcow2_state *s, const uint8_t *c)
{
    struct qcow2_ext_iter it;
    uint32_t type, len;
    uint64_t data, off;

    qcow2_ext_begin(s, &it);
    while (qcow2_ext_next(&it, c, &type, &len, &data) > 0)
        ;
    off = it.off;
    if (off > s->cluster_size)
        off = s->cluster_size;
    if (s->backing_offset && s->backing_offset + s->backing_len > off)
        off = s->backing_offset + s->backing_len;
    return off;
}

/* Swap the in-memory backing name, format and extension with *NAME, *FMT
 * (each side's old value comes back in the arguments, so calling it twice
 * restores the state). */
static int swap_backing(struct qcow2_state *s, char **name, char **fmt)
{
    char *on = s->img->backing_name, *of = s->img->backing_format;
    int ret = qcow2_set_ext(s, QCOW2_EXT_BACKING_FMT, *fmt,
                            *fmt ? (uint32_t)strlen(*fmt) : 0);
    if (ret < 0)
        return ret;
    s->img->backing_name = *name;
    s->img->backing_format = *fmt;
    *name = on;
    *fmt = of;
    return 0;
}

/*
 * Crash safety: the header cluster is rewritten, but the new backing name
 * is first written, and synced, where the current header does not look
 * (past everything it uses); only then is the header written that points
 * at it.  A crash leaves the old header (with some unused bytes changed)
 * or the new one.  When the name does not fit there, the packed layout
 * qemu writes is used in one write (the name then shares that write).
 */
static int change_backing_locked(struct qcow2_state *s, const char *name, const char *format)
{
    uint8_t *old = kimg_alloc_aligned(s->cluster_size), *c = kimg_alloc_aligned(s->cluster_size);
    char *nname = NULL, *nfmt = NULL;
    uint64_t ext_end, used;
    bool swapped = false;
    int ret;

    if (!old || !c) {
        ret = -ENOMEM;
        goto out;
    }
    if (name && strlen(name) > QCOW2_MAX_BACKING_NAME) {
        ret = kimg_fail(-EINVAL, "Backing file name too long (at most %u bytes)",
                        QCOW2_MAX_BACKING_NAME);
        goto out;
    }
    if (format && strlen(format) > QCOW2_MAX_BACKING_NAME) {
        ret = kimg_fail(-EINVAL, "Backing format name too long");
        goto out;
    }
    if (name && s->data_file_raw) {
        /* qemu: the raw data file alone would no longer be the content */
        ret = kimg_fail(-EINVAL, "A backing file cannot be added to an image with "
                        "data-file-raw");
        goto out;
    }
    ret = qcow2_crypto_check_io(s);
    if (ret < 0)
        goto out;
    /* the header cluster as the file holds it: what the old header uses */
    ret = kimg_file_pread_zero_eof(s->file, old, s->cluster_size, 0);
    if (ret < 0)
        goto out;
    used = header_used_end(s, old);

    if ((name && !(nname = strdup(name))) || (format && !(nfmt = strdup(format)))) {
        ret = -ENOMEM;
        goto out;
    }
    ret = swap_backing(s, &nname, &nfmt);
    if (ret < 0)
        goto out;
    swapped = true;
    ret = qcow2_build_header(s, c, &ext_end);
    if (ret == -ENOSPC) {
        kimg_clear_error();
        ret = kimg_fail(-ENOSPC, "No space left in the file header");
    }
    if (ret < 0)
        goto out;

    uint64_t write_len = s->cluster_size;
    if (s->img->backing_name) {
        uint64_t len = strlen(s->img->backing_name);
        uint64_t pos = qcow2_align_up(used > ext_end ? used : ext_end, 8);
        if (pos <= s->cluster_size && len <= s->cluster_size - pos) {
            if (pos != ext_end) {
                /* the name moves out of the bytes the old header uses; the
                 * bytes before it stay as they are on disk */
                memmove(c + pos, c + ext_end, len);
                memcpy(c + ext_end, old + ext_end, pos - ext_end);
                qcow2_put_be64(c + 8, pos);
            }
            ret = kimg_file_pwrite(s->file, c + pos, len, pos);
            if (ret == 0)
                ret = kimg_file_sync(s->file);
            if (ret < 0)
                goto out;
            write_len = ext_end;   /* then the header and extensions only */
        }
    }
    ret = kimg_file_pwrite(s->file, c, write_len, 0);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        goto out;
    qcow2_header_written(s, c);
    swapped = false;
out:
    if (swapped && swap_backing(s, &nname, &nfmt) < 0)
        kimg_fence(s->img);     /* memory state unknown: stop writing */
    free(nname);
    free(nfmt);
    free(old);
    free(c);
    return ret;
}

int qcow2_change_backing(struct kimg *img, const char *name, const char *format)
{
    struct qcow2_state *s = img->state;
    int ret;

    qcow2_assert_locked(s);
    ret = change_backing_locked(s, name && *name ? name : NULL,
                                name && *name && format && *format ? format : NULL);
    return ret;
}

/* ---- make_empty ---------------------------------------------------------- */

/* Clusters at the end of the file that nothing references go (as qemu's
 * make_empty, which punches the freed clusters, leaves the file short). */
static int trim_tail(struct qcow2_state *s)
{
    uint64_t fsz, end;
    int ret = kimg_file_size(s->file, &fsz);
    if (ret < 0)
        return ret;
    end = qcow2_align_up(fsz, s->cluster_size) >> s->cluster_bits;
    while (end > 1) {
        uint64_t rc;
        if (qcow2_overlaps_main(s, (end - 1) << s->cluster_bits, s->cluster_size))
            break;
        ret = qcow2_refcount_get(s, end - 1, &rc);
        if (ret < 0)
            return ret;
        if (rc)
            break;
        end--;
    }
    if ((end << s->cluster_bits) >= fsz)
        return 0;
    ret = kimg_file_truncate(s->file, end << s->cluster_bits);
    if (ret < 0)
        return ret;
    s->alloc_end = end;
    return 0;
}

/* Does the host range [off, off+len) touch the header, the active L1
 * table, the refcount table, the snapshot table or the LUKS area?  (O(1):
 * per entry.) */
static bool names_fixed_meta(const struct qcow2_state *s, uint64_t off, uint64_t len)
{
    const uint64_t r[5][2] = {
        { 0, s->cluster_size },
        { s->l1_offset, (uint64_t)s->l1_size * 8 },
        { s->rt_offset, (uint64_t)s->rt_clusters << s->cluster_bits },
        { s->snapshots_offset, s->nb_snapshots ? s->snapshots_size : 0 },
        { s->crypto_hdr_offset, s->has_crypto_ext ? s->crypto_hdr_length : 0 },
    };
    for (int i = 0; i < 5; i++)
        if (r[i][1] && off < r[i][0] + r[i][1] && r[i][0] < off + len)
            return true;
    return false;
}

/* Check that the active L2 table at L2OFF (read into T) is sane before the
 * L1 table lets go of it: every entry valid, every reference in the file. */
static int validate_l2(struct qcow2_state *s, uint64_t l2off, const uint8_t *t,
                       uint64_t fsz)
{
    if ((l2off & s->cluster_mask) || l2off + s->cluster_size > fsz ||
        qcow2_overlaps_main(s, l2off, s->cluster_size))
        return qcow2_signal_corruption(s, "L2 table offset %#" PRIx64 " invalid", l2off);
    for (uint64_t i = 0; i < s->l2_entries; i++) {
        const uint8_t *p = t + i * s->l2_entry_size;
        uint64_t entry = qcow2_be64(p), bitmap = s->ext_l2 ? qcow2_be64(p + 8) : 0;
        enum qcow2_sc_type type;
        uint64_t off, len;
        int ret = qcow2_sc_type(s, entry, bitmap, 0, &type);
        if (ret < 0)
            return ret;
        qcow2_entry_ref(s, entry, &off, &len);
        if (len && (off >= QCOW2_MAX_HOST_OFFSET || off + len > qcow2_align_up(fsz, s->cluster_size)))
            return qcow2_signal_corruption(s, "L2 entry %#" PRIx64 " points past the end "
                                           "of the file", entry);
        if (len && names_fixed_meta(s, off, len))
            return qcow2_signal_corruption(s, "L2 entry %#" PRIx64 " names metadata as data",
                                           entry);
    }
    return 0;
}

/* Drop one reference to every host cluster the L2 table T references,
 * then to the table itself at L2OFF. */
static int unref_l2(struct qcow2_state *s, uint64_t l2off, const uint8_t *t)
{
    int ret;
    for (uint64_t i = 0; i < s->l2_entries; i++) {
        uint64_t off, len;
        qcow2_entry_ref(s, qcow2_be64(t + i * s->l2_entry_size), &off, &len);
        if (len && (ret = qcow2_refcount_update(s, off, len, -1)) < 0)
            return ret;
    }
    qcow2_cache_discard(&s->l2_cache, l2off);
    return qcow2_refcount_update(s, l2off, s->cluster_size, -1);
}

/*
 * For files too large for qcow2_sn_commit's per-cluster counts (more than
 * 2^28 clusters: small clusters and much data), the incremental way.
 * Order: every active L2 table is read and checked first (data naming the
 * header, L1, refcount or snapshot table refused); then the whole
 * L1 table is written as zeros and synced (from here a crash leaves leaks
 * only: references are gone, refcounts not yet lowered); then each old L2
 * table's clusters and the table itself lose one reference (qemu's
 * refcounts count one reference per L1 table, active or snapshot, so
 * clusters shared with snapshots stay); refcounts are flushed (the caller
 * cuts the freed tail).  KIMG_EMPTY_INCREMENTAL in the environment takes
 * this way for any image (tests).
 */
static int make_empty_incremental(struct qcow2_state *s)
{
    uint64_t *old = NULL, fsz;
    uint8_t *t = NULL, *zl1 = NULL;
    int ret;

    ret = qcow2_flush_caches(s);
    if (ret < 0)
        return ret;
    ret = kimg_file_size(s->file, &fsz);
    if (ret < 0)
        return ret;
    if (!s->l1_size)
        return 0;
    old = malloc((size_t)s->l1_size * 8);
    t = kimg_alloc_aligned(s->cluster_size);
    zl1 = calloc(s->l1_size, 8);
    if (!old || !t || !zl1) {
        ret = -ENOMEM;
        goto out;
    }
    memcpy(old, s->l1, (size_t)s->l1_size * 8);
    bool any = false;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2off = old[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2off)
            continue;
        any = true;
        ret = kimg_file_pread(s->file, t, s->cluster_size, l2off);
        if (ret < 0)
            goto out;
        ret = validate_l2(s, l2off, t, fsz);
        if (ret < 0)
            goto out;
    }
    if (!any)
        goto out;

    ret = kimg_file_pwrite(s->file, zl1, (size_t)s->l1_size * 8, s->l1_offset);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        goto out;
    memset(s->l1, 0, (size_t)s->l1_size * 8);

    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2off = old[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2off)
            continue;
        ret = kimg_file_pread(s->file, t, s->cluster_size, l2off);
        if (ret < 0)
            goto out;
        ret = unref_l2(s, l2off, t);
        if (ret < 0)
            goto out;
    }
    ret = qcow2_flush_caches(s);
out:
    free(old);
    free(t);
    free(zl1);
    return ret;
}

/*
 * The active L1 table becomes all zeros through qcow2_sn_commit (the
 * snapshot operations' switch): a new zeroed L1 table and an exact new
 * refcount structure are written where the current state does not look,
 * then one header write switches to them.  A crash leaves the old image or
 * the emptied one, clean either way; the refcounts are recounted from the
 * references that stay (snapshots, bitmaps), so what only the active
 * tables held is freed whatever the old refcounts said: a hostile L2 entry
 * naming a metadata cluster as data cannot free that cluster, as lowering
 * refcounts entry by entry did.  Then the freed tail of the file is cut.
 */
static int make_empty_locked(struct qcow2_state *s)
{
    int ret = qcow2_crypto_check_io(s);
    if (ret < 0)
        return ret;
    if (s->data_file_raw)
        return kimg_fail(-ENOTSUP, "an image with data-file-raw cannot be emptied (its "
                         "data file is its content)");
    /* snapshot trees would count data file offsets as clusters of this
     * file (qemu makes no snapshot of such an image) */
    if (s->has_data_file && s->nb_snapshots)
        return kimg_fail(-ENOTSUP, "internal snapshots are not supported with an external "
                         "data file");
    bool any = false;
    for (uint32_t i = 0; i < s->l1_size && !any; i++)
        any = (s->l1[i] & QCOW2_L1E_OFFSET_MASK) != 0;
    ret = 0;
    if (any) {
        uint64_t *zl1 = calloc(s->l1_size, sizeof(*zl1));
        if (!zl1)
            return -ENOMEM;
        struct qcow2_sn_change ch = {
            .l1 = zl1, .l1_size = s->l1_size, .size = s->img->size,
            .sns = s->snapshots, .nb_sns = s->nb_snapshots,
        };
        ret = kimg_tunables()->empty_incremental ? -EFBIG : qcow2_sn_commit(s, &ch);
        /* the new tables went where the old state did not look, past its
         * end: once more, cheap without snapshots, moves them down into
         * the freed clusters so the tail can be cut (a short file, as
         * qemu leaves it) */
        if (ret == 0 && !s->nb_snapshots) {
            ch.sns = s->snapshots;      /* reread by the switch */
            ch.nb_sns = 0;
            ret = qcow2_sn_commit(s, &ch);
        }
        free(zl1);
        if (ret == -EFBIG) {
            /* too large to recount (nothing was written): step by step */
            kimg_clear_error();
            ret = make_empty_incremental(s);
        }
    } else {
        ret = qcow2_flush_caches(s);
    }
    if (ret == 0)
        ret = trim_tail(s);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    s->zcache_valid = false;
    s->compressed_next = 0;
    return ret;
}

int qcow2_make_empty(struct kimg *img)
{
    struct qcow2_state *s = img->state;
    int ret;

    qcow2_assert_locked(s);
    ret = make_empty_locked(s);
    return ret;
}
