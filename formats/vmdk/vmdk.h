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

/* ====================== the driver half (vmdk.c, descriptor.c, ...) ==== */

/* Declared by the driver half. */

#endif
