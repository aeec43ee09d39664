/*
 * vdi.h — private to formats/vdi: the VirtualBox VDI read-only driver.
 * On-disk layout (VirtualBox's VDICore.h, version 1.1; all fields
 * little-endian):
 *   0     a 64-byte text ("<<< Oracle VM VirtualBox Disk Image >>>\n"),
 *         the signature 0xbeda107f and the version 0x00010001 (the
 *         pre-header, 72 bytes);
 *   72    the header (header size, image type, offsets of the block map
 *         and of the data, geometry, disk size, block size, block extra
 *         data, blocks in image / allocated, four UUIDs);
 *   offset_bmap  the block map: one le32 per block, the index of its slot
 *         in the data area, 0xffffffff (free) or 0xfffffffe (zero);
 *   offset_data  the data area: slot i at offset_data + i * block_size.
 * Grouped by file: header.c (parsing and checking the header), blockmap.c
 * (the block map: loading, validation, reads, block status, check),
 * create.c (create -f vdi), write.c (guest writes, block allocation),
 * vdi.c (probe, open, info, the driver table).
 */
#ifndef KIMG_VDI_H
#define KIMG_VDI_H

#include <endian.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "kimg/driver.h"

#define VDI_SIGNATURE       0xbeda107fu
#define VDI_VERSION_1_1     0x00010001u
#define VDI_HEADER_BYTES    512u        /* what open reads from offset 0 */
#define VDI_SIG_OFFSET      0x40u       /* the signature, after the text */
#define VDI_PRE_HEADER      72u         /* text, signature, version */
#define VDI_HEADER_MIN      0x180u      /* VirtualBox's VDIHEADER1 */
#define VDI_SECTOR          512u
#define VDI_H_BLOCKS_ALLOC  0x184u      /* the header's count of allocated blocks */

#define VDI_TYPE_DYNAMIC    1u
#define VDI_TYPE_STATIC     2u
#define VDI_TYPE_UNDO       3u
#define VDI_TYPE_DIFF       4u

/* Block map entries at or above VDI_ZERO hold no data: "free" (never
 * written; VirtualBox: any content) and "zero" (discarded: zeros).  Both
 * read as zeros, as in qemu. */
#define VDI_FREE            0xffffffffu
#define VDI_ZERO            0xfffffffeu

/* qemu's limits: blocks in image at most (INT_MAX + 1 - 512) / 4, disk
 * size at most that many MiB */
#define VDI_BLOCKS_MAX      0x1fffff80u
#define VDI_DISK_SIZE_MAX   ((uint64_t)VDI_BLOCKS_MAX << 20)
/* Memory for the block map: at most 32 MiB (8 Mi blocks, 8 TiB of 1 MiB
 * blocks); open adds a bitmap of one bit per block (1 MiB at most) to find
 * duplicate entries, so a VDI costs at most 33 MiB to open, inside the
 * 64 MiB peak-memory budget. */
#define VDI_MAX_MAP_BYTES   (32u << 20)

/* The header fields kimg uses, host order (header.c). */
struct vdi_header {
    uint32_t version;
    uint32_t header_size;
    uint32_t image_type;
    uint32_t offset_bmap;
    uint32_t offset_data;
    uint32_t sector_size;
    uint64_t disk_size;         /* rounded up to whole sectors, as qemu */
    uint32_t block_size;
    uint32_t block_extra;
    uint32_t blocks_in_image;
    uint32_t blocks_allocated;
};

struct vdi_state {
    uint32_t type;              /* VDI_TYPE_DYNAMIC or VDI_TYPE_STATIC */
    uint64_t file_size;
    uint64_t offset_data;
    uint32_t block_size;        /* a power of two >= 512 */
    unsigned block_bits;
    uint32_t nb_blocks;         /* blocks in image: entries in map */
    uint32_t blocks_allocated;  /* the header's count (check compares) */
    uint32_t *map;              /* the block map, host order */
    /* Opened for check (KIMG_OPEN_REPAIR) with a block map that fails
     * validation: check reports it, reads and block status refuse. */
    bool damaged;
    /* opened for writing (write.c), under lock: */
    uint32_t next_slot;         /* the slot the next new block takes */
    uint32_t offset_bmap;
    uint64_t file_end;          /* the file's size as far as we know */
    uint8_t *gap;               /* the file's bytes from the count's end to the map */
    uint32_t gap_len;
    /* blocks given a slot whose map entry is not on disk yet, in slot
     * order (write.c): the copy engine's (ready once their data is
     * written) and writes made while such blocks were pending */
    struct vdi_pending { uint32_t block, slot; bool ready; } *pend;
    uint32_t npend, pend_cap;
    pthread_mutex_t lock;
    bool lock_init;
};

static inline uint32_t vdi_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static inline uint64_t vdi_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

/* ---- header.c ---- */
/* Whether BUF (the file's first LEN bytes) carries the VDI signature at
 * 0x40 or a VDI text at 0 ("<<< ... Disk Image >>>"). */
bool vdi_has_signature(const uint8_t *buf, size_t len);
/* Parse and check the header in BUF (the file's first 512 bytes) of a file
 * of FILE_SIZE bytes: signature, version 1.1, header size, image type
 * (dynamic or static; differencing and undo images refused), no parent or
 * link UUID, sector size 512, block size a power of two >= 512, no block
 * extra data, disk size within blocks * block size, the header, block map
 * and data area in order and inside the file, the block map inside the
 * memory budget.  With REPAIR (check) a header's count of allocated blocks
 * larger than the block count is let through for check to report.
 * 0 or -errno with a message. */
int vdi_parse_header(const uint8_t *buf, uint64_t file_size, bool repair,
                     struct vdi_header *h);

/* ---- blockmap.c ---- */
/* Load the block map H describes into IMG's state and validate it: every
 * entry holding data names a slot below the block count, no slot twice,
 * and the slot's guest bytes inside the file.  With REPAIR a map failing
 * that is kept with s->damaged set (check reports it).  0 or -errno. */
int vdi_load_map(struct kimg *img, const struct vdi_header *h, bool repair);
int vdi_read(struct kimg *img, void *buf, uint64_t off, uint64_t len);
int vdi_block_status(struct kimg *img, uint64_t off, uint64_t len,
                     struct kimg_extent *ext);
/* qemu-img's vdi check (its messages and counts), plus blocks whose data
 * lies past the end of the file (qemu reads them as zeros silently). */
int vdi_check_map(struct kimg *img, struct kimg_check *res);

/* ---- create.c ---- */
extern const struct kimg_optdesc vdi_create_opts[];
extern const struct kimg_shown_opt vdi_formatting_opts[];
int vdi_create(const struct kimg_create_args *args);

/* ---- write.c ---- */
/* Set up the state for writes of an image just opened (its header H). */
int vdi_prepare_writes(struct kimg *img, const struct vdi_header *h);
int vdi_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len);
int vdi_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags);
int vdi_flush(struct kimg *img);
int64_t vdi_alloc_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t *host,
                       struct kimg_file **file);
int vdi_commit_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t host);

#endif
