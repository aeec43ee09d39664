/*
 * write.c — guest writes into a VHD.  A fixed disk is written in place.
 * A dynamic disk's writes into allocated blocks go in place; a write into
 * an unallocated block allocates it at the end of the data (qemu's place:
 * over the old footer), in this order, so that a crash at any point leaves
 * every block reading its old or its new data and a footer at the end of
 * the file (vhdiinfo and Hyper-V read that one):
 *   1. the footer after the new block, then a sync;
 *   2. the sector bitmap (all ones, as qemu) over the old footer, and the
 *      data, then a sync;
 *   3. the BAT entry pointing at the block, then a sync.
 * A crash before 3 leaves space nothing points at, which the next
 * allocation reuses (its unwritten parts are zeroed then).  The footer copy
 * at 0 and the dynamic header never change.  Zero writes never allocate.
 * One mutex serialises the writes of an image.
 */
#include <errno.h>
#include <stdlib.h>
#include "vpc.h"

/* Where the next block goes: past the metadata and every block (qemu's
 * free_data_block_offset); the footer at the end of the file is
 * overwritten by the next block. */
int vpc_prepare_writes(struct kimg *img, uint64_t hdr_off, const struct vpc_dyn_header *h)
{
    struct vpc_state *s = img->state;
    uint64_t span = (uint64_t)s->bitmap_size + s->block_size;
    uint64_t end = (h->table_offset + (uint64_t)h->max_table_entries * 4 + VPC_SECTOR - 1) &
                   ~(uint64_t)(VPC_SECTOR - 1);
    if (end < hdr_off + VPC_DYN_HEADER_SIZE)
        end = hdr_off + VPC_DYN_HEADER_SIZE;
    for (uint32_t i = 0; i < s->nb_blocks; i++)
        if (s->bat[i] != VPC_BAT_UNUSED && (uint64_t)s->bat[i] * VPC_SECTOR + span > end)
            end = (uint64_t)s->bat[i] * VPC_SECTOR + span;
    s->table_offset = h->table_offset;
    s->free_offset = end;
    s->file_end = s->file_size;
    int ret = kimg_file_pread(img->file, s->footer, VPC_FOOTER_SIZE, 0);
    if (ret < 0)
        return ret;
    pthread_mutex_init(&s->lock, NULL);
    s->lock_init = true;
    return 0;
}

/* Allocate block B for a write of LEN bytes of BUF at IN inside it. */
static int alloc_block(struct kimg *img, uint32_t b, const uint8_t *buf, uint64_t in,
                       uint64_t len)
{
    struct vpc_state *s = img->state;
    uint64_t at = s->free_offset, data = at + s->bitmap_size;
    uint64_t end = data + s->block_size;
    int ret;

    if (at / VPC_SECTOR >= VPC_BAT_UNUSED)
        return kimg_fail(-EFBIG, "VHD file too large for another block");
    /* space left by a crash (or a foreign layout) must read as zeros
     * where this write does not cover it */
    if (s->file_end > data) {
        uint64_t stop = s->file_end < end ? s->file_end : end;
        if (in > 0 && (ret = kimg_file_zero(img->file, data, in < stop - data ? in : stop - data,
                                            true)) < 0)
            return ret;
        if (data + in + len < stop &&
            (ret = kimg_file_zero(img->file, data + in + len, stop - (data + in + len), true)) < 0)
            return ret;
    }
    /* the footer after the new block first: the old one, which the
     * bitmap overwrites, is the one readers such as vhdiinfo need until
     * the new one is on disk */
    ret = kimg_file_pwrite(img->file, s->footer, VPC_FOOTER_SIZE, end);
    if (ret == 0)
        ret = kimg_file_sync(img->file);
    if (ret < 0)
        return ret;
    uint8_t *bitmap = kimg_alloc_aligned(s->bitmap_size);
    if (!bitmap)
        return -ENOMEM;
    memset(bitmap, 0xff, s->bitmap_size);
    ret = kimg_file_pwrite(img->file, bitmap, s->bitmap_size, at);
    free(bitmap);
    if (ret == 0)
        ret = kimg_file_pwrite(img->file, buf, (size_t)len, data + in);
    if (ret == 0)
        ret = kimg_file_sync(img->file);
    if (ret < 0)
        return ret;
    uint32_t e = htobe32((uint32_t)(at / VPC_SECTOR));
    ret = kimg_file_pwrite(img->file, &e, 4, s->table_offset + (uint64_t)b * 4);
    if (ret == 0)
        ret = kimg_file_sync(img->file);
    if (ret < 0) {
        kimg_fence(img);        /* the entry may or may not be on disk */
        return ret;
    }
    __atomic_store_n(&s->bat[b], (uint32_t)(at / VPC_SECTOR), __ATOMIC_RELEASE);
    s->free_offset = end;
    if (s->file_end < end + VPC_FOOTER_SIZE)
        s->file_end = end + VPC_FOOTER_SIZE;
    return 0;
}

static int write_dynamic(struct kimg *img, const uint8_t *p, uint64_t off, uint64_t len)
{
    struct vpc_state *s = img->state;
    int ret = 0;
    pthread_mutex_lock(&s->lock);
    while (len && ret == 0) {
        uint64_t in = off & (s->block_size - 1);
        uint64_t n = s->block_size - in < len ? s->block_size - in : len;
        uint32_t b = (uint32_t)(off >> s->block_bits), e = s->bat[b];
        if (e == VPC_BAT_UNUSED)
            ret = alloc_block(img, b, p, in, n);
        else
            ret = kimg_file_pwrite(img->file, p, (size_t)n,
                                   (uint64_t)e * VPC_SECTOR + s->bitmap_size + in);
        p += n;
        off += n;
        len -= n;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int vpc_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len)
{
    struct vpc_state *s = img->state;
    if (s->type == VPC_TYPE_FIXED)
        return kimg_file_pwrite(img->file, buf, (size_t)len, off);
    return write_dynamic(img, buf, off, len);
}

/* Zeros: an unallocated block reads as zeros already (a VHD has no
 * backing file here), so it stays unallocated; allocated space is zeroed
 * in place. */
int vpc_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct vpc_state *s = img->state;
    bool punch = flags & KIMG_ZERO_MAY_UNMAP;
    int ret = 0;

    if (s->type == VPC_TYPE_FIXED)
        return kimg_file_zero(img->file, off, len, punch);
    pthread_mutex_lock(&s->lock);
    while (len && ret == 0) {
        uint64_t in = off & (s->block_size - 1);
        uint64_t n = s->block_size - in < len ? s->block_size - in : len;
        uint32_t e = s->bat[off >> s->block_bits];
        if (e != VPC_BAT_UNUSED)
            ret = kimg_file_zero(img->file, (uint64_t)e * VPC_SECTOR + s->bitmap_size + in, n,
                                 punch);
        off += n;
        len -= n;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/*
 * Parallel data writes (the copy engine) for a fixed disk: guest offset X
 * is byte X of the file, already in place, so the space is the range
 * itself and there is nothing to link.  A dynamic disk's ranges go
 * through vpc_write (0).
 */
int64_t vpc_alloc_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t *host,
                       struct kimg_file **file)
{
    struct vpc_state *s = img->state;
    if (s->type != VPC_TYPE_FIXED)
        return 0;
    *host = off;
    *file = img->file;
    return (int64_t)len;
}

int vpc_commit_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t host)
{
    return 0;
}

int vpc_flush(struct kimg *img)
{
    return kimg_file_sync(img->file);
}
