/*
 * bat.c — a VHDX file's Block Allocation Table ([MS-VHDX] 2.5): payload
 * block entries interleaved with sector bitmap entries (one after every
 * chunk_ratio payload entries), loaded once through the replayed log,
 * validated entry by entry; guest reads.  Reads take no lock: only
 * write.c changes an entry, from a zero state to present, in one atomic
 * store after the block's space exists.  Sector bitmap entries are skipped: only differencing disks,
 * which kimg refuses, use them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include "vhdx.h"

#define BAT_CHUNK   (1u << 20)      /* bytes of BAT read at a time */

static uint64_t bat_index(const struct vhdx_state *s, uint64_t block)
{
    return block + block / s->chunk_ratio;
}

/* bytes of block B that hold guest data (the last one may be partial) */
static uint64_t block_len(const struct kimg *img, uint64_t b)
{
    const struct vhdx_state *s = img->state;
    uint64_t start = b << s->block_bits;
    return img->size - start < s->block_size ? img->size - start : s->block_size;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* One problem: logged (check) or, with FAIL, the open's error. */
#define PROBLEM(fail, log, count, ...)                                  \
    do {                                                                \
        if (fail) {                                                     \
            free(sorted);                                               \
            return kimg_fail(-EINVAL, __VA_ARGS__);                     \
        }                                                               \
        if (log) {                                                      \
            fprintf(log, "kimg: " __VA_ARGS__);                         \
            fputc('\n', log);                                           \
        }                                                               \
        (*(count))++;                                                   \
    } while (0)

/*
 * Every payload entry: a known state, PARTIALLY_PRESENT refused (only a
 * differencing disk has sector bitmaps to say which sectors are there);
 * a present block 1 MiB past the header section, inside the file (as it
 * is after the log replay), outside the log, BAT and metadata regions
 * and apart from every other present block.
 */
static int scan_blocks(struct kimg *img, FILE *log, bool fail, uint64_t *count)
{
    struct vhdx_state *s = img->state;
    const uint64_t regions[3][2] = {
        { s->log_offset, s->log_offset + s->log_length },
        { s->bat_offset, s->bat_offset + s->bat_length },
        { s->meta_offset, s->meta_offset + s->meta_length },
    };
    uint32_t *sorted = NULL, n = 0, last_mb = UINT32_MAX;
    /* the file's length in whole 512-byte sectors, as qemu counts it */
    uint64_t fsz = (s->eff_size + 511) & ~511ull;
    int ret = 0;

    /* the present blocks that pass, by offset in MiB (every one lies
     * inside the file, so the numbers fit 32 bits), for the overlap test */
    uint64_t present = 0;
    for (uint64_t b = 0; b < s->nb_blocks; b++)
        present += (s->bat[b] & VHDX_BAT_STATE_MASK) == VHDX_PAYLOAD_FULLY_PRESENT;
    if (present > 1 && !(sorted = malloc((size_t)present * sizeof(*sorted))))
        return -ENOMEM;

    for (uint64_t b = 0; b < s->nb_blocks; b++) {
        uint64_t e = s->bat[b], i = bat_index(s, b);
        unsigned state = e & VHDX_BAT_STATE_MASK;
        if (state == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
            PROBLEM(fail, log, count, "VHDX BAT entry %" PRIu64 " is partially present, "
                    "which only a differencing image may hold", i);
            continue;
        }
        if (state == 4 || state > VHDX_PAYLOAD_PARTIALLY_PRESENT) {
            PROBLEM(fail, log, count, "VHDX BAT entry %" PRIu64 " has the unknown state %u",
                    i, state);
            continue;
        }
        if (state != VHDX_PAYLOAD_FULLY_PRESENT)
            continue;
        uint64_t off = e & VHDX_BAT_OFFSET_MASK, len = block_len(img, b);
        /* qemu-img's wording for these two */
        if (off >= fsz) {
            PROBLEM(fail, log, count, "VHDX BAT entry %" PRIu64 " start offset %" PRIu64
                    " points after end of file (%" PRIu64 "). Image has probably been "
                    "truncated.", i, off, fsz);
            continue;
        }
        if (off + len > fsz) {
            PROBLEM(fail, log, count, "VHDX BAT entry %" PRIu64 " end offset %" PRIu64
                    " points after end of file (%" PRIu64 "). Image has probably been "
                    "truncated.", i, off + len - 1, fsz);
            continue;
        }
        bool bad = off < VHDX_HEADER_SECTION;
        for (int r = 0; r < 3 && !bad; r++)
            bad = vhdx_ranges_overlap(off, off + len, regions[r][0], regions[r][1]);
        if (bad) {
            PROBLEM(fail, log, count, "VHDX BAT entry %" PRIu64 " offset %" PRIu64 " points "
                    "into the image's metadata (headers, log, BAT or metadata region)",
                    i, off);
            continue;
        }
        if (b + 1 == s->nb_blocks)
            last_mb = (uint32_t)(off >> 20);
        if (sorted)
            sorted[n++] = (uint32_t)(off >> 20);
    }
    if (n < 2) {
        free(sorted);
        return 0;
    }
    /* present blocks apart from each other */
    qsort(sorted, n, sizeof(*sorted), cmp_u32);
    uint64_t full = s->block_size >> 20;
    uint64_t last = s->nb_blocks ? (block_len(img, s->nb_blocks - 1) + VHDX_MIB - 1) >> 20 : 0;
    for (uint32_t k = 0; k + 1 < n; k++) {
        uint64_t span = sorted[k] == last_mb ? last : full;
        if ((uint64_t)(sorted[k + 1] - sorted[k]) < span) {
            if (fail) {
                ret = kimg_fail(-EINVAL, "VHDX BAT entries overlap: blocks at offsets %llu "
                                "and %llu", (unsigned long long)sorted[k] << 20,
                                (unsigned long long)sorted[k + 1] << 20);
                break;
            }
            if (log)
                fprintf(log, "kimg: VHDX BAT entries overlap: blocks at offsets %llu and "
                        "%llu\n", (unsigned long long)sorted[k] << 20,
                        (unsigned long long)sorted[k + 1] << 20);
            (*count)++;
        }
    }
    free(sorted);
    return ret;
}

int vhdx_load_bat(struct kimg *img, bool lenient)
{
    struct vhdx_state *s = img->state;
    uint64_t blocks = (img->size + s->block_size - 1) >> s->block_bits;
    uint64_t entries = blocks ? bat_index(s, blocks - 1) + 1 : 0;
    int ret = 0;

    if (entries > s->bat_length / 8)
        return kimg_fail(-EINVAL, "VHDX BAT region of %u bytes is too small for the %llu "
                         "entries the virtual size needs", s->bat_length,
                         (unsigned long long)entries);
    if (blocks * 8 > VHDX_MAX_BAT_BYTES)
        return kimg_fail(-EFBIG, "VHDX BAT of %llu blocks is larger than kimg's limit of "
                         "%u MiB", (unsigned long long)blocks, VHDX_MAX_BAT_BYTES >> 20);
    s->nb_blocks = blocks;
    if (!blocks)
        return 0;
    s->bat = malloc((size_t)blocks * 8);
    uint8_t *buf = kimg_alloc_aligned(BAT_CHUNK);
    if (!s->bat || !buf) {
        ret = -ENOMEM;
        goto out;
    }
    /* the entries in BAT order, the payload ones kept */
    uint64_t b = 0;
    for (uint64_t pos = 0; pos < entries * 8 && ret == 0; pos += BAT_CHUNK) {
        uint64_t n = entries * 8 - pos < BAT_CHUNK ? entries * 8 - pos : BAT_CHUNK;
        if ((ret = vhdx_pread(img, buf, (size_t)n, s->bat_offset + pos)) < 0)
            break;
        for (uint64_t k = 0; k < n / 8; k++) {
            uint64_t i = pos / 8 + k;
            if ((i + 1) % (s->chunk_ratio + 1) == 0)
                continue;       /* a sector bitmap entry */
            s->bat[b++] = vhdx_le64(buf + k * 8);
        }
    }
    if (ret == 0 && !lenient) {
        uint64_t count = 0;
        ret = scan_blocks(img, NULL, true, &count);
    }
out:
    free(buf);
    if (ret < 0) {
        free(s->bat);
        s->bat = NULL;
    }
    return ret;
}

uint64_t vhdx_check_blocks(struct kimg *img, FILE *log)
{
    uint64_t count = 0;
    if (scan_blocks(img, log, false, &count) < 0)
        count++;
    return count;
}

int vhdx_read(struct kimg *img, void *buf, uint64_t off, uint64_t len)
{
    struct vhdx_state *s = img->state;
    uint8_t *p = buf;

    while (len) {
        uint64_t b = off >> s->block_bits;
        uint64_t in = off & (s->block_size - 1);
        uint64_t n = s->block_size - in < len ? s->block_size - in : len;
        uint64_t e = s->bat[b];
        int ret;

        switch (e & VHDX_BAT_STATE_MASK) {
        case VHDX_PAYLOAD_FULLY_PRESENT:
            ret = vhdx_pread(img, p, (size_t)n, (e & VHDX_BAT_OFFSET_MASK) + in);
            if (ret < 0)
                return ret;
            break;
        case VHDX_PAYLOAD_NOT_PRESENT:
        case VHDX_PAYLOAD_UNDEFINED:
        case VHDX_PAYLOAD_ZERO:
        case VHDX_PAYLOAD_UNMAPPED:
        case VHDX_PAYLOAD_UNMAPPED_V095:
            /* no parent: these read as zeros (as qemu) */
            memset(p, 0, (size_t)n);
            break;
        default:
            /* only an image opened for check gets here */
            return kimg_fail(-EIO, "VHDX BAT entry %llu has state %u, which kimg cannot read",
                             (unsigned long long)bat_index(s, b),
                             (unsigned)(e & VHDX_BAT_STATE_MASK));
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* What the engines may skip (kimg/driver.h's content_status; map and
 * measure keep qemu's "all data", as qemu 7.2's vhdx has no block status):
 * blocks in a zero-reading state are ZERO, present ones DATA at their
 * host offset unless the replayed log covers part of them.  Runs of
 * blocks of one kind merge. */
int vhdx_content_status(struct kimg *img, uint64_t off, uint64_t len,
                        struct kimg_extent *ext)
{
    struct vhdx_state *s = img->state;
    uint64_t end = off + len, pos = off, host = 0;
    bool zero = false, first = true;

    while (pos < end) {
        uint64_t b = pos >> s->block_bits;
        uint64_t in = pos & (s->block_size - 1);
        uint64_t n = s->block_size - in < end - pos ? s->block_size - in : end - pos;
        uint64_t e = s->bat[b];
        uint64_t state = e & VHDX_BAT_STATE_MASK;
        bool z;
        if (state == VHDX_PAYLOAD_FULLY_PRESENT)
            z = false;
        else if (state == VHDX_PAYLOAD_NOT_PRESENT || state == VHDX_PAYLOAD_UNDEFINED ||
                 state == VHDX_PAYLOAD_ZERO || state == VHDX_PAYLOAD_UNMAPPED ||
                 state == VHDX_PAYLOAD_UNMAPPED_V095)
            z = true;
        else
            return -ENOTSUP;    /* check's lenient open: let reads report it */
        uint64_t h = z ? 0 : (e & VHDX_BAT_OFFSET_MASK) + in;
        if (first) {
            zero = z;
            host = h;
            first = false;
        } else if (z != zero || (!z && h != host + (pos - off))) {
            break;
        }
        pos += n;
    }
    ext->length = pos - off;
    if (zero) {
        ext->flags = KIMG_BS_ZERO;
    } else {
        ext->flags = KIMG_BS_DATA;
        /* bytes the log replays differ from the file's, and bytes past its
         * end read as zeros: read through the driver then */
        if (!s->n_ovl && host + ext->length <= s->file_size) {
            ext->flags |= KIMG_BS_OFFSET_VALID;
            ext->offset = host;
        }
    }
    return 0;
}
