/*
 * footer.c — the VHD footer and dynamic header: cookies, checksums (one's
 * complement of the byte sum), the fields kimg uses, and the virtual size
 * (CHS geometry or current size, by creator application, as QEMU 10).
 * Field offsets from Microsoft's VHD specification.
 */
#include <errno.h>
#include "vpc.h"

/* footer */
#define F_COOKIE        0
#define F_DATA_OFFSET   16
#define F_CREATOR_APP   28
#define F_CURRENT_SIZE  48
#define F_GEOMETRY      56      /* cylinders (be16), heads, sectors/track */
#define F_TYPE          60
#define F_CHECKSUM      64
/* dynamic header */
#define H_COOKIE        0
#define H_TABLE_OFFSET  16
#define H_MAX_ENTRIES   28
#define H_BLOCK_SIZE    32
#define H_CHECKSUM      36

uint32_t vpc_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        if (i < csum_off || i >= csum_off + 4)
            sum += buf[i];
    return ~sum;
}

bool vpc_has_cookie(const uint8_t *buf, size_t len)
{
    return len >= 8 && !memcmp(buf + F_COOKIE, "conectix", 8);
}

bool vpc_is_footer(const uint8_t *buf)
{
    return vpc_has_cookie(buf, VPC_FOOTER_SIZE) &&
           vpc_checksum(buf, VPC_FOOTER_SIZE, F_CHECKSUM) == vpc_be32(buf + F_CHECKSUM);
}

int vpc_parse_footer(const uint8_t *buf, struct vpc_footer *f)
{
    if (memcmp(buf + F_COOKIE, "conectix", 8))
        return kimg_fail(-EINVAL, "invalid VPC image");
    /* qemu-img's message: it refuses a bad footer checksum as well */
    if (vpc_checksum(buf, VPC_FOOTER_SIZE, F_CHECKSUM) != vpc_be32(buf + F_CHECKSUM))
        return kimg_fail(-EINVAL, "Incorrect header checksum");
    f->data_offset = vpc_be64(buf + F_DATA_OFFSET);
    memcpy(f->creator_app, buf + F_CREATOR_APP, 4);
    f->current_size = vpc_be64(buf + F_CURRENT_SIZE);
    f->cyls = vpc_be16(buf + F_GEOMETRY);
    f->heads = buf[F_GEOMETRY + 2];
    f->spt = buf[F_GEOMETRY + 3];
    f->type = vpc_be32(buf + F_TYPE);
    return 0;
}

/*
 * Virtual PC sizes a disk by its CHS geometry (the current size is usually
 * larger); Hyper-V, Azure, disk2vhd, XenServer and qemu's force_size=on
 * use the current size.  QEMU 10 takes the geometry only for the creators
 * "vpc " and "qemu" (qemu-img 7.2 took it for every creator it did not
 * know: a VirtualBox "vbox" disk read short there).  The largest geometry
 * means "too large for CHS": the current size counts then.
 */
int vpc_virtual_size(const struct vpc_footer *f, uint64_t *size)
{
    uint64_t sectors = (uint64_t)f->cyls * f->heads * f->spt;
    bool chs = !memcmp(f->creator_app, "vpc ", 4) || !memcmp(f->creator_app, "qemu", 4);
    if (!chs || sectors == VPC_MAX_GEOMETRY)
        sectors = f->current_size / VPC_SECTOR;
    if (sectors > VPC_MAX_SECTORS)
        return kimg_fail(-EFBIG, "VHD virtual size of %llu sectors is larger than "
                         "2040 GiB", (unsigned long long)sectors);
    *size = sectors * VPC_SECTOR;
    return 0;
}

/* qemu-img reads the dynamic header without looking at its checksum; kimg
 * refuses a bad one as it refuses a bad footer: both say where every
 * block is, and a mismatch means damage or tampering. */
int vpc_parse_dyn_header(const uint8_t *buf, struct vpc_dyn_header *h)
{
    if (memcmp(buf + H_COOKIE, "cxsparse", 8))
        return kimg_fail(-EINVAL, "Invalid header magic");
    if (vpc_checksum(buf, VPC_DYN_HEADER_SIZE, H_CHECKSUM) != vpc_be32(buf + H_CHECKSUM))
        return kimg_fail(-EINVAL, "Incorrect dynamic disk header checksum");
    h->table_offset = vpc_be64(buf + H_TABLE_OFFSET);
    h->max_table_entries = vpc_be32(buf + H_MAX_ENTRIES);
    h->block_size = vpc_be32(buf + H_BLOCK_SIZE);
    if (h->block_size < VPC_SECTOR || (h->block_size & (h->block_size - 1)))
        return kimg_fail(-EINVAL, "Invalid block size %u", h->block_size);
    return 0;
}
