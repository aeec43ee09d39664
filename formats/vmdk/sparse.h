/*
 * sparse.h — private to the sparse half of formats/vmdk (sparse.c,
 * stream.c, cowd.c): the in-memory state of one sparse extent and the
 * on-disk constants.  The driver half sees only vmdk.h.
 *
 * On-disk (VMware "Virtual Disk Format 5.0", all fields little-endian,
 * offsets and sizes in 512-byte sectors):
 *   hosted sparse ("KDMV", 512-byte header): capacity, grainSize,
 *     descriptorOffset/Size, numGTEsPerGT, rgdOffset, gdOffset, overHead;
 *     a grain directory (GD: one u32 per grain table, the table's sector,
 *     0 = none), grain tables (GT: numGTEsPerGT u32 each, the grain's
 *     sector; 0 = unallocated; 1 = zeroed grain when flags bit 2 is set),
 *     and grains.  A redundant GD (flags bit 1) mirrors the GD.
 *   streamOptimized: the same header with compressAlgorithm 1 (deflate,
 *     zlib-wrapped) and flags bits 16, 17: each GT entry points at a grain
 *     marker (u64 lba, u32 size, then SIZE bytes of zlib data).  qemu puts
 *     the GD and GTs at the front; VMware writes gdOffset = GD_AT_END and
 *     the real header in a footer: [footer marker][header][EOS marker] as
 *     the last three sectors, with the GD and each GT behind a metadata
 *     marker (u64 sectors, u32 0, u32 type) one sector before it.
 *   vmfsSparse ("COWD", 2048-byte header): u32 fields, 4096 entries per
 *     grain table, no zeroed grains.
 */
#ifndef KIMG_VMDK_SPARSE_H
#define KIMG_VMDK_SPARSE_H

#include <endian.h>
#include <pthread.h>
#include <string.h>
#include "vmdk.h"

#define VMDK_KDMV_MAGIC        "KDMV"
#define VMDK_COWD_MAGIC        "COWD"

#define VMDK_FLAG_NL_DETECT    (1u << 0)
#define VMDK_FLAG_RGD          (1u << 1)
#define VMDK_FLAG_ZERO_GRAIN   (1u << 2)
#define VMDK_FLAG_COMPRESSED   (1u << 16)
#define VMDK_FLAG_MARKERS      (1u << 17)
/* every flag kimg knows: any other bit refuses the extent */
#define VMDK_FLAGS_KNOWN       (VMDK_FLAG_NL_DETECT | VMDK_FLAG_RGD | \
                                VMDK_FLAG_ZERO_GRAIN | VMDK_FLAG_COMPRESSED | \
                                VMDK_FLAG_MARKERS)
#define VMDK_COMPRESS_NONE     0u
#define VMDK_COMPRESS_DEFLATE  1u
#define VMDK_GD_AT_END         UINT64_MAX
#define VMDK_GTE_ZEROED        1u

#define VMDK_MARKER_EOS        0u
#define VMDK_MARKER_GT         1u
#define VMDK_MARKER_GD         2u
#define VMDK_MARKER_FOOTER     3u
#define VMDK_GRAIN_MARKER_SIZE 12u      /* u64 lba, u32 size */

/* Limits (documented in sparse.c's top comment).  qemu allows grains up
 * to 1 GiB and 512 entries per grain table; kimg asks for a power of two
 * and stays tighter: */
#define VMDK_MAX_CAPACITY      (64ull << 40)    /* 64 TiB, VMware's limit is 62 TB */
#define VMDK_MAX_GRAIN         (64u << 20)      /* uncompressed grains */
#define VMDK_MAX_STREAM_GRAIN  (1u << 20)       /* deflated grains: scratch per read */
#define VMDK_MAX_GTES          512u             /* KDMV, as qemu */
#define VMDK_COWD_GTES         4096u
#define VMDK_MAX_GD_BYTES      (16u << 20)      /* 4 Mi grain tables */
/* the grain-table cache: at most this many bytes of tables per extent,
 * and at most VMDK_GT_CACHE_TOTAL for all open extents together (a
 * twoGbMaxExtentSparse image has one extent per 2 GiB): past it, tables
 * are read for each lookup and not kept */
#define VMDK_GT_CACHE_BYTES    (4u << 20)
#define VMDK_GT_CACHE_TOTAL    (16u << 20)

struct vmdk_sparse {
    struct kimg_file *file;
    uint64_t file_size;
    uint64_t capacity;          /* bytes */
    uint64_t grain;             /* bytes, a power of two */
    unsigned grain_bits;
    uint32_t gtes;              /* entries per grain table */
    uint64_t gd_off;            /* bytes */
    uint64_t rgd_off;           /* bytes, 0: none */
    uint32_t gd_n;              /* grain tables that cover the capacity */
    uint32_t *gd;               /* their sectors (host order), 0: none */
    uint32_t version, flags;
    bool compressed;            /* deflated grains behind grain markers */
    bool zero_grain;            /* GTE 1 reads as zeros */
    bool cowd;
    bool vmware_stream;         /* GD at the end: metadata markers checked */
    uint64_t desc_off, desc_size, overhead;     /* bytes */

    /* Grain tables are loaded on demand into a direct-mapped cache of
     * cache_n slots (slot = GT index % cache_n), each validated when
     * loaded; a slot's memory is allocated when first filled, within the
     * process-wide VMDK_GT_CACHE_TOTAL.  LOCK guards cache_key/line; the
     * file read happens outside it. */
    pthread_mutex_t lock;
    bool lock_ready;            /* LOCK was initialised (close destroys it) */
    uint32_t cache_n;
    uint32_t *cache_key;        /* GT index + 1 per slot, 0: empty */
    uint32_t **line;            /* cache_n slots of gtes entries, or NULL */
    uint64_t cache_bytes;       /* what this extent's lines hold */

    /* writes (write.c): a stream extent written as it is made */
    bool writable;
    bool wlock_ready;
    bool written;               /* a grain was stored since open */
    pthread_mutex_t wlock;      /* serializes stores (held across their I/O) */
    uint64_t next;              /* bytes: where the next grain goes */
    uint32_t *rgd;              /* the redundant directory (host order) or NULL */
    uint32_t crc;               /* CRC-32 of the capacity and the stored bytes */
    /* sparse (not stream): table entries not yet written (their grains'
     * data may not be synced yet); lookups overlay them (under LOCK) */
    struct { uint64_t g; uint32_t e; } *pending;
    uint32_t npending;
};

/* A header's fields in host order, as sparse.c validates them (KDMV and,
 * filled by cowd.c, COWD). */
struct vmdk_sparse_hdr {
    uint32_t version, flags;
    uint64_t capacity, grain_sectors;           /* sectors */
    uint64_t desc_off, desc_size;               /* sectors */
    uint32_t gtes;
    uint64_t rgd_off, gd_off, overhead;         /* sectors */
    uint8_t nl_chars[4];
    uint16_t compress;
    uint32_t gd_entries;                        /* COWD: numGDEntries */
};

static inline uint16_t vmdk_le16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return le16toh(v);
}

static inline uint32_t vmdk_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static inline uint64_t vmdk_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

/* sparse.c: a KDMV header's 512 bytes into H (no validation). */
void vmdk_kdmv_decode(const uint8_t *buf, struct vmdk_sparse_hdr *h);

/* stream.c: the VMware layout's footer (the last three sectors of the
 * file) into H, with its markers checked.  0 or -errno with kimg_error(). */
int vmdk_stream_footer(struct kimg_file *file, uint64_t file_size,
                       struct vmdk_sparse_hdr *h);
/* stream.c: the metadata marker one sector before OFF (bytes) has type
 * TYPE and counts SECTORS sectors.  0 or -EINVAL with kimg_error(). */
int vmdk_stream_check_marker(struct vmdk_sparse *s, uint64_t off,
                             uint32_t type, uint64_t sectors);
/* stream.c: bytes [IN_OFF, IN_OFF+LEN) of grain G (whose marker is at
 * MARKER, bytes) into DST.  Thread-safe. */
int vmdk_stream_read(struct vmdk_sparse *s, uint64_t g, uint64_t marker,
                     uint8_t *dst, uint64_t in_off, uint64_t len);

/* sparse.c: grain G now maps to E (a write linked it): the cached table
 * that holds it, if any, follows. */
void vmdk_sparse_cache_set(struct vmdk_sparse *s, uint64_t g, uint32_t e);

/* write.c: lay the queued entries of table IDX over GT (LOCK held). */
void vmdk_sparse_pending_overlay(struct vmdk_sparse *s, uint32_t idx, uint32_t *gt);

/* cowd.c: a COWD header (at least 2048 bytes in BUF) into H. */
int vmdk_cowd_decode(const uint8_t *buf, size_t len, struct vmdk_sparse_hdr *h);

#endif
