/*
 * snapshot_ops.c — the qcow2 driver's internal snapshot operations: take
 * one (create), revert the active image to one (apply), delete one, each
 * described as the state it leaves and switched to by qcow2_sn_commit
 * (snapshot_commit.c); and load one read-only in place of the active
 * image (convert -l).  Names and IDs as qemu 7.2 treats them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qcow2.h"

/* What every writing operation refuses, as qemu does (-ENOTSUP for an
 * external data file), plus what kimg cannot write at all (the core has
 * refused read-only and fenced images). */
static int can_change(struct qcow2_state *s)
{
    qcow2_assert_locked(s);
    if (s->has_data_file)
        return kimg_fail(-ENOTSUP, "internal snapshots are not supported with an external "
                         "data file");
    return qcow2_crypto_check_io(s);
}

/* qemu's find_new_snapshot_id: one more than the largest numeric ID. */
static void new_id(const struct qcow2_state *s, char *buf, size_t len)
{
    unsigned long max = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        unsigned long v = strtoul(s->snapshots[i].id, NULL, 10);
        if (v > max)
            max = v;
    }
    snprintf(buf, len, "%lu", max + 1);
}

int qcow2_snapshot_create(struct qcow2_state *s, const char *name)
{
    int ret = can_change(s);
    if (ret < 0)
        return ret;
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS)
        return kimg_fail(-EFBIG, "too many snapshots (the maximum is %u)", QCOW2_MAX_SNAPSHOTS);
    size_t name_len = strlen(name);
    if (name_len > UINT16_MAX)
        return kimg_fail(-EINVAL, "snapshot name too long");

    char id[24];
    new_id(s, id, sizeof(id));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);

    struct qcow2_snapshot *sns = calloc((size_t)s->nb_snapshots + 1, sizeof(*sns));
    if (!sns)
        return -ENOMEM;
    if (s->nb_snapshots)
        memcpy(sns, s->snapshots, s->nb_snapshots * sizeof(*sns));
    struct qcow2_snapshot *sn = &sns[s->nb_snapshots];
    /* the active L1 table becomes the snapshot's as it is; the active
     * state gets a new one (qcow2_sn_commit) */
    sn->l1_offset = s->l1_offset;
    sn->l1_size = s->l1_size;
    sn->id = id;
    sn->id_len = (uint16_t)strlen(id);
    sn->name = (char *)name;
    sn->name_len = (uint16_t)name_len;
    /* qemu-img's clock: microseconds */
    sn->date_sec = (uint32_t)now.tv_sec;
    sn->date_nsec = (uint32_t)(now.tv_nsec / 1000 * 1000);
    sn->disk_size = s->img->size;
    sn->has_disk_size = true;
    sn->has_icount = true;      /* icount 0, as qemu-img writes it */
    sn->extra_len = 24;

    struct qcow2_sn_change ch = {
        .l1 = s->l1, .l1_size = s->l1_size, .size = s->img->size,
        .sns = sns, .nb_sns = s->nb_snapshots + 1,
    };
    ret = qcow2_sn_commit(s, &ch);
    free(sns);
    return ret;
}


/* The active image becomes snapshot SN: its whole L1 table (VM state
 * included, as qemu copies it) and its disk size. */
int qcow2_snapshot_apply(struct qcow2_state *s, const char *arg)
{
    int ret = can_change(s);
    if (ret < 0)
        return ret;
    int i = qcow2_snapshot_find_id_or_name(s, arg);
    if (i < 0)
        return kimg_fail(-ENOENT, "Failed to load snapshot: No such file or directory");
    if (s->has_bitmaps_ext && s->bitmaps)
        return kimg_fail(-EBUSY, "Device has active dirty bitmaps");
    const struct qcow2_snapshot *sn = &s->snapshots[i];
    ret = qcow2_snapshot_check_l1(s, sn);
    if (ret < 0)
        return ret;
    uint64_t size = sn->has_disk_size ? sn->disk_size : s->img->size;
    uint64_t l2_span = s->cluster_size << s->l2_bits;
    if (size > (uint64_t)INT64_MAX - s->cluster_size ||
        (size + l2_span - 1) / l2_span > QCOW2_MAX_L1_BYTES / 8)
        return kimg_fail(-EFBIG, "snapshot %s has an invalid disk size %" PRIu64, sn->id, size);
    uint64_t *sl1 = NULL;
    ret = qcow2_read_l1(s, sn->l1_offset, sn->l1_size, &sl1);
    if (ret < 0)
        return ret;
    uint64_t need = (size + l2_span - 1) / l2_span;
    uint32_t n = sn->l1_size > need ? sn->l1_size : (uint32_t)need;
    uint64_t *l1 = calloc(n ? n : 1, sizeof(*l1));
    if (!l1) {
        free(sl1);
        return -ENOMEM;
    }
    memcpy(l1, sl1, (size_t)sn->l1_size * sizeof(*l1));
    free(sl1);
    struct qcow2_sn_change ch = {
        .l1 = l1, .l1_size = n, .size = size,
        .sns = s->snapshots, .nb_sns = s->nb_snapshots,
    };
    ret = qcow2_sn_commit(s, &ch);
    free(l1);
    return ret;
}


int qcow2_snapshot_delete(struct qcow2_state *s, const char *arg)
{
    int ret = can_change(s);
    if (ret < 0)
        return ret;
    int i = qcow2_snapshot_find_id_or_name(s, arg);
    if (i < 0)
        return kimg_fail(-ENOENT, "snapshot not found");
    /* as qemu: a snapshot whose L1 table is damaged is not deleted (its
     * clusters stay counted; check reports it) */
    ret = qcow2_snapshot_check_l1(s, &s->snapshots[i]);
    if (ret < 0)
        return ret;
    struct qcow2_snapshot *sns = calloc(s->nb_snapshots, sizeof(*sns));
    if (!sns)
        return -ENOMEM;
    uint32_t n = 0;
    for (uint32_t k = 0; k < s->nb_snapshots; k++)
        if (k != (uint32_t)i)
            sns[n++] = s->snapshots[k];
    struct qcow2_sn_change ch = {
        .l1 = s->l1, .l1_size = s->l1_size, .size = s->img->size, .sns = sns, .nb_sns = n,
    };
    ret = qcow2_sn_commit(s, &ch);
    free(sns);
    return ret;
}


/* qemu's qcow2_snapshot_load_tmp: the snapshot's L1 table replaces the
 * active one in memory; the virtual size stays the image's (as qemu-img
 * convert -l gives it).  ID only, NAME only, or both must match. */
int qcow2_snapshot_load(struct qcow2_state *s, const char *id, const char *name)
{
    qcow2_assert_locked(s);
    if (!id && !name)
        return kimg_fail(-EINVAL, "no snapshot given");
    /* (the core allows it on read-only images only) */
    if (s->has_data_file)
        return kimg_fail(-ENOTSUP, "internal snapshots are not supported with an external "
                         "data file");
    int i = qcow2_snapshot_find(s, id, name);
    if (i < 0)
        return kimg_fail(-ENOENT, "Can't find snapshot");
    const struct qcow2_snapshot *sn = &s->snapshots[i];
    int ret = qcow2_snapshot_check_l1(s, sn);
    if (ret < 0)
        return ret;
    uint64_t *l1;
    ret = qcow2_read_l1(s, sn->l1_offset, sn->l1_size, &l1);
    if (ret < 0)
        return ret;
    free(s->l1);
    s->l1 = l1;
    s->l1_size = sn->l1_size;
    s->l1_offset = sn->l1_offset;
    s->zcache_valid = false;
    return 0;
}
