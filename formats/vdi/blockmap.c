/*
 * blockmap.c — a VDI's block map: loaded once and validated entry by
 * entry (then read-only, so reads and block status need no lock), guest
 * reads, block status as qemu reports it, and qemu-img's vdi check.
 * Free (0xffffffff) and zero (0xfffffffe) entries read as zeros.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "vdi.h"

/* Guest bytes of block B: the whole block, less for the last one, none
 * past the disk (a map may have more entries than the disk needs). */
static uint64_t guest_bytes(const struct kimg *img, const struct vdi_state *s, uint32_t b)
{
    uint64_t start = (uint64_t)b << s->block_bits;
    if (start >= img->size)
        return 0;
    return img->size - start < s->block_size ? img->size - start : s->block_size;
}

static uint64_t slot_offset(const struct vdi_state *s, uint32_t e)
{
    return s->offset_data + ((uint64_t)e << s->block_bits);
}

/* Whether block B's data (slot E) is inside the file, for its guest bytes. */
static bool slot_in_file(const struct kimg *img, const struct vdi_state *s, uint32_t b,
                         uint32_t e)
{
    uint64_t need = guest_bytes(img, s, b);
    return !need || slot_offset(s, e) + need <= s->file_size;
}

static uint8_t *new_bitmap(uint32_t bits)
{
    return calloc((size_t)bits / 8 + 1, 1);
}

static bool test_and_set(uint8_t *bm, uint32_t i)
{
    bool was = bm[i / 8] & (1u << (i % 8));
    bm[i / 8] |= (uint8_t)(1u << (i % 8));
    return was;
}

static int validate_map(struct kimg *img)
{
    struct vdi_state *s = img->state;
    uint8_t *used = new_bitmap(s->nb_blocks);
    int ret = 0;

    if (!used)
        return -ENOMEM;
    for (uint32_t b = 0; b < s->nb_blocks && ret == 0; b++) {
        uint32_t e = s->map[b];
        if (e >= VDI_ZERO)
            continue;
        if (e >= s->nb_blocks)
            ret = kimg_fail(-EINVAL, "invalid VDI block map: block %u points to slot %u, past "
                            "the image's %u blocks", b, e, s->nb_blocks);
        else if (test_and_set(used, e))
            ret = kimg_fail(-EINVAL, "invalid VDI block map: slot %u is used twice (again by "
                            "block %u)", e, b);
        else if (!slot_in_file(img, s, b, e))
            ret = kimg_fail(-EINVAL, "VDI block %u (data at offset %llu) lies past the end of "
                            "the file (%llu bytes): the image has been truncated", b,
                            (unsigned long long)slot_offset(s, e),
                            (unsigned long long)s->file_size);
    }
    free(used);
    return ret;
}

int vdi_load_map(struct kimg *img, const struct vdi_header *h, bool repair)
{
    struct vdi_state *s = img->state;
    size_t bytes = (size_t)h->blocks_in_image * 4;
    int ret;

    s->nb_blocks = h->blocks_in_image;
    s->blocks_allocated = h->blocks_allocated;
    if (!bytes)
        return 0;
    s->map = kimg_alloc_aligned(bytes);
    if (!s->map)
        return -ENOMEM;
    if ((ret = kimg_file_pread(img->file, s->map, bytes, h->offset_bmap)) < 0)
        goto fail;
    for (uint32_t i = 0; i < s->nb_blocks; i++)
        s->map[i] = vdi_le32((const uint8_t *)&s->map[i]);
    ret = validate_map(img);
    if (ret == -EINVAL && repair) {
        kimg_clear_error();
        s->damaged = true;
        return 0;
    }
    if (ret == 0)
        return 0;
fail:
    free(s->map);
    s->map = NULL;
    return ret;
}

static int refuse_damaged(void)
{
    return kimg_fail(-EIO, "the VDI block map is corrupt (kimg check lists the damage)");
}

int vdi_read(struct kimg *img, void *buf, uint64_t off, uint64_t len)
{
    struct vdi_state *s = img->state;
    uint64_t mask = s->block_size - 1;
    uint8_t *p = buf;

    if (s->damaged)
        return refuse_damaged();
    while (len) {
        uint32_t b = (uint32_t)(off >> s->block_bits), e = s->map[b];
        uint64_t in = off & mask;
        uint64_t n = s->block_size - in < len ? s->block_size - in : len;
        if (e >= VDI_ZERO) {
            memset(p, 0, (size_t)n);
        } else {
            /* blocks stored one after the other: one read */
            while (n < len) {
                uint32_t nb = (uint32_t)((off + n) >> s->block_bits);
                if (s->map[nb] != e + (nb - b))
                    break;
                n += s->block_size < len - n ? s->block_size : len - n;
            }
            int ret = kimg_file_pread(img->file, p, (size_t)n, slot_offset(s, e) + in);
            if (ret < 0)
                return ret;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/*
 * As qemu reports a VDI, one block per reply: a block without data (free
 * or zero entry) reads as zeros, decided by this layer (qemu-img map:
 * "present": true, "zero": true); a block with data is data at its slot;
 * in a static image qemu also asks the file, so a hole in it is data and
 * zeros ("zero": true, "data": true, with its offset).
 */
int vdi_block_status(struct kimg *img, uint64_t off, uint64_t len,
                     struct kimg_extent *ext)
{
    struct vdi_state *s = img->state;
    uint64_t in = off & (s->block_size - 1);
    uint64_t n = s->block_size - in < len ? s->block_size - in : len;
    uint32_t e;

    if (s->damaged)
        return refuse_damaged();
    e = s->map[off >> s->block_bits];
    if (e >= VDI_ZERO) {
        ext->length = n;
        ext->flags = KIMG_BS_ZERO | KIMG_BS_ALLOCATED;
        ext->offset = 0;
        return 0;
    }
    ext->offset = slot_offset(s, e) + in;
    ext->flags = KIMG_BS_DATA | KIMG_BS_ALLOCATED | KIMG_BS_OFFSET_VALID;
    if (s->type == VDI_TYPE_STATIC) {
        bool is_data;
        uint64_t pnum;
        int ret = kimg_file_data_status(img->file, ext->offset, n, &is_data, &pnum);
        if (ret < 0)
            return ret;
        if (pnum < n)
            n = pnum;
        if (!is_data)
            ext->flags |= KIMG_BS_ZERO;
    }
    ext->length = n;
    return 0;
}

static void report(struct kimg_check *res, const char *fmt, ...)
{
    va_list ap;
    res->corruptions++;
    if (!res->log)
        return;
    va_start(ap, fmt);
    vfprintf(res->log, fmt, ap);
    va_end(ap);
}

/*
 * qemu's vdi check, its lines and counts: an entry naming a slot at or
 * past the block count, a slot used twice ("block index E also used by
 * E": qemu prints the slot twice), and a header count of allocated blocks
 * that is not the map's.  Then kimg's own: a block whose data lies past the
 * end of the file (qemu reads it as zeros, silently).  Each is a
 * corruption; VDI check knows no leaks.
 */
int vdi_check_map(struct kimg *img, struct kimg_check *res)
{
    struct vdi_state *s = img->state;
    uint8_t *used = new_bitmap(s->nb_blocks);
    uint32_t allocated = 0;

    if (!used) {
        res->check_errors++;
        return -ENOMEM;
    }
    for (uint32_t b = 0; b < s->nb_blocks; b++) {
        uint32_t e = s->map[b];
        if (e >= VDI_ZERO)
            continue;
        if (e >= s->nb_blocks) {
            report(res, "ERROR: block index %u too large, is %u\n", b, e);
            continue;
        }
        allocated++;
        if (test_and_set(used, e))
            report(res, "ERROR: block index %u also used by %u\n", e, e);
    }
    if (allocated != s->blocks_allocated)
        report(res, "ERROR: allocated blocks mismatch, is %u, should be %u\n", allocated,
               s->blocks_allocated);
    for (uint32_t b = 0; b < s->nb_blocks; b++) {
        uint32_t e = s->map[b];
        if (e < s->nb_blocks && !slot_in_file(img, s, b, e))
            report(res, "ERROR: block %u: its data at offset %llu lies past the end of the "
                   "file (%llu bytes)\n", b, (unsigned long long)slot_offset(s, e),
                   (unsigned long long)s->file_size);
    }
    free(used);
    return 0;
}
