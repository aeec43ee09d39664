/*
 * snapshot.c — the internal snapshot table: parse every entry (with its
 * extra data: large VM state size, disk size, icount), validated against
 * the file and the spec's caps.  IDs and names are kept as raw bytes;
 * escaping happens only at output time.  An entry whose L1 table is
 * unaligned or too large (and, under KIMG_OPEN_REPAIR, past the end of the
 * file) is kept marked l1_invalid (check reports it as qemu-img does; what
 * would use it refuses as qemu does), never followed.  check's repair of
 * incomplete v3 entries: the table rewritten (qcow2_snapshot_table_rewrite).
 * Also: finding a snapshot by ID and/or name, and serializing a table as
 * qemu 7.2 writes it (snapshot_commit.c writes it, snapshot_ops.c uses both).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

void qcow2_free_snapshots(struct qcow2_state *s)
{
    if (!s->snapshots)
        return;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        free(s->snapshots[i].id);
        free(s->snapshots[i].name);
        free(s->snapshots[i].extra);
    }
    free(s->snapshots);
    s->snapshots = NULL;
}

int qcow2_read_snapshots(struct qcow2_state *s, uint64_t file_size, bool repair)
{
    uint64_t off = s->snapshots_offset;
    uint8_t h[40];
    int ret;

    s->snapshots_size = 0;
    if (!s->nb_snapshots)
        return 0;
    s->snapshots = calloc(s->nb_snapshots, sizeof(*s->snapshots));
    if (!s->snapshots)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        uint64_t used = off - s->snapshots_offset;
        if (used + 40 > QCOW2_MAX_SN_TABLE_BYTES || off + 40 > file_size) {
            ret = kimg_fail(-EFBIG, "Snapshot table is too large or extends past the end "
                            "of the file");
            goto fail;
        }
        ret = kimg_file_pread(s->file, h, sizeof(h), off);
        if (ret < 0)
            goto fail;
        sn->entry_offset = off;
        sn->l1_offset = qcow2_be64(h);
        sn->l1_size = qcow2_be32(h + 8);
        sn->id_len = qcow2_be16(h + 12);
        sn->name_len = qcow2_be16(h + 14);
        sn->date_sec = qcow2_be32(h + 16);
        sn->date_nsec = qcow2_be32(h + 20);
        sn->vm_clock_nsec = qcow2_be64(h + 24);
        sn->vm_state_size32 = qcow2_be32(h + 32);
        sn->vm_state_size = sn->vm_state_size32;
        sn->extra_len = qcow2_be32(h + 36);
        if (sn->extra_len > QCOW2_MAX_SN_EXTRA) {
            ret = kimg_fail(-EFBIG, "Too much extra metadata in snapshot table entry %"
                            PRIu32, i);
            goto fail;
        }
        uint64_t var = (uint64_t)sn->extra_len + sn->id_len + sn->name_len;
        uint64_t esize = qcow2_align_up(40 + var, 8);
        /* the last entry's padding may lie past the end of the file */
        if (used + esize > QCOW2_MAX_SN_TABLE_BYTES || off + 40 + var > file_size) {
            ret = kimg_fail(-EFBIG, "Snapshot table is too large or extends past the end "
                            "of the file");
            goto fail;
        }
        uint8_t *v = malloc(var ? var : 1);
        if (!v) {
            ret = -ENOMEM;
            goto fail;
        }
        if (var) {
            ret = kimg_file_pread(s->file, v, var, off + 40);
            if (ret < 0) {
                free(v);
                goto fail;
            }
        }
        sn->extra = malloc(sn->extra_len ? sn->extra_len : 1);
        sn->id = malloc((size_t)sn->id_len + 1);
        sn->name = malloc((size_t)sn->name_len + 1);
        if (!sn->extra || !sn->id || !sn->name) {
            free(v);
            ret = -ENOMEM;
            goto fail;
        }
        memcpy(sn->extra, v, sn->extra_len);
        memcpy(sn->id, v + sn->extra_len, sn->id_len);
        sn->id[sn->id_len] = '\0';
        memcpy(sn->name, v + sn->extra_len + sn->id_len, sn->name_len);
        sn->name[sn->name_len] = '\0';
        free(v);
        if (sn->extra_len >= 8)
            sn->vm_state_size = qcow2_be64(sn->extra);
        if (sn->extra_len >= 16) {
            sn->disk_size = qcow2_be64(sn->extra + 8);
            sn->has_disk_size = true;
        }
        if (sn->extra_len >= 24) {
            sn->icount = qcow2_be64(sn->extra + 16);
            sn->has_icount = sn->icount != UINT64_MAX;
        }
        /* A damaged L1 table entry is never followed.  Too large (qemu's
         * QCOW_MAX_L1_SIZE) or unaligned: the open goes on, as qemu's does,
         * and what would use the table refuses with qemu's message
         * (qcow2_snapshot_check_l1); check reports it.  Past the end of the
         * file: kept only for check; offset 0 (the header) stops the open. */
        if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
            sn->l1_invalid = true;
        } else if (sn->l1_size && !sn->l1_offset) {
            ret = kimg_fail(-EINVAL, "Snapshot L1 table offset invalid");
            goto fail;
        } else if (sn->l1_size && (sn->l1_offset & s->cluster_mask)) {
            sn->l1_invalid = true;
        } else if (sn->l1_size && (sn->l1_offset > file_size ||
                                   (uint64_t)sn->l1_size * 8 > file_size - sn->l1_offset)) {
            if (!repair) {
                ret = kimg_fail(-EINVAL, "Snapshot L1 table offset invalid");
                goto fail;
            }
            sn->l1_invalid = true;
        }
        off += esize;
    }
    s->snapshots_size = off - s->snapshots_offset;
    return 0;
fail:
    qcow2_free_snapshots(s);
    return ret;
}

/* qemu's qcow2_validate_table for a snapshot's L1 table, before any use:
 * at most QCOW_MAX_L1_SIZE bytes, cluster aligned (even when empty). */
int qcow2_snapshot_check_l1(const struct qcow2_state *s, const struct qcow2_snapshot *sn)
{
    if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES)
        return kimg_fail(-EFBIG, "Snapshot L1 table too large");
    if (sn->l1_invalid || (sn->l1_offset & s->cluster_mask))
        return kimg_fail(-EINVAL, "Snapshot L1 table offset invalid");
    return 0;
}

bool qcow2_snapshot_l1_past_eof(const struct qcow2_state *s, const struct qcow2_snapshot *sn,
                                uint64_t file_size)
{
    uint64_t bytes = (uint64_t)sn->l1_size * 8, end;
    if (!bytes)
        return false;
    if (__builtin_add_overflow(sn->l1_offset, bytes, &end))
        return true;
    return end > file_size && end - file_size >= s->cluster_size;
}

int qcow2_snapshot_l1_in_file(struct qcow2_state *s, const struct qcow2_snapshot *sn,
                              uint64_t file_size, uint64_t **out, uint32_t *n)
{
    uint64_t bytes = (uint64_t)sn->l1_size * 8;
    uint8_t *buf;
    uint64_t *l1;
    int ret;

    *out = NULL;
    *n = 0;
    if (!sn->l1_invalid) {
        ret = qcow2_read_l1(s, sn->l1_offset, sn->l1_size, out);
        if (ret == 0)
            *n = sn->l1_size;
        return ret;
    }
    if ((sn->l1_offset & s->cluster_mask) || bytes > QCOW2_MAX_L1_BYTES)
        return kimg_fail(-EINVAL, "Snapshot L1 table offset invalid");
    if (!bytes || sn->l1_offset >= file_size)
        return 0;               /* reads as zeros: nothing to walk */
    /* the part inside the file, rounded up to whole entries (zeros past EOF) */
    uint64_t in = file_size - sn->l1_offset;
    if (in < bytes)
        bytes = qcow2_align_up(in, 8);
    uint32_t cnt = (uint32_t)(bytes / 8);
    buf = kimg_alloc_aligned(bytes);
    l1 = malloc(bytes);
    if (!buf || !l1) {
        free(buf);
        free(l1);
        return -ENOMEM;
    }
    ret = kimg_file_pread_zero_eof(s->file, buf, bytes, sn->l1_offset);
    if (ret < 0) {
        free(buf);
        free(l1);
        return ret;
    }
    for (uint32_t i = 0; i < cnt; i++)
        l1[i] = qcow2_be64(buf + (uint64_t)i * 8);
    free(buf);
    *out = l1;
    *n = cnt;
    return 0;
}

int qcow2_snapshot_find(const struct qcow2_state *s, const char *id, const char *name)
{
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if ((!id || !strcmp(sn->id, id)) && (!name || !strcmp(sn->name, name)))
            return (int)i;
    }
    return -1;
}

int qcow2_snapshot_find_id_or_name(const struct qcow2_state *s, const char *arg)
{
    int i = qcow2_snapshot_find(s, arg, NULL);
    return i >= 0 ? i : qcow2_snapshot_find(s, NULL, arg);
}

/* The extra data qemu 7.2 knows: vm_state_size_large, disk_size, icount. */
#define SN_EXTRA_KNOWN 24u

static uint64_t entry_bytes(const struct qcow2_snapshot *sn)
{
    uint64_t extra = sn->extra_len > SN_EXTRA_KNOWN ? sn->extra_len : SN_EXTRA_KNOWN;
    return 40 + extra + sn->id_len + sn->name_len;
}

int qcow2_snapshot_encode(const struct qcow2_state *s, const struct qcow2_snapshot *sns,
                          uint32_t nb, uint8_t **out, uint64_t *len)
{
    uint64_t size = 0;

    *out = NULL;
    *len = 0;
    for (uint32_t i = 0; i < nb; i++) {
        size = qcow2_align_up(size, 8) + entry_bytes(&sns[i]);
        if (size > QCOW2_MAX_SN_TABLE_BYTES)
            return kimg_fail(-EFBIG, "Snapshot table is too big");
    }
    if (!size)
        return 0;
    uint8_t *t = kimg_alloc_aligned_zero(size);
    if (!t)
        return -ENOMEM;
    uint64_t off = 0;
    for (uint32_t i = 0; i < nb; i++) {
        const struct qcow2_snapshot *sn = &sns[i];
        uint8_t *p = t + qcow2_align_up(off, 8);
        uint32_t extra = sn->extra_len > SN_EXTRA_KNOWN ? sn->extra_len : SN_EXTRA_KNOWN;
        qcow2_put_be64(p, sn->l1_offset);
        qcow2_put_be32(p + 8, sn->l1_size);
        qcow2_put_be16(p + 12, sn->id_len);
        qcow2_put_be16(p + 14, sn->name_len);
        qcow2_put_be32(p + 16, sn->date_sec);
        qcow2_put_be32(p + 20, sn->date_nsec);
        qcow2_put_be64(p + 24, sn->vm_clock_nsec);
        /* a VM state too large for 32 bits: 0 there, so older readers see
         * a disk-only snapshot rather than a truncated size (as qemu) */
        qcow2_put_be32(p + 32, sn->vm_state_size <= UINT32_MAX ? (uint32_t)sn->vm_state_size
                                                               : 0);
        qcow2_put_be32(p + 36, extra);
        qcow2_put_be64(p + 40, sn->vm_state_size);
        /* a missing disk size is the image's size at open, missing icount -1 */
        qcow2_put_be64(p + 48, sn->has_disk_size ? sn->disk_size : s->img->size);
        qcow2_put_be64(p + 56, sn->has_icount ? sn->icount : UINT64_MAX);
        if (sn->extra_len > SN_EXTRA_KNOWN)
            memcpy(p + 40 + SN_EXTRA_KNOWN, sn->extra + SN_EXTRA_KNOWN,
                   sn->extra_len - SN_EXTRA_KNOWN);
        memcpy(p + 40 + extra, sn->id, sn->id_len);
        memcpy(p + 40 + extra + sn->id_len, sn->name, sn->name_len);
        off = (uint64_t)(p - t) + entry_bytes(sn);
    }
    *out = t;
    *len = size;
    return 0;
}

/* The spec: a version 3 image's snapshot table entries carry at least the
 * 64-bit VM state size and the disk size (16 bytes of extra data); qemu's
 * check reports a shorter entry as incomplete. */
bool qcow2_snapshot_incomplete(const struct qcow2_state *s, const struct qcow2_snapshot *sn)
{
    return s->version >= 3 && sn->extra_len < 16;
}

int qcow2_snapshot_table_rewrite(struct qcow2_state *s, bool repair)
{
    uint64_t old_off = s->snapshots_offset, old_len = s->snapshots_size;
    uint64_t len = 0, off = 0, fsz = 0;
    uint8_t *t = NULL, *buf = NULL, hdr[12];
    int ret;

    if (!s->nb_snapshots)
        return 0;
    ret = qcow2_snapshot_encode(s, s->snapshots, s->nb_snapshots, &t, &len);
    if (ret < 0)
        return ret;
    /* the new table in clusters nothing uses, its refcounts and content
     * synced before the header names it */
    uint64_t bytes = qcow2_align_up(len, s->cluster_size);
    buf = kimg_alloc_aligned_zero(bytes);
    if (!buf) {
        free(t);
        return -ENOMEM;
    }
    memcpy(buf, t, len);
    free(t);
    ret = qcow2_alloc_clusters(s, bytes >> s->cluster_bits, &off);
    if (ret == 0)
        ret = kimg_file_pwrite(s->file, buf, bytes, off);
    free(buf);
    if (ret == 0)
        ret = qcow2_flush_caches(s);
    if (ret < 0) {
        if (off)
            qcow2_free_clusters(s, off, bytes);     /* a leak at worst */
        return ret;
    }
    /* one header write (nb_snapshots and the table offset) switches */
    qcow2_put_be32(hdr, s->nb_snapshots);
    qcow2_put_be64(hdr + 4, off);
    ret = kimg_file_pwrite(s->file, hdr, sizeof(hdr), 60);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0) {
        /* the header may or may not name the new table: touch nothing */
        kimg_fence(s->img);
        return ret;
    }
    if (s->hdr_raw && s->hdr_raw_len >= 72)
        memcpy(s->hdr_raw + 60, hdr, sizeof(hdr));
    s->snapshots_offset = off;
    /* the new table read back as written; then the old one is freed */
    qcow2_free_snapshots(s);
    ret = kimg_file_size(s->file, &fsz);
    if (ret == 0)
        ret = qcow2_read_snapshots(s, fsz, repair);
    if (ret < 0) {
        s->nb_snapshots = 0;
        kimg_fence(s->img);
        return ret;
    }
    ret = qcow2_free_clusters(s, old_off, qcow2_align_up(old_len, s->cluster_size));
    if (ret == 0)
        ret = qcow2_flush_caches(s);
    return ret;
}
