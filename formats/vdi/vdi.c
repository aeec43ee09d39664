/*
 * vdi.c — the VirtualBox VDI driver table (qemu's format name "vdi"):
 * probing (the signature at 0x40, or a VDI text at 0), open (header, then
 * block map), close, info (the block size as the cluster size, as
 * qemu-img) and check (qemu-img's vdi check; -r: exit 63 as qemu-img,
 * which has no repair for vdi); create in create.c, writes in write.c.
 */
#include <errno.h>
#include <stdlib.h>
#include "vdi.h"

/* qemu probes the signature only, and only in a file of 512 bytes or
 * more (a shorter one is raw to it); kimg also calls a shorter file with
 * the signature, or a file with a VDI text and a damaged signature, a VDI,
 * so open refuses it with a reason instead of its bytes being read as a
 * raw disk */
static int vdi_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return vdi_has_signature(buf, len) ? 100 : 0;
}

/*
 * Check -r opens the image for writing (KIMG_OPEN_REPAIR): nothing is
 * written then, and check says that VDI has no repair (exit 63) as
 * qemu-img does.
 */
static int vdi_open(struct kimg *img)
{
    struct vdi_state *s = img->state;
    uint8_t buf[VDI_HEADER_BYTES] __attribute__((aligned(64)));
    bool repair = img->flags & KIMG_OPEN_REPAIR;
    struct vdi_header h;
    int ret;

    if ((ret = kimg_file_size(img->file, &s->file_size)) < 0)
        return ret;
    if (s->file_size < VDI_HEADER_BYTES)
        return kimg_fail(-EINVAL, "File too small for a VDI header");
    if ((ret = kimg_file_pread(img->file, buf, sizeof(buf), 0)) < 0 ||
        (ret = vdi_parse_header(buf, s->file_size, repair, &h)) < 0)
        return ret;
    s->type = h.image_type;
    s->offset_data = h.offset_data;
    s->block_size = h.block_size;
    s->block_bits = (unsigned)__builtin_ctz(h.block_size);
    img->size = h.disk_size;
    if ((ret = vdi_load_map(img, &h, repair)) < 0)
        return ret;
    if (img->writable && !repair && (ret = vdi_prepare_writes(img, &h)) < 0) {
        free(s->map);
        s->map = NULL;
        return ret;
    }
    /* the block is the allocation unit (kimg_cluster_size), except for
     * writing: a write of part of a new block leaves the rest a hole, so
     * the copy engine may skip zero runs of any size there */
    if (!img->writable)
        img->cluster_size = s->block_size;
    return 0;
}

static void vdi_close(struct kimg *img)
{
    struct vdi_state *s = img->state;
    free(s->map);
    s->map = NULL;
    free(s->gap);
    s->gap = NULL;
    free(s->pend);
    s->pend = NULL;
    if (s->lock_init)
        pthread_mutex_destroy(&s->lock);
    s->lock_init = false;
}

/* qemu-img shows the block size as the cluster size, nothing
 * format-specific */
static int vdi_info(struct kimg *img, struct kimg_info *info)
{
    struct vdi_state *s = img->state;
    info->cluster_size = s->block_size;
    return 0;
}

static int vdi_check(struct kimg *img, struct kimg_check *res, unsigned fix)
{
    if (fix)
        return -ENOTSUP;        /* qemu-img: no repair for vdi (exit 63) */
    return vdi_check_map(img, res);
}

const struct kimg_driver kimg_vdi_driver = {
    .name = "vdi",
    .state_size = sizeof(struct vdi_state),
    .create_opts = vdi_create_opts,
    .probe = vdi_probe,
    .open = vdi_open,
    .close = vdi_close,
    .create = vdi_create,
    .read = vdi_read,
    .write = vdi_write,
    .write_zeroes = vdi_write_zeroes,
    .flush = vdi_flush,
    .alloc_data = vdi_alloc_data,
    .commit_data = vdi_commit_data,
    .block_status = vdi_block_status,
    .info = vdi_info,
    .check = vdi_check,
    .formatting_opts = vdi_formatting_opts,
};
