/*
 * qcow2.h — internal state of the qcow2 driver and the prototypes shared
 * between its files, grouped by file below.  On-disk layout:
 * docs/interop/qcow2.txt.  Nothing here is public API; kimg/driver.h is the
 * only contract with the core.
 *
 * Layers (each file uses only the ones before it):
 *   header.c, crypto.c   header, extensions, geometry (qcow2_set_geometry)
 *   cache.c              L2 / refcount block cache, qcow2_flush_caches
 *   refcount.c           refcounts, cluster allocation and freeing
 *   cluster.c            L1/L2 lookup, L2 allocation and copy, COW reads,
 *                        L1 growth, pending L1 entries, deferred frees
 *   map.c, write.c       guest reads / block status, guest data writes;
 *   zero.c, prealloc.c,  with zeroing, preallocation and compressed
 *   write_compressed.c   clusters beside write.c
 *   snapshot*.c          internal snapshots
 *   bitmap.c, resize.c, amend*.c, backing.c, info.c, create.c, measure.c
 *                        the rest
 *   check.c              beside them all (reads every structure)
 *   qcow2.c              the driver table: the only place that takes
 *                        s->lock (qcow2_lock); below it every function
 *                        that touches mutable state runs with it held
 *                        (qcow2_assert_locked in debug builds).
 * Exception (cache.c): qcow2_flush_caches writes cluster.c's pending L1
 * entries after the L2 cache, the one ordering point of both.
 * The virtual size and the backing file name and format live in the core
 * handle (s->img->size, ->backing_name, ->backing_format) only.
 */
#ifndef KIMG_QCOW2_H
#define KIMG_QCOW2_H

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kimg/driver.h"

/* ---- on-disk constants ------------------------------------------------ */

#define QCOW2_MAGIC              0x514649fbu /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN      72
#define QCOW2_V3_HEADER_LEN      104  /* minimum for v3 */
#define QCOW2_HEADER_LEN_CT      112  /* v3 with compression_type (+ padding) */

#define QCOW2_MIN_CLUSTER_BITS   9
#define QCOW2_MAX_CLUSTER_BITS   21   /* 2 MiB, qemu's implementation limit */
#define QCOW2_EXTL2_MIN_BITS     14

#define QCOW2_MAX_L1_BYTES       (32u << 20)  /* qemu's QCOW_MAX_L1_SIZE */
#define QCOW2_MAX_RT_BYTES       (32u << 20)  /* refcount table cap */
#define QCOW2_MAX_SNAPSHOTS      65536u
#define QCOW2_MAX_SN_EXTRA       1024u
#define QCOW2_MAX_SN_TABLE_BYTES (64u << 20)
#define QCOW2_MAX_BACKING_NAME   1023u
#define QCOW2_MAX_BITMAPS        65535u
#define QCOW2_MAX_BITMAP_DIR     (64u << 20)
#define QCOW2_MAX_HOST_OFFSET    (1ULL << 56)  /* offsets are bits 9..55 */

/* incompatible features */
#define QCOW2_INCOMPAT_DIRTY     (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT   (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESS  (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2     (1ULL << 4)
#define QCOW2_INCOMPAT_KNOWN     0x1fULL
/* compatible features */
#define QCOW2_COMPAT_LAZY        (1ULL << 0)
/* autoclear features */
#define QCOW2_AUTOCLEAR_BITMAPS  (1ULL << 0)
#define QCOW2_AUTOCLEAR_DATA_RAW (1ULL << 1)

/* header extension types */
#define QCOW2_EXT_END            0x00000000u
#define QCOW2_EXT_BACKING_FMT    0xe2792acau
#define QCOW2_EXT_FEATURES       0x6803f857u
#define QCOW2_EXT_BITMAPS        0x23852875u
#define QCOW2_EXT_CRYPTO         0x0537be77u
#define QCOW2_EXT_DATA_FILE      0x44415441u

/* L1/L2 entry bits */
#define QCOW2_OFLAG_COPIED       (1ULL << 63)
#define QCOW2_OFLAG_COMPRESSED   (1ULL << 62)
#define QCOW2_OFLAG_ZERO         (1ULL << 0)
#define QCOW2_L1E_OFFSET_MASK    0x00fffffffffffe00ULL
#define QCOW2_L1E_RESERVED       0x7f000000000001ffULL
#define QCOW2_L2E_OFFSET_MASK    0x00fffffffffffe00ULL
#define QCOW2_L2E_STD_RESERVED   0x3f000000000001feULL
#define QCOW2_RTE_OFFSET_MASK    0xfffffffffffffe00ULL
#define QCOW2_RTE_RESERVED       0x1ffULL

#define QCOW2_COMPRESSION_ZLIB   0
#define QCOW2_COMPRESSION_ZSTD   1

/* crypt_method (header offset 32) */
#define QCOW2_CRYPT_NONE         0
#define QCOW2_CRYPT_AES          1
#define QCOW2_CRYPT_LUKS         2
#define QCOW2_CRYPTO_EXT_LEN     16           /* offset + length, big-endian */
#define QCOW2_MAX_CRYPTO_HDR     (64ULL << 20) /* LUKS area cap: qemu's are ~2 MiB */
#define QCOW2_LUKS_SLOTS         8

/* ---- in-memory structures ---------------------------------------------- */

/* A header extension as stored, kept for rewriting byte-for-byte (known
 * ones are also parsed into the state). */
struct qcow2_ext {
    uint32_t type;
    uint32_t len;
    uint8_t *data;              /* len bytes (malloc'd, may be NULL if 0) */
};

struct qcow2_feature {
    uint8_t type;               /* 0 incompatible, 1 compatible, 2 autoclear */
    uint8_t bit;
    char name[47];              /* NUL-terminated copy of the 46-byte field */
};

struct qcow2_snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    uint16_t id_len, name_len;
    char *id;                   /* id_len bytes + NUL (raw bytes, unescaped) */
    char *name;                 /* name_len bytes + NUL */
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;     /* large field if present, else the 32-bit one */
    uint32_t vm_state_size32;
    uint64_t disk_size;         /* valid if has_disk_size */
    bool has_disk_size;
    uint64_t icount;            /* valid if has_icount */
    bool has_icount;
    uint32_t extra_len;
    uint8_t *extra;             /* extra data as stored (rewrite) */
    uint64_t entry_offset;      /* where the entry sits in the file */
    /* The L1 table fields are damaged: offset not cluster aligned, table
     * too large (both accepted at open, as qemu does), or table past the
     * end of the file (accepted only under KIMG_OPEN_REPAIR).  check
     * reports it as qemu-img does; nothing may follow such an L1 table:
     * every other use of the snapshot must be refused (qemu's message:
     * qcow2_snapshot_check_l1; qcow2_read_l1 refuses all three cases). */
    bool l1_invalid;
};

struct qcow2_bitmap {
    uint64_t table_offset;
    uint32_t table_size;        /* entries */
    uint32_t flags;
    uint8_t type;
    uint8_t granularity_bits;
    char *name;                 /* NUL-terminated copy */
};
#define QCOW2_BME_IN_USE         (1u << 0)
#define QCOW2_BME_AUTO           (1u << 1)
#define QCOW2_BME_EXTRA_COMPAT   (1u << 2)

/* Encryption state (crypto.c): the LUKS header (formats/luks, opened on
 * the CRYPTO extension's area; unlocked when a key was given) or the
 * legacy AES key.  Fixed after open: read without the lock by the
 * workers that encrypt and decrypt. */
struct luks;
struct qcow2_crypto {
    struct luks *luks;          /* crypt_method 2, or NULL */
    uint8_t aes_key[16];        /* crypt_method 1, valid if ready */
    bool ready;                 /* a key unlocked it: data I/O possible */
};

/* Metadata cache (cache.c): fixed number of cluster-sized tables, LRU,
 * write-back.  Before a dirty table is written, the `depends` cache is
 * flushed and the file synced (refcounts before L2 tables).  Evicting a
 * dirty table writes back the whole cache (one dependency flush). */
struct qcow2_cache_slot {
    uint64_t offset;            /* 0: empty */
    uint64_t lru;
    int refs;
    bool dirty;
};
struct qcow2_cache {
    struct qcow2_state *s;
    struct qcow2_cache *depends;
    const char *what;           /* "L2 table" / "refcount block" */
    int n;
    size_t table_size;
    uint8_t *mem;               /* n * table_size */
    struct qcow2_cache_slot *slots;
    uint64_t counter;
};

struct qcow2_state {
    struct kimg *img;
    struct kimg_file *file;     /* == img->file (metadata) */
    struct kimg_file *data_file;/* == file, or the external data file, or NULL
                                   (external and not opened: NO_BACKING) */
    bool own_data_file;         /* data_file must be closed on close */
    pthread_mutex_t lock;       /* serializes driver entry points: taken
                                   with qcow2_lock (qcow2.c's entry points) */
    bool lock_init;
#ifndef NDEBUG
    bool lock_held;             /* for qcow2_assert_locked (atomic access) */
    pthread_t lock_owner;
#endif

    /* raw header as read (header_length bytes, rewritten with updates) */
    uint8_t *hdr_raw;
    uint32_t hdr_raw_len;

    /* header fields */
    uint32_t version;
    uint64_t backing_offset;
    uint32_t backing_len;
    uint32_t cluster_bits;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t rt_offset;
    uint32_t rt_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompat, compat, autoclear;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
    int compression_level;      /* 0: qemu's default (convert -o compression_level) */

    /* derived */
    uint64_t cluster_size;
    uint64_t cluster_mask;      /* cluster_size - 1 */
    bool ext_l2;
    uint32_t l2_entry_size;     /* 8 or 16 bytes */
    uint32_t l2_bits;           /* log2(l2_entries) */
    uint64_t l2_entries;
    uint64_t subcluster_size;   /* cluster_size / 32 with ext L2, else cluster_size */
    uint32_t subcluster_bits;
    uint32_t refcount_bits;     /* 1 << refcount_order */
    uint64_t refcount_max;
    uint32_t rb_bits;           /* log2(refcount block entries) */
    uint64_t rb_entries;
    uint32_t csize_shift;       /* compressed descriptor: 62 - (cluster_bits - 8) */
    uint64_t csize_mask;
    uint64_t coffset_mask;
    bool data_file_raw;         /* autoclear bit 1 */
    bool has_data_file;         /* incompat bit 2 */
    /* open option discard-no-unref (QEMU 8.1; Proxmox's convert
     * --target-image-opts): zero writes that may unmap and discards keep
     * a cluster's host allocation (a zero cluster that keeps its offset)
     * instead of freeing it (zero.c); v3 images only */
    bool discard_no_unref;

    /* header extensions, in file order (all kept for rewrite) */
    struct qcow2_ext *exts;
    int nb_exts;
    char *data_file_name;       /* NUL-terminated copy, or NULL.  The virtual
                                   size and the backing name and format live
                                   in the core handle only: img->size,
                                   img->backing_name, img->backing_format
                                   (set by qcow2_parse_header, freed by the
                                   core) */
    struct qcow2_feature *features;
    int nb_features;

    /* encryption (crypt_method != 0): data I/O needs the key (open option
     * encrypt.key-secret); without it only metadata (KIMG_OPEN_NO_IO) */
    bool has_crypto_ext;        /* CRYPTO header extension (LUKS) */
    uint64_t crypto_hdr_offset, crypto_hdr_length;
    struct qcow2_crypto crypto;

    /* bitmaps extension (parsed and validated when present) */
    bool has_bitmaps_ext;
    uint32_t nb_bitmaps;
    uint64_t bitmap_dir_size, bitmap_dir_offset;
    struct qcow2_bitmap *bitmaps;

    /* active L1 table, host-endian, l1_size entries */
    uint64_t *l1;
    /* L1 entries changed in memory whose L2 tables may not be on disk yet:
     * written by qcow2_flush_caches after the L2 cache (cluster.c) */
    uint64_t *l1_pending;
    size_t nb_l1_pending, l1_pending_cap;

    /* refcount table, host-endian, rt_entries = rt_clusters * cs / 8 */
    uint64_t *rt;
    uint64_t rt_entries;

    /* snapshots (nb_snapshots entries; table bytes as stored) */
    struct qcow2_snapshot *snapshots;
    uint64_t snapshots_size;

    /* caches */
    struct qcow2_cache l2_cache;
    struct qcow2_cache rb_cache;

    /* the last decompressed cluster (invalidated by any modification) */
    uint8_t *zcache;
    uint64_t zcache_entry;
    bool zcache_valid;

    /* allocation */
    uint64_t free_hint;         /* lowest cluster index that may be free */
    uint64_t alloc_end;         /* first cluster index past everything in use
                                   (file end at open, then grows) */
    int meta_prealloc;          /* -1 unknown, 0/1: looks metadata-preallocated
                                   (block status then asks the file for holes) */
    uint64_t compressed_next;   /* next free byte for compressed data, 0: none */
    bool corrupt_signalled;
    bool rebuilding;            /* inside qcow2_rebuild_refcounts */
    bool bitmaps_clear_on_write;/* opened rw under KIMG_OPEN_REPAIR with
                                   bitmaps that track writes, bit kept: clear
                                   it before the first guest write (atomic
                                   read and cleared under the lock) */
    struct qcow2_bm_query *bmq; /* bitmap_ops.c's query cache, or NULL */
    bool bitmaps_valid;         /* read-write open: the directory and the
                                   consistent bitmaps passed validation */
    struct qcow2_bm_state *bm;  /* bitmaps kept consistent across writes
                                   (bitmap.c), NULL when none records writes */
    struct qcow2_freed *freed;  /* while set (a shrink): where refcounts fell
                                   to 0, for the caller to discard */
};

/* Runs of host clusters (indexes) whose refcount fell to 0, in the order
 * they were freed; capped (QCOW2_FREED_MAX runs): past it, not noted. */
struct qcow2_freed {
    uint64_t *start, *count;
    size_t n, cap;
};
#define QCOW2_FREED_MAX (1u << 20)

/* Whether the image takes writes now: the core handle's state (opened
 * RDWR, not fenced).  The core's door refuses write-type calls on an image
 * that does not; this is for the driver's own steps (flush at close,
 * bitmaps, a multi-step change that fenced the image on the way). */
static inline bool qcow2_can_write(const struct qcow2_state *s)
{
    return kimg_writes_allowed(s->img);
}

static inline uint64_t qcow2_be64(const uint8_t *p)
{
    return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) |
           ((uint64_t)p[2] << 40) | ((uint64_t)p[3] << 32) |
           ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
           ((uint64_t)p[6] << 8) | p[7];
}
static inline uint32_t qcow2_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t qcow2_be16(const uint8_t *p)
{
    return (uint16_t)(((unsigned)p[0] << 8) | p[1]);
}
static inline void qcow2_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}
static inline void qcow2_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void qcow2_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v;
}
static inline uint64_t qcow2_align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* The state lock.  qcow2_lock/qcow2_unlock wrap s->lock (a default, non
 * recursive mutex); qcow2_assert_locked(s) checks, in builds without
 * NDEBUG, that the calling thread holds it (owner recorded at lock time). */
static inline void qcow2_lock(struct qcow2_state *s)
{
    pthread_mutex_lock(&s->lock);
#ifndef NDEBUG
    pthread_t self = pthread_self();
    __atomic_store(&s->lock_owner, &self, __ATOMIC_RELAXED);
    __atomic_store_n(&s->lock_held, true, __ATOMIC_RELEASE);
#endif
}
static inline void qcow2_unlock(struct qcow2_state *s)
{
#ifndef NDEBUG
    __atomic_store_n(&s->lock_held, false, __ATOMIC_RELAXED);
#endif
    pthread_mutex_unlock(&s->lock);
}
#ifndef NDEBUG
static inline bool qcow2_lock_mine(struct qcow2_state *s)
{
    pthread_t owner;
    if (!__atomic_load_n(&s->lock_held, __ATOMIC_ACQUIRE))
        return false;
    __atomic_load(&s->lock_owner, &owner, __ATOMIC_RELAXED);
    return pthread_equal(owner, pthread_self()) != 0;
}
#define qcow2_assert_locked(s) assert(qcow2_lock_mine(s))
#else
#define qcow2_assert_locked(s) ((void)(s))
#endif

/* ---- header.c ---------------------------------------------------------- */

/* Geometry, derived in one place (qcow2_set_geometry, and these for code
 * that has parameters but no state: create's checks, measure, amend's new
 * refcount width).  L2 entry bytes, log2(L2 entries per table), log2
 * (refcount entries per block). */
static inline uint32_t qcow2_l2_entry_bytes(bool ext_l2)
{
    return ext_l2 ? 16 : 8;
}
static inline uint32_t qcow2_l2_bits_of(uint32_t cluster_bits, bool ext_l2)
{
    return cluster_bits - (ext_l2 ? 4 : 3);
}
static inline uint32_t qcow2_rb_bits_of(uint32_t cluster_bits, uint32_t refcount_order)
{
    return cluster_bits + 3 - refcount_order;
}
/* Every derived field of S (cluster size and mask, L2 entry size and
 * count, subclusters, refcount widths and block entries, compressed
 * descriptor masks) from cluster_bits, ext_l2 and refcount_order. */
void qcow2_set_geometry(struct qcow2_state *s);
/* Compressed descriptor: host offset and byte length of the stored data
 * (geometry only: used by refcount.c below the cluster layer, and by the
 * unlocked half of a read). */
static inline void qcow2_compressed_range(const struct qcow2_state *s, uint64_t entry,
                                          uint64_t *host, uint64_t *len)
{
    uint64_t h = entry & s->coffset_mask;
    uint64_t nsec = ((entry >> s->csize_shift) & s->csize_mask) + 1;
    uint64_t end = (h & ~511ULL) + nsec * 512;
    *host = h;
    *len = end - h;
}

/* Parse and validate the header, its extensions and the backing name from
 * s->file into s (allocates hdr_raw, exts, strings, features, bitmaps).
 * Does not load L1/refcount tables.  file_size: the image file's length. */
int qcow2_parse_header(struct qcow2_state *s, uint64_t file_size);
/* Serialize the in-memory header (fields, unknown additional header bytes,
 * extensions in order, end marker, backing name) into one cluster and
 * write it at offset 0.  -ENOSPC if it does not fit in one cluster. */
int qcow2_write_header(struct qcow2_state *s);
/* The same cluster image built into C (cluster_size bytes, zeroed first)
 * without writing it: *EXT_END is where the extensions end (after the end
 * marker), the backing name, if any, sits there.  After writing (part of)
 * it, qcow2_header_written(s, c) records what the header now says. */
int qcow2_build_header(struct qcow2_state *s, uint8_t *c, uint64_t *ext_end);
void qcow2_header_written(struct qcow2_state *s, const uint8_t *c);
/* Set or clear incompatible bits (dirty/corrupt) in the header on disk
 * (rewrites the 8-byte field only) and syncs. */
int qcow2_update_incompat(struct qcow2_state *s, uint64_t set, uint64_t clear);
/* Name of a feature from the table, or NULL. */
const char *qcow2_feature_name(const struct qcow2_state *s, int type, int bit);
/* Find/replace/remove a stored extension; set with data NULL removes it. */
struct qcow2_ext *qcow2_find_ext(struct qcow2_state *s, uint32_t type);
int qcow2_set_ext(struct qcow2_state *s, uint32_t type, const void *data, uint32_t len);
/* Walk the extensions of header cluster C as stored (the one walk every
 * reader uses): next gives 1 and the TYPE, LEN and offset in C of the
 * DATA of each, 0 at the end marker or the end of the area (it.off is then
 * past what the extensions use), -EINVAL (no message) for a length past
 * the area. */
struct qcow2_ext_iter {
    uint64_t off, end;
};
void qcow2_ext_begin(const struct qcow2_state *s, struct qcow2_ext_iter *it);
int qcow2_ext_next(struct qcow2_ext_iter *it, const uint8_t *c, uint32_t *type,
                   uint32_t *len, uint64_t *data);
/* Set the feature name table extension qemu writes into v3 headers (it
 * does so only with clusters of 8 KiB and more: callers decide). */
int qcow2_add_feature_table(struct qcow2_state *s);
/* Free everything qcow2_parse_header allocated. */
void qcow2_free_header(struct qcow2_state *s);
/* Report a corruption found at run time: message set with kimg_error, the
 * corrupt bit written and the core handle fenced (kimg_fence) if the image
 * is writable (once).  Returns -EIO. */
int qcow2_signal_corruption(struct qcow2_state *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- crypto.c ---------------------------------------------------------- */

/* Called by open after qcow2_parse_header, with s->img set.  Unencrypted:
 * 0 (an encrypt.key-secret open option is taken and ignored, as qemu).
 * Encrypted: the CRYPTO extension's area is checked against the file and
 * the LUKS header opened (luks_open); with the open option
 * encrypt.key-secret the key is unlocked (luks_unlock, or the legacy AES
 * key); without one, only a KIMG_OPEN_NO_IO open succeeds (qemu's
 * "Parameter 'encrypt.key-secret' is required for cipher"). */
int qcow2_crypto_open(struct qcow2_state *s, uint64_t file_size);
void qcow2_crypto_close(struct qcow2_state *s);
/* amend's encrypt.* options on a LUKS image opened with its key
 * (luks_amend, crash-safe in the LUKS area; the image's other metadata is
 * not touched).  An AES image: qemu's "Only LUKS encryption options can be
 * amended". */
int qcow2_crypto_amend(struct qcow2_state *s, const struct kimg_opts *opts, bool force);
/* Whether guest data is encrypted, and whether it can be (key given). */
static inline bool qcow2_encrypted(const struct qcow2_state *s)
{
    return s->crypt_method != QCOW2_CRYPT_NONE;
}
/* 0 if guest data of S can be read and written (plain, or unlocked), else
 * qemu's refusal (-ENOKEY) with its message. */
int qcow2_crypto_check_io(const struct qcow2_state *s);
/* Encrypt (ENC) or decrypt LEN bytes of BUF in place: the data of guest
 * offset GUEST stored at host offset HOST (both and LEN multiples of 512;
 * the IV's sector is HOST/512 for LUKS, GUEST/512 for AES, as qemu's
 * crypt_physical_offset).  Thread-safe, no lock, no I/O. */
int qcow2_crypto_run(const struct qcow2_state *s, bool enc, uint64_t guest, uint64_t host,
                     void *buf, uint64_t len);
/* Read LEN bytes of guest data stored at HOST (for guest offset GUEST, the
 * same offset inside a cluster) from the data file and decrypt them into
 * BUF; any alignment (whole sectors are read around it).  Past the end of
 * the file reads as zeros before decryption.  No lock needed. */
int qcow2_crypto_pread(const struct qcow2_state *s, void *buf, uint64_t len, uint64_t host,
                       uint64_t guest);
/* The "encrypt" object of the format-specific info, or NULL (no memory). */
struct kimg_jv *qcow2_crypto_info(const struct qcow2_state *s);
/* The error every guest data access to an encrypted image opened without
 * its key returns (KIMG_OPEN_NO_IO opens). */
int qcow2_crypto_refuse(void);
/* create, before the other options' values are checked (qemu's option
 * visitor: after compat, before preallocation): encrypt.format's value,
 * encrypt.* without a format, options the AES format does not take, the
 * LUKS option values (luks_params_check), in qemu-img's words. */
int qcow2_crypto_opts_check(const struct kimg_opts *opts);
/* create, first of all (qemu renames its option aliases before anything
 * else): encryption=on with encrypt.format refused in qemu's words. */
int qcow2_crypto_alias_check(const struct kimg_opts *opts);
/* create and measure: the encrypt.* options of OPTS checked as qemu-img
 * does (the secret looked up, never kept); *ON: whether they ask for
 * encryption; *AREA_LEN (may be NULL): the bytes the LUKS header takes. */
int qcow2_crypto_create_check(const struct kimg_opts *opts, bool *on, uint64_t *area_len);
/* create, lock held, after the L1 table and preallocation (qemu's order):
 * allocate the LUKS area's clusters (zeroed), write the header and key
 * slot 0 there, set crypt_method and the CRYPTO extension (the caller
 * writes the qcow2 header); the new key is then ready for data. */
int qcow2_crypto_create(struct qcow2_state *s, const struct kimg_opts *opts);

/* ---- cache.c ----------------------------------------------------------- */

int qcow2_cache_init(struct qcow2_cache *c, struct qcow2_state *s, int n,
                     size_t table_size, const char *what);
void qcow2_cache_destroy(struct qcow2_cache *c);
/* Get the table at OFFSET (read from the file if not cached); holds a
 * reference until qcow2_cache_put. */
int qcow2_cache_get(struct qcow2_cache *c, uint64_t offset, uint8_t **table);
/* Same, but for a freshly allocated table: no read, contents zeroed. */
int qcow2_cache_get_empty(struct qcow2_cache *c, uint64_t offset, uint8_t **table);
void qcow2_cache_put(struct qcow2_cache *c, uint8_t *table);
void qcow2_cache_mark_dirty(struct qcow2_cache *c, uint8_t *table);
/* Write every dirty table (dependencies first). */
int qcow2_cache_flush(struct qcow2_cache *c);
/* Forget the table at OFFSET without writing it (its cluster was freed). */
void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset);
/* Forget every table (after flushing or on close without writing). */
void qcow2_cache_clear(struct qcow2_cache *c);
/* Flush both caches (refcounts first), then the L1 entries of new L2
 * tables (cluster.c's pending list), and sync the files. */
int qcow2_flush_caches(struct qcow2_state *s);

/* ---- refcount.c -------------------------------------------------------- */

/* Load the refcount table into s->rt (validating entries). */
int qcow2_load_refcount_table(struct qcow2_state *s, uint64_t file_size);
/* Refcount of host cluster CLUSTER_INDEX (offset >> cluster_bits). */
int qcow2_refcount_get(struct qcow2_state *s, uint64_t cluster_index, uint64_t *out);
/* The same without side effects (for heuristics on read paths): an invalid
 * or overlapping refcount block gives -EIO; nothing is marked corrupt. */
int qcow2_refcount_peek(struct qcow2_state *s, uint64_t cluster_index, uint64_t *out);
/* Set it (allocating refcount blocks / growing the table as needed). */
int qcow2_refcount_set(struct qcow2_state *s, uint64_t cluster_index, uint64_t value);
/* Add DELTA (+/-) to the refcount of every cluster touched by the host
 * byte range [offset, offset+len).  Freed clusters leave the caches. */
int qcow2_refcount_update(struct qcow2_state *s, uint64_t offset, uint64_t len,
                          int64_t delta);
/* Allocate N contiguous clusters (refcount 1); *offset is the first byte.
 * Never returns clusters overlapping known metadata. */
int qcow2_alloc_clusters(struct qcow2_state *s, uint64_t n, uint64_t *offset);
/* Free (refcount -1) the clusters of [offset, offset+len). */
int qcow2_free_clusters(struct qcow2_state *s, uint64_t offset, uint64_t len);
/* Note cluster CI as freed in s->freed, if set (best effort: no error). */
void qcow2_note_freed(struct qcow2_state *s, uint64_t ci);
/* Recompute all refcounts from the references (header, L1/L2 tables of the
 * active state and every snapshot, refcount structures, snapshot table,
 * bitmaps) and write a fresh refcount table and blocks; the header is
 * switched to the new table and the old structures are dropped. */
int qcow2_rebuild_refcounts(struct qcow2_state *s);
/* Count references to each host cluster into REFS (nb counters, zeroed by
 * the caller, one per cluster of the file, saturating at UINT32_MAX); used
 * by rebuild and check.  References to clusters >= nb are counted in *bad
 * (may be NULL).  Reads L2 tables through the cache. */
int qcow2_count_references(struct qcow2_state *s, uint32_t *refs, uint64_t nb,
                           uint64_t *bad);
/* Raw access to one refcount block entry, any width. */
uint64_t qcow2_rb_entry_get(const struct qcow2_state *s, const uint8_t *rb, uint64_t i);
void qcow2_rb_entry_set(const struct qcow2_state *s, uint8_t *rb, uint64_t i, uint64_t v);
/* True if [offset, offset+len) overlaps the header, L1 table, refcount
 * table, snapshot table or snapshot L1 tables or the bitmap directory
 * (cheap), or (full) also a refcount block or an active L2 table. */
bool qcow2_overlaps_main(struct qcow2_state *s, uint64_t offset, uint64_t len);
bool qcow2_overlaps_metadata(struct qcow2_state *s, uint64_t offset, uint64_t len);

/* ---- cluster.c: L1/L2 lookup, L2 allocation, COW, L1 growth ------------ */

enum qcow2_sc_type {
    QCOW2_SC_UNALLOC,           /* reads from backing */
    QCOW2_SC_UNALLOC_ALLOC,     /* ext L2: host cluster present, subcluster not */
    QCOW2_SC_ZERO_PLAIN,        /* reads zeros, no host cluster */
    QCOW2_SC_ZERO_ALLOC,        /* reads zeros, host cluster kept */
    QCOW2_SC_NORMAL,
    QCOW2_SC_COMPRESSED,
};
/* Fetch L2 entry (and bitmap, 0 if not ext L2) for guest offset OFF.
 * Unallocated L1 entries give entry 0.  Validates the L1 entry. */
int qcow2_get_l2_entry(struct qcow2_state *s, uint64_t off, uint64_t *entry,
                       uint64_t *bitmap);
/* Classify subcluster SC (0..31, 0 without ext L2) of an entry; -EIO on an
 * invalid entry (reserved bits, misalignment) after signalling corruption. */
int qcow2_sc_type(struct qcow2_state *s, uint64_t entry, uint64_t bitmap,
                  unsigned sc, enum qcow2_sc_type *type);
/* Guest offset OFF's index in the L1 table, and its L2 entry's slot in
 * the (cached) L2 table L2 that covers it. */
static inline uint64_t qcow2_l1_index(const struct qcow2_state *s, uint64_t off)
{
    return off >> (s->cluster_bits + s->l2_bits);
}
/* Whether L1 entry L1I exists and names an L2 table (not validated: a
 * quick test; qcow2_get_l2_entry and qcow2_l2_for_write validate). */
static inline bool qcow2_l1_has_table(const struct qcow2_state *s, uint64_t l1i)
{
    return l1i < s->l1_size && (s->l1[l1i] & QCOW2_L1E_OFFSET_MASK);
}
static inline uint8_t *qcow2_l2_slot(const struct qcow2_state *s, uint8_t *l2, uint64_t off)
{
    return l2 + ((off >> s->cluster_bits) & (s->l2_entries - 1)) * s->l2_entry_size;
}
/* Store ENTRY (and BITMAP with extended L2) into an L2 slot. */
static inline void qcow2_l2_set(const struct qcow2_state *s, uint8_t *slot, uint64_t entry,
                                uint64_t bitmap)
{
    qcow2_put_be64(slot, entry);
    if (s->ext_l2)
        qcow2_put_be64(slot + 8, bitmap);
}
/* The host range an L2 entry holds a reference on (length 0: none), as
 * refcounts count references: clusters of an external data file are not
 * counted. */
void qcow2_entry_ref(const struct qcow2_state *s, uint64_t entry, uint64_t *off,
                     uint64_t *len);
/* Load an L1 table from the file (l1_size entries at offset), validated. */
int qcow2_read_l1(struct qcow2_state *s, uint64_t offset, uint32_t l1_size,
                  uint64_t **out);
/* Grow the active L1 table to at least MIN_SIZE entries (new location). */
int qcow2_grow_l1(struct qcow2_state *s, uint64_t min_size);
/* Write the L1 entries of new L2 tables noted by qcow2_l2_for_write
 * (called by qcow2_flush_caches once the L2 cache is on disk). */
int qcow2_l1_write_pending(struct qcow2_state *s);
/* The L2 table covering guest offset OFF ready for modification: allocated
 * (a new table is dirty in the cache, its L1 entry pending), or copied when
 * shared with a snapshot (refcount, table, L1 entry written in that order,
 * the old table freed after).  The L1 table grows if OFF lies past it.
 * Returns the table held in the L2 cache (qcow2_cache_put when done). */
int qcow2_l2_for_write(struct qcow2_state *s, uint64_t off, uint8_t **table);
/* Copy-on-write: the old content of cluster-relative range [a, b) of the
 * cluster at guest offset CSTART, whose L2 ENTRY classifies as TYPES[]
 * (one per subcluster; DECOMP: the decompressed cluster if compressed),
 * read into OUT: host data, zeros, or the backing chain's data. */
int qcow2_cow_read(struct qcow2_state *s, uint64_t cstart, uint64_t entry,
                   const enum qcow2_sc_type *types, const uint8_t *decomp,
                   uint8_t *out, uint64_t a, uint64_t b);
/* Host ranges to free once the L2 entries that dropped them are on disk:
 * _run flushes the L2 cache, then frees them (and empties the list). */
struct qcow2_freelist {
    uint64_t *off, *len;
    size_t n, cap;
};
int qcow2_freelist_add(struct qcow2_freelist *f, uint64_t off, uint64_t len);
int qcow2_freelist_run(struct qcow2_state *s, struct qcow2_freelist *f);
void qcow2_freelist_free(struct qcow2_freelist *f);

/* ---- map.c: guest reads and block status -------------------------------- */

/* Read and decompress one compressed cluster into OUT (cluster_size). */
int qcow2_read_compressed(struct qcow2_state *s, uint64_t entry, uint8_t *out);

/* Lock held.  The driver's read: a writable image is read now; for a
 * read-only one the mapping is recorded in PL (zeroed by the caller, PL->v
 * freed by it) and qcow2_read_plan_run, called without the lock, reads
 * and decompresses (only fields fixed at open are used there). */
struct qcow2_read_seg;
struct qcow2_read_plan {
    struct qcow2_read_seg *v;
    size_t n, cap;
};
int qcow2_read(struct kimg *img, void *buf, uint64_t off, uint64_t len,
               struct qcow2_read_plan *pl);
int qcow2_read_plan_run(struct kimg *img, const struct qcow2_read_plan *pl);
/* Lock held.  The driver's block_status. */
int qcow2_block_status(struct kimg *img, uint64_t off, uint64_t len,
                       struct kimg_extent *ext);

/* ---- compress.c -------------------------------------------------------- */

/* Decompress SRC (srclen bytes) into exactly DSTLEN bytes; -EIO if the
 * data does not produce DSTLEN bytes.  type: QCOW2_COMPRESSION_*. */
int qcow2_decompress(int type, uint8_t *dst, size_t dstlen,
                     const uint8_t *src, size_t srclen);
/* inflate.c: 0 if SRC is a whole raw deflate stream of exactly DSTLEN
 * bytes, decoded into DST by libdeflate (if installed); 1: use zlib. */
int qcow2_inflate_fast(uint8_t *dst, size_t dstlen, const uint8_t *src, size_t srclen);
/* Compress SRC (len bytes) into DST (cap bytes); returns the compressed
 * length, -ENOSPC if it does not fit (store uncompressed then), -EIO. */
int64_t qcow2_compress(int type, uint8_t *dst, size_t cap,
                       const uint8_t *src, size_t len);
/* The same at LEVEL (zlib 1-9, zstd 1-22; 0: qemu's default). */
int64_t qcow2_compress_level(int type, int level, uint8_t *dst, size_t cap,
                             const uint8_t *src, size_t len);
/* The driver's set_write_option: "compression_level" (driver.h). */
int qcow2_set_write_option(struct kimg *img, const char *key, const char *value);

/* ---- write.c: guest data writes ---------------------------------------- */

/* The driver's write, write_zeroes, discard, flush, alloc_data and
 * commit_data (driver.h). */
int qcow2_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len);
int qcow2_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags);
int qcow2_discard(struct kimg *img, uint64_t off, uint64_t len);
int qcow2_flush(struct kimg *img);
int64_t qcow2_alloc_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t *host,
                         struct kimg_file **file);
int qcow2_commit_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t host);
/* Lock held, image writable: guest data BUF written over [off, off+len)
 * (new clusters and copy-on-write as needed). */
int qcow2_write_data(struct qcow2_state *s, const void *buf, uint64_t off, uint64_t len);
/* Write one compressed cluster at guest cluster-aligned OFF (len = one
 * cluster or the image tail); falls back to a normal write if it does
 * not shrink.  _plain: the stored-as-is fallback. */
int qcow2_write_compressed(struct qcow2_state *s, const void *buf, uint64_t off,
                           uint64_t len);
int qcow2_write_plain(struct qcow2_state *s, const void *buf, uint64_t off, uint64_t len);

/* ---- zero.c: zero writes and discard ------------------------------------ */

/* Lock held, image writable.  The driver's write_zeroes (FLAGS:
 * KIMG_ZERO_*) and discard over [off, off+len). */
int qcow2_zero_range(struct qcow2_state *s, uint64_t off, uint64_t len, unsigned flags);
bool qcow2_zero_is_fast(const struct qcow2_state *s, uint64_t off, uint64_t len, unsigned flags);
int qcow2_discard_range(struct qcow2_state *s, uint64_t off, uint64_t len);
/* Lock held: zeros written as guest data over [off, off+len); and the
 * cluster-granular zeroing of whole (sub)clusters, MODE 0 keep allocation,
 * 1 may unmap, 2 discard, 3 full discard (entries become unallocated). */
int qcow2_zero_bytes(struct qcow2_state *s, uint64_t off, uint64_t len);
int qcow2_zero_clusters(struct qcow2_state *s, uint64_t off, uint64_t len, int mode);

/* ---- write_compressed.c: compressed clusters ---------------------------- */

/* Compress one guest cluster (LEN bytes; shorter only at the image's end)
 * into DST: thread-safe, no I/O, no lock (fields fixed at open only).
 * -ENOSPC: it does not shrink.  qcow2_can_compress: whether a compressed
 * write of [off, off+len) can be stored compressed. */
int64_t qcow2_compress_cluster(struct qcow2_state *s, const void *buf, uint64_t len,
                               uint8_t *dst, size_t cap);
bool qcow2_can_compress(const struct qcow2_state *s, uint64_t off, uint64_t len);
/* Lock held: store CLEN bytes of compressed data for guest cluster OFF. */
int qcow2_store_compressed(struct qcow2_state *s, uint64_t off, const uint8_t *cdata,
                           int64_t clen);

/* ---- prealloc.c --------------------------------------------------------- */

/* Lock held: allocate metadata (and host clusters) for guest [off, off+len).
 * An unlocked encrypted image's new clusters get the encryption of zeros
 * in every mode (prealloc.c says why). */
int qcow2_preallocate(struct qcow2_state *s, uint64_t off, uint64_t len,
                      enum kimg_prealloc mode);
/* create, after qcow2_crypto_create: the encryption of zeros written into
 * every allocated cluster of guest range [OFF, END) (lock held), so the
 * preallocated clusters of a new encrypted image read as zeros. */
int qcow2_preallocate_encrypted(struct qcow2_state *s, uint64_t off, uint64_t end);

/* ---- amend.c / amend_refcount.c / amend_compat.c ---------------------- */

/* Lock held.  The driver's amend (kimg_amend, qemu-img amend -o). */
int qcow2_amend(struct kimg *img, struct kimg_opts *opts, bool force);
/* The driver's amend_opts: qemu 7.2's, in its order. */
extern const struct kimg_optdesc qcow2_amend_opts[];
/* Lock held.  Rewrite the refcount structure with 1 << ORDER bit entries
 * (new blocks and table past everything in use, one header write). */
int qcow2_change_refcount_order(struct qcow2_state *s, uint32_t order);
/* Lock held.  compat=1.1 from 0.10 / compat=0.10 from 1.1 (qemu's checks
 * and messages; zero clusters expanded, bitmaps dropped). */
int qcow2_amend_upgrade(struct qcow2_state *s);
int qcow2_amend_downgrade(struct qcow2_state *s);

/* ---- resize.c ---------------------------------------------------------- */

/* The driver's truncate (qemu-img resize, amend -o size): grow or shrink
 * the virtual size as qemu's qcow2_co_truncate does; lock held. */
int qcow2_truncate(struct kimg *img, uint64_t size, enum kimg_prealloc prealloc);

/* ---- snapshot.c -------------------------------------------------------- */

/* Parse the snapshot table.  An entry whose L1 table is unaligned or too
 * large is kept with l1_invalid set (qemu opens such an image); one whose
 * table lies past the end of the file fails the open, unless REPAIR
 * (check's KIMG_OPEN_REPAIR): then it is kept with l1_invalid set too. */
int qcow2_read_snapshots(struct qcow2_state *s, uint64_t file_size, bool repair);
/* For the reference count of check and rebuild (qemu's calculate_refcounts):
 * the entries of snapshot SN's L1 table that lie inside the file (FILE_SIZE
 * bytes), zeros past its end, as qemu reads them.  SN's offset must be
 * cluster aligned and its table not too large.  *n = 0 and *out = NULL when
 * nothing lies inside the file.  Allocation bounded by the file size and
 * QCOW2_MAX_L1_BYTES. */
int qcow2_snapshot_l1_in_file(struct qcow2_state *s, const struct qcow2_snapshot *sn,
                              uint64_t file_size, uint64_t **out, uint32_t *n);
/* True if SN's L1 table (offset, size) ends one cluster or more past the end
 * of a FILE_SIZE-byte file: qemu's check reports it and counts no reference. */
bool qcow2_snapshot_l1_past_eof(const struct qcow2_state *s, const struct qcow2_snapshot *sn,
                                uint64_t file_size);
/* 0, or SN's L1 table is too large or unaligned (or l1_invalid): qemu's
 * refusal of a use of it (qcow2_validate_table's "Snapshot L1 table too
 * large" / "... offset invalid"), as kimg_fail. */
int qcow2_snapshot_check_l1(const struct qcow2_state *s, const struct qcow2_snapshot *sn);
void qcow2_free_snapshots(struct qcow2_state *s);
/* True if SN lacks extra data a version 3 entry must have (16 bytes). */
bool qcow2_snapshot_incomplete(const struct qcow2_state *s, const struct qcow2_snapshot *sn);
/* Write the snapshot table anew as qemu 7.2 writes it (every entry with
 * its 24 bytes of known extra data): to newly allocated clusters, synced,
 * then one header write names it; the old table's clusters are freed
 * after.  The entries are reread (REPAIR as for qcow2_read_snapshots). */
int qcow2_snapshot_table_rewrite(struct qcow2_state *s, bool repair);
/* Index of the first snapshot whose ID is ID and whose name is NAME (a
 * NULL argument matches any; not both NULL), or -1. */
int qcow2_snapshot_find(const struct qcow2_state *s, const char *id, const char *name);
/* ARG as an ID first, then as a name (qemu's find_snapshot_by_id_or_name). */
int qcow2_snapshot_find_id_or_name(const struct qcow2_state *s, const char *arg);
/* Serialize NB entries as qemu 7.2 writes a snapshot table: entries 8-byte
 * aligned, at least 24 bytes of extra data (VM state size, disk size,
 * icount; unknown extra data kept).  *OUT (malloc'd) NULL and *LEN 0 for
 * none; -EFBIG past QCOW2_MAX_SN_TABLE_BYTES. */
int qcow2_snapshot_encode(const struct qcow2_state *s, const struct qcow2_snapshot *sns,
                          uint32_t nb, uint8_t **out, uint64_t *len);

/* ---- snapshot_commit.c / snapshot_ops.c -------------------------------- */

/* The state a snapshot operation leaves: the active L1 entries (their
 * COPIED flags are recomputed), the virtual size, and the snapshot list,
 * whose entries name L1 tables already on disk (for a new snapshot: the
 * active L1 table as it is). */
struct qcow2_sn_change {
    const uint64_t *l1;
    uint32_t l1_size;
    uint64_t size;
    const struct qcow2_snapshot *sns;
    uint32_t nb_sns;
};
/* Switch the image to that state atomically (lock held, image writable):
 * new structures in clusters the old state does not use, exact new
 * refcounts, then one header write; see snapshot_commit.c.  Nothing on
 * disk changes on failure before the switch. */
int qcow2_sn_commit(struct qcow2_state *s, const struct qcow2_sn_change *ch);
/* Lock held.  The driver's snapshot_create / _apply / _delete / _load
 * (kimg.h; qcow2.c's entry points take the lock). */
int qcow2_snapshot_create(struct qcow2_state *s, const char *name);
int qcow2_snapshot_apply(struct qcow2_state *s, const char *id_or_name);
int qcow2_snapshot_delete(struct qcow2_state *s, const char *id_or_name);
int qcow2_snapshot_load(struct qcow2_state *s, const char *id, const char *name);

/* ---- bitmaps (header.c) ------------------------------------------------ */

int qcow2_read_bitmaps(struct qcow2_state *s, uint64_t file_size);

/* ---- bitmap.c: persistent dirty bitmaps across writes ----------------- */

/* Read-write open, after qcow2_read_bitmaps: validate the directory and
 * the consistent bitmaps' tables as qemu does (plus: no cluster shared
 * with other metadata), and set up s->bm when an enabled consistent
 * bitmap must record writes.  -EINVAL with qemu's message on a bad
 * directory or table (the bitmaps then cannot be kept). */
int qcow2_bitmaps_open(struct qcow2_state *s, uint64_t file_size);
/* Before guest data of [off, off+len) changes (lock held): the first
 * time after open or a store, mark the tracked bitmaps in_use on disk
 * (synced); then set their bits in memory.  No-op without s->bm. */
int qcow2_bitmaps_write(struct qcow2_state *s, uint64_t off, uint64_t len);
/* Store the tracked bitmaps if anything was marked since the last store
 * (in_use cleared, old clusters freed); lock held. */
int qcow2_bitmaps_store(struct qcow2_state *s);
int qcow2_bitmaps_flush(struct qcow2_state *s);
void qcow2_bitmaps_free(struct qcow2_state *s);
/* Resize (s->lock held): _begin, before anything changes, stores pending
 * bits, refuses in_use bitmaps (qemu's message) and marks every bitmap
 * in_use on disk (synced); _end, after the size changed, writes each
 * bitmap's table for the new size at new clusters (bits past a shrunk end
 * dropped, a grown area clean), switches the directory with in_use
 * cleared, frees the old clusters and restarts tracking at the new size.
 * A failure in between leaves the bitmaps in_use. */
int qcow2_bitmaps_resize_begin(struct qcow2_state *s, uint64_t new_size);
int qcow2_bitmaps_resize_end(struct qcow2_state *s, uint64_t old_size);
/* Entries of the table a consistent bitmap of granularity 2^GB needs. */
uint64_t qcow2_bm_table_size(const struct qcow2_state *s, uint32_t gb);
/* Read and validate bitmap B's table (host-endian, malloc'd) into *OUT:
 * inside the file, every entry 0, 1 (all ones) or a cluster inside it. */
int qcow2_bm_load_table(struct qcow2_state *s, const struct qcow2_bitmap *b,
                        uint64_t file_size, uint64_t **out);

/* ---- bitmap_ops.c: managing bitmaps (kimg bitmap) ---------------------- */

/* Lock held.  The driver's bitmap_change and bitmap_dirty (kimg.h:
 * kimg_bitmap_change, kimg_bitmap_dirty).  A change stores pending bits
 * first, writes the new tables, chunks and directory to new clusters,
 * then switches with one header write and frees what only the old set
 * used; tracking restarts on the new set. */
int qcow2_bitmap_change(struct qcow2_state *s, const struct kimg_bitmap_op *op);
int qcow2_bitmap_list(struct qcow2_state *s, struct kimg_bitmap_info **list, size_t *n);
int qcow2_bitmap_dirty(struct qcow2_state *s, const char *name, uint64_t off,
                       uint64_t len, bool *dirty, uint64_t *pnum);
/* check -r all (lock held): remove every inconsistent (in-use) bitmap of
 * a validated set, each with one switch, their clusters left for the
 * check's leak repair; NAMED(OPAQUE, NAME) after each.  0 or -errno. */
int qcow2_bitmaps_drop_in_use(struct qcow2_state *s,
                              void (*named)(void *opaque, const char *name), void *opaque);
/* Forget the cached table and cluster of bitmap_dirty (any change). */
void qcow2_bitmap_query_reset(struct qcow2_state *s);

/* ---- create.c / info.c / check.c --------------------------------------- */

extern const struct kimg_optdesc qcow2_create_opts[];
/* The driver's formatting_opts (qemu-img's "Formatting" line). */
extern const struct kimg_shown_opt qcow2_formatting_opts[];
/* The driver's create (qcow2.c) builds the new image in a zeroed state S
 * whose lock it holds; qcow2_create_in frees what it put into S. */
int qcow2_create_in(struct qcow2_state *s, const struct kimg_create_args *args);
int qcow2_info(struct kimg *img, struct kimg_info *info);
/* info.c, lock held (qcow2.c's entry points): the driver's
 * create_opts_like and has_bitmaps (driver.h). */
int qcow2_create_opts_like(struct kimg *img, struct kimg_opts **opts);
bool qcow2_has_bitmaps(struct kimg *img);
/* check.c (check + repair, written separately); lock held (qcow2.c). */
int qcow2_check(struct kimg *img, struct kimg_check *res, unsigned fix);
/* measure.c: the driver's measure (driver.h); SRC may be NULL. */
int qcow2_measure(struct kimg_opts *opts, uint64_t size, struct kimg *src,
                  struct kimg_measure *out);

/* ---- backing.c --------------------------------------------------------- */

/* Lock held.  The driver's change_backing and make_empty (driver.h). */
int qcow2_change_backing(struct kimg *img, const char *name, const char *format);
int qcow2_make_empty(struct kimg *img);

/* ---- qcow2.c ----------------------------------------------------------- */

/* Open the qcow2 layer in F as IMG's state S (used by open and by tests). */
int qcow2_do_open(struct kimg *img);
void qcow2_do_close(struct kimg *img);

#endif
