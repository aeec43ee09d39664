/*
 * vhdx.c — the VHDX driver table (qemu's format name "vhdx"): probing
 * ("vhdxfile" at 0), open (headers, log replay in memory, region table,
 * metadata, BAT, in that order: everything after the headers is read as
 * the log leaves it; writable opens set up write.c), close, info and
 * check; create is create.c, writes write.c.  No block_status,
 * as qemu 7.2's vhdx: every range is data to `map` and `measure`, and
 * convert finds the zeros by reading them (the same output as qemu-img).
 */
#include <errno.h>
#include <stdlib.h>
#include "vhdx.h"

static int vhdx_probe(const uint8_t *buf, size_t len, const char *filename)
{
    return vhdx_has_signature(buf, len) ? 100 : 0;
}

static void vhdx_close(struct kimg *img)
{
    struct vhdx_state *s = img->state;
    vhdx_close_writable(img);
    free(s->bat);
    s->bat = NULL;
    vhdx_free_log(s);
}

/*
 * A dirty log (a log GUID that is not zero) is replayed in memory, where
 * qemu-img refuses a read-only open and asks for `check -r all`, which
 * writes the replay into the source.  With KIMG_OPEN_REPAIR (check) the
 * per-block problems of the BAT do not refuse the open: check counts them.
 */
static int vhdx_open(struct kimg *img)
{
    struct vhdx_state *s = img->state;
    uint8_t sig[8] __attribute__((aligned(64)));
    int ret;

    if ((ret = kimg_file_size(img->file, &s->file_size)) < 0)
        return ret;
    if (s->file_size < VHDX_RTABLE2_OFFSET + VHDX_RTABLE_SIZE)
        return kimg_fail(-EINVAL, "File too small for a VHDX header section");
    if ((ret = kimg_file_pread(img->file, sig, sizeof(sig), 0)) < 0)
        return ret;
    if (!vhdx_has_signature(sig, sizeof(sig)))
        return kimg_fail(-EINVAL, "not a VHDX image (no \"vhdxfile\" signature)");
    s->eff_size = s->file_size;
    if ((ret = vhdx_open_headers(img)) < 0 ||
        (ret = vhdx_replay_log(img)) < 0 ||
        (ret = vhdx_open_regions(img)) < 0 ||
        (ret = vhdx_open_metadata(img)) < 0 ||
        (ret = vhdx_load_bat(img, img->flags & KIMG_OPEN_REPAIR)) < 0 ||
        (img->writable && (ret = vhdx_open_writable(img)) < 0)) {
        vhdx_close(img);
        return ret;
    }
    /* the block is the allocation unit (kimg_cluster_size); a writable
     * image's host file stays sparse inside its blocks (write.c) */
    img->cluster_size = img->writable ? VHDX_WRITE_UNIT : s->block_size;
    return 0;
}

/* qemu-img shows the block size as the cluster size, nothing
 * format-specific, and "dirty-flag": false; kimg says dirty when it
 * replayed a log (qemu-img cannot open such an image read-only). */
static int vhdx_info(struct kimg *img, struct kimg_info *info)
{
    struct vhdx_state *s = img->state;
    info->cluster_size = s->block_size;
    info->dirty = s->log_replayed;
    return 0;
}

/*
 * As qemu-img's vhdx check: the present blocks against the file's end
 * (its wording), plus kimg's other BAT checks; problems are corruptions.
 * A replayed log is not one: it is noted on the log stream.  Nothing is
 * repaired.
 */
static int vhdx_check(struct kimg *img, struct kimg_check *res, unsigned fix)
{
    struct vhdx_state *s = img->state;
    /* qemu repairs (replays the log in place, fixes what it can); kimg
     * does not: -r on a clean image reports it clean, as qemu-img, and is
     * refused otherwise, the file left as it was */
    if (fix && s->log_replayed)
        return kimg_fail(-EROFS, "kimg does not repair VHDX images: the "
                         "log was replayed in memory; convert the image to copy what it reads");
    if (s->log_replayed && res->log)
        fprintf(res->log, "kimg: the VHDX log holds %u entries not yet written in place: "
                "they were replayed in memory (nothing was written)\n", s->log_entries);
    uint64_t bad = vhdx_check_blocks(img, res->log);
    res->corruptions += bad;
    if (fix && bad)
        return kimg_fail(-EROFS, "kimg does not repair VHDX images; "
                         "convert the image to copy what it reads");
    return 0;
}

/* qemu 7.2's vhdx cannot be resized: its words */
static int vhdx_truncate(struct kimg *img, uint64_t size, enum kimg_prealloc prealloc)
{
    return kimg_fail(-ENOTSUP, "Image format driver does not support resize");
}

const struct kimg_driver kimg_vhdx_driver = {
    .name = "vhdx",
    .state_size = sizeof(struct vhdx_state),
    .probe = vhdx_probe,
    .open = vhdx_open,
    .close = vhdx_close,
    .read = vhdx_read,
    .info = vhdx_info,
    .check = vhdx_check,
    .content_status = vhdx_content_status,
    .create = vhdx_create,
    .create_opts = vhdx_create_opts,
    .formatting_opts = vhdx_formatting_opts,
    .write = vhdx_write,
    .write_zeroes = vhdx_write_zeroes,
    .flush = vhdx_flush,
    .truncate = vhdx_truncate,
    .alloc_data = vhdx_alloc_data,
    .commit_data = vhdx_commit_data,
    .flags = KIMG_DRV_NO_GROW,
};
