/*
 * write.c — guest writes into a VDI.  Blocks with a slot (every block of
 * a static image) are written in place.  A write into a free or zero
 * block takes the next slot (the header's count of allocated blocks, as
 * qemu), and the block is linked in this order, so that a crash at any
 * point leaves every block reading its old or its new data and `qemu-img
 * check` clean:
 *   1. the data (the rest of the slot reads as zeros: a hole past the
 *      end of the file, zeroed inside it), then a sync;
 *   2. the header's count and the block map entry together, in ONE write
 *      of the bytes from the count to the entry (they are 0x184 and
 *      offset_bmap + 4 * block: qemu's check compares the two, so they
 *      must change at once), then a sync.
 * A crash before 2 leaves data in a slot nothing points at; the next
 * allocation takes that slot again.
 *
 * Slots are linked in slot order, always: the count must name exactly the
 * slots in use (qemu takes the count as its next slot).  The copy engine's
 * blocks (alloc_data) are linked when their data is written (commit_data);
 * until then they are pending, and a write() that needs a new block while
 * some are pending becomes pending too (ready at once: its data is
 * written) and is linked when all before it are, at the latest at flush.
 * Under cache=unsafe (no syncs, no promise across a crash, as qemu-img)
 * the count and the entries are small separate writes.  Zero writes never
 * allocate.  One mutex serialises the writes of an image.
 */
#include <errno.h>
#include <stdlib.h>
#include "vdi.h"

#define VDI_H_COUNT_END (VDI_H_BLOCKS_ALLOC + 4)
/* the most header bytes past the count the metadata write carries
 * (qemu and VirtualBox put the map at 512: 124 bytes) */
#define VDI_MAX_GAP     (64u << 10)
/* Blocks pending at once: the engine's jobs in flight, plus the blocks
 * write() allocates behind them meanwhile (the engine's main thread goes on
 * planning jobs without whole clusters while a starved worker has not
 * written an earlier job yet: a fixed list of 1024 filled up once at load
 * 20, converting the bench disk).  The list grows
 * from 16 to 256 Ki entries (3 MiB, 256 GiB of data run ahead), then the
 * copy fails. */
#define VDI_PENDING_START 16u
#define VDI_MAX_PENDING (256u << 10)

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
    s->pend_cap = VDI_PENDING_START;
    s->pend = calloc(s->pend_cap, sizeof(*s->pend));
    if (!s->pend) {
        free(s->gap);
        s->gap = NULL;
        return -ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->lock_init = true;
    return 0;
}

static void put_le32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }

/* Step 2 for the map entries of blocks up to LAST (the in-memory map
 * holds them) and the count COUNT. */
static int write_meta(struct kimg *img, uint32_t last, uint32_t count, const uint32_t *blocks,
                      uint32_t n)
{
    struct vdi_state *s = img->state;
    uint8_t v[4];
    int ret = 0;

    if (img->file->nosync) {
        for (uint32_t i = 0; i < n && ret == 0; i++) {
            put_le32(v, s->map[blocks[i]]);
            ret = kimg_file_pwrite(img->file, v, 4, s->offset_bmap + (uint64_t)blocks[i] * 4);
        }
        put_le32(v, count);
        return ret < 0 ? ret : kimg_file_pwrite(img->file, v, 4, VDI_H_BLOCKS_ALLOC);
    }
    size_t len = 4 + s->gap_len + ((size_t)last + 1) * 4;
    uint8_t *buf = malloc(len);
    if (!buf)
        return -ENOMEM;
    put_le32(buf, count);
    memcpy(buf + 4, s->gap, s->gap_len);
    for (uint32_t i = 0; i <= last; i++)
        put_le32(buf + 4 + s->gap_len + (size_t)i * 4, s->map[i]);
    ret = kimg_file_pwrite(img->file, buf, len, VDI_H_BLOCKS_ALLOC);
    free(buf);
    if (ret == 0)
        ret = kimg_file_sync(img->file);
    return ret;
}

/* Link the pending blocks at the head of the list that are ready (their
 * data written): data synced, then their entries and the count. */
static int link_ready(struct kimg *img)
{
    struct vdi_state *s = img->state;
    uint32_t k = 0, last = 0;
    while (k < s->npend && s->pend[k].ready)
        k++;
    if (!k)
        return 0;
    uint32_t *blocks = malloc((size_t)k * sizeof(*blocks));
    if (!blocks)
        return -ENOMEM;
    int ret = kimg_file_sync(img->file);
    for (uint32_t i = 0; i < k; i++) {
        blocks[i] = s->pend[i].block;
        if (blocks[i] > last)
            last = blocks[i];
        s->map[blocks[i]] = s->pend[i].slot;
    }
    uint32_t count = s->pend[k - 1].slot + 1;
    if (ret == 0)
        ret = write_meta(img, last, count, blocks, k);
    if (ret < 0) {
        for (uint32_t i = 0; i < k; i++)
            s->map[blocks[i]] = VDI_FREE;
        free(blocks);
        kimg_fence(img);        /* the entries may or may not be on disk */
        return ret;
    }
    free(blocks);
    s->blocks_allocated = count;
    s->npend -= k;
    memmove(s->pend, s->pend + k, (size_t)s->npend * sizeof(*s->pend));
    return 0;
}

static struct vdi_pending *find_pending(struct vdi_state *s, uint32_t b)
{
    for (uint32_t i = s->npend; i-- > 0;)
        if (s->pend[i].block == b)
            return &s->pend[i];
    return NULL;
}

static uint64_t slot_at(const struct vdi_state *s, uint32_t slot)
{
    return s->offset_data + ((uint64_t)slot << s->block_bits);
}

/* Give block B the next slot, pending: the slot reads as zeros wherever
 * nothing is written (a crash may have left data in it) and lies in the
 * file.  The caller writes the data. */
static int new_pending(struct kimg *img, uint32_t b, struct vdi_pending **out)
{
    struct vdi_state *s = img->state;
    uint32_t slot = s->next_slot;
    int ret;

    if (s->npend == s->pend_cap && (ret = link_ready(img)) < 0)
        return ret;
    if (s->npend == s->pend_cap) {
        if (s->pend_cap >= VDI_MAX_PENDING)
            return kimg_fail(-EIO, "too many VDI blocks waiting for their data");
        struct vdi_pending *v = realloc(s->pend, (size_t)s->pend_cap * 2 * sizeof(*v));
        if (!v)
            return -ENOMEM;
        s->pend = v;
        s->pend_cap *= 2;
    }
    if (slot >= s->nb_blocks)
        return kimg_fail(-ENOSPC, "VDI image has no free slot left (%u blocks)", s->nb_blocks);
    uint64_t at = slot_at(s, slot), end = at + s->block_size;
    if (s->file_end > at &&
        (ret = kimg_file_zero(img->file, at, (s->file_end < end ? s->file_end : end) - at,
                              true)) < 0)
        return ret;
    if (s->file_end < end) {
        if ((ret = kimg_file_truncate(img->file, end)) < 0)
            return ret;
        s->file_end = end;
    }
    s->next_slot = slot + 1;
    s->pend[s->npend] = (struct vdi_pending){ .block = b, .slot = slot, .ready = false };
    *out = &s->pend[s->npend++];
    return 0;
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
    ret = write_meta(img, b, slot + 1, &b, 1);
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
        struct vdi_pending *pd;
        if (e < VDI_ZERO) {
            ret = kimg_file_pwrite(img->file, p, (size_t)n, slot_at(s, e) + in);
        } else if ((pd = find_pending(s, b))) {
            ret = kimg_file_pwrite(img->file, p, (size_t)n, slot_at(s, pd->slot) + in);
        } else if (s->npend == 0) {
            ret = alloc_block(img, b, p, in, n);
        } else if ((ret = new_pending(img, b, &pd)) == 0) {
            /* behind blocks still waiting for their data: linked with them */
            ret = kimg_file_pwrite(img->file, p, (size_t)n, slot_at(s, pd->slot) + in);
            if (ret == 0) {
                pd->ready = true;
                ret = link_ready(img);
            }
        }
        p += n;
        off += n;
        len -= n;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/*
 * Parallel data writes (the copy engine): a block without a slot gets the
 * next one, pending (alloc_data, in guest order); the engine writes the
 * data there and then links it (commit_data), in slot order.  Blocks with
 * a slot go through vdi_write (0).
 */
int64_t vdi_alloc_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t *host,
                       struct kimg_file **file)
{
    struct vdi_state *s = img->state;
    uint32_t b = (uint32_t)(off >> s->block_bits);
    uint64_t in = off & (s->block_size - 1);
    uint64_t n = s->block_size - in < len ? s->block_size - in : len;
    struct vdi_pending *pd;
    int ret = 0;

    pthread_mutex_lock(&s->lock);
    if (s->map[b] < VDI_ZERO) {
        n = 0;
    } else if ((pd = find_pending(s, b)) || (ret = new_pending(img, b, &pd)) == 0) {
        *host = slot_at(s, pd->slot) + in;
        *file = img->file;
    }
    pthread_mutex_unlock(&s->lock);
    return ret < 0 ? ret : (int64_t)n;
}

int vdi_commit_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t host)
{
    struct vdi_state *s = img->state;
    pthread_mutex_lock(&s->lock);
    for (uint64_t o = off; o < off + len; o = (o | (s->block_size - 1)) + 1) {
        struct vdi_pending *pd = find_pending(s, (uint32_t)(o >> s->block_bits));
        if (pd)
            pd->ready = true;
    }
    int ret = link_ready(img);
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

/* Pending blocks whose data is written are linked, then a sync. */
int vdi_flush(struct kimg *img)
{
    struct vdi_state *s = img->state;
    int ret = 0;
    if (s->lock_init) {
        pthread_mutex_lock(&s->lock);
        ret = link_ready(img);
        pthread_mutex_unlock(&s->lock);
    }
    return ret < 0 ? ret : kimg_file_sync(img->file);
}
