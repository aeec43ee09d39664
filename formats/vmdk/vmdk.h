/*
 * vmdk.h — private to formats/vmdk: the VMDK read-only driver.
 * From VMware's "Virtual Disk Format 5.0" note.  A VMDK is a descriptor
 * (text: version, CID/parentCID, createType, parentFileNameHint, one line
 * per extent) and extents that hold the guest data in order:
 *   FLAT / VMFS       the data, raw, at an offset in a file;
 *   SPARSE            a hosted sparse extent ("KDMV" header: grain
 *                     directory, grain tables, grains; streamOptimized
 *                     files store deflated grains behind markers);
 *   VMFSSPARSE        an ESX sparse extent ("COWD" header);
 *   ZERO              no file: reads as zeros.
 * A monolithicSparse or streamOptimized file is one SPARSE extent that
 * carries its descriptor inside (the embedded descriptor).
 *
 * Grouped by file, two owners:
 *   vmdk.c        the driver table: probe, open (descriptor file or sparse
 *                 file with an embedded descriptor), close, read and block
 *                 status over the extents, info, check, map
 *   descriptor.c  the descriptor parser (text -> struct vmdk_desc)
 *   extents.c     opening the files the descriptor names (the security
 *                 boundary), flat/zero extents
 *   sparse.c      hosted sparse extents: header, grain directory/tables,
 *                 grain lookup and reads ("the sparse half", below)
 *   stream.c      streamOptimized: compressed grains, markers, the footer
 *                 and grain directory at the end of the file
 *   cowd.c        vmfsSparse ("COWD") extents
 *
 * Contract between the driver half (vmdk.c, descriptor.c, extents.c) and
 * the sparse half (sparse.c, stream.c, cowd.c): the declarations in the
 * "sparse half" section below.  Either half may add members or functions;
 * the declared ones keep their meaning.
 */
#ifndef KIMG_VMDK_H
#define KIMG_VMDK_H

#include <stdbool.h>
#include <stdint.h>
#include "kimg/driver.h"

#define VMDK_SECTOR          512u
/* the largest descriptor kimg reads (embedded or a file of its own) */
#define VMDK_MAX_DESC_BYTES  (1u << 20)
/* extents in one descriptor */
#define VMDK_MAX_EXTENTS     4096u

/* ====================== the sparse half (sparse.c, stream.c, cowd.c) === */

struct vmdk_sparse;             /* private to the sparse half */

/* What the sparse half tells the driver about one opened sparse extent. */
struct vmdk_sparse_info {
    uint64_t capacity;          /* bytes the extent holds (header capacity) */
    uint64_t grain_size;        /* bytes */
    uint32_t version;           /* KDMV header version 1..3; COWD: 1 */
    bool compressed;            /* grains are deflated (streamOptimized) */
    bool cowd;                  /* a vmfsSparse ("COWD") extent */
    /* where an embedded descriptor lies in the file (bytes), 0/0: none */
    uint64_t desc_offset, desc_size;
};

/* Whether BUF (LEN bytes, the start of a file) starts with a sparse
 * extent's magic: KDMV (hosted sparse) or COWD (vmfsSparse). */
bool vmdk_sparse_magic(const uint8_t *buf, size_t len);

/* Parse and validate the sparse extent in FILE (FILE_SIZE bytes); load or
 * prepare its grain tables within the memory budget.  FILE stays owned by
 * the caller and outlives the result.  0 with *OUT and *INFO set, or
 * -errno with kimg_error() and nothing allocated. */
int vmdk_sparse_open(struct kimg_file *file, uint64_t file_size,
                     struct vmdk_sparse **out, struct vmdk_sparse_info *info);
void vmdk_sparse_close(struct vmdk_sparse *s);

/* How a run of an extent is stored (vmdk_sparse_status). */
enum vmdk_grain_kind {
    VMDK_GRAIN_UNALLOCATED,     /* this layer has nothing: the parent decides */
    VMDK_GRAIN_ZERO,            /* allocated as zeros (zeroed-grain entry) */
    VMDK_GRAIN_DATA,            /* uncompressed, at host offset HOST */
    VMDK_GRAIN_COMPRESSED,      /* one deflated grain (HOST: its marker) */
};

struct vmdk_grain_run {
    enum vmdk_grain_kind kind;
    uint64_t length;            /* >= 1 bytes of uniform kind; DATA runs are
                                   contiguous in the file; a COMPRESSED run
                                   never crosses a grain boundary */
    uint64_t host;              /* DATA: file offset of the run's first byte */
};

/* The run starting at extent offset OFF, at most LEN bytes (OFF + LEN <=
 * capacity, LEN >= 1).  Thread-safe. */
int vmdk_sparse_status(struct vmdk_sparse *s, uint64_t off, uint64_t len,
                       struct vmdk_grain_run *run);

/* Read [OFF, OFF+LEN) of the extent into BUF, where that whole range is
 * DATA or COMPRESSED (one run from vmdk_sparse_status, or a part of it).
 * Thread-safe: several workers read (and decompress) at once. */
int vmdk_sparse_read(struct vmdk_sparse *s, void *buf, uint64_t off, uint64_t len);

/* qemu-img check's per-extent checks (grain offsets inside the file, ...),
 * adding to RES; messages to RES->log in qemu-img's wording. */
int vmdk_sparse_check(struct vmdk_sparse *s, struct kimg_check *res);
/* The same for an extent that starts at byte BASE of the image (messages
 * name image sectors, as qemu's).  As qemu, the walk stops at the first
 * problem: one corruption counted, -EINVAL returned (the driver then
 * stops walking further extents); 0 when the extent is clean. */
int vmdk_sparse_check_at(struct vmdk_sparse *s, struct kimg_check *res, uint64_t base);

/* ---- write.c: writing a stream extent as it is made ---- */

/* Make S (opened by vmdk_sparse_open) take writes: a hosted sparse
 * extent, or a streamOptimized extent in qemu's layout that holds no
 * grain yet (a new image), with its grain tables preallocated; anything
 * else is refused (-ENOTSUP, one message).  On failure S stays open
 * read-only. */
int vmdk_sparse_enable_write(struct vmdk_sparse *s);
/* Deflate the grain at extent offset OFF (grain-aligned; LEN a whole grain,
 * less only for the extent's last grain) from BUF into DST (CAP bytes) as
 * it is stored: grain marker + zlib stream.  Thread-safe, no I/O.  The
 * stored length, or -ENOSPC when CAP is too small, -EINVAL for a partial
 * grain. */
int64_t vmdk_stream_compress(struct vmdk_sparse *s, uint64_t off, const void *buf,
                             uint64_t len, void *dst, size_t cap);
/* The most vmdk_stream_compress may need for one grain. */
size_t vmdk_stream_bound(struct vmdk_sparse *s);
/* Store such a grain (CLEN bytes from vmdk_stream_compress for OFF) after
 * the last one and link it; an allocated grain is refused (-EIO).
 * Serialized inside; the file's layout follows the order of the calls. */
int vmdk_stream_store(struct vmdk_sparse *s, uint64_t off, const void *cdata, size_t clen);
/* After the last store: the end-of-stream marker; *CID the content ID for
 * the descriptor (a CRC-32 of the capacity and the stored bytes, so the
 * same grains give the same file).  1 when done, 0 (*CID untouched) when
 * S was not made writable, or -errno. */
int vmdk_stream_finish(struct vmdk_sparse *s, uint32_t *cid);

/* A hosted sparse extent (not a stream), made writable as above: */
/* Grain G (unallocated or zeroed) gets new space holding BUF (one whole
 * grain, aligned): written past the file's end now, linked at the next
 * commit (lookups see it at once). */
int vmdk_sparse_alloc_grain(struct vmdk_sparse *s, uint64_t g, const void *buf);
/* Grain G reads as zeros (a zeroed-grain entry, linked at the next
 * commit); -ENOTSUP without the zeroed-grain feature. */
int vmdk_sparse_zero_grain(struct vmdk_sparse *s, uint64_t g);
/* Rewrite LEN bytes of allocated data in place at HOST (from a DATA run). */
int vmdk_sparse_write_at(struct vmdk_sparse *s, uint64_t host, const void *buf, uint64_t len);
/* Sync the new grains' data, then write their table entries (both
 * directories' tables).  0 for an extent not made writable or a stream. */
int vmdk_sparse_commit(struct vmdk_sparse *s);

/* ---- create.c (the sparse layout qemu's vmdk_init_extent makes) ---- */

struct vmdk_layout {            /* in sectors */
    uint64_t gt_sectors, gt_count, gd_sectors;
    uint64_t rgd, gd, grain_off;
};

/* ====================== the driver half (vmdk.c, descriptor.c, ...) ==== */

/* ---- descriptor.c: the descriptor text ---- */

enum vmdk_access { VMDK_ACCESS_RW, VMDK_ACCESS_RDONLY, VMDK_ACCESS_NOACCESS };

enum vmdk_ext_type {
    VMDK_EXT_FLAT, VMDK_EXT_VMFS, VMDK_EXT_SPARSE, VMDK_EXT_VMFSSPARSE,
    VMDK_EXT_ZERO,
};

/* One extent line: ACCESS SECTORS TYPE ["FILE" [OFFSET]] */
struct vmdk_desc_extent {
    enum vmdk_access access;
    enum vmdk_ext_type type;
    uint64_t sectors;           /* >= 1 */
    uint64_t offset;            /* FLAT: sectors into FILE; else 0 */
    char *file;                 /* as written (NULL for ZERO) */
    unsigned line;              /* 1-based, for messages */
};

struct vmdk_desc {
    uint32_t version;           /* 1..3 (1 when the line is missing) */
    uint32_t cid, parent_cid;
    bool has_cid, has_parent_cid;
    char *create_type;          /* NULL when missing */
    char *parent_hint;          /* parentFileNameHint, NULL when missing */
    struct vmdk_desc_extent *extents;
    size_t nb_extents;
    uint64_t total_sectors;     /* the extents' sum (<= VMDK_MAX_SECTORS) */
};

/* the largest disk a descriptor may describe: 2^44 sectors (8 PiB) */
#define VMDK_MAX_SECTORS     (1ull << 44)
/* longest line, extent file name and createType kimg takes */
#define VMDK_MAX_LINE        65536u
#define VMDK_MAX_NAME        4095u
#define VMDK_MAX_CREATE_TYPE 127u

/* Parse descriptor TEXT (LEN bytes, no terminator needed) into *D.  An
 * descriptor ends at its first NUL byte, as qemu reads it (the rest of an
 * embedded descriptor's sectors is padding).  An EMBEDDED descriptor's
 * extent lines are skipped (they describe the file that holds it).
 * Comments (#), blank lines, CRLF, spaces and tabs around tokens, quoted
 * or bare values, and unknown keys (ddb.x, changeTrackPath, ...: never
 * opened or kept) are taken; extent lines, CID, parentCID, version,
 * createType and parentFileNameHint are checked field by field.  0, or
 * -EINVAL/-ENOMEM with kimg_error() and *D left empty. */
int vmdk_desc_parse(const char *text, size_t len, bool embedded, struct vmdk_desc *d);
void vmdk_desc_free(struct vmdk_desc *d);
/* The extent type's name as a descriptor spells it ("FLAT", ...). */
const char *vmdk_ext_type_name(enum vmdk_ext_type t);

/* ---- extents.c: the extents of an open image ---- */

struct vmdk_extent {
    enum vmdk_ext_type type;
    uint64_t start, size;       /* guest bytes [start, start + size) */
    struct kimg_file *file;     /* NULL for ZERO; img->file when embedded */
    bool own_file;              /* close FILE with the extent */
    char *path;                 /* FILE's name as opened (info, map) */
    uint64_t file_size;
    uint64_t flat_offset;       /* FLAT/VMFS: byte offset of the data */
    struct vmdk_sparse *sparse; /* SPARSE/VMFSSPARSE */
    struct vmdk_sparse_info sinfo;
    const char *format;         /* what info shows as "format" */
};

struct vmdk_state {
    struct vmdk_extent *ext;
    size_t nb_ext;
    uint32_t cid, parent_cid;
    char *create_type;
    int cid_checked;            /* 0 not yet, 1 valid, -1 mismatch (atomic) */
    bool cid_updated;           /* the CID was renewed (first write; atomic) */
};

/* Open the extents D names, in order, into S (S->ext, S->nb_ext), with
 * the policy of kimg_open_named_file (the security boundary): a FLAT or
 * VMFS extent shorter than declared is refused under --untrusted and
 * warned about otherwise (its missing tail reads as zeros); NOACCESS is
 * refused; SPARSE/VMFSSPARSE through vmdk_sparse_open, whose capacity must
 * equal the descriptor's sector count.  On failure S holds what was
 * opened (vmdk_free_extents frees it). */
int vmdk_open_extents(struct kimg *img, const struct vmdk_desc *d, struct vmdk_state *s);
void vmdk_free_extents(struct vmdk_state *s);
/* The extent holding guest offset OFF (< img->size). */
struct vmdk_extent *vmdk_find_extent(struct vmdk_state *s, uint64_t off);
/* Read / status of [OFF, OFF+LEN) inside one FLAT, VMFS or ZERO extent
 * (OFF relative to the extent). */
int vmdk_flat_read(struct vmdk_extent *e, void *buf, uint64_t off, uint64_t len);
void vmdk_flat_status(struct vmdk_extent *e, uint64_t off, uint64_t len,
                      struct kimg_extent *ext);

/* ---- create.c ---- */

extern const struct kimg_optdesc vmdk_create_opts[];
extern const struct kimg_shown_opt vmdk_formatting_opts[];
int vmdk_create(const struct kimg_create_args *a);
uint32_t vmdk_random_cid(void);

extern const struct kimg_driver kimg_vmdk_driver;

#endif
