/*
 * vpc.h — private to formats/vpc: the VHD (qemu's "vpc") read-only driver.
 * On-disk layout, from Microsoft's "Virtual Hard Disk Image Format
 * Specification" (all fields big-endian, sectors of 512 bytes):
 *   fixed:   guest data, then the 512-byte footer ("conectix");
 *   dynamic: a copy of the footer at 0, the 1024-byte dynamic header
 *            ("cxsparse") at the footer's data offset, the BAT (one be32
 *            sector number per block, 0xFFFFFFFF = not allocated) at the
 *            header's table offset, blocks (a sector bitmap, then the
 *            block's data), and the footer again at the end.
 * Grouped by file: footer.c (footer, dynamic header, virtual size),
 * bat.c (the BAT, reads and block status), create.c (create -f vpc),
 * write.c (guest writes, block allocation), vpc.c (the driver table).
 */
#ifndef KIMG_VPC_H
#define KIMG_VPC_H

#include <endian.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "kimg/driver.h"

#define VPC_SECTOR          512u
#define VPC_FOOTER_SIZE     512u
#define VPC_DYN_HEADER_SIZE 1024u

#define VPC_TYPE_FIXED      2u
#define VPC_TYPE_DYNAMIC    3u
#define VPC_TYPE_DIFF       4u

#define VPC_BAT_UNUSED      0xFFFFFFFFu
/* qemu's limit: 2040 GiB (0xff000000 sectors), the format's maximum */
#define VPC_MAX_SECTORS     0xff000000ull
/* the largest CHS geometry (65535 x 16 x 255): the footer's current size
 * counts instead, as in qemu (images made with force_size=on) */
#define VPC_MAX_GEOMETRY    (65535ull * 16 * 255)
/* Memory for the BAT entries that cover the virtual size, plus the sorted
 * copy of the allocated ones the overlap check makes: at most 32 MiB
 * each, so a dynamic VHD costs at most 64 MiB to open. */
#define VPC_MAX_BAT_BYTES   (32u << 20)

struct vpc_state {
    uint32_t type;              /* VPC_TYPE_FIXED or VPC_TYPE_DYNAMIC */
    uint64_t file_size;
    /* dynamic */
    uint32_t block_size;        /* power of two, >= 512 */
    unsigned block_bits;
    uint32_t bitmap_size;       /* sector bitmap before each block's data */
    uint32_t *bat;              /* entries covering the virtual size, host order */
    uint32_t nb_blocks;         /* how many: ceil(size / block_size) */
    /* dynamic, opened for writing (write.c), under lock: */
    uint64_t table_offset;      /* the BAT's place in the file */
    uint64_t free_offset;       /* where the next block goes */
    uint64_t file_end;          /* the file's size as far as we know */
    uint8_t footer[VPC_FOOTER_SIZE];    /* written after each new block */
    pthread_mutex_t lock;
    bool lock_init;
};

/* A new image's geometry (create.c): the CHS values and the sectors the
 * disk holds. */
struct vpc_geometry {
    uint16_t cyls;
    uint8_t heads, spt;
    uint64_t sectors;
};

/* The parsed fields kimg uses (footer.c fills it from 512 bytes). */
struct vpc_footer {
    uint64_t data_offset;
    char creator_app[4];
    uint64_t current_size;
    uint16_t cyls;
    uint8_t heads, spt;
    uint32_t type;
};

struct vpc_dyn_header {
    uint64_t table_offset;
    uint32_t max_table_entries;
    uint32_t block_size;
};

static inline uint16_t vpc_be16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return be16toh(v);
}

static inline uint32_t vpc_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return be32toh(v);
}

static inline uint64_t vpc_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return be64toh(v);
}

/* ---- footer.c ---- */
/* One's complement of the byte sum of BUF, the checksum field at
 * CSUM_OFF counted as zeros (the spec's rule for both structures). */
uint32_t vpc_checksum(const uint8_t *buf, size_t len, size_t csum_off);
/* Whether BUF (LEN bytes) starts with the footer cookie (qemu probes 8). */
bool vpc_has_cookie(const uint8_t *buf, size_t len);
/* Whether BUF (512 bytes) is a footer: cookie and checksum right. */
bool vpc_is_footer(const uint8_t *buf);
/* Check (cookie, checksum) and parse the footer in BUF (512 bytes). */
int vpc_parse_footer(const uint8_t *buf, struct vpc_footer *f);
/* The guest size as QEMU 10 reads it: the CHS product for creators "vpc "
 * and "qemu" (unless the geometry is the maximum one), the footer's
 * current size for every other creator, in whole sectors; -EFBIG (with a
 * message) past 2040 GiB. */
int vpc_virtual_size(const struct vpc_footer *f, uint64_t *size);
/* Check (cookie, checksum) and parse the dynamic header in BUF (1024
 * bytes); block size a power of two in [512, 2^31]. */
int vpc_parse_dyn_header(const uint8_t *buf, struct vpc_dyn_header *h);

/* ---- bat.c ---- */
/* Load and validate the BAT of a dynamic image whose footer copy is at 0
 * and dynamic header at HDR_OFF; IMG->size is set.  Every allocated block
 * (bitmap and data) lies inside the file, overlaps neither another block
 * nor the footer copy, header or BAT, nor the footer at the end of the
 * file when there is one there. */
int vpc_load_bat(struct kimg *img, uint64_t hdr_off, const struct vpc_dyn_header *h);
int vpc_read(struct kimg *img, void *buf, uint64_t off, uint64_t len);
int vpc_block_status(struct kimg *img, uint64_t off, uint64_t len,
                     struct kimg_extent *ext);

/* ---- create.c ---- */
extern const struct kimg_optdesc vpc_create_opts[];
extern const struct kimg_shown_opt vpc_formatting_opts[];
/* The geometry qemu-img 7.2 gives a new disk of SIZE bytes (a multiple
 * of 512): without FORCE the smallest CHS geometry holding it (the size
 * rounded up to it), unless it needs the largest geometry, which means
 * "the size as asked"; -EFBIG with qemu-img's message past 2040 GiB. */
int vpc_new_geometry(uint64_t size, bool force, struct vpc_geometry *g);
int vpc_create(const struct kimg_create_args *args);

/* ---- write.c ---- */
/* Set up the state for writes of a dynamic image just loaded (its header
 * at HDR_OFF is H). */
int vpc_prepare_writes(struct kimg *img, uint64_t hdr_off, const struct vpc_dyn_header *h);
int vpc_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len);
int vpc_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags);
int64_t vpc_alloc_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t *host,
                       struct kimg_file **file);
int vpc_commit_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t host);
int vpc_flush(struct kimg *img);

#endif
