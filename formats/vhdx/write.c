/*
 * write.c — guest writes into an open VHDX image (a new convert output
 * and writes into existing images alike), crash-safe without the log:
 *
 *  1. Before the first change of a session both headers are rewritten
 *     through the header-sequence switch ([MS-VHDX] 2.2.2.1): the
 *     non-current header gets sequence + 1 and new FileWriteGuid and
 *     DataWriteGuid, is flushed, then the other one the same way.  A
 *     torn or lost header write leaves the other, valid one current.
 *  2. A block that reads as zeros (NOT_PRESENT, ZERO, UNMAPPED,
 *     UNDEFINED) gets its space on its first write: appended at the end
 *     of the file rounded up to 1 MiB (the file extended, so the rest of
 *     the block reads zeros), or, in a fixed disk laid out as qemu-img and
 *     kimg make it, its own place (zeroed first).  The BAT entry changes
 *     in memory only.
 *  3. flush (and close) syncs the data first, then writes the changed
 *     BAT pages in place and syncs again.  The BAT on disk therefore
 *     only ever points at data that is on disk; each 8-byte entry lies
 *     inside one sector, so a crash leaves every entry old or new, never
 *     torn (the guarantee qcow2's in-place L2 updates rely on too).  A
 *     crash before the BAT write leaks the appended space and loses the
 *     writes since the last flush, as on any disk with a volatile cache.
 *
 * The VHDX log is not used: the specification wants metadata updates to
 * go through it, which guards against torn multi-sector updates; kimg's
 * only metadata update is single entries in place.  An image whose log
 * holds entries to replay is refused for writing (they would have to be
 * applied in place first; qemu does that when it opens the image).
 * Blocks never go back to a zero state: zero writes into present blocks
 * punch the range, as qemu writes zeros there.
 */
#include <errno.h>
#include <stdlib.h>
#include "vhdx.h"

#define BAT_PAGE 4096u

int vhdx_open_writable(struct kimg *img)
{
    struct vhdx_state *s = img->state;
    if (s->log_replayed && !(img->flags & KIMG_OPEN_REPAIR))
        return kimg_fail(-ENOTSUP, "kimg cannot write into a VHDX image whose log holds "
                         "entries not yet written in place (%u); qemu-img check -r all "
                         "replays it", s->log_entries);
    s->bat_pages = (s->bat_length + BAT_PAGE - 1) / BAT_PAGE;
    s->bat_dirty = calloc((s->bat_pages + 7) / 8, 1);
    if (!s->bat_dirty)
        return -ENOMEM;
    s->alloc_end = (s->file_size + VHDX_MIB - 1) & ~(VHDX_MIB - 1);
    /* a fixed disk in qemu's layout keeps each block's place: every
     * present block at it and the file long enough for all of them */
    s->data_start = s->bat_offset + s->bat_length + 5 * VHDX_MIB;
    s->use_slots = s->leave_allocated &&
                   (!s->log_length || s->log_offset + s->log_length <= s->bat_offset) &&
                   s->meta_offset >= s->bat_offset + s->bat_length &&
                   s->meta_offset + s->meta_length <= s->data_start &&
                   s->file_size >= s->data_start + ((img->size + 511) & ~511ull);
    for (uint64_t b = 0; b < s->nb_blocks && s->use_slots; b++) {
        uint64_t e = s->bat[b];
        if ((e & VHDX_BAT_STATE_MASK) == VHDX_PAYLOAD_FULLY_PRESENT &&
            (e & VHDX_BAT_OFFSET_MASK) != s->data_start + (b << s->block_bits))
            s->use_slots = false;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->writer = true;
    return 0;
}

void vhdx_close_writable(struct kimg *img)
{
    struct vhdx_state *s = img->state;
    if (!s->writer)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s->bat_dirty);
    s->bat_dirty = NULL;
    s->writer = false;
}

/* Step 1: the header-sequence switch, twice, each write flushed. */
static int switch_headers(struct kimg *img)
{
    struct vhdx_state *s = img->state;
    uint8_t fw[16], dw[16];
    uint8_t *h = kimg_alloc_aligned(VHDX_HEADER_SIZE);
    int ret = 0;

    if (!h)
        return -ENOMEM;
    vhdx_new_guid(fw);
    vhdx_new_guid(dw);
    for (int k = 0; k < 2 && ret == 0; k++) {
        uint64_t cur = s->cur_header ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET;
        uint64_t other = s->cur_header ? VHDX_HEADER1_OFFSET : VHDX_HEADER2_OFFSET;
        if ((ret = kimg_file_pread(img->file, h, VHDX_HEADER_SIZE, cur)) < 0)
            break;
        vhdx_put64(h + VHDX_H_SEQUENCE, s->hdr_seq + 1);
        memcpy(h + VHDX_H_FILE_WRITE_GUID, fw, 16);
        memcpy(h + VHDX_H_DATA_WRITE_GUID, dw, 16);
        vhdx_put32(h + VHDX_H_CHECKSUM, vhdx_crc(h, VHDX_HEADER_SIZE, VHDX_H_CHECKSUM));
        if ((ret = kimg_file_pwrite(img->file, h, VHDX_HEADER_SIZE, other)) < 0 ||
            (ret = kimg_file_sync(img->file)) < 0)
            break;
        s->cur_header ^= 1;
        s->hdr_seq++;
    }
    free(h);
    if (ret < 0) {
        kimg_fence(img);        /* which header is current is unknown now */
        return ret;
    }
    s->headers_switched = true;
    return 0;
}

static void mark_dirty(struct vhdx_state *s, uint64_t b)
{
    uint64_t page = vhdx_bat_index(s->chunk_ratio, b) * 8 / BAT_PAGE;
    s->bat_dirty[page / 8] |= (uint8_t)(1u << (page % 8));
    s->bat_any_dirty = true;
}

/* Step 2: host space for block B, which reads as zeros now. */
static int alloc_block(struct kimg *img, uint64_t b, uint64_t *host)
{
    struct vhdx_state *s = img->state;
    int ret;
    if (s->use_slots) {
        *host = s->data_start + (b << s->block_bits);
        uint64_t len = s->file_size - *host < s->block_size ? s->file_size - *host
                                                           : s->block_size;
        ret = kimg_file_zero(img->file, *host, len, true);
    } else {
        *host = s->alloc_end;
        if (*host > VHDX_BAT_OFFSET_MASK - s->block_size)
            return kimg_fail(-EFBIG, "VHDX file too large for another block");
        ret = kimg_file_truncate(img->file, *host + s->block_size);
        if (ret == 0) {
            s->alloc_end = *host + s->block_size;
            s->file_size = s->eff_size = s->alloc_end;
        }
    }
    if (ret < 0)
        return ret;
    __atomic_store_n(&s->bat[b], *host | VHDX_PAYLOAD_FULLY_PRESENT, __ATOMIC_RELEASE);
    mark_dirty(s, b);
    return 0;
}

/* Write (BUF) or zero (BUF NULL) guest range [off, off+len). */
static int write_range(struct kimg *img, const uint8_t *buf, uint64_t off, uint64_t len)
{
    struct vhdx_state *s = img->state;
    int ret = 0;

    pthread_mutex_lock(&s->lock);
    if (!s->headers_switched)
        ret = switch_headers(img);
    while (ret == 0 && len) {
        uint64_t b = off >> s->block_bits;
        uint64_t in = off & (s->block_size - 1);
        uint64_t n = s->block_size - in < len ? s->block_size - in : len;
        uint64_t e = s->bat[b], host;
        if ((e & VHDX_BAT_STATE_MASK) == VHDX_PAYLOAD_FULLY_PRESENT) {
            host = (e & VHDX_BAT_OFFSET_MASK) + in;
        } else if (!buf) {
            host = 0;                   /* reads as zeros already */
        } else {
            ret = alloc_block(img, b, &host);
            host += in;
        }
        if (ret == 0 && buf)
            ret = kimg_file_pwrite(img->file, buf, (size_t)n, host);
        else if (ret == 0 && host)
            ret = kimg_file_zero(img->file, host, n, true);
        if (buf)
            buf += n;
        off += n;
        len -= n;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int vhdx_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len)
{
    return write_range(img, buf, off, len);
}

int vhdx_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags)
{
    (void)flags;
    return write_range(img, NULL, off, len);
}

/* Step 3: the data, then the changed BAT pages, each followed by a sync. */
int vhdx_flush(struct kimg *img)
{
    struct vhdx_state *s = img->state;
    if (!s->writer)
        return -ENOTSUP;
    pthread_mutex_lock(&s->lock);
    int ret = kimg_file_sync(img->file);
    uint8_t *page = NULL;
    if (ret == 0 && s->bat_any_dirty && !(page = kimg_alloc_aligned(BAT_PAGE)))
        ret = -ENOMEM;
    for (size_t p = 0; ret == 0 && s->bat_any_dirty && p < s->bat_pages; p++) {
        if (!(s->bat_dirty[p / 8] & (1u << (p % 8))))
            continue;
        uint64_t pos = s->bat_offset + (uint64_t)p * BAT_PAGE;
        if ((ret = kimg_file_pread(img->file, page, BAT_PAGE, pos)) < 0)
            break;
        for (uint64_t k = 0; k < BAT_PAGE / 8; k++) {
            uint64_t i = (uint64_t)p * (BAT_PAGE / 8) + k;
            if ((i + 1) % (s->chunk_ratio + 1) == 0)
                continue;               /* a sector bitmap entry: kept */
            uint64_t b = i - i / (s->chunk_ratio + 1);
            if (b < s->nb_blocks)
                vhdx_put64(page + k * 8, s->bat[b]);
        }
        if ((ret = kimg_file_pwrite(img->file, page, BAT_PAGE, pos)) < 0)
            break;
        s->bat_dirty[p / 8] &= (uint8_t)~(1u << (p % 8));
    }
    if (ret == 0 && s->bat_any_dirty) {
        s->bat_any_dirty = false;
        ret = kimg_file_sync(img->file);
    }
    free(page);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/*
 * The copy engine's parallel writes (kimg/driver.h): space for the guest
 * range from OFF to the end of its block at most, given now (step 2, so
 * the layout depends only on the order of these calls) and linked in
 * memory at once; the workers write the data there.  Nothing on disk
 * points at it before flush writes the BAT after syncing the data, so
 * commit_data has nothing left to do.  Present blocks map in place.
 */
int64_t vhdx_alloc_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t *host,
                        struct kimg_file **file)
{
    struct vhdx_state *s = img->state;
    int ret = 0;

    pthread_mutex_lock(&s->lock);
    if (!s->headers_switched)
        ret = switch_headers(img);
    uint64_t b = off >> s->block_bits, in = off & (s->block_size - 1);
    uint64_t n = s->block_size - in < len ? s->block_size - in : len;
    uint64_t e = s->bat[b], base = e & VHDX_BAT_OFFSET_MASK;
    if (ret == 0 && (e & VHDX_BAT_STATE_MASK) != VHDX_PAYLOAD_FULLY_PRESENT)
        ret = alloc_block(img, b, &base);
    pthread_mutex_unlock(&s->lock);
    if (ret < 0)
        return ret;
    *host = base + in;
    *file = img->file;
    return (int64_t)n;
}

int vhdx_commit_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t host)
{
    return 0;
}
