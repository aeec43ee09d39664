/*
 * kimg/driver.h — the implementor API (libgit2's git2/sys): what a format
 * or protocol driver implements (struct kimg_driver) and what the core
 * gives it (struct kimg, backing reads, auxiliary files, the file-ops
 * table of kimg/file.h).  For img/ and formats/ (and tests), never for
 * cmd/ or clone/: it compiles only where KIMG_DRIVER_API is defined (the
 * Makefile defines it for img/, formats/, tests/unit/ and fuzz/), and it is
 * not installed, as drivers are built into libkimg (the registry in
 * img/image.c), so none of its symbols is exported.
 *
 * The core checks every request once before calling a driver: ranges are
 * within the virtual size, lengths are > 0, the image is writable (opened
 * RDWR and not fenced) for every write-type call, refused otherwise with
 * one errno and message (kimg_check_writable).  Drivers do not re-check;
 * a driver that finds its image corrupt calls kimg_fence().  Nothing
 * outside the core calls a member directly: each has a door function in
 * img/image.c or img/lifecycle.c.  Optional members may be NULL or return
 * -ENOTSUP; the core then uses a generic fallback where one exists.
 * The table only grows at the end (like sqlite3_io_methods).
 */
#ifndef KIMG_DRIVER_H
#define KIMG_DRIVER_H

#ifndef KIMG_DRIVER_API
#error "kimg/driver.h is the implementor API (img/, formats/): use kimg.h"
#endif

#include "kimg.h"
#include "kimg/file.h"
#include "kimg/opts.h"

/* A file a layer opened besides its image file (aux_files). */
struct kimg_aux_file {
    char name[32];              /* qemu's child name: "data-file", "extents.3" */
    struct kimg_file *file;
    const char *path;           /* as opened (the driver keeps it) */
};

/* One open layer.  The core owns it; the driver fills the marked fields. */
struct kimg {
    const struct kimg_driver *drv;
    void *state;                /* drv->state_size bytes, zeroed */
    struct kimg_file *file;     /* the image file, opened by the core */
    char *filename;             /* as given */
    unsigned flags;             /* KIMG_OPEN_* */
    bool writable;
    bool probed;                /* format was guessed */
    bool fenced;                /* kimg_fence() was called: the core refuses
                                   every write-type call from then on */

    /* set by the driver's open: */
    uint64_t size;              /* virtual size */
    char *backing_name;         /* as stored (malloc'd), or NULL */
    char *backing_format;       /* as stored (malloc'd), or NULL */
    uint64_t cluster_size;      /* the allocation unit, 0 for none (raw);
                                   fixed while open (kimg_cluster_size) */

    /* set by the core after open: */
    char *backing_path;         /* backing_name resolved against our folder */
    struct kimg *backing;       /* opened read-only unless NO_BACKING */
    int lock_fd_held;           /* internal to img/lock.c */

    /* set by the core for a disk inside an archive (kimg_open_disk; the
     * flags then hold KIMG_OPEN_ARCHIVE_MEMBER): */
    char *archive_member;       /* the member's name, or NULL */
    unsigned archive_disk;      /* its number among the archive's disks */
    unsigned archive_disks;     /* how many disks the archive lists */

    /* set by the core before open: the image's open options (from
     * --image-opts and the like, minus "driver" and "file.*"), or NULL;
     * the driver reads its own with kimg_open_opt() */
    struct kimg_opts *open_opts;
    /* set by the core when the driver read open options: the json: name
     * qemu shows for such an image (kimg_filename returns it), or NULL */
    char *opts_name;
    /* set by the core just before the driver's open: the image file's
     * size then (UINT64_MAX: unknown).  kimg_srcmap_note_sizes starts from
     * it, so a file cut between the open and a copy's start is caught as
     * one cut during the copy (img/srcmap.h). */
    uint64_t file_size_at_open;
};

/* In img->flags, set by the core alone (callers' flags lose it): the layer
 * is a disk inside an archive (an OVA member), read through img->file, a
 * window on the archive.  Such a layer opens no other file by any name it
 * holds: backing files, external data files and a VMDK's extent files are
 * refused (kimg_open_aux_file and the core's backing open refuse; a driver
 * that opens files by a name of its own checks this flag first). */
#define KIMG_OPEN_ARCHIVE_MEMBER 0x40000000u

struct kimg_driver {
    const char *name;
    size_t state_size;
    /* Create options accepted by this format (terminated by {NULL}); the core
     * validates -o against it and prints it for `-o help`. */
    const struct kimg_optdesc *create_opts;
    /* Those of them qemu has at the file protocol level, not the format's:
     * `-o help` lists them only with a file name (NULL-terminated). */
    const char *const *protocol_opts;

    /* 0..100: how sure the driver is that BUF (the first LEN bytes of the
     * file, LEN may be < 512 for tiny files) is its format.  raw: 1. */
    int (*probe)(const uint8_t *buf, size_t len, const char *filename);

    /* Parse and validate the image in img->file; set img->size and the
     * backing fields.  Must not write unless img->writable, and must not
     * leave partial state on failure (close is not called then). */
    int (*open)(struct kimg *img);
    void (*close)(struct kimg *img);

    /* Create args->filename (the core has validated options and the size;
     * args->backing_* are set when there is a backing file). */
    int (*create)(const struct kimg_create_args *args);

    /* Guest reads/writes within [0, size), len > 0.  Reads of unallocated
     * ranges go to kimg_read_backing(). */
    int (*read)(struct kimg *img, void *buf, uint64_t off, uint64_t len);
    int (*write)(struct kimg *img, const void *buf, uint64_t off, uint64_t len);

    /* ---- optional ---- */
    int (*write_zeroes)(struct kimg *img, uint64_t off, uint64_t len, unsigned flags);
    int (*discard)(struct kimg *img, uint64_t off, uint64_t len);
    int (*flush)(struct kimg *img);
    /* This layer only: fill ext->length (<= len, >= 1), flags, offset, file.
     * ALLOCATED means this layer decides the content (else the backing). */
    int (*block_status)(struct kimg *img, uint64_t off, uint64_t len,
                        struct kimg_extent *ext);
    int (*truncate)(struct kimg *img, uint64_t size, enum kimg_prealloc prealloc);
    /* Fill the format's parts of INFO (cluster_size, dirty, snapshots,
     * format_specific); the core fills sizes and backing names. */
    int (*info)(struct kimg *img, struct kimg_info *info);
    /* The files the layer opened beside img->file, in the order it opened
     * them, each with the name qemu gives that child node ("data-file",
     * "extents.0", ...) and the name it was opened by: the count put in
     * OUT (at most MAX; when more exist, MAX and the rest are left out).
     * NULL: the layer has none (kimg_get_children). */
    size_t (*aux_files)(struct kimg *img, struct kimg_aux_file *out, size_t max);
    int (*check)(struct kimg *img, struct kimg_check *res, unsigned fix);
    /* Write one compressed cluster: OFF is cluster-aligned, LEN is the
     * cluster size (less only for the image's last cluster).  The driver
     * stores it uncompressed if compression does not make it smaller. */
    int (*write_compressed)(struct kimg *img, const void *buf, uint64_t off,
                            uint64_t len);
    /* Compressed writes split in two so the copy engine compresses on every
     * core.  compress_cluster: thread-safe, no I/O; compresses the data of
     * the cluster at OFF (LEN as for write_compressed) into DST (CAP
     * bytes); returns the compressed length, -ENOSPC if it would not
     * shrink, -ENOTSUP if this cluster cannot be stored compressed.
     * write_compressed_data: stores such a result (CLEN bytes) at OFF. */
    int64_t (*compress_cluster)(struct kimg *img, uint64_t off, const void *buf,
                                uint64_t len, void *dst, size_t cap);
    int (*write_compressed_data)(struct kimg *img, uint64_t off, uint64_t len,
                                 const void *cdata, size_t clen);
    /* Internal snapshots (kimg.h's kimg_snapshot_*; the core has checked
     * writability for create/apply/delete and the read-only open for load). */
    int (*snapshot_create)(struct kimg *img, const char *name);
    int (*snapshot_apply)(struct kimg *img, const char *id_or_name);
    int (*snapshot_delete)(struct kimg *img, const char *id_or_name);
    int (*snapshot_load)(struct kimg *img, const char *id, const char *name);
    /* kimg_change_backing / kimg_make_empty / kimg_amend (IMG writable). */
    int (*change_backing)(struct kimg *img, const char *name, const char *format);
    int (*make_empty)(struct kimg *img);
    int (*amend)(struct kimg *img, struct kimg_opts *opts, bool force);
    /* kimg_measure: OPTS validated against create_opts; SRC may be NULL. */
    int (*measure)(struct kimg_opts *opts, uint64_t size, struct kimg *src,
                   struct kimg_measure *out);
    /* Append-only from here. */
    /* Parallel data writes (the copy engine).  alloc_data, called in guest
     * order from one thread: give guest range [off, off+len) (cluster
     * aligned; clusters this layer does not allocate yet) new host space,
     * *host in *file, contiguous; returns the bytes mapped from OFF (fewer
     * than LEN at a table boundary or an allocated cluster), 0 when the
     * range must go through write() instead, or -errno.  Nothing points at
     * the space yet: the caller writes the data there from any thread, and
     * only then calls commit_data to link the range to it (L2 entries), so
     * a crash in between leaks the space and never exposes it.  The host
     * layout depends only on the order of the alloc_data calls. */
    int64_t (*alloc_data)(struct kimg *img, uint64_t off, uint64_t len,
                          uint64_t *host, struct kimg_file **file);
    int (*commit_data)(struct kimg *img, uint64_t off, uint64_t len, uint64_t host);
    /* How this open image writes, not what it stores (convert's
     * -o compression_level=N): -ENOTSUP for an unknown KEY, -EINVAL with a
     * kimg_error() for a bad value. */
    int (*set_write_option)(struct kimg *img, const char *key, const char *value);
    /* How qemu's block status of this layer is cut (convert -p counts its
     * work in those pieces): a reply never crosses a multiple of *SPAN
     * bytes (qcow2: the guest range of one L2 table), and covers one
     * cluster of *CLUSTER bytes at most when the data is compressed; on
     * the source's top layer qemu-img cuts a reply ending inside a
     * *CLUSTER back to its start (img/convert_steps.c). */
    void (*status_units)(struct kimg *img, uint64_t *span, uint64_t *cluster);

    /* ---- facts about the format (what the core and the commands ask
     * instead of comparing format names) ---- */
    unsigned flags;             /* KIMG_DRV_* */
    /* The options qemu-img's "Formatting ..." line shows for this format,
     * in its order, with the defaults it shows (NULL-terminated; NULL:
     * the size alone).  kimg_driver_formatting_opts(). */
    const struct kimg_shown_opt *formatting_opts;
    /* The options `amend -o` takes (validated against it, listed sorted by
     * `amend -o help`); NULL when amend is NULL.  kimg_driver_amend_opts(). */
    const struct kimg_optdesc *amend_opts;
    /* Add to *OPTS the create options that make a new image of this format
     * like the open IMG (cluster size, version, refcount width, ...): what
     * clone's full copy keeps.  0 or -errno with kimg_error().
     * kimg_create_opts_like(); NULL: nothing to keep. */
    int (*create_opts_like)(struct kimg *img, struct kimg_opts **opts);
    /* Whether IMG stores persistent dirty bitmaps (qemu-img refuses to
     * apply a snapshot then).  kimg_has_bitmaps(); NULL: never. */
    bool (*has_bitmaps)(struct kimg *img);
    /* Optional, for formats signed by a trailer (a fixed VHD's footer):
     * like probe, on TAIL, the file's last LEN bytes (512, or the whole
     * file when it is shorter).  The core takes the best of both scores. */
    int (*probe_tail)(const uint8_t *tail, size_t len, const char *filename);
    /* Optional, for formats that report their data as qemu does but know
     * more (qemu 7.2's vhdx has no block status, so qemu-img map and
     * measure show every byte as data): like block_status, but what the
     * engines that read the data may use to skip reading (convert,
     * compare, checksum; kimg_content_status): ZERO for a range that reads
     * as zeros although block_status says DATA; DATA with OFFSET_VALID
     * where the bytes lie plainly in the file.  Never ALLOCATED where
     * block_status is not.  Only asked for a range block_status reported
     * as DATA; map, measure and convert's -p steps keep block_status. */
    int (*content_status)(struct kimg *img, uint64_t off, uint64_t len,
                          struct kimg_extent *ext);
    /* Optional, with alloc_data, for formats that do not store guest data
     * as given (encrypted qcow2): turn LEN bytes of guest data for guest
     * offset OFF, in BUF, into what is stored at host offset HOST of the
     * space alloc_data gave (the range alloc_data mapped, or a part of it
     * starting at a cluster), in place.  Thread-safe, no lock, no I/O: the
     * copy engine calls it on its workers, on a private copy of the data,
     * between alloc_data and its write.  LEN 0 (BUF NULL) only asks
     * whether this open image transforms its data: 0 yes, -ENOTSUP no
     * (kimg_transforms_data).  Data of an image that does is never cloned
     * or copied in the kernel from its source, and never written as is. */
    int (*transform_data)(struct kimg *img, uint64_t off, uint64_t host, void *buf,
                          uint64_t len);
    /* Optional: persistent dirty bitmaps (kimg_bitmap_change, kimg_bitmap_
     * dirty in kimg.h, where the contracts are).  The door checks that the
     * image is writable for a change and that names are given, and clips
     * [OFF, OFF+LEN) of a query to the virtual size (OFF inside, LEN > 0).
     * NULL: the format stores no bitmaps (qemu's "Can't store persistent
     * bitmaps" refusal). */
    int (*bitmap_change)(struct kimg *img, const struct kimg_bitmap_op *op);
    int (*bitmap_dirty)(struct kimg *img, const char *name, uint64_t off, uint64_t len,
                        bool *dirty, uint64_t *pnum);
    /* kimg_bitmap_list; the door frees a partial list on failure.  NULL:
     * -ENOTSUP (no bitmaps in this format). */
    int (*bitmap_list)(struct kimg *img, struct kimg_bitmap_info **list, size_t *n);
    /* Optional, with compress_cluster: whether this open image stores
     * every write compressed (qemu's bdi.needs_compressed_writes: a new
     * streamOptimized VMDK): convert then copies as with -c, whole
     * clusters in order.  kimg_needs_compressed_writes(); NULL: never. */
    bool (*needs_compressed_writes)(struct kimg *img);
};

/* kimg_driver.flags */
/* Guest offset X is byte X of the image file, with no metadata (raw):
 * the copy engine writes such a target's file itself (and -C offloads to
 * it), and a probed image of this format is not opened for writing
 * (qemu's "probing guessed raw" rule: a guest write to block 0 could make
 * it probe as another format). */
#define KIMG_DRV_IDENTITY_MAP 0x1u
/* A new image of this format does not read as zeros (luks: never-written
 * payload decrypts to noise; qemu's has_zero_init false): a copy into a
 * freshly created target must write its zeros (encrypted), not skip them. */
#define KIMG_DRV_NO_ZERO_INIT 0x2u
/* write_zeroes honours KIMG_ZERO_FAST: it zeros only where that writes no
 * zeros (metadata, holes, the storage's own fast zero) and otherwise
 * returns -ENOTSUP, with no message, having written no zeros (a part of
 * the range may read as zeros already).  Without this flag the core
 * answers every fast zero with -ENOTSUP. */
#define KIMG_DRV_FAST_ZERO    0x4u
/* truncate refuses to grow the image (vhdx: qemu 7.2's words are kept
 * there): kimg_driver_can_grow is false, as for a format without
 * truncate. */
#define KIMG_DRV_NO_GROW      0x8u

/* Fence IMG: from now on the core refuses every write-type call on it
 * with the same errno and message as on a read-only image (-EBADF; see
 * kimg_check_writable).  A driver calls it when it finds its image
 * corrupt or loses track of its own state (a metadata write that may or
 * may not have reached the disk); it cannot be undone while the image is
 * open.  Requests already past the door when the fence falls (another
 * thread's) still reach the driver, serialized by its lock as usual. */
void kimg_fence(struct kimg *img);
/* Whether IMG takes writes now: opened RDWR and not fenced. */
bool kimg_writes_allowed(const struct kimg *img);
/* 0 if IMG takes writes, else the door's one refusal: -EBADF with
 * kimg_error("image is not writable (opened read-only, or fenced after an
 * error)").  The core calls it for every write-type request; a driver
 * needs it only to stop a multi-step operation of its own that fenced
 * the image on the way. */
int kimg_check_writable(const struct kimg *img);

/* Open an image on an already open FILE (memory files: fuzzers, unit
 * tests).  Takes ownership of FILE, even on failure.  Backing files are
 * opened by name relative to file->path unless NO_BACKING/UNTRUSTED. */
int kimg_open_file(struct kimg **out, struct kimg_file *file, const char *format,
                   unsigned flags);

/* kimg_open_disk (kimg.h) on an already open FILE (fuzzers): an OVA in
 * FILE opens as its disk DISK (0: the first), any other image as
 * kimg_open_file probes it.  Takes ownership of FILE, even on failure. */
int kimg_open_file_disk(struct kimg **out, struct kimg_file *file, unsigned flags,
                        unsigned disk);

/* Read guest range [off, off+len) of the backing chain below IMG: zeros
 * where there is no backing file or past its end. */
int kimg_read_backing(struct kimg *img, void *buf, uint64_t off, uint64_t len);

/* Open an auxiliary file (external data file) named NAME by IMG, relative
 * to IMG's folder; refused under KIMG_OPEN_UNTRUSTED and for a disk inside
 * an archive (KIMG_OPEN_ARCHIVE_MEMBER). */
int kimg_open_aux_file(struct kimg *img, const char *name, bool writable,
                       struct kimg_file **out);

/*
 * Open, read-only, the file NAME that IMG's metadata names (a VMDK extent;
 * later OVA members and the like): the security boundary for files named
 * by an image (qcow2 data files keep kimg_open_aux_file).  NAME is a path
 * relative to IMG's folder, never a protocol.  Refused with -EPERM and one
 * message naming WHAT ("extent"): an empty or absolute NAME, a NAME with
 * a ".." component, a file that is not a regular file (a block device;
 * FIFOs, sockets, character devices and folders are refused by
 * kimg_file_open itself, with its errno and words, and never block);
 * under KIMG_OPEN_UNTRUSTED also a NAME holding '/' and a symbolic link
 * (opened with O_NOFOLLOW).  Memory-backed images (fd -1: fuzzers, tests)
 * open nothing (-ENOENT).  The file is opened read-write when IMG is
 * writable.  (*OUT)->path is the path as opened (IMG's folder + NAME).
 */
int kimg_open_named_file(struct kimg *img, const char *name, const char *what,
                         struct kimg_file **out);

/* NAME resolved against the folder of BASE ("dir/overlay" + "b" -> "dir/b"),
 * as qemu-img resolves backing names; absolute NAME returned as is. */
char *kimg_path_relative_to(const char *base, const char *name);

/* The options of qemu's file protocol (file-posix) at creation, in its
 * order; qemu-img merges them after a format's own (img/create.c). */
extern const struct kimg_optdesc kimg_file_create_opts[];
/* The file protocol's nocow and extent_size_hint in OPTS (qemu's default
 * hint 1 MiB; one of 4 GiB or more refused), set on the new file F unless
 * F is NULL (then only checked).  0 or -EINVAL with a message. */
int kimg_create_file_attrs(const struct kimg_opts *opts, struct kimg_file *f);

/* ---- secrets and open options (img/secret.c, img/image_opts.c) ---- */

/* The bytes of the secret object ID (--object secret,id=ID,...), decoded
 * (format=base64) and decrypted (keyid=,iv=) as qemu does: 0 with *DATA
 * (allocated; hand it back to kimg_secret_free, which wipes it) and *LEN,
 * or -ENOENT with qemu's message ("No secret with id 'ID'"). */
int kimg_secret_get(const char *id, uint8_t **data, size_t *len);
void kimg_secret_free(uint8_t *data, size_t len);

/* The value of open option KEY of IMG (img->open_opts, e.g.
 * "encrypt.key-secret" for qcow2, "key-secret" for luks), marking it used,
 * or NULL.  After open the core refuses an option no driver read, with
 * qemu's wording ("Block format 'qcow2' does not support the option 'X'").
 * Options a driver read name the image as qemu's strong runtime options
 * do (key secrets, raw's offset/size): info shows it as qemu's
 * json:{...} name, so read only options that belong in it. */
const char *kimg_open_opt(struct kimg *img, const char *key);

/* Drivers linked in (the registry: drivers[] in img/image.c). */
extern const struct kimg_driver kimg_raw_driver;
extern const struct kimg_driver kimg_qcow2_driver;
extern const struct kimg_driver kimg_vpc_driver;
extern const struct kimg_driver kimg_vdi_driver;
extern const struct kimg_driver kimg_vhdx_driver;
extern const struct kimg_driver kimg_vmdk_driver;
extern const struct kimg_driver kimg_luks_driver;

#endif
