/*
 * write.c — guest writes into a VDI.  Blocks with a slot (every block of
 * a static image) are written in place.  A write into a free or zero
 * block takes the next slot (the header's count of allocated blocks, as
 * qemu), in this order, so that a crash at any point leaves every block
 * reading its old or its new data and `qemu-img check` clean:
 *   1. the data (the rest of the slot reads as zeros: a hole past the
 *      end of the file, zeroed inside it), then a sync;
 *   2. the header's count and the block map entry together, in ONE write
 *      of the bytes from the count to the entry (they are 0x184 and
 *      offset_bmap + 4 * block: qemu's check compares the two, so they
 *      must change at once), then a sync.
 * A crash before 2 leaves data in a slot nothing points at; the next
 * allocation takes that slot again.  Under cache=unsafe (no syncs, no
 * promise across a crash, as qemu-img) the count and the entry are two
 * small writes instead.  Zero writes never allocate.  One mutex
 * serialises the writes of an image.
 */
#include <errno.h>
#include <stdlib.h>
#include "vdi.h"

#define VDI_H_COUNT_END (VDI_H_BLOCKS_ALLOC + 4)
/* the most header bytes past the count the metadata write carries
 * (qemu and VirtualBox put the map at 512: 124 bytes) */
#define VDI_MAX_GAP     (64u << 10)

int vdi_prepare_writes(struct kimg *img, const struct vdi_header *h)
{
    struct vdi_state *s = img->state;
    uint32_t next = h->blocks_allocated;
    /* never a slot in use, whatever the header's count says */
    for (uint32_t b = 0; b < s->nb_blocks; b++)
        if (s->map[b] < VDI_ZERO && s->map[b] >= next)
            next = s->map[b] + 1;
    s->next_slot = next;
    s->offset_bmap = h->offset_bmap;
    s->file_end = s->file_size;
    /* the bytes between the header's count and the block map, which the
     * single metadata write carries unchanged */
    if (h->offset_bmap - VDI_H_COUNT_END > VDI_MAX_GAP)
        return kimg_fail(-ENOTSUP, "kimg cannot write into a VDI whose block map lies at "
                         "offset %u (at most %u)", h->offset_bmap, VDI_H_COUNT_END + VDI_MAX_GAP);
    s->gap_len = h->offset_bmap - VDI_H_COUNT_END;
    s->gap = malloc(s->gap_len ? s->gap_len : 1);
    if (!s->gap)
        return -ENOMEM;
    int ret = kimg_file_pread(img->file, s->gap, s->gap_len, VDI_H_COUNT_END);
    if (ret < 0) {
        free(s->gap);
        s->gap = NULL;
        return ret;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->lock_init = true;
    return 0;
}

static void put_le32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }

/* Step 2: the count (now COUNT) and block B's entry on disk. */
static int write_meta(struct kimg *img, uint32_t b, uint32_t count)
{
    struct vdi_state *s = img->state;
    uint8_t v[4];
    int ret;

    if (img->file->nosync) {
        put_le32(v, s->map[b]);
        ret = kimg_file_pwrite(img->file, v, 4, s->offset_bmap + (uint64_t)b * 4);
        put_le32(v, count);
        return ret < 0 ? ret : kimg_file_pwrite(img->file, v, 4, VDI_H_BLOCKS_ALLOC);
    }
    size_t len = 4 + s->gap_len + ((size_t)b + 1) * 4;
    uint8_t *buf = malloc(len);
    if (!buf)
        return -ENOMEM;
    put_le32(buf, count);
    memcpy(buf + 4, s->gap, s->gap_len);
    for (uint32_t i = 0; i <= b; i++)
        put_le32(buf + 4 + s->gap_len + (size_t)i * 4, s->map[i]);
    ret = kimg_file_pwrite(img->file, buf, len, VDI_H_BLOCKS_ALLOC);
    free(buf);
    if (ret == 0)
        ret = kimg_file_sync(img->file);
    return ret;
}

/* Give block B a slot for a write of LEN bytes of BUF at IN inside it. */
static int alloc_block(struct kimg *img, uint32_t b, const uint8_t *buf, uint64_t in,
                       uint64_t len)
{
    struct vdi_state *s = img->state;
    uint32_t slot = s->next_slot;
    int ret;

    if (slot >= s->nb_blocks)
        return kimg_fail(-ENOSPC, "VDI image has no free slot left (%u blocks)", s->nb_blocks);
    uint64_t at = s->offset_data + ((uint64_t)slot << s->block_bits);
    uint64_t end = at + s->block_size;
    /* what this write does not cover must read as zeros: a hole past the
     * end of the file is, space inside it (a slot a crash left) is zeroed */
    if (s->file_end > at) {
        uint64_t stop = s->file_end < end ? s->file_end : end;
        if (in > 0 && (ret = kimg_file_zero(img->file, at, in < stop - at ? in : stop - at,
                                            true)) < 0)
            return ret;
        if (at + in + len < stop &&
            (ret = kimg_file_zero(img->file, at + in + len, stop - (at + in + len), true)) < 0)
            return ret;
    }
    ret = kimg_file_pwrite(img->file, buf, (size_t)len, at + in);
    if (ret == 0 && s->file_end < end && at + in + len < end)
        ret = kimg_file_truncate(img->file, end);     /* the whole slot in the file */
    if (ret == 0)
        ret = kimg_file_sync(img->file);
    if (ret < 0)
        return ret;
    if (s->file_end < end)
        s->file_end = end;
    uint32_t old = s->map[b];
    s->map[b] = slot;
    ret = write_meta(img, b, slot + 1);
    if (ret < 0) {
        s->map[b] = old;
        kimg_fence(img);        /* the entry may or may not be on disk */
        return ret;
    }
    s->next_slot = slot + 1;
    s->blocks_allocated = slot + 1;
    return 0;
}

int vdi_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len)
{
    struct vdi_state *s = img->state;
    const uint8_t *p = buf;
    int ret = 0;

    pthread_mutex_lock(&s->lock);
    while (len && ret == 0) {
        uint32_t b = (uint32_t)(off >> s->block_bits), e = s->map[b];
        uint64_t in = off & (s->block_size - 1);
        uint64_t n = s->block_size - in < len ? s->block_size - in : len;
        if (e >= VDI_ZERO)
            ret = alloc_block(img, b, p, in, n);
        else
            ret = kimg_file_pwrite(img->file, p, (size_t)n,
                                   s->offset_data + ((uint64_t)e << s->block_bits) + in);
        p += n;
        off += n;
        len -= n;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* Zeros: a block without a slot reads as zeros already and keeps none;
 * a slot is zeroed in place. */
int vdi_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct vdi_state *s = img->state;
    bool punch = flags & KIMG_ZERO_MAY_UNMAP;
    int ret = 0;

    pthread_mutex_lock(&s->lock);
    while (len && ret == 0) {
        uint32_t e = s->map[off >> s->block_bits];
        uint64_t in = off & (s->block_size - 1);
        uint64_t n = s->block_size - in < len ? s->block_size - in : len;
        if (e < VDI_ZERO)
            ret = kimg_file_zero(img->file, s->offset_data + ((uint64_t)e << s->block_bits) + in,
                                 n, punch);
        off += n;
        len -= n;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int vdi_flush(struct kimg *img)
{
    return kimg_file_sync(img->file);
}
