/*
 * create.c — `create -f vdi`: qemu-img 7.2's options (static) and the
 * layout qemu writes: the header in sector 0, the block map at 512 (one
 * entry per 1 MiB block: free in a dynamic image, block i in slot i in a
 * static one, whose file then holds every block, sparse), the data after
 * it.  The header, with the signature, is written last: a failed create
 * never leaves a file that opens as a VDI.
 */
#include <errno.h>
#include <stdlib.h>
#include <uuid/uuid.h>
#include "vdi.h"

const struct kimg_optdesc vdi_create_opts[] = {
    { "size", KIMG_OPT_SIZE, "Virtual disk size" },
    { "static", KIMG_OPT_BOOL, "VDI static (pre-allocated) image" },
    { NULL, 0, NULL },
};

const struct kimg_shown_opt vdi_formatting_opts[] = {
    { "size", NULL, true }, { "static", "off", false },
    { "nocow", NULL, false }, { "preallocation", NULL, false },
    { "extent_size_hint", NULL, true }, { NULL, NULL, false },
};

#define VDI_NEW_BLOCK_SIZE  (1u << 20)
#define VDI_NEW_BMAP_OFFSET 512u
static const char vdi_text[] = "<<< QEMU VM Virtual Disk Image >>>\n";

static void put_le32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put_le64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

/* Sector 0 as qemu writes it (VirtualBox's VDIHEADER1 fields). */
static void make_header(uint8_t *h, uint32_t type, uint64_t bytes, uint32_t blocks,
                        uint32_t offset_data)
{
    uuid_t uu;
    memset(h, 0, VDI_HEADER_BYTES);
    memcpy(h, vdi_text, sizeof(vdi_text) - 1);
    put_le32(h + VDI_SIG_OFFSET, VDI_SIGNATURE);
    put_le32(h + 0x44, VDI_VERSION_1_1);
    put_le32(h + 0x48, VDI_HEADER_MIN);
    put_le32(h + 0x4c, type);
    put_le32(h + 0x154, VDI_NEW_BMAP_OFFSET);
    put_le32(h + 0x158, offset_data);
    put_le32(h + 0x168, VDI_SECTOR);
    put_le64(h + 0x170, bytes);
    put_le32(h + 0x178, VDI_NEW_BLOCK_SIZE);
    put_le32(h + 0x180, blocks);
    put_le32(h + VDI_H_BLOCKS_ALLOC, type == VDI_TYPE_STATIC ? blocks : 0);
    uuid_generate_random(uu);
    memcpy(h + 0x188, uu, 16);              /* the image's UUID */
    uuid_generate_random(uu);
    memcpy(h + 0x198, uu, 16);              /* its last snapshot's */
}

int vdi_create(const struct kimg_create_args *args)
{
    uint64_t bytes = args->size;
    uint8_t hdr[VDI_HEADER_BYTES];
    struct kimg_file *f = NULL;
    bool is_static;
    int ret;

    if ((ret = kimg_opts_get_bool(args->opts, "static", false, &is_static)) < 0)
        return ret;
    if (bytes > VDI_DISK_SIZE_MAX)
        return kimg_fail(-ENOTSUP, "Unsupported VDI image size (size is 0x%llx, max "
                         "supported is 0x%llx)", (unsigned long long)bytes,
                         (unsigned long long)VDI_DISK_SIZE_MAX);
    uint64_t blocks = (bytes + VDI_NEW_BLOCK_SIZE - 1) / VDI_NEW_BLOCK_SIZE;
    if (blocks * 4 > VDI_MAX_MAP_BYTES)
        return kimg_fail(-EFBIG, "a VDI of %llu bytes needs a block map larger than kimg's "
                         "limit of %u MiB (disks up to %llu bytes)",
                         (unsigned long long)bytes, VDI_MAX_MAP_BYTES >> 20,
                         (unsigned long long)(VDI_MAX_MAP_BYTES / 4) * VDI_NEW_BLOCK_SIZE);
    uint32_t map_bytes = (uint32_t)((blocks * 4 + VDI_SECTOR - 1) & ~(uint64_t)(VDI_SECTOR - 1));
    uint32_t offset_data = VDI_NEW_BMAP_OFFSET + map_bytes;
    uint32_t type = is_static ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC;
    make_header(hdr, type, bytes, (uint32_t)blocks, offset_data);

    uint8_t *map = kimg_alloc_aligned_zero(map_bytes ? map_bytes : VDI_SECTOR);
    if (!map)
        return -ENOMEM;
    for (uint32_t i = 0; i < blocks; i++)
        put_le32(map + (size_t)i * 4, is_static ? i : VDI_FREE);
    ret = kimg_file_open(&f, args->filename, KIMG_FILE_RDWR | KIMG_FILE_CREATE | KIMG_FILE_TRUNC);
    if (ret < 0)
        goto out;
    ret = kimg_create_file_attrs(args->opts, f);
    if (ret == 0) {
        /* the file as long as the header, then the map, then (static)
         * every block; the header last */
        uint64_t end = is_static ? offset_data + blocks * VDI_NEW_BLOCK_SIZE : offset_data;
        ret = kimg_file_truncate(f, end);
    }
    if (ret == 0 && map_bytes)
        ret = kimg_file_pwrite(f, map, map_bytes, VDI_NEW_BMAP_OFFSET);
    if (ret == 0)
        ret = kimg_file_sync(f);
    if (ret == 0)
        ret = kimg_file_pwrite(f, hdr, sizeof(hdr), 0);
    if (ret == 0)
        ret = kimg_file_sync(f);
out:
    if (f)
        kimg_file_close(f);
    free(map);
    return ret;
}
