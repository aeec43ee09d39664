/*
 * kimg.h — the public API of libkimg, the one header a library user (and
 * the `kimg` command: cmd/, clone/) includes: open an image (one layer
 * plus its backing chain), read and write its guest-visible content, walk
 * its allocation, create images, report info, check them; at its end it
 * includes the topic headers under kimg/ (options, JSON output, convert,
 * compare, checksum, atomic outputs), as git2.h does.  cmd/ and clone/ are
 * compiled with -Iinclude alone, so the compiler holds them to this:
 * structs they must not read are opaque here (struct kimg, kimg_opts), and
 * the implementor API (kimg/driver.h: the driver table, struct kimg, the
 * file-ops table) refuses to compile without KIMG_DRIVER_API.  What these
 * headers declare is what libkimg.so exports (mk/public-symbols.sh).
 *
 * Conventions: offsets and lengths are bytes (uint64_t); functions return 0
 * or a negative errno and, before failing, set a one-line message with
 * kimg_error() (the first message set wins, so the root cause survives).
 */
#ifndef KIMG_H
#define KIMG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct kimg;            /* an open image layer (and, through it, its chain) */
struct kimg_driver;     /* a format: kimg/driver.h */
struct kimg_opts;       /* parsed "-o key=value,..." options: kimg/opts.h */
struct kimg_jv;         /* a JSON value tree: kimg/json.h */
struct kimg_file;       /* a host file: kimg/file.h (implementors) */
struct kimg_optdesc;    /* one option a format takes: kimg/opts.h */

/* ---- errors (img/error.c) -------------------------------------------- */

/* Set the thread's error message unless one is already set. */
void kimg_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* kimg_error() then return err (a negative errno): `return kimg_fail(-EINVAL, ...)`. */
int kimg_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Put "PREFIX" in front of the message already set (qemu's error_prepend);
 * nothing if none is set. */
void kimg_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The message set since the last kimg_clear_error(), or NULL. */
const char *kimg_last_error(void);
void kimg_clear_error(void);

/* ---- terminal-safe text (img/terminal.c) ------------------------------- */

/* Write S to OUT for a terminal.  Strings from images and XML files (and
 * the messages that quote them) may hold bytes that drive a terminal: each
 * C0 control byte (0x01-0x1f), DEL, and C1 control (U+0080-U+009F as
 * UTF-8, or a byte 0x80-0x9f outside a valid UTF-8 sequence) is written
 * as "\xHH" per byte; everything else (valid UTF-8, other bytes) as is,
 * so a printable name prints as qemu-img prints it.  Returns the bytes
 * written.  Every message and human output prints such strings through
 * this; JSON output has its own escaping (json.h), and checksum lines
 * sha256sum's. */
size_t kimg_print_for_terminal(FILE *out, const char *s);

/* ---- open / close (img/image.c) -------------------------------------- */

#define KIMG_OPEN_RDWR        0x0001u /* open for writing */
#define KIMG_OPEN_DIRECT      0x0002u /* O_DIRECT on the image file */
#define KIMG_OPEN_NO_BACKING  0x0004u /* do not open backing/data files */
#define KIMG_OPEN_UNTRUSTED   0x0008u /* open no file but this one: refuse an
                                         image that needs another to be read */
#define KIMG_OPEN_SHARE       0x0010u /* -U: take no locks (read-only only) */
#define KIMG_OPEN_REPAIR      0x0020u /* check -r: allow RDWR on a corrupt image
                                         and skip the lazy-refcount rebuild */
#define KIMG_OPEN_NO_LOCK     0x0040u /* take no locks at all (tests, fuzzers) */
#define KIMG_OPEN_NOSYNC      0x0080u /* cache=unsafe: flushes write caches out
                                         but never wait for stable storage */
#define KIMG_OPEN_NO_IO       0x0100u /* metadata only (info): the caller reads
                                         and writes no guest data, so images
                                         whose data needs a key kimg cannot
                                         take (encrypted qcow2) still open, as
                                         qemu's BDRV_O_NO_IO; data access on
                                         them fails */
#define KIMG_OPEN_PATH        0x0200u /* FILENAME is a local path already
                                         (resolved): no "file:" or protocol
                                         prefix is looked for in it */
#define KIMG_OPEN_OWN_NAMES   0x0400u /* the backing and data file names in
                                         this image (not its backing file's)
                                         were just written from names the
                                         user gave (convert -B onto an NBD
                                         export): local ones are opened even
                                         though the image is read over NBD */
#define KIMG_OPEN_NO_WRITERS  0x0800u /* read-only: the files the image names
                                         (VMDK extents, an external data
                                         file) are locked as the image file
                                         is, so no other process may write
                                         them while this one reads (qemu-img
                                         convert's sources; its info, check,
                                         map, compare and dd lock only the
                                         image file).  Writable opens always
                                         lock them. */

/* Longest backing chain followed before giving up (qemu-img's limit is
 * similar); loops are detected separately, by device and inode. */
#define KIMG_MAX_CHAIN 64

/* The local file an image name names (*PATH points into NAME): "file:"
 * taken off, other protocols ("json:", unknown "a:b") refused with a
 * message, as qemu-img reads names; an NBD name (nbd://, nbd+unix://,
 * nbds://, "nbd:unix:...", "nbd:HOST:PORT") is kept whole, for the NBD
 * backend that the file opens connect it to. */
int kimg_image_path(const char *name, const char **path);

/* Whether a backing file that an image names as an NBD URI is followed
 * (process-wide; default false, the kimg command's --allow-remote-backing
 * sets it).  Such a name never opens local files (no unix socket, TLS key
 * or certificate files), and under KIMG_OPEN_UNTRUSTED it is refused
 * whatever this says. */
void kimg_set_allow_remote_backing(bool allow);

/* Whether an image read over NBD may name a local backing or external
 * data file (an absolute path; a relative one has no folder to be taken
 * in and is always refused, as qemu-img refuses it).  Process-wide;
 * default false, the kimg command's --allow-nbd-local-backing sets it.
 * Under KIMG_OPEN_UNTRUSTED every such file is refused whatever this says. */
void kimg_set_allow_nbd_local_backing(bool allow);

/*
 * Open FILENAME as FORMAT (NULL: probe).  A probed raw image prints
 * qemu-img's warning on stderr and cannot be opened RDWR.  The backing
 * chain is opened read-only, relative to the overlay's folder, unless
 * NO_BACKING or UNTRUSTED (UNTRUSTED refuses an image that has one).
 */
int kimg_open(struct kimg **out, const char *filename, const char *format,
              unsigned flags);
/*
 * kimg_open for a name the user gave, reading into archives: FORMAT NULL
 * and FILENAME an OVA (a tar whose first member is an OVF descriptor)
 * opens disk DISK of it (1-based, in the descriptor's DiskSection order;
 * 0: the first) in place inside the archive, read-only, probed as an image
 * of its own; its member is checked against the archive's manifest (when
 * there is one) before the open returns, unless KIMG_OPEN_NO_IO (metadata
 * only).  The disk opens no other file: one that needs a backing or data
 * file is refused (named only, with NO_BACKING).  Any other image opens
 * as kimg_open opens it (DISK must be 0; with FORMAT too: -f raw reads an
 * OVA's bytes).  kimg_open itself never looks into an archive.
 */
int kimg_open_disk(struct kimg **out, const char *filename, const char *format,
                   unsigned flags, unsigned disk);
/*
 * Images named by options, as qemu-img's --image-opts.  OPTS holds flat
 * dotted keys: "driver" (the format; absent: probe), "file.filename" (the
 * local path, taken as it is: no "file:" prefix looked for),
 * "file.driver" ("file" or "host_device"), file.locking/aio/cache.*,
 * the block layer's generic options (read-only, force-share, cache.direct,
 * cache.no-flush, discard, detect-zeroes, node-name), and the rest: the
 * format's own open options (e.g. "encrypt.key-secret=ID" for qcow2,
 * "key-secret=ID" for luks).  An option no part of kimg reads fails the
 * open with qemu's message ("Block format 'qcow2' does not support the
 * option 'X'"); a missing driver and file, "file=NODE", other protocols
 * are refused.  Only the top layer gets the options.  Messages are
 * qemu-img's reasons; the command line puts "Could not open 'STRING': "
 * in front, as qemu-img does.
 */
int kimg_open_opts(struct kimg **out, const struct kimg_opts *opts, unsigned flags);
/* OPTSTR in qemu's QemuOpts syntax ("driver=qcow2,file.filename=a,,b":
 * ",," a literal comma in a value; a bare "X" is X=on, "noX" X=off; later
 * keys win; "id" must be an identifier) into *OUT (the caller frees it):
 * the parsing json: names would share.  0 or -errno with a message. */
int kimg_image_opts_parse(const char *optstr, struct kimg_opts **out);
/* kimg_image_opts_parse then kimg_open_opts. */
int kimg_open_image_opts(struct kimg **out, const char *optstr, unsigned flags);
/* For an image kimg_open_disk opened inside an archive: its member's name
 * (as stored: escape before printing), its disk number and the number of
 * disks the archive lists; NULL and 0 for any other image. */
const char *kimg_archive_member(const struct kimg *img);
unsigned kimg_archive_disk(const struct kimg *img);
unsigned kimg_archive_disk_count(const struct kimg *img);
/* Flush (if writable) and close the whole chain; returns the first error. */
int kimg_close(struct kimg *img);

uint64_t kimg_size(const struct kimg *img);           /* virtual size */
const char *kimg_filename(const struct kimg *img);    /* as given */
const char *kimg_format_name(const struct kimg *img); /* "qcow2", "raw" */
struct kimg *kimg_backing(const struct kimg *img);    /* NULL if none/unopened */
/* Opened RDWR and not fenced.  Every call that changes an image (writes,
 * zeroes, discard, compressed writes, truncate, check with fixes,
 * snapshots, backing changes, emptying, amend, parallel data writes, write
 * options) fails with -EBADF and one message on an image that is not
 * writable: opened read-only, or fenced by its driver after it found the
 * image corrupt or lost track of its own state. */
bool kimg_is_writable(const struct kimg *img);

/* ---- what an image and its format are (asked here, never by comparing
 * format names) ---------------------------------------------------------- */

/* The image's allocation unit in bytes (qcow2's cluster size), 0 for a
 * format without one (raw). */
uint64_t kimg_cluster_size(const struct kimg *img);
/* Guest offset X is byte X of the image file (raw): the file can be
 * written directly (copy offload, the copy engine's own writes). */
bool kimg_maps_identity(const struct kimg *img);
/* A newly created image of this format reads as zeros (convert then
 * skips zeros); false for luks, whose new payload decrypts to noise. */
bool kimg_zero_init(const struct kimg *img);
/* The image takes compressed clusters (kimg_write_compressed; the engines'
 * two-step form is in img/internal.h). */
bool kimg_can_compress(const struct kimg *img);
/* Whether every write to IMG is stored compressed (a new stream VMDK):
 * kimg_convert_run then copies as with -c. */
bool kimg_needs_compressed_writes(struct kimg *img);
/* The image stores persistent dirty bitmaps. */
bool kimg_has_bitmaps(struct kimg *img);
/* Add to *OPTS the create options that make a new image of IMG's format
 * like IMG (qcow2: cluster size, compat, refcount bits, lazy refcounts,
 * extended L2, compression type); nothing for a format without such
 * options.  0 or -errno with a message. */
int kimg_create_opts_like(struct kimg *img, struct kimg_opts **opts);

/* The backing file name as stored in the image (NULL if none). */
const char *kimg_backing_name(const struct kimg *img);
/* The format can make a read-only image read a snapshot (kimg_snapshot_load). */
bool kimg_can_load_snapshot(const struct kimg *img);

/* The format's name ("qcow2", "raw"). */
const char *kimg_driver_name(const struct kimg_driver *drv);
/* The format's own create options ({NULL}-ended), also those qemu has at
 * the file protocol level. */
const struct kimg_optdesc *kimg_driver_create_opts(const struct kimg_driver *drv);
/* The format stores compressed clusters (convert -c). */
bool kimg_driver_can_compress(const struct kimg_driver *drv);
/* An image of this format can grow (kimg_truncate to a larger size):
 * what convert from a pipe needs of its target. */
bool kimg_driver_can_grow(const struct kimg_driver *drv);
/* One option qemu-img's "Formatting ..." line shows: its name, the value
 * shown when it was not given (or NULL: not shown then), and whether its
 * value is a size (shown in bytes). */
struct kimg_shown_opt {
    const char *name;
    const char *def;
    bool is_size;
};
/* The options that line shows for DRV, in qemu-img's order ({NULL}-ended;
 * the size alone for a NULL DRV or a format that does not say). */
const struct kimg_shown_opt *kimg_driver_formatting_opts(const struct kimg_driver *drv);
/* The options `amend` takes for DRV ({NULL}-ended), or NULL: it has none. */
const struct kimg_optdesc *kimg_driver_amend_opts(const struct kimg_driver *drv);

/* ---- guest content ---------------------------------------------------- */

/* Read LEN bytes at OFF of guest content (through the backing chain).
 * OFF+LEN must be within kimg_size(). */
/* A buffer for kimg_read/kimg_write and the like: page-aligned (the kernel
 * copies into misaligned buffers several times slower on some CPUs); free
 * it with free(). */
void *kimg_alloc_aligned(size_t len);
/* A large buffer kept for many transfers (a copy loop's): page-aligned,
 * and from 2 MiB up on a 2 MiB boundary with transparent huge pages asked
 * for (one page fault per 2 MiB on first use, not 512).  Free it with
 * kimg_buffer_free and the same LEN, never with free(). */
void *kimg_buffer_alloc(size_t len);
void kimg_buffer_free(void *p, size_t len);
/* Whether LEN bytes at BUF are all zero: the engines' zero scan (16-byte
 * vectors), the one every copy loop uses to leave holes. */
bool kimg_buffer_is_zero(const void *buf, size_t len);
/* Threads: kimg_read, kimg_block_status and kimg_layer_block_status may
 * run on one open image from several threads at once (the engines'
 * workers read a source so; the nbdkit plugin serves reads so).  A call
 * that changes the image (writes, zeroes, discard, flush, ...) must not
 * overlap any other call on it: callers serialize those. */
int kimg_read(struct kimg *img, void *buf, uint64_t off, uint64_t len);
int kimg_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len);

#define KIMG_ZERO_MAY_UNMAP 0x1u  /* the range may become unallocated/holes */
/* qemu's zero write (convert): a cluster the range covers only in part
 * becomes a zero cluster as a whole where the rest of it already reads as
 * zeros and it holds no data; without it, such parts are written as data */
#define KIMG_ZERO_WIDEN     0x2u
/* only if the storage zeros the range fast, writing no zeros (NBD's fast
 * zero: a raw image's file or export zeroed by the file system, device or
 * server; a qcow2 image's whole clusters made zero clusters): -ENOTSUP,
 * with no message, when it cannot; a part of the range may then read as
 * zeros already.  The nbdkit plugin serves NBD_CMD_FLAG_FAST_ZERO so. */
#define KIMG_ZERO_FAST      0x4u
/* with KIMG_ZERO_FAST: the whole target zeroed ahead of a copy (convert),
 * worth it only where one request saves one per zero range (an NBD
 * export): -ENOTSUP elsewhere.  A local file's zero ranges cost a
 * fallocate each as the copy reaches them, and zeroing it whole first
 * would free the data ranges only to write them again (qemu-img does not
 * zero a local target ahead either). */
#define KIMG_ZERO_AHEAD     0x8u
int kimg_write_zeroes(struct kimg *img, uint64_t off, uint64_t len,
                      unsigned flags);
int kimg_discard(struct kimg *img, uint64_t off, uint64_t len);
/* One cluster, compressed (formats without compression: -ENOTSUP). */
int kimg_write_compressed(struct kimg *img, const void *buf, uint64_t off,
                          uint64_t len);
/* Write back what the image caches; 0 and nothing done on a read-only or
 * fenced image. */
int kimg_flush(struct kimg *img);

/* How this open image writes from now on, not what it stores (convert's
 * -o compression_level=N): -ENOTSUP with a message for a KEY the format
 * does not take, -EINVAL with one for a bad VALUE. */
int kimg_set_write_option(struct kimg *img, const char *key, const char *value);

enum kimg_prealloc {
    KIMG_PREALLOC_OFF = 0,
    KIMG_PREALLOC_METADATA,
    KIMG_PREALLOC_FALLOC,
    KIMG_PREALLOC_FULL,
};
int kimg_truncate(struct kimg *img, uint64_t size, enum kimg_prealloc prealloc);

/* ---- allocation (block status) ----------------------------------------- */

#define KIMG_BS_DATA         0x01u /* reads from data stored in a file */
#define KIMG_BS_ZERO         0x02u /* reads as zeros */
#define KIMG_BS_ALLOCATED    0x04u /* this layer decides the content */
#define KIMG_BS_OFFSET_VALID 0x08u /* `offset` is the host offset in `file` */
#define KIMG_BS_COMPRESSED   0x10u /* stored compressed */

struct kimg_extent {
    uint64_t start;         /* guest offset */
    uint64_t length;        /* >= 1, uniform status */
    unsigned flags;         /* KIMG_BS_* */
    uint64_t offset;        /* host offset when OFFSET_VALID */
    int depth;              /* layer that decides content (0 = top); for
                               content decided by no layer, the last layer */
    const char *file;       /* name of the file `offset` refers to */
    struct kimg_file *host_file; /* that file, when the library can reach it
                                    (copy offloading), else NULL */
};

/* Status of the run starting at OFF (at most LEN bytes), through the chain:
 * ALLOCATED is set if some layer decides the content ("present" in qemu-img
 * map).  Content decided by no layer reads as zeros (ZERO set). */
int kimg_block_status(struct kimg *img, uint64_t off, uint64_t len,
                      struct kimg_extent *ext);
/* The same for this layer only (depth is always 0). */
int kimg_layer_block_status(struct kimg *img, uint64_t off, uint64_t len,
                            struct kimg_extent *ext);

/* ---- create (img/create.c) --------------------------------------------- */

struct kimg_create_args {
    const char *filename;
    const char *format;         /* required */
    uint64_t size;
    bool size_given;            /* else taken from the backing file */
    const char *backing_file;   /* -b or -o backing_file */
    const char *backing_format; /* -F or -o backing_fmt */
    bool unsafe;                /* -u: do not open the backing file */
    struct kimg_opts *opts;     /* remaining -o options, validated */
    /* Called once the options and the backing file passed their checks,
     * before the format's own checks and the file's creation (where
     * qemu-img prints its "Formatting" line); size as given, unrounded. */
    void (*on_formatting)(const struct kimg_create_args *args);
    /* Set by kimg_create while it runs: the name as the caller gave it
     * ("file:x.qcow2"), where filename is then the file ("x.qcow2"). */
    const char *given_filename;
    /* The name the image will have when FILENAME is a temporary file
     * renamed over it when complete (convert), or NULL: what a format
     * that records its own file name (a VMDK's extent line) writes. */
    const char *final_name;
};

/* Create an image; merges -b/-F with -o, validates options against the
 * driver's table, takes the size from the backing file if none is given. */
int kimg_create(struct kimg_create_args *args);
/* DRV's create options, then the file protocol's it does not have
 * (NULL-terminated, malloc'd; NULL when out of memory): what create takes. */
struct kimg_optdesc *kimg_create_opts_merged(const struct kimg_driver *drv);
/* DRV's create options less those qemu has at the file protocol level
 * (`create -o help` without a file name; malloc'd, NULL-terminated; NULL
 * when out of memory). */
struct kimg_optdesc *kimg_create_opts_own(const struct kimg_driver *drv);

/* ---- info -------------------------------------------------------------- */

struct kimg_snapshot_info {
    char *id;
    char *name;
    uint64_t vm_state_size;
    uint64_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;
    bool has_icount;
};

struct kimg_info {
    uint64_t virtual_size;
    int64_t actual_size;            /* allocated bytes on the host, -1 unknown */
    uint64_t cluster_size;          /* 0: the format has none */
    bool encrypted;
    bool dirty;
    bool dirty_unknown;             /* qemu-img shows no dirty-flag (raw
                                       over NBD: its driver has no info) */
    char *backing_filename;         /* as stored in the image */
    char *full_backing_filename;    /* resolved */
    char *backing_format;
    struct kimg_snapshot_info *snapshots;
    size_t nb_snapshots;
    struct kimg_jv *format_specific; /* {"type":..., "data":{...}} or NULL */
};

int kimg_get_info(struct kimg *img, struct kimg_info *info);
void kimg_info_free(struct kimg_info *info);

/* One storage node under an open layer, as QEMU 8.0's block graph shows
 * it (qemu-img info's "children"): the image file, an external data file,
 * a descriptor's extent files. */
struct kimg_child_info {
    char name[32];                  /* "file", "data-file", "extents.N" */
    const char *filename;           /* the node's name as qemu shows it
                                       (valid while IMG is open) */
    const char *protocol;           /* "file", "host_device" or "nbd" */
    uint64_t length;                /* the file's length (an export's size) */
    int64_t actual_size;            /* bytes allocated on the host, -1 unknown */
    uint32_t extent_size_hint;      /* the file's extent size hint, 0 none */
    bool has_specific;              /* qemu shows {"type": "file", ...} for it */
};

/* IMG's child nodes in qemu's order (its newest child first: the extents
 * from last to first or the data file, then the image file) in *OUT
 * (malloc'd; free()); the count, or -errno with the error set. */
int kimg_get_children(struct kimg *img, struct kimg_child_info **out);

/* Which qemu-img's output the kimg command reproduces, from
 * KIMG_QEMU_OUTPUT: major * 100 + minor (702, qemu-img 7.2's, when it is
 * unset), or -EINVAL when it is set to anything but a QEMU version from
 * 7.2 on ("8.2", "10.1.0").  img/qemu_output.c says what each generation
 * changes. */
int kimg_qemu_output(void);

/* ---- check ------------------------------------------------------------- */

#define KIMG_CHECK_FIX_LEAKS  0x1u
#define KIMG_CHECK_FIX_ERRORS 0x2u

struct kimg_check {
    uint64_t corruptions;
    uint64_t leaks;
    uint64_t check_errors;
    uint64_t corruptions_fixed;
    uint64_t leaks_fixed;
    uint64_t image_end_offset;   /* 0: not reported */
    uint64_t total_clusters;     /* the four cluster counts: has_stats */
    uint64_t allocated_clusters;
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
    bool has_stats;
    FILE *log;                   /* per-problem lines (qemu-img's wording), or NULL */
};

/* -ENOTSUP: the format has no check (exit 63). */
int kimg_check(struct kimg *img, struct kimg_check *res, unsigned fix);

/* ---- internal snapshots (qcow2) ---------------------------------------- */

/* Snapshots are named by ID or name, as qemu-img names them: an argument
 * that matches some snapshot's ID selects it, otherwise the first snapshot
 * with that name.  -ENOENT (with a message) when nothing matches.  The
 * listing is kimg_get_info()'s `snapshots`. */
int kimg_snapshot_create(struct kimg *img, const char *name);
/* Revert the active image (RDWR) to the snapshot's content. */
int kimg_snapshot_apply(struct kimg *img, const char *id_or_name);
/* Delete the snapshot and free what only it held. */
int kimg_snapshot_delete(struct kimg *img, const char *id_or_name);
/* Make a read-only IMG read the content of a snapshot instead of the
 * active image (convert -l).  The virtual size stays the image's, as in
 * qemu-img.  ID and NAME may be NULL; an ID alone matches IDs, a name
 * alone names; when both are given both must match.  (The command line's
 * bare `-l S` tries S as an ID, then as a name: cmd_snapshot_load_opt.) */
int kimg_snapshot_load(struct kimg *img, const char *id, const char *name);

/* ---- persistent dirty bitmaps (qcow2; kimg bitmap) --------------------- */

enum kimg_bitmap_action {
    KIMG_BITMAP_ADD,
    KIMG_BITMAP_REMOVE,
    KIMG_BITMAP_CLEAR,
    KIMG_BITMAP_ENABLE,
    KIMG_BITMAP_DISABLE,
    KIMG_BITMAP_MERGE,
};

struct kimg_bitmap_op {
    enum kimg_bitmap_action action;
    const char *name;           /* the bitmap changed */
    uint64_t granularity;       /* ADD: bytes per bit (a power of 2, 512 to
                                   2 GiB); 0: the format's default */
    bool disabled;              /* ADD: made disabled (records no writes) */
    struct kimg *src;           /* MERGE: the image holding SRC_NAME (any
                                   size-equal image); NULL: IMG itself */
    const char *src_name;       /* MERGE: whose dirty bits are added to NAME */
};

/* One persistent bitmap, as kimg_bitmap_list reports it. */
struct kimg_bitmap_info {
    char *name;
    uint64_t granularity;       /* bytes per bit */
    bool enabled;               /* records writes ("auto") */
    bool in_use;                /* inconsistent: its bits cannot be trusted */
};

/* IMG's persistent bitmaps, in the image's order, into *LIST (*N of them;
 * free with kimg_bitmap_list_free).  -ENOTSUP when the image cannot store
 * bitmaps at all (a format without them, a qcow2 v2 image): qemu's
 * "lacks bitmap support". */
int kimg_bitmap_list(struct kimg *img, struct kimg_bitmap_info **list, size_t *n);
void kimg_bitmap_list_free(struct kimg_bitmap_info *list, size_t n);

/* Apply OP to IMG (opened read-write) as `qemu-img bitmap` does, with
 * qemu's messages; crash-safe: the image switches from the old set of
 * bitmaps to the new one with one header write, so a failure or a crash
 * leaves one or the other (leaked clusters at worst).  An inconsistent
 * (in-use) bitmap can only be removed; its clusters are then leaked, not
 * freed (its table is not trusted; check -r leaks gives them back). */
int kimg_bitmap_change(struct kimg *img, const struct kimg_bitmap_op *op);
/* Whether the bytes at OFF (< the virtual size) are dirty in IMG's bitmap
 * NAME: *DIRTY for the run of *PNUM bytes (1 <= *PNUM <= LEN, inside the
 * image) starting there.  -ENOENT: no such bitmap; -EINVAL: it is
 * inconsistent or damaged.  Works on read-only images. */
int kimg_bitmap_dirty(struct kimg *img, const char *name, uint64_t off, uint64_t len,
                      bool *dirty, uint64_t *pnum);

/* ---- lifecycle: backing file, emptying, amend, measure ---------------- */

/* Rewrite the backing file name and format stored in IMG's header only
 * (rebase -u, amend); NAME NULL or "" removes the backing file reference. */
int kimg_change_backing(struct kimg *img, const char *name, const char *format);
/* Drop every allocation of this layer so it reads through to its backing
 * file (commit without -d). */
int kimg_make_empty(struct kimg *img);
/* Change format options of an existing image (amend -o); FORCE is
 * qemu-img's --force. */
int kimg_amend(struct kimg *img, struct kimg_opts *opts, bool force);

struct kimg_measure {
    uint64_t required;          /* bytes a converted image needs */
    uint64_t fully_allocated;   /* bytes if every cluster were allocated */
    uint64_t bitmaps;           /* persistent bitmaps' bytes (has_bitmaps) */
    bool has_bitmaps;
};
/* qemu-img measure: the file size an image of FORMAT created with OPTS
 * needs to hold SIZE bytes (SRC NULL) or the content of SRC. */
int kimg_measure(const char *format, struct kimg_opts *opts, uint64_t size,
                 struct kimg *src, struct kimg_measure *out);

/* ---- rebase and commit (img/rebase.c, img/commit.c) -------------------- */

/* Progress callback of the engines: DONE of TOTAL bytes handled. */
typedef void kimg_progress_fn(void *opaque, uint64_t done, uint64_t total);

/* Open the new backing file NAME of a rebase as qemu-img does: relative to
 * IMG's folder, FORMAT or probed, read-only with FLAGS (KIMG_OPEN_SHARE,
 * DIRECT, ...).  Errors read "Could not open new backing file 'NAME': ...". */
int kimg_rebase_open_backing(struct kimg *img, const char *name, const char *format,
                             unsigned flags, struct kimg **out);

struct kimg_rebase {
    struct kimg *img;           /* the overlay, RDWR; for a safe rebase opened
                                   with its (old) backing chain */
    const char *backing;        /* the new name, stored as given; NULL or ""
                                   removes the reference (flatten) */
    const char *backing_format; /* stored as the backing format (may be NULL) */
    struct kimg *new_backing;   /* safe: the new backing (kimg_rebase_open_backing),
                                   NULL for none; reads past its end are zeros */
    bool unsafe;                /* -u: only the header changes */
    kimg_progress_fn *progress; /* or NULL */
    void *opaque;
    bool compress;              /* -c (qemu-img 8.2's): the clusters the
                                   copy touches are written whole (the
                                   overlay's view of them) and compressed;
                                   needs kimg_can_compress(img) */
};
/* qemu-img rebase: unless unsafe, every range the overlay does not
 * allocate and where the old and new backing read differently gets the
 * old content (zeros written as zeros) in the overlay, so its content is
 * unchanged; then the header names the new backing file.  A crash at any
 * point leaves the overlay reading the same through the old or new one. */
int kimg_rebase(const struct kimg_rebase *r);

struct kimg_commit {
    const char *filename;       /* the top image */
    const char *format;         /* or NULL: probe */
    const char *base;           /* -b: a name in the chain (qemu-img's
                                   matching), NULL: the immediate backing;
                                   given, the top is kept (as -d) */
    bool keep_top;              /* -d: do not empty the top */
    unsigned flags;             /* KIMG_OPEN_DIRECT / NOSYNC for the images */
    uint64_t rate;              /* bytes per second, 0: unlimited */
    kimg_progress_fn *progress; /* or NULL */
    void *opaque;
    /* or the top named by options (kimg_open_opts; --image-opts): then
     * FORMAT is NULL and FILENAME names it in messages only */
    const struct kimg_opts *open_opts;
};
/* qemu-img commit: open the chain (top RDWR, base opened separately RDWR,
 * every image locked as qemu locks it), grow the base to the top's size if
 * it is smaller, write into it what every layer above it decides (zeros as
 * zeros, unallocated ranges skipped), then empty the top unless kept.  The
 * top reads the same at every point. */
int kimg_commit(const struct kimg_commit *c);

/* ---- secret objects (img/secret.c) ------------------------------------ */

/*
 * Add the object SPEC, in qemu-img's `--object` syntax, to the process's
 * store: only "secret,id=ID,(data=STRING|file=PATH)[,format=raw|base64]
 * [,keyid=KEYID,iv=IV]" (keyid: the value is AES-256-CBC ciphertext under
 * the 32-byte secret KEYID, added before, with the base64 16-byte IV, as
 * qemu's).  The secret is loaded, decoded and decrypted now, as by qemu,
 * and checked with qemu 7.2's messages in its order (a duplicate id: "attempt
 * to add duplicate property 'ID' ..."); other object types are refused.
 * Returns 0, 1 when SPEC asked for help ("help", "secret,help": the text
 * written to HELP_OUT unless NULL), or -errno with a message that never
 * holds the secret.  Drivers read secrets by id (kimg/driver.h's
 * kimg_secret_get), e.g. for "-o encrypt.key-secret=ID".
 */
int kimg_object_add(const char *spec, FILE *help_out);
/* Drop every secret object (their bytes wiped). */
void kimg_secrets_clear(void);

/* ---- drivers ----------------------------------------------------------- */

const struct kimg_driver *kimg_find_driver(const char *name);
/* Calls fn for each registered driver, in registration order. */
void kimg_for_each_driver(void (*fn)(const struct kimg_driver *, void *), void *opaque);

/* Formats qemu-img 7.2 has, whether kimg implements them or not (img/foreign.c):
 * whether FMT names one (rebase -F is checked against them). */
bool kimg_qemu_knows_format(const char *fmt);
/* For a FMT kimg has no driver for: qemu-img measure's refusal (-ENOTSUP
 * with its message) for a format it knows but cannot measure or create,
 * else 0 (a name neither knows). */
int kimg_foreign_measure(const char *fmt);

/* ---- the topic headers ------------------------------------------------ */

#include "kimg/opts.h"
#include "kimg/json.h"
#include "kimg/output.h"
#include "kimg/convert.h"
#include "kimg/compare.h"
#include "kimg/checksum.h"

#endif
