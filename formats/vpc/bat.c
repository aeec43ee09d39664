/*
 * bat.c — a VHD's data: the Block Allocation Table of a dynamic image
 * (loaded once, validated entry by entry, then read-only, so reads and
 * block status need no lock), guest reads and block status for dynamic
 * and fixed images.  Sector bitmaps are not read: an allocated block reads
 * its data area whole, unallocated blocks read as zeros (as qemu-img).
 */
#include <errno.h>
#include <stdlib.h>
#include "vpc.h"

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Among SORTED block starts (sectors), each block SPAN bytes long and none
 * overlapping another: the index of one that overlaps [a, b), or -1. */
static int64_t find_overlap(const uint32_t *sorted, uint32_t n, uint64_t span,
                            uint64_t a, uint64_t b)
{
    /* the last block starting before b ends furthest among those */
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if ((uint64_t)sorted[mid] * VPC_SECTOR < b)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return -1;
    return (uint64_t)sorted[lo - 1] * VPC_SECTOR + span > a ? (int64_t)(lo - 1) : -1;
}

/* Every allocated block inside the file, apart from each other and from
 * the metadata regions META (n_meta pairs of [start, end)). */
static int check_blocks(struct vpc_state *s, const uint64_t meta[][2], int n_meta)
{
    uint64_t span = (uint64_t)s->bitmap_size + s->block_size;
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->nb_blocks; i++)
        n += s->bat[i] != VPC_BAT_UNUSED;
    if (!n)
        return 0;
    uint32_t *sorted = malloc((size_t)n * sizeof(*sorted));
    if (!sorted)
        return -ENOMEM;
    n = 0;
    for (uint32_t i = 0; i < s->nb_blocks; i++)
        if (s->bat[i] != VPC_BAT_UNUSED)
            sorted[n++] = s->bat[i];
    qsort(sorted, n, sizeof(*sorted), cmp_u32);

    int ret = 0;
    for (uint32_t i = 0; i + 1 < n && ret == 0; i++)
        if ((uint64_t)(sorted[i + 1] - sorted[i]) * VPC_SECTOR < span)
            ret = kimg_fail(-EINVAL, "BAT entries overlap: blocks at offsets %llu and %llu",
                            (unsigned long long)sorted[i] * VPC_SECTOR,
                            (unsigned long long)sorted[i + 1] * VPC_SECTOR);
    uint64_t last_end = (uint64_t)sorted[n - 1] * VPC_SECTOR + span;
    if (ret == 0 && last_end > s->file_size)
        ret = kimg_fail(-EINVAL, "block at offset %llu ends past the end of the file "
                        "(%llu bytes): the image has been truncated",
                        (unsigned long long)sorted[n - 1] * VPC_SECTOR,
                        (unsigned long long)s->file_size);
    for (int m = 0; m < n_meta && ret == 0; m++) {
        int64_t k = find_overlap(sorted, n, span, meta[m][0], meta[m][1]);
        if (k >= 0)
            ret = kimg_fail(-EINVAL, "BAT entry points into the image's metadata: block "
                            "at offset %llu", (unsigned long long)sorted[k] * VPC_SECTOR);
    }
    free(sorted);
    return ret;
}

static bool ranges_overlap(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    return a0 < b1 && b0 < a1;
}

/* Whether the file's last 512 bytes are a footer (cookie and checksum
 * right): then no block may reach into them.  A dynamic disk whose last
 * footer was cut off has blocks up to its end (qemu reads it all). */
static int has_tail_footer(struct kimg *img, bool *tail)
{
    struct vpc_state *s = img->state;
    uint8_t buf[VPC_FOOTER_SIZE] __attribute__((aligned(64)));
    int ret = kimg_file_pread(img->file, buf, sizeof(buf), s->file_size - VPC_FOOTER_SIZE);
    if (ret < 0)
        return ret;
    *tail = vpc_is_footer(buf);
    return 0;
}

int vpc_load_bat(struct kimg *img, uint64_t hdr_off, const struct vpc_dyn_header *h)
{
    struct vpc_state *s = img->state;
    uint64_t bat_bytes = (uint64_t)h->max_table_entries * 4, bat_end;
    uint64_t blocks;

    s->block_size = h->block_size;
    s->block_bits = (unsigned)__builtin_ctz(h->block_size);
    /* one bit per sector, in whole sectors (qemu's formula gives 0 bytes
     * for blocks under 4 KiB; the specification one sector) */
    s->bitmap_size = ((h->block_size / VPC_SECTOR + 7) / 8 + VPC_SECTOR - 1) &
                     ~(VPC_SECTOR - 1);
    blocks = (img->size + h->block_size - 1) >> s->block_bits;
    if (blocks > h->max_table_entries)
        return kimg_fail(-EINVAL, "Page table too small");
    if (blocks * 4 > VPC_MAX_BAT_BYTES)
        return kimg_fail(-EFBIG, "BAT of %llu entries is larger than kimg's limit of %u MiB",
                         (unsigned long long)blocks, VPC_MAX_BAT_BYTES >> 20);
    s->nb_blocks = (uint32_t)blocks;
    if (__builtin_add_overflow(h->table_offset, bat_bytes, &bat_end) ||
        bat_end > s->file_size)
        return kimg_fail(-EINVAL, "BAT at offset %llu (%llu bytes) lies past the end of the "
                         "file: the image has been truncated",
                         (unsigned long long)h->table_offset, (unsigned long long)bat_bytes);
    if (ranges_overlap(h->table_offset, bat_end, 0, VPC_FOOTER_SIZE) ||
        ranges_overlap(h->table_offset, bat_end, hdr_off, hdr_off + VPC_DYN_HEADER_SIZE))
        return kimg_fail(-EINVAL, "BAT at offset %llu overlaps the footer or the dynamic "
                         "disk header", (unsigned long long)h->table_offset);
    if (!s->nb_blocks)
        return 0;

    s->bat = kimg_alloc_aligned((size_t)s->nb_blocks * 4);
    if (!s->bat)
        return -ENOMEM;
    int ret = kimg_file_pread(img->file, s->bat, (size_t)s->nb_blocks * 4, h->table_offset);
    if (ret < 0)
        return ret;
    for (uint32_t i = 0; i < s->nb_blocks; i++)
        s->bat[i] = vpc_be32((const uint8_t *)&s->bat[i]);

    uint64_t meta[4][2] = {
        { 0, VPC_FOOTER_SIZE },
        { hdr_off, hdr_off + VPC_DYN_HEADER_SIZE },
        { h->table_offset, bat_end },
    };
    int n_meta = 3;
    bool tail;
    if ((ret = has_tail_footer(img, &tail)) < 0)
        return ret;
    if (tail) {
        meta[3][0] = s->file_size - VPC_FOOTER_SIZE;
        meta[3][1] = s->file_size;
        n_meta = 4;
    }
    return check_blocks(s, meta, n_meta);
}

int vpc_read(struct kimg *img, void *buf, uint64_t off, uint64_t len)
{
    struct vpc_state *s = img->state;
    uint8_t *p = buf;

    if (s->type == VPC_TYPE_FIXED)
        return kimg_file_pread(img->file, buf, (size_t)len, off);
    while (len) {
        uint64_t in = off & (s->block_size - 1);
        uint64_t n = s->block_size - in < len ? s->block_size - in : len;
        uint32_t e = s->bat[off >> s->block_bits];
        if (e == VPC_BAT_UNUSED) {
            memset(p, 0, (size_t)n);
        } else {
            uint64_t host = (uint64_t)e * VPC_SECTOR + s->bitmap_size + in;
            int ret = kimg_file_pread(img->file, p, (size_t)n, host);
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
 * As qemu reports a VHD: a fixed image is data at the same offset in the
 * file, zero where the file has a hole; in a dynamic image an allocated
 * block is data (one block per reply: a bitmap sits between two blocks)
 * and a run of unallocated blocks reads as zeros, decided by this layer
 * (qemu-img map: "present": true, "zero": true).
 */
int vpc_block_status(struct kimg *img, uint64_t off, uint64_t len,
                     struct kimg_extent *ext)
{
    struct vpc_state *s = img->state;

    if (s->type == VPC_TYPE_FIXED) {
        bool is_data;
        uint64_t pnum;
        int ret = kimg_file_data_status(img->file, off, len, &is_data, &pnum);
        if (ret < 0)
            return ret;
        ext->length = pnum < len ? pnum : len;
        ext->flags = KIMG_BS_DATA | KIMG_BS_ALLOCATED | KIMG_BS_OFFSET_VALID |
                     (is_data ? 0 : KIMG_BS_ZERO);
        ext->offset = off;
        return 0;
    }
    uint64_t in = off & (s->block_size - 1);
    uint64_t n = s->block_size - in < len ? s->block_size - in : len;
    uint32_t e = s->bat[off >> s->block_bits];
    if (e != VPC_BAT_UNUSED) {
        ext->length = n;
        ext->flags = KIMG_BS_DATA | KIMG_BS_ALLOCATED | KIMG_BS_OFFSET_VALID;
        ext->offset = (uint64_t)e * VPC_SECTOR + s->bitmap_size + in;
        return 0;
    }
    while (n < len && s->bat[(off + n) >> s->block_bits] == VPC_BAT_UNUSED)
        n += s->block_size < len - n ? s->block_size : len - n;
    ext->length = n;
    ext->flags = KIMG_BS_ZERO | KIMG_BS_ALLOCATED;
    ext->offset = 0;
    return 0;
}
