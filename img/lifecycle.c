/*
 * lifecycle.c — the public entry points of the image lifecycle (internal
 * snapshots, backing-file changes, emptying a layer, amend, measure): the
 * checks every driver would otherwise repeat, then a call through the
 * driver table.  The work itself is the driver's (formats/qcow2/...) or,
 * for rebase and commit, the engine's built on these calls.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "kimg/driver.h"

/* The door's one refusal for a read-only or fenced image (image.c). */
static int need_writable(struct kimg *img)
{
    return kimg_check_writable(img);
}

static int unsupported(struct kimg *img, const char *what)
{
    return kimg_fail(-ENOTSUP, "Format driver '%s' does not support %s",
                     img->drv->name, what);
}

int kimg_snapshot_create(struct kimg *img, const char *name)
{
    int ret = need_writable(img);
    if (ret < 0)
        return ret;
    if (!name)      /* "" is a name, as for qemu-img */
        return kimg_fail(-EINVAL, "a snapshot needs a name");
    if (!img->drv->snapshot_create)
        return unsupported(img, "internal snapshots");
    return img->drv->snapshot_create(img, name);
}

int kimg_snapshot_apply(struct kimg *img, const char *id_or_name)
{
    int ret = need_writable(img);
    if (ret < 0)
        return ret;
    if (!img->drv->snapshot_apply)
        return unsupported(img, "internal snapshots");
    return img->drv->snapshot_apply(img, id_or_name);
}

int kimg_snapshot_delete(struct kimg *img, const char *id_or_name)
{
    int ret = need_writable(img);
    if (ret < 0)
        return ret;
    if (!img->drv->snapshot_delete)
        return unsupported(img, "internal snapshots");
    return img->drv->snapshot_delete(img, id_or_name);
}

int kimg_snapshot_load(struct kimg *img, const char *id, const char *name)
{
    if (img->writable)
        return kimg_fail(-EINVAL, "a snapshot can only be loaded read-only");
    if (!id && !name)
        return kimg_fail(-EINVAL, "no snapshot given");
    if (!img->drv->snapshot_load)
        return unsupported(img, "internal snapshots");
    return img->drv->snapshot_load(img, id, name);
}

int kimg_bitmap_list(struct kimg *img, struct kimg_bitmap_info **list, size_t *n)
{
    *list = NULL;
    *n = 0;
    if (!img->drv->bitmap_list)
        return -ENOTSUP;
    int ret = img->drv->bitmap_list(img, list, n);
    if (ret < 0) {
        kimg_bitmap_list_free(*list, *n);
        *list = NULL;
        *n = 0;
    }
    return ret;
}

void kimg_bitmap_list_free(struct kimg_bitmap_info *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i].name);
    free(list);
}

int kimg_bitmap_change(struct kimg *img, const struct kimg_bitmap_op *op)
{
    int ret = need_writable(img);
    if (ret < 0)
        return ret;
    if (!op || !op->name || (op->action == KIMG_BITMAP_MERGE && !op->src_name))
        return kimg_fail(-EINVAL, "a bitmap operation needs a bitmap name");
    if (op->action == KIMG_BITMAP_MERGE && op->src && !op->src->drv->bitmap_dirty)
        return kimg_fail(-ENOENT, "Dirty bitmap '%s' not found", op->src_name);
    if (!img->drv->bitmap_change)
        return kimg_fail(-ENOTSUP, "Can't store persistent bitmaps to '%s': Operation not "
                         "supported", img->filename);
    return img->drv->bitmap_change(img, op);
}

int kimg_bitmap_dirty(struct kimg *img, const char *name, uint64_t off, uint64_t len,
                      bool *dirty, uint64_t *pnum)
{
    if (!name)
        return kimg_fail(-EINVAL, "a bitmap query needs a bitmap name");
    if (off >= img->size || !len)
        return kimg_fail(-EINVAL, "bitmap query outside the image");
    if (len > img->size - off)
        len = img->size - off;
    if (!img->drv->bitmap_dirty)
        return kimg_fail(-ENOENT, "Dirty bitmap '%s' not found", name);
    int ret = img->drv->bitmap_dirty(img, name, off, len, dirty, pnum);
    if (ret == 0 && (*pnum == 0 || *pnum > len))
        return kimg_fail(-EIO, "%s: the format reported a bitmap run out of range",
                         img->filename);
    return ret;
}

int kimg_change_backing(struct kimg *img, const char *name, const char *format)
{
    int ret = need_writable(img);
    if (ret < 0)
        return ret;
    if (!img->drv->change_backing)
        return unsupported(img, "backing files");
    if (name && !*name)
        name = NULL;
    return img->drv->change_backing(img, name, name ? format : NULL);
}

int kimg_make_empty(struct kimg *img)
{
    int ret = need_writable(img);
    if (ret < 0)
        return ret;
    if (!img->drv->make_empty)
        return unsupported(img, "emptying an image");
    return img->drv->make_empty(img);
}

int kimg_amend(struct kimg *img, struct kimg_opts *opts, bool force)
{
    int ret = need_writable(img);
    if (ret < 0)
        return ret;
    if (!img->drv->amend)
        return kimg_fail(-ENOTSUP, "Format driver '%s' does not support option amendment",
                         img->drv->name);
    return img->drv->amend(img, opts, force);
}

int kimg_measure(const char *format, struct kimg_opts *opts, uint64_t size,
                 struct kimg *src, struct kimg_measure *out)
{
    const struct kimg_driver *drv = kimg_find_driver(format);
    if (!drv)
        return kimg_fail(-EINVAL, "Unknown file format '%s'", format);
    if (!drv->measure)
        return kimg_fail(-ENOTSUP, "Block driver '%s' does not support size measurement",
                         format);     /* qemu-img's words */
    if (opts) {
        int ret = kimg_opts_validate(opts, drv->create_opts, drv->name);
        if (ret < 0)
            return ret;
    }
    memset(out, 0, sizeof(*out));
    return drv->measure(opts, size, src, out);
}
