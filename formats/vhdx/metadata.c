/*
 * metadata.c — a VHDX file's metadata region ([MS-VHDX] 2.6): the table
 * at its start and the five system items kimg needs (file parameters,
 * virtual disk size, page 83 data, logical and physical sector sizes).
 * Items must lie inside the region and apart; an unknown item marked
 * required, or a parent (a differencing disk), refuses the open.
 */
#include <errno.h>
#include <stdlib.h>
#include "vhdx.h"

#define M_SIGNATURE     0
#define M_COUNT         10
#define M_ENTRIES       32
#define M_ENTRY_SIZE    32
#define ME_OFFSET       16
#define ME_LENGTH       20
#define ME_FLAGS        24
#define ME_REQUIRED     4u      /* IsUser 1, IsVirtualDisk 2, IsRequired 4 */

#define FP_LEAVE_ALLOCATED  1u
#define FP_HAS_PARENT       2u

enum { IT_PARAMS, IT_SIZE, IT_PAGE83, IT_LOGICAL, IT_PHYSICAL, IT_PARENT, IT_COUNT };

static const struct item {
    const char *name;
    uint8_t guid[16];
    uint32_t size;              /* bytes kimg reads (at least this long) */
} items[IT_COUNT] = {
    [IT_PARAMS] = { "file parameters", { 0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d,
                                         0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b }, 8 },
    [IT_SIZE] = { "virtual disk size", { 0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48,
                                         0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8 }, 8 },
    [IT_PAGE83] = { "page 83 data", { 0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45,
                                      0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46 }, 16 },
    [IT_LOGICAL] = { "logical sector size", { 0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47,
                                              0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f },
                     4 },
    [IT_PHYSICAL] = { "physical sector size", { 0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44,
                                                0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5,
                                                0x56 }, 4 },
    [IT_PARENT] = { "parent locator", { 0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
                                        0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c }, 0 },
};

const uint8_t *vhdx_item_guid(unsigned item)
{
    return items[item].guid;
}

/* the registry form of an on-disk GUID (first three fields little-endian) */
static void guid_str(const uint8_t *g, char out[37])
{
    snprintf(out, 37, "%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X", vhdx_le32(g),
             vhdx_le16(g + 4), vhdx_le16(g + 6), g[8], g[9], g[10], g[11], g[12], g[13],
             g[14], g[15]);
}

struct found {
    bool present;
    uint32_t offset, length;
};

/* Validate the table in BUF (64 KiB); fill F for the known items. */
static int parse_table(struct vhdx_state *s, const uint8_t *buf, struct found f[IT_COUNT])
{
    struct { uint64_t start, end; } used[VHDX_MAX_ENTRIES];
    uint32_t n_used = 0;

    if (memcmp(buf + M_SIGNATURE, "metadata", 8))
        return kimg_fail(-EINVAL, "VHDX metadata region has no \"metadata\" signature");
    uint16_t n = vhdx_le16(buf + M_COUNT);
    if (n > VHDX_MAX_ENTRIES)
        return kimg_fail(-EINVAL, "VHDX metadata table has %u entries (at most %u)", n,
                         VHDX_MAX_ENTRIES);
    for (uint16_t i = 0; i < n; i++) {
        const uint8_t *e = buf + M_ENTRIES + (size_t)i * M_ENTRY_SIZE;
        uint32_t off = vhdx_le32(e + ME_OFFSET), len = vhdx_le32(e + ME_LENGTH);
        uint32_t flags = vhdx_le32(e + ME_FLAGS);
        char g[37];
        int k;

        guid_str(e, g);
        for (k = 0; k < IT_COUNT && memcmp(e, items[k].guid, 16); k++)
            ;
        if (len && (off < VHDX_META_TABLE_SIZE || off > s->meta_length ||
                    s->meta_length - off < len))
            return kimg_fail(-EINVAL, "VHDX metadata item %s at offset %u (%u bytes) lies "
                             "outside the metadata region", g, off, len);
        for (uint32_t u = 0; len && u < n_used; u++)
            if (vhdx_ranges_overlap(off, (uint64_t)off + len, used[u].start, used[u].end))
                return kimg_fail(-EINVAL, "VHDX metadata item %s overlaps another item", g);
        if (len) {
            used[n_used].start = off;
            used[n_used++].end = (uint64_t)off + len;
        }
        if (k == IT_COUNT) {
            if (flags & ME_REQUIRED)
                return kimg_fail(-ENOTSUP, "VHDX metadata item %s is marked required, but "
                                 "kimg does not know it: it cannot read this image", g);
            continue;
        }
        if (f[k].present)
            return kimg_fail(-EINVAL, "VHDX metadata table names the %s item twice",
                             items[k].name);
        if (len < items[k].size)
            return kimg_fail(-EINVAL, "VHDX metadata item %s is %u bytes long (at least %u)",
                             items[k].name, len, items[k].size);
        f[k] = (struct found){ true, off, len };
    }
    return 0;
}

static int read_item(struct kimg *img, const struct found *f, void *out, size_t len)
{
    struct vhdx_state *s = img->state;
    return vhdx_pread(img, out, len, s->meta_offset + f->offset);
}

int vhdx_open_metadata(struct kimg *img)
{
    struct vhdx_state *s = img->state;
    struct found f[IT_COUNT] = { 0 };
    uint8_t *buf = kimg_alloc_aligned(VHDX_META_TABLE_SIZE);
    uint8_t v[8];
    int ret;

    if (!buf)
        return -ENOMEM;
    ret = vhdx_pread(img, buf, VHDX_META_TABLE_SIZE, s->meta_offset);
    if (ret == 0)
        ret = parse_table(s, buf, f);
    free(buf);
    if (ret < 0)
        return ret;
    for (int k = 0; k < IT_PARENT; k++)
        if (!f[k].present)
            return kimg_fail(-EINVAL, "VHDX metadata has no %s item", items[k].name);

    if ((ret = read_item(img, &f[IT_PARAMS], v, 8)) < 0)
        return ret;
    uint32_t block_size = vhdx_le32(v), fp_flags = vhdx_le32(v + 4);
    if (fp_flags & FP_HAS_PARENT)
        return kimg_fail(-ENOTSUP, "differencing VHDX images (.avhdx) are not supported (the "
                         "image needs its parent disk to be read)");
    if (block_size < VHDX_BLOCK_MIN || block_size > VHDX_BLOCK_MAX ||
        (block_size & (block_size - 1)))
        return kimg_fail(-EINVAL, "invalid VHDX block size %u (a power of two from 1 MiB "
                         "to 256 MiB)", block_size);
    s->block_size = block_size;
    s->block_bits = (unsigned)__builtin_ctz(block_size);
    s->leave_allocated = fp_flags & FP_LEAVE_ALLOCATED;

    if ((ret = read_item(img, &f[IT_LOGICAL], v, 4)) < 0)
        return ret;
    s->logical_sector = vhdx_le32(v);
    if ((ret = read_item(img, &f[IT_PHYSICAL], v, 4)) < 0)
        return ret;
    s->physical_sector = vhdx_le32(v);
    if ((s->logical_sector != 512 && s->logical_sector != 4096) ||
        (s->physical_sector != 512 && s->physical_sector != 4096))
        return kimg_fail(-EINVAL, "invalid VHDX sector sizes %u (logical) and %u (physical): "
                         "512 or 4096", s->logical_sector, s->physical_sector);

    if ((ret = read_item(img, &f[IT_SIZE], v, 8)) < 0)
        return ret;
    uint64_t size = vhdx_le64(v);
    if (size > VHDX_MAX_SIZE || size % s->logical_sector)
        return kimg_fail(-EINVAL, "invalid VHDX virtual size %llu (a multiple of the %u-byte "
                         "sector, at most 64 TiB)", (unsigned long long)size,
                         s->logical_sector);
    img->size = size;
    /* payload blocks per sector bitmap block: 2^23 sectors' bits in 1 MiB */
    s->chunk_ratio = ((uint64_t)1 << 23) * s->logical_sector / s->block_size;
    return 0;
}
