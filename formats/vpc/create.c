/*
 * create.c — `create -f vpc`: qemu-img 7.2's options (subformat, force_size),
 * the size rounded to a CHS geometry as qemu rounds it, and the layout qemu
 * writes: a fixed disk is its data then the footer; a dynamic disk is the
 * footer copy at 0, the dynamic header at 512, the BAT (all unused) at
 * 1536, the footer after it, 2 MiB blocks.  The footer of a fixed disk and
 * the copy at 0 of a dynamic one are written last: a failed create never
 * leaves a file that opens as a VHD.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <uuid/uuid.h>
#include "vpc.h"

const struct kimg_optdesc vpc_create_opts[] = {
    { "force_size", KIMG_OPT_BOOL, "Force disk size calculation to use the actual size "
      "specified, rather than using the nearest CHS-based calculation" },
    { "size", KIMG_OPT_SIZE, "Virtual disk size" },
    { "subformat", KIMG_OPT_STRING, "Type of virtual hard disk format. Supported formats "
      "are {dynamic (default) | fixed} " },
    { NULL, 0, NULL },
};

const struct kimg_shown_opt vpc_formatting_opts[] = {
    { "size", NULL, true }, { "subformat", NULL, false }, { "force_size", NULL, false },
    { "nocow", NULL, false }, { "preallocation", NULL, false },
    { "extent_size_hint", NULL, true }, { NULL, NULL, false },
};

/* footer fields (Microsoft's VHD specification) */
#define F_FEATURES      8
#define F_VERSION       12
#define F_DATA_OFFSET   16
#define F_TIMESTAMP     24
#define F_CREATOR_APP   28
#define F_CREATOR_VER   32
#define F_CREATOR_OS    36
#define F_ORIG_SIZE     40
#define F_CURRENT_SIZE  48
#define F_GEOMETRY      56
#define F_TYPE          60
#define F_CHECKSUM      64
#define F_UUID          68
/* dynamic header fields */
#define H_DATA_OFFSET   8
#define H_TABLE_OFFSET  16
#define H_VERSION       24
#define H_MAX_ENTRIES   28
#define H_BLOCK_SIZE    32
#define H_CHECKSUM      36

#define VPC_TIMESTAMP_BASE 946684800        /* 2000-01-01 00:00:00 UTC */
#define VPC_NEW_BLOCK_SIZE (2u << 20)       /* qemu's only block size */
#define VPC_NEW_BAT_OFFSET (3 * 512u)

static void put_be16(uint8_t *p, uint16_t v) { v = htobe16(v); memcpy(p, &v, 2); }
static void put_be32(uint8_t *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static void put_be64(uint8_t *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }

/*
 * The CHS geometry of the VHD specification (appendix: "CHS calculation")
 * for SECTORS, as qemu computes it: at most 65535 x 16 x 255, never more
 * sectors than asked for (the product may be fewer).
 */
static void chs_of(uint64_t sectors, uint16_t *cyls, uint8_t *heads, uint8_t *spt)
{
    uint64_t cth;
    if (sectors > VPC_MAX_GEOMETRY)
        sectors = VPC_MAX_GEOMETRY;
    if (sectors >= 65535ull * 16 * 63) {
        *spt = 255;
        *heads = 16;
        cth = sectors / *spt;
    } else {
        *spt = 17;
        cth = sectors / *spt;
        uint64_t h = (cth + 1023) / 1024;
        *heads = (uint8_t)(h < 4 ? 4 : h > 255 ? 255 : h);
        if (cth >= (uint64_t)*heads * 1024 || h > 16) {
            *spt = 31;
            *heads = 16;
            cth = sectors / *spt;
        }
        if (cth >= (uint64_t)*heads * 1024) {
            *spt = 63;
            *heads = 16;
            cth = sectors / *spt;
        }
    }
    *cyls = (uint16_t)(cth / *heads);
}

int vpc_new_geometry(uint64_t size, bool force, struct vpc_geometry *g)
{
    uint64_t want = size / VPC_SECTOR;
    if (force) {
        g->cyls = 65535;
        g->heads = 16;
        g->spt = 255;
    } else {
        /* the smallest geometry holding the size: qemu tries one more
         * sector at a time until the product reaches it */
        uint64_t s = want < VPC_MAX_GEOMETRY ? want : VPC_MAX_GEOMETRY;
        g->cyls = 0;
        g->heads = 0;
        g->spt = 0;
        for (uint64_t i = 0; s > (uint64_t)g->cyls * g->heads * g->spt; i++)
            chs_of(s + i, &g->cyls, &g->heads, &g->spt);
    }
    uint64_t chs = (uint64_t)g->cyls * g->heads * g->spt;
    if (chs == VPC_MAX_GEOMETRY) {
        /* too large for CHS: the size as asked, up to the format's limit */
        if (want > VPC_MAX_SECTORS)
            return kimg_fail(-EFBIG, "The image size is too large for file format 'vpc'");
        g->sectors = want;
    } else {
        g->sectors = chs;
    }
    return 0;
}

/* The 512-byte footer qemu writes, its checksum filled in. */
static void make_footer(uint8_t *f, uint32_t type, bool force, const struct vpc_geometry *g)
{
    uint64_t bytes = g->sectors * VPC_SECTOR;
    uuid_t uu;
    memset(f, 0, VPC_FOOTER_SIZE);
    memcpy(f, "conectix", 8);
    put_be32(f + F_FEATURES, 2);
    put_be32(f + F_VERSION, 0x00010000);
    put_be64(f + F_DATA_OFFSET, type == VPC_TYPE_DYNAMIC ? VPC_FOOTER_SIZE : UINT64_MAX);
    put_be32(f + F_TIMESTAMP, (uint32_t)(time(NULL) - VPC_TIMESTAMP_BASE));
    /* "qem2": the current size counts (qemu's mark for force_size) */
    memcpy(f + F_CREATOR_APP, force ? "qem2" : "qemu", 4);
    put_be16(f + F_CREATOR_VER, 5);         /* Virtual PC 2007: 5.3 */
    put_be16(f + F_CREATOR_VER + 2, 3);
    memcpy(f + F_CREATOR_OS, "Wi2k", 4);
    put_be64(f + F_ORIG_SIZE, bytes);
    put_be64(f + F_CURRENT_SIZE, bytes);
    put_be16(f + F_GEOMETRY, g->cyls);
    f[F_GEOMETRY + 2] = g->heads;
    f[F_GEOMETRY + 3] = g->spt;
    put_be32(f + F_TYPE, type);
    uuid_generate_random(uu);
    memcpy(f + F_UUID, uu, 16);
    put_be32(f + F_CHECKSUM, vpc_checksum(f, VPC_FOOTER_SIZE, F_CHECKSUM));
}

static int create_fixed(struct kimg_file *f, const uint8_t *footer, uint64_t bytes)
{
    int ret = kimg_file_truncate(f, bytes + VPC_FOOTER_SIZE);
    if (ret == 0)
        ret = kimg_file_pwrite(f, footer, VPC_FOOTER_SIZE, bytes);
    return ret;
}

static int create_dynamic(struct kimg_file *f, const uint8_t *footer, uint64_t bytes)
{
    uint64_t entries = (bytes + VPC_NEW_BLOCK_SIZE - 1) / VPC_NEW_BLOCK_SIZE;
    uint64_t bat_bytes = (entries * 4 + VPC_SECTOR - 1) & ~(uint64_t)(VPC_SECTOR - 1);
    uint8_t hdr[VPC_DYN_HEADER_SIZE];
    int ret;

    uint8_t *bat = kimg_alloc_aligned(bat_bytes ? bat_bytes : VPC_SECTOR);
    if (!bat)
        return -ENOMEM;
    memset(bat, 0xff, bat_bytes);
    memset(hdr, 0, sizeof(hdr));
    memcpy(hdr, "cxsparse", 8);
    put_be64(hdr + H_DATA_OFFSET, UINT64_MAX);
    put_be64(hdr + H_TABLE_OFFSET, VPC_NEW_BAT_OFFSET);
    put_be32(hdr + H_VERSION, 0x00010000);
    put_be32(hdr + H_MAX_ENTRIES, (uint32_t)entries);
    put_be32(hdr + H_BLOCK_SIZE, VPC_NEW_BLOCK_SIZE);
    put_be32(hdr + H_CHECKSUM, vpc_checksum(hdr, sizeof(hdr), H_CHECKSUM));

    ret = kimg_file_pwrite(f, footer, VPC_FOOTER_SIZE, VPC_NEW_BAT_OFFSET + bat_bytes);
    if (ret == 0 && bat_bytes)
        ret = kimg_file_pwrite(f, bat, bat_bytes, VPC_NEW_BAT_OFFSET);
    if (ret == 0)
        ret = kimg_file_pwrite(f, hdr, sizeof(hdr), VPC_FOOTER_SIZE);
    if (ret == 0)
        ret = kimg_file_sync(f);
    if (ret == 0)       /* the copy at 0 last: now it is a VHD */
        ret = kimg_file_pwrite(f, footer, VPC_FOOTER_SIZE, 0);
    free(bat);
    return ret;
}

/* Azure takes fixed VHDs whose virtual size is a whole number of MiB.
 * BYTES: the disk's size; ASKED: the size given, which force_size keeps
 * (the example: that rounded up to whole MiB, not the CHS size). */
static void warn_azure(uint64_t bytes, uint64_t asked)
{
    if (bytes % (1u << 20) == 0)
        return;
    uint64_t up = (asked + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
    if (up == 0)
        up = 1u << 20;
    fprintf(stderr, "kimg: warning: the fixed VHD's virtual size (%llu bytes) is not a "
            "multiple of 1 MiB, which Azure refuses; for an Azure disk use "
            "-o subformat=fixed,force_size=on with a size in whole MiB (e.g. %llu)\n",
            (unsigned long long)bytes, (unsigned long long)up);
}

int vpc_create(const struct kimg_create_args *args)
{
    const char *sub = kimg_opts_get(args->opts, "subformat");
    struct vpc_geometry g;
    uint8_t footer[VPC_FOOTER_SIZE];
    struct kimg_file *f = NULL;
    uint32_t type;
    bool force;
    int ret;

    if (!sub || !strcmp(sub, "dynamic"))
        type = VPC_TYPE_DYNAMIC;
    else if (!strcmp(sub, "fixed"))
        type = VPC_TYPE_FIXED;
    else
        return kimg_fail(-EINVAL, "Parameter 'subformat' does not accept value '%s'", sub);
    if ((ret = kimg_opts_get_bool(args->opts, "force_size", false, &force)) < 0)
        return ret;
    if ((ret = vpc_new_geometry(args->size, force, &g)) < 0) {
        /* qemu-img convert's words for it (create's are the geometry's):
         * convert makes its output under a temporary name (final_name) */
        if (ret == -EFBIG && args->final_name) {
            kimg_clear_error();
            return kimg_fail(-EFBIG, "Disk size is too large, max size is 2040 GiB");
        }
        return ret;
    }
    uint64_t bytes = g.sectors * VPC_SECTOR;
    if (type == VPC_TYPE_FIXED)
        warn_azure(bytes, args->size);
    make_footer(footer, type, force, &g);

    ret = kimg_file_open(&f, args->filename, KIMG_FILE_RDWR | KIMG_FILE_CREATE | KIMG_FILE_TRUNC);
    if (ret < 0)
        return ret;
    ret = kimg_create_file_attrs(args->opts, f);
    if (ret == 0)
        ret = type == VPC_TYPE_FIXED ? create_fixed(f, footer, bytes)
                                     : create_dynamic(f, footer, bytes);
    if (ret == 0)
        ret = kimg_file_sync(f);
    kimg_file_close(f);
    return ret;
}
