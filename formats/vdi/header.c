/*
 * header.c — the VDI pre-header and header: signature, version, the
 * fields kimg uses, and every check on them before the block map is read
 * (qemu's messages where qemu refuses the same thing).  Field offsets from
 * VirtualBox's VDICore.h (VDIPREHEADER, VDIHEADER1).
 */
#include <errno.h>
#include "vdi.h"

/* from the start of the file */
#define H_SIGNATURE     0x40
#define H_VERSION       0x44
#define H_HEADER_SIZE   0x48
#define H_IMAGE_TYPE    0x4c
#define H_OFFSET_BMAP   0x154
#define H_OFFSET_DATA   0x158
#define H_SECTOR_SIZE   0x168   /* the legacy geometry's bytes per sector */
#define H_DISK_SIZE     0x170
#define H_BLOCK_SIZE    0x178
#define H_BLOCK_EXTRA   0x17c
#define H_BLOCKS        0x180
#define H_BLOCKS_ALLOC  VDI_H_BLOCKS_ALLOC
#define H_UUID_LINK     0x1a8   /* VirtualBox's uuidLinkage */
#define H_UUID_PARENT   0x1b8   /* VirtualBox's uuidParentModify */

bool vdi_has_signature(const uint8_t *buf, size_t len)
{
    if (len >= H_SIGNATURE + 4 && vdi_le32(buf + H_SIGNATURE) == VDI_SIGNATURE)
        return true;
    /* the text alone (a damaged signature): still a VDI, never raw data */
    if (len < 64 || memcmp(buf, "<<< ", 4))
        return false;
    return memmem(buf, 64, "Disk Image >>>", 14) != NULL;
}

static bool uuid_is_null(const uint8_t *u)
{
    static const uint8_t zero[16];
    return !memcmp(u, zero, sizeof(zero));
}

static int check_type(uint32_t type)
{
    if (type == VDI_TYPE_DYNAMIC || type == VDI_TYPE_STATIC)
        return 0;
    if (type == VDI_TYPE_DIFF)
        return kimg_fail(-ENOTSUP, "differencing VDI images are not supported (the image "
                         "needs its parent disk to be read)");
    if (type == VDI_TYPE_UNDO)
        return kimg_fail(-ENOTSUP, "undo VDI images are not supported (the image needs its "
                         "parent disk to be read)");
    return kimg_fail(-ENOTSUP, "unsupported VDI image type %u", type);
}

/* The header, block map and data area in this order, the map in the file. */
static int check_layout(const struct vdi_header *h, uint64_t file_size)
{
    uint64_t map_end = (uint64_t)h->offset_bmap + (uint64_t)h->blocks_in_image * 4;
    if ((uint64_t)VDI_PRE_HEADER + h->header_size > h->offset_bmap)
        return kimg_fail(-EINVAL, "invalid VDI image: the block map at offset %u overlaps "
                         "the header (%u bytes)", h->offset_bmap,
                         VDI_PRE_HEADER + h->header_size);
    if (map_end > h->offset_data)
        return kimg_fail(-EINVAL, "invalid VDI image: the block map (offset %u, %u entries) "
                         "overlaps the data area at offset %u", h->offset_bmap,
                         h->blocks_in_image, h->offset_data);
    if (map_end > file_size)
        return kimg_fail(-EINVAL, "VDI block map at offset %u (%llu bytes) lies past the end "
                         "of the file: the image has been truncated", h->offset_bmap,
                         (unsigned long long)(map_end - h->offset_bmap));
    return 0;
}

/* qemu's checks, in qemu's order and words (vdi_open), kimg's block size
 * rule aside: qemu takes 1 MiB blocks only; VirtualBox writes other powers
 * of two when told (its AllocationBlockSize), and they read the same way. */
static int check_geometry(struct vdi_header *h, bool repair)
{
    uint64_t room;
    if (h->disk_size > VDI_DISK_SIZE_MAX)
        return kimg_fail(-ENOTSUP, "Unsupported VDI image size (size is 0x%llx, max "
                         "supported is 0x%llx)", (unsigned long long)h->disk_size,
                         (unsigned long long)VDI_DISK_SIZE_MAX);
    /* VBoxManage convertfromraw made odd sizes: qemu rounds them up */
    h->disk_size = (h->disk_size + VDI_SECTOR - 1) & ~(uint64_t)(VDI_SECTOR - 1);
    if (h->offset_bmap % VDI_SECTOR)
        return kimg_fail(-ENOTSUP, "unsupported VDI image (unaligned block map offset "
                         "0x%x)", h->offset_bmap);
    if (h->offset_data % VDI_SECTOR)
        return kimg_fail(-ENOTSUP, "unsupported VDI image (unaligned data offset 0x%x)",
                         h->offset_data);
    if (h->sector_size != VDI_SECTOR)
        return kimg_fail(-ENOTSUP, "unsupported VDI image (sector size %u is not %u)",
                         h->sector_size, VDI_SECTOR);
    if (h->block_size < VDI_SECTOR || (h->block_size & (h->block_size - 1)))
        return kimg_fail(-ENOTSUP, "unsupported VDI image (block size %u is not a power of "
                         "two of at least %u)", h->block_size, VDI_SECTOR);
    /* VirtualBox always writes 0 (the field is "extra data before each
     * block"); qemu ignores it and would read the extra data as guest data */
    if (h->block_extra)
        return kimg_fail(-ENOTSUP, "unsupported VDI image (%u bytes of extra data before "
                         "each block)", h->block_extra);
    room = (uint64_t)h->blocks_in_image * h->block_size;
    if (h->disk_size > room)
        return kimg_fail(-ENOTSUP, "unsupported VDI image (disk size %llu, image bitmap has "
                         "room for %llu)", (unsigned long long)h->disk_size,
                         (unsigned long long)room);
    if (h->blocks_in_image > VDI_BLOCKS_MAX)
        return kimg_fail(-ENOTSUP, "unsupported VDI image (too many blocks %u, max is %u)",
                         h->blocks_in_image, VDI_BLOCKS_MAX);
    if ((uint64_t)h->blocks_in_image * 4 > VDI_MAX_MAP_BYTES)
        return kimg_fail(-EFBIG, "VDI block map of %u entries is larger than kimg's limit "
                         "of %u MiB", h->blocks_in_image, VDI_MAX_MAP_BYTES >> 20);
    /* VirtualBox's rule; qemu's check reports it as a mismatch */
    if (h->blocks_allocated > h->blocks_in_image && !repair)
        return kimg_fail(-EINVAL, "invalid VDI image: %u blocks allocated, but only %u in "
                         "the image", h->blocks_allocated, h->blocks_in_image);
    return 0;
}

int vdi_parse_header(const uint8_t *buf, uint64_t file_size, bool repair,
                     struct vdi_header *h)
{
    uint32_t sig = vdi_le32(buf + H_SIGNATURE);
    int ret;

    if (sig != VDI_SIGNATURE)
        return kimg_fail(-EINVAL, "Image not in VDI format (bad signature %08x)", sig);
    h->version = vdi_le32(buf + H_VERSION);
    if (h->version != VDI_VERSION_1_1)
        return kimg_fail(-ENOTSUP, "unsupported VDI image (version %u.%u)",
                         h->version >> 16, h->version & 0xffff);
    h->header_size = vdi_le32(buf + H_HEADER_SIZE);
    if (h->header_size < VDI_HEADER_MIN)
        return kimg_fail(-EINVAL, "invalid VDI image: header size %u (at least %u)",
                         h->header_size, VDI_HEADER_MIN);
    h->image_type = vdi_le32(buf + H_IMAGE_TYPE);
    if ((ret = check_type(h->image_type)) < 0)
        return ret;
    if (!uuid_is_null(buf + H_UUID_LINK))
        return kimg_fail(-ENOTSUP, "differencing VDI images are not supported (non-NULL "
                         "link UUID: the image needs its parent disk to be read)");
    if (!uuid_is_null(buf + H_UUID_PARENT))
        return kimg_fail(-ENOTSUP, "differencing VDI images are not supported (non-NULL "
                         "parent UUID: the image needs its parent disk to be read)");
    h->offset_bmap = vdi_le32(buf + H_OFFSET_BMAP);
    h->offset_data = vdi_le32(buf + H_OFFSET_DATA);
    h->sector_size = vdi_le32(buf + H_SECTOR_SIZE);
    h->disk_size = vdi_le64(buf + H_DISK_SIZE);
    h->block_size = vdi_le32(buf + H_BLOCK_SIZE);
    h->block_extra = vdi_le32(buf + H_BLOCK_EXTRA);
    h->blocks_in_image = vdi_le32(buf + H_BLOCKS);
    h->blocks_allocated = vdi_le32(buf + H_BLOCKS_ALLOC);
    if ((ret = check_geometry(h, repair)) < 0)
        return ret;
    return check_layout(h, file_size);
}
