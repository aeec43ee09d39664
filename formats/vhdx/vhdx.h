/*
 * vhdx.h — private to formats/vhdx: the VHDX driver, written
 * from Microsoft's [MS-VHDX] specification (all fields little-endian).
 * Layout: the 1 MiB header section (file identifier "vhdxfile" at 0, two
 * 4 KiB headers at 64 and 128 KiB, two 64 KiB region tables at 192 and
 * 256 KiB), then regions anywhere at 1 MiB multiples: the log (named by
 * the header), the BAT and the metadata region (named by the region
 * table), and the payload blocks.  Checksums are CRC-32C (isa-l).
 * Grouped by file: header.c (file identifier, headers, region table),
 * log.c (log replay into an in-memory overlay, and every metadata read),
 * metadata.c (metadata table and items), bat.c (BAT, reads), vhdx.c
 * (the driver table: open, info, check), create.c (create: the layout
 * qemu-img 7.2 writes), write.c (guest writes into an open image: block
 * allocation, the BAT written back after the data is flushed, the
 * header-sequence switch before the first change).
 */
#ifndef KIMG_VHDX_H
#define KIMG_VHDX_H

#include <endian.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "kimg/driver.h"

#define VHDX_MIB                (1ull << 20)
#define VHDX_HEADER_SECTION     VHDX_MIB
#define VHDX_HEADER1_OFFSET     (64u << 10)
#define VHDX_HEADER2_OFFSET     (128u << 10)
#define VHDX_HEADER_SIZE        4096u
#define VHDX_RTABLE1_OFFSET     (192u << 10)
#define VHDX_RTABLE2_OFFSET     (256u << 10)
#define VHDX_RTABLE_SIZE        (64u << 10)
#define VHDX_MAX_ENTRIES        2047u   /* region and metadata tables */
#define VHDX_META_TABLE_SIZE    (64u << 10)
#define VHDX_LOG_SECTOR         4096u
#define VHDX_FILE_ID_SIZE       (64u << 10)
/* header fields (header.c reads them, write.c and create.c write them) */
#define VHDX_H_CHECKSUM         4
#define VHDX_H_SEQUENCE         8
#define VHDX_H_FILE_WRITE_GUID  16
#define VHDX_H_DATA_WRITE_GUID  32
#define VHDX_H_LOG_GUID         48

#define VHDX_BLOCK_MIN          VHDX_MIB
#define VHDX_BLOCK_MAX          (256ull << 20)
#define VHDX_MAX_SIZE           (64ull << 40)   /* 64 TiB */

/* BAT entry: state in bits 0-2, file offset in MiB in bits 20-63 */
#define VHDX_BAT_STATE_MASK     7u
#define VHDX_BAT_OFFSET_MASK    0xFFFFFFFFFFF00000ull
#define VHDX_PAYLOAD_NOT_PRESENT        0u
#define VHDX_PAYLOAD_UNDEFINED          1u
#define VHDX_PAYLOAD_ZERO               2u
#define VHDX_PAYLOAD_UNMAPPED           3u
#define VHDX_PAYLOAD_UNMAPPED_V095      5u  /* pre-1.0 value, read as unmapped (qemu) */
#define VHDX_PAYLOAD_FULLY_PRESENT      6u
#define VHDX_PAYLOAD_PARTIALLY_PRESENT  7u

/*
 * Memory caps (the 64 MiB budget of an open): the BAT entries that cover
 * the virtual size at most 24 MiB (3 Mi blocks: 3 TiB at 1 MiB blocks,
 * 96 TiB at 32 MiB), plus the sorted 4-byte copy of the allocated ones
 * the overlap check makes (12 MiB); the replayed log's data sectors at
 * most 16 MiB, its descriptors at most 65536, an entry at most 8 MiB
 * (log.c).  Peak: 52 MiB (BAT, overlap copy, log data).
 */
#define VHDX_MAX_BAT_BYTES      (24u << 20)
#define VHDX_MAX_LOG_DATA       (16u << 20)
#define VHDX_MAX_LOG_DESCS      65536u

/* One piece of the replayed log: file bytes [start, end) read as DATA
 * (pointing into the log's copy), or as zeros when DATA is NULL. */
struct vhdx_ovl {
    uint64_t start, end;
    const uint8_t *data;
};

struct vhdx_state {
    uint64_t file_size;         /* the file as stored */
    uint64_t eff_size;          /* as after the log replay (>= file_size) */
    /* current header */
    uint8_t log_guid[16];
    uint64_t log_offset;
    uint32_t log_length;
    /* the replayed log (log.c): sorted, non-overlapping */
    struct vhdx_ovl *ovl;
    size_t n_ovl;
    uint8_t *log_data;          /* the data sectors the overlay points into */
    bool log_replayed;
    uint32_t log_entries;       /* entries replayed */
    int cur_header;             /* 0: the header at 64 KiB, 1: at 128 KiB */
    uint64_t hdr_seq;           /* its sequence number */
    /* regions */
    uint64_t bat_offset;
    uint32_t bat_length;
    uint64_t meta_offset;
    uint32_t meta_length;
    /* metadata */
    uint32_t block_size;
    unsigned block_bits;
    uint32_t logical_sector;
    uint32_t physical_sector;
    bool leave_allocated;       /* a fixed disk */
    uint64_t chunk_ratio;       /* payload blocks per sector bitmap block */
    /* BAT (bat.c): the entries of the payload blocks only, host order */
    uint64_t *bat;
    uint64_t nb_blocks;
    /* writing (write.c), under LOCK; only when the image is writable */
    pthread_mutex_t lock;
    bool writer;                /* the fields below are set up */
    bool headers_switched;      /* the headers carry this session's GUIDs */
    bool use_slots;             /* a fixed disk in qemu's layout: block B
                                   lives at data_start + B * block_size */
    uint64_t data_start;
    uint64_t alloc_end;         /* where the next appended block goes */
    uint8_t *bat_dirty;         /* one bit per 4 KiB page of the BAT */
    size_t bat_pages;
    bool bat_any_dirty;
};

static inline uint16_t vhdx_le16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return le16toh(v);
}

static inline uint32_t vhdx_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static inline uint64_t vhdx_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static inline bool vhdx_ranges_overlap(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    return a0 < b1 && b0 < a1;
}

/* ---- header.c ---- */
/* CRC-32C of BUF (LEN bytes) with the 4-byte checksum field at CSUM_OFF
 * counted as zeros (the specification's rule for every structure). */
uint32_t vhdx_crc(const uint8_t *buf, size_t len, size_t csum_off);
bool vhdx_has_signature(const uint8_t *buf, size_t len);
/* The current header (both read; valid = "head", CRC, version 1; the
 * higher sequence number wins, equal ones must be identical): fills the
 * log fields of S, checks the log's placement. */
int vhdx_open_headers(struct kimg *img);
/* The region table (the copy at 192 KiB, or at 256 KiB when the first is
 * damaged), read through the replayed log: fills the BAT and metadata
 * region fields of S; regions 1 MiB-aligned, inside the file, apart from
 * each other, the header section and the log; unknown required regions
 * refused (-ENOTSUP). */
int vhdx_open_regions(struct kimg *img);

/* ---- log.c ---- */
/* Replay the log named by the current header when its GUID is not zero:
 * the active sequence is found and validated, and its writes kept in an
 * overlay that vhdx_pread() applies; nothing is written.  0 with no
 * overlay for an empty log. */
int vhdx_replay_log(struct kimg *img);
/* Read file bytes [off, off+len) as they are after the replay: past the
 * stored end of the file (a log may grow it) zeros; the caller has
 * checked the range against S->eff_size.  Every metadata and data read
 * of the driver goes through it. */
int vhdx_pread(struct kimg *img, void *buf, size_t len, uint64_t off);
void vhdx_free_log(struct vhdx_state *s);

/* ---- metadata.c ---- */
/* Parse the metadata region: the five required items, sizes and flags
 * checked; unknown required items and differencing disks refused
 * (-ENOTSUP); sets IMG->size. */
int vhdx_open_metadata(struct kimg *img);

/* ---- bat.c ---- */
/* Load and validate the BAT (after the metadata): states known (partially
 * present only in a differencing disk: refused), present blocks 1 MiB
 * aligned, inside the file and apart from each other and every region.
 * With LENIENT (check) the per-block problems are counted, not refused. */
int vhdx_load_bat(struct kimg *img, bool lenient);
/* The driver's content_status (kimg/driver.h). */
int vhdx_content_status(struct kimg *img, uint64_t off, uint64_t len,
                        struct kimg_extent *ext);
/* The per-block problems of the loaded BAT, each logged to LOG (NULL: not
 * logged) in qemu-img's wording; returns their number. */
uint64_t vhdx_check_blocks(struct kimg *img, FILE *log);
int vhdx_read(struct kimg *img, void *buf, uint64_t off, uint64_t len);

/* ---- metadata.c: the GUIDs create.c writes ---- */
enum { VHDX_IT_PARAMS, VHDX_IT_SIZE, VHDX_IT_PAGE83, VHDX_IT_LOGICAL, VHDX_IT_PHYSICAL };
const uint8_t *vhdx_item_guid(unsigned item);
extern const uint8_t vhdx_bat_guid[16], vhdx_metadata_guid[16];

static inline void vhdx_put16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static inline void vhdx_put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void vhdx_put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
/* A new random GUID in the on-disk form (libuuid's bytes, as qemu). */
void vhdx_new_guid(uint8_t out[16]);
/* The index of payload block B's entry in the BAT (sector bitmap entries
 * interleaved: one after every chunk_ratio payload entries). */
static inline uint64_t vhdx_bat_index(uint64_t chunk_ratio, uint64_t b)
{
    return b + b / chunk_ratio;
}

/* ---- create.c ---- */
extern const struct kimg_optdesc vhdx_create_opts[];
extern const struct kimg_shown_opt vhdx_formatting_opts[];
int vhdx_create(const struct kimg_create_args *args);

/* ---- write.c ---- */
/* Make an open image writable (after everything is loaded): refuses a
 * log with entries to replay (they would have to be written in place
 * first), sets up allocation.  Nothing is written until the first write. */
int vhdx_open_writable(struct kimg *img);
void vhdx_close_writable(struct kimg *img);
int vhdx_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len);
int vhdx_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags);
int vhdx_flush(struct kimg *img);
int64_t vhdx_alloc_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t *host,
                        struct kimg_file **file);
int vhdx_commit_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t host);
/* The allocation unit the copy engine sees in a writable image: blocks
 * are allocated whole, but the host file stays sparse inside them, so
 * zero runs of this size are left as holes (qemu-img finds zeros at 4 KiB) */
#define VHDX_WRITE_UNIT         (64u << 10)

#endif
