/*
 * info.c — what `kimg info` shows for a qcow2 image: cluster size, the
 * lazy-refcount dirty flag, the snapshot list and the format-specific
 * tree with qemu-img 7.2's keys in qemu-img's order (the "encrypt" block
 * of encrypted images comes from crypto.c); and the same facts asked
 * directly: the create options that reproduce the image, its bitmaps.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "kimg/json.h"

static struct kimg_jv *bitmaps_json(struct qcow2_state *s)
{
    struct kimg_jv *arr = kimg_jv_array();
    for (uint32_t i = 0; arr && i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *b = &s->bitmaps[i];
        struct kimg_jv *o = kimg_jv_object();
        struct kimg_jv *flags = kimg_jv_array();
        if (!o || !flags) {
            kimg_jv_free(o);
            kimg_jv_free(flags);
            kimg_jv_free(arr);
            return NULL;
        }
        if (b->flags & QCOW2_BME_IN_USE)
            kimg_jv_add(flags, NULL, kimg_jv_string("in-use"));
        if (b->flags & QCOW2_BME_AUTO)
            kimg_jv_add(flags, NULL, kimg_jv_string("auto"));
        kimg_jv_add(o, "flags", flags);
        kimg_jv_add_str(o, "name", b->name);
        kimg_jv_add_uint(o, "granularity", 1ULL << (b->granularity_bits & 63));
        kimg_jv_add(arr, NULL, o);
    }
    return arr;
}

static struct kimg_jv *format_specific(struct qcow2_state *s)
{
    struct kimg_jv *top = kimg_jv_object();
    struct kimg_jv *d = kimg_jv_object();
    if (!top || !d) {
        kimg_jv_free(top);
        kimg_jv_free(d);
        return NULL;
    }
    kimg_jv_add_str(top, "type", "qcow2");
    kimg_jv_add_str(d, "compat", s->version == 2 ? "0.10" : "1.1");
    kimg_jv_add_str(d, "compression-type",
                    s->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
    if (s->version >= 3) {
        kimg_jv_add_bool(d, "lazy-refcounts", (s->compat & QCOW2_COMPAT_LAZY) != 0);
        if (s->has_bitmaps_ext && s->bitmaps) {
            struct kimg_jv *b = bitmaps_json(s);
            if (b)
                kimg_jv_add(d, "bitmaps", b);
        }
    }
    kimg_jv_add_uint(d, "refcount-bits", s->refcount_bits);
    /* qemu's QDict order: data-file, encrypt, data-file-raw */
    if (s->version >= 3 && s->has_data_file && s->data_file_name)
        kimg_jv_add_str(d, "data-file", s->data_file_name);
    if (s->crypt_method != QCOW2_CRYPT_NONE) {
        struct kimg_jv *e = qcow2_crypto_info(s);
        if (e)
            kimg_jv_add(d, "encrypt", e);
    }
    if (s->version >= 3) {
        if (s->has_data_file)
            kimg_jv_add_bool(d, "data-file-raw", s->data_file_raw);
        kimg_jv_add_bool(d, "corrupt", (s->incompat & QCOW2_INCOMPAT_CORRUPT) != 0);
        kimg_jv_add_bool(d, "extended-l2", s->ext_l2);
    }
    kimg_jv_add(top, "data", d);
    return top;
}

int qcow2_info(struct kimg *img, struct kimg_info *info)
{
    struct qcow2_state *s = img->state;
    int ret = 0;

    qcow2_assert_locked(s);
    info->cluster_size = s->cluster_size;
    info->encrypted = s->crypt_method != QCOW2_CRYPT_NONE;
    info->dirty = (s->incompat & QCOW2_INCOMPAT_DIRTY) != 0;
    if (s->nb_snapshots) {
        info->snapshots = calloc(s->nb_snapshots, sizeof(*info->snapshots));
        if (!info->snapshots) {
            ret = -ENOMEM;
            goto out;
        }
        info->nb_snapshots = s->nb_snapshots;
        for (uint32_t i = 0; i < s->nb_snapshots; i++) {
            struct qcow2_snapshot *sn = &s->snapshots[i];
            struct kimg_snapshot_info *o = &info->snapshots[i];
            o->id = strdup(sn->id);
            o->name = strdup(sn->name);
            if (!o->id || !o->name) {
                ret = -ENOMEM;
                goto out;
            }
            o->vm_state_size = sn->vm_state_size;
            o->date_sec = sn->date_sec;
            o->date_nsec = sn->date_nsec;
            o->vm_clock_nsec = sn->vm_clock_nsec;
            o->icount = sn->icount;
            o->has_icount = sn->has_icount;
        }
    }
    info->format_specific = format_specific(s);
    if (!info->format_specific)
        ret = -ENOMEM;
out:
    return ret;
}

/* Clone's full copy keeps these, in this order: the cluster size, compat,
 * the refcount width, on v3 lazy refcounts and extended L2 tables, the
 * compression type (the values info shows). */
int qcow2_create_opts_like(struct kimg *img, struct kimg_opts **opts)
{
    struct qcow2_state *s = img->state;
    char cs[24], rb[16];
    bool v3, lazy, ext_l2, zstd;

    qcow2_assert_locked(s);
    snprintf(cs, sizeof(cs), "%" PRIu64, s->cluster_size);
    snprintf(rb, sizeof(rb), "%" PRIu32, s->refcount_bits);
    v3 = s->version >= 3;
    lazy = (s->compat & QCOW2_COMPAT_LAZY) != 0;
    ext_l2 = s->ext_l2;
    zstd = s->compression_type == QCOW2_COMPRESSION_ZSTD;

    int r = kimg_opts_set(opts, "cluster_size", cs);
    if (r == 0)
        r = kimg_opts_set(opts, "compat", v3 ? "1.1" : "0.10");
    if (r == 0)
        r = kimg_opts_set(opts, "refcount_bits", rb);
    if (r == 0 && v3)
        r = kimg_opts_set(opts, "lazy_refcounts", lazy ? "on" : "off");
    if (r == 0 && v3)
        r = kimg_opts_set(opts, "extended_l2", ext_l2 ? "on" : "off");
    if (r == 0)
        r = kimg_opts_set(opts, "compression_type", zstd ? "zstd" : "zlib");
    return r;
}

/* Persistent bitmaps, as info lists them (qemu-img refuses to apply a
 * snapshot then). */
bool qcow2_has_bitmaps(struct kimg *img)
{
    struct qcow2_state *s = img->state;
    qcow2_assert_locked(s);
    return s->version >= 3 && s->has_bitmaps_ext && s->bitmaps;
}
