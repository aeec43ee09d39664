/*
 * kimg/file.h — part of the implementor API (kimg/driver.h includes it;
 * KIMG_DRIVER_API only, not installed): host file access for drivers and
 * engines: a small table of operations with a POSIX backend (buffered or O_DIRECT with bounce
 * buffers), an in-memory backend (fuzzers, unit tests), windows (a byte
 * range of another file: an archive member, file_window.c) and NBD exports
 * (protocols/nbd/nbd.c, through libnbd); KIMG_CRASH_AFTER=N
 * (file.c) kills the process before its (N+1)-th file change, for crash
 * tests.  All calls are full transfers: a short read or write is an error.
 * The shortcuts the engines take (mapping, extent cloning, copy offload,
 * async submission) are optional operations: an engine asks through the
 * kimg_file_* wrappers below, never through a descriptor, and falls back
 * to pread/pwrite where the backend has no such operation.
 */
#ifndef KIMG_FILE_H
#define KIMG_FILE_H

#ifndef KIMG_DRIVER_API
#error "kimg/file.h is the implementor API (img/, formats/): use kimg.h"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct kimg_file;
struct iocb;

/* A read-only view of a file range (kimg_file_map). */
struct kimg_file_map {
    const uint8_t *data;    /* the range's first byte */
    void *base;             /* for the backend's unmap */
    size_t len;
    bool may_fault;         /* the view follows the file: a change of its
                               size raises SIGBUS on access (img/srcmap.c
                               guards the engines' accesses) */
};

struct kimg_file_ops {
    int (*pread)(struct kimg_file *f, void *buf, size_t len, uint64_t off);
    int (*pwrite)(struct kimg_file *f, const void *buf, size_t len, uint64_t off);
    int (*get_size)(struct kimg_file *f, uint64_t *size);
    int (*truncate)(struct kimg_file *f, uint64_t size);
    int (*sync)(struct kimg_file *f);
    /* make [off, off+len) read as zeros; PUNCH: deallocate too */
    int (*zero)(struct kimg_file *f, uint64_t off, uint64_t len, bool punch);
    /* deallocate [off, off+len) inside the file (reads zeros after), never
     * writing zeros instead: -EOPNOTSUPP when the host cannot; may be NULL */
    int (*discard)(struct kimg_file *f, uint64_t off, uint64_t len);
    int (*allocate)(struct kimg_file *f, uint64_t off, uint64_t len);
    /* data/hole run at OFF (at most LEN): *is_data, *pnum >= 1 */
    int (*data_status)(struct kimg_file *f, uint64_t off, uint64_t len,
                       bool *is_data, uint64_t *pnum);
    /* bytes allocated on the host, or -1 */
    int64_t (*allocated)(struct kimg_file *f);
    void (*close)(struct kimg_file *f);

    /* ---- optional (NULL: not offered; the wrappers return -EOPNOTSUPP
     * and the engines fall back to pread/pwrite) ---- */
    /* Read-only view of [off, off+len), inside the file's size, filling M;
     * -EOPNOTSUPP/-errno when the range cannot be mapped (then read it). */
    int (*map)(struct kimg_file *f, uint64_t off, uint64_t len, struct kimg_file_map *m);
    void (*unmap)(struct kimg_file *f, struct kimg_file_map *m);
    /* Block size that extent sharing needs (offsets and lengths multiples
     * of it), 0 when DST cannot share extents at all (not a regular file) */
    uint64_t (*clone_align)(struct kimg_file *f);
    /* Share LEN bytes at SOFF of SRC into DST at DOFF (FICLONERANGE), no
     * copy: -EOPNOTSUPP/-EXDEV/-EINVAL when the host refuses (SRC of
     * another backend included) */
    int (*clone_range)(struct kimg_file *dst, uint64_t doff, struct kimg_file *src,
                       uint64_t soff, uint64_t len);
    /* Copy LEN bytes at SOFF of SRC to DOFF of DST inside the host
     * (copy_file_range), all of it or -errno; -EXDEV for SRC of another
     * backend */
    int (*copy_range)(struct kimg_file *dst, uint64_t doff, struct kimg_file *src,
                      uint64_t soff, uint64_t len);
    /* Prepare CB (libaio) for a transfer on F; -EOPNOTSUPP when F cannot
     * take asynchronous requests (img/aio.c then runs it synchronously) */
    int (*aio_prep)(struct kimg_file *f, struct iocb *cb, bool write, void *buf,
                    size_t len, uint64_t off);
    /* Whether A and B are the same host file (device and inode) */
    bool (*same_file)(struct kimg_file *a, struct kimg_file *b);
    /* The file whose bytes [*off, *off+len) of F are, with *OFF moved to
     * its offset there, or NULL when the range is not wholly inside F
     * (window files: img/file_window.c).  kimg_file_underlying() */
    struct kimg_file *(*underlying)(struct kimg_file *f, uint64_t *off, uint64_t len);
    /* Make [off, off+len) read as zeros only if the host can do it fast
     * (no zeros written by anyone: NBD's fast zero; PUNCH: the range may
     * become a hole): -ENOTSUP, without a message, when it cannot (a part
     * may be zeroed already) */
    int (*zero_fast)(struct kimg_file *f, uint64_t off, uint64_t len, bool punch);
};

struct kimg_file {
    const struct kimg_file_ops *ops;
    char *path;        /* as opened (for messages) */
    int fd;            /* -1 for memory files; a window's is its base's,
                          for locks and identity (fstat) only: no I/O
                          and no close goes through it */
    bool writable;
    bool direct;       /* O_DIRECT: the backend bounces unaligned requests */
    unsigned align;    /* O_DIRECT alignment (512 or 4096), else 1 */
    bool nosync;       /* cache=unsafe: kimg_file_sync() does nothing */
    /* memory backend */
    uint8_t *mem;
    uint64_t mem_size, mem_cap, mem_limit;
    void *mem_lock;    /* a pthread_rwlock_t: the engines call from threads */
};

#define KIMG_FILE_RDWR   0x1u
#define KIMG_FILE_CREATE 0x2u  /* create; with EXCL fail if it exists */
#define KIMG_FILE_EXCL   0x4u
#define KIMG_FILE_DIRECT 0x8u
#define KIMG_FILE_TRUNC  0x10u
#define KIMG_FILE_NOFOLLOW 0x20u /* O_NOFOLLOW: a symbolic link is refused (-ELOOP) */
#define KIMG_FILE_FROM_IMAGE 0x40u /* the name came from an image: an NBD name
                                      in it may not open local files */

/* PATH is opened as a host file, or, when it is an NBD name (nbd://,
 * nbd+unix://, nbds://, qemu's "nbd:..."; protocols/nbd/), as an NBD
 * export through libnbd (protocols/nbd/nbd.h says what FLAGS mean
 * there).  kimg_image_path() decides which names may be NBD names: a
 * local path that looks like one reaches here as "./NAME". */
int kimg_file_open(struct kimg_file **out, const char *path, unsigned flags);
/* Open the relative NAME under the folder DIRFD, never outside it
 * (openat2 RESOLVE_BENEATH: "..", absolute symbolic links and links that
 * climb out fail with -EXDEV; with KIMG_FILE_NOFOLLOW no symbolic link
 * at all, -ELOOP).  PATH names the file in messages.  No CREATE. */
int kimg_file_open_beneath(struct kimg_file **out, int dirfd, const char *name,
                           const char *path, unsigned flags);
/* NAME is an NBD name (scheme nbd, nbds, nbd+unix, nbds+unix, nbd+tcp,
 * nbds+tcp, or qemu's "nbd:" legacy forms): only the prefix is looked at
 * (protocols/nbd/uri.c). */
bool kimg_nbd_is_uri(const char *name);
/* The NBD backend (protocols/nbd/nbd.c): connect to the export NAME names
 * with kimg_file_open's FLAGS (RDWR/CREATE: writable, refused on a
 * read-only export; FROM_IMAGE: nothing in the name may open a local
 * file; CREATE/TRUNC/EXCL change nothing: an export exists and keeps its
 * size and bytes).  The file's path is the name as qemu-img shows it; its
 * fd is -1.  -errno with one message line. */
int kimg_nbd_open(struct kimg_file **out, const char *name, unsigned flags);
/* The same for an export given by its parts (--image-opts file.driver=nbd):
 * SOCKET (a unix socket) or HOST and PORT (NULL: 10809), EXPORT (NULL:
 * none named; "" named empty, shown as qemu shows it: "nbd+unix:///?..."). */
int kimg_nbd_open_server(struct kimg_file **out, const char *socket, const char *host,
                         const char *port, const char *export, unsigned flags);
bool kimg_file_is_nbd(const struct kimg_file *f);
/* A memory file holding a copy of DATA; writes grow it up to LIMIT bytes. */
int kimg_file_open_mem(struct kimg_file **out, const char *name,
                       const void *data, size_t len, bool writable,
                       uint64_t limit);
void kimg_file_close(struct kimg_file *f);
/* A window file (img/file_window.c): the byte range [OFF, OFF+LEN) of
 * BASE, read-only, as a file of its own whose byte 0 is BASE's byte OFF
 * and whose size is LEN (less, if BASE shrinks under it).  Reads,
 * block status, mappings and O_DIRECT libaio requests go to BASE shifted
 * by OFF and never outside the range (reads past LEN end like reads past
 * a file's end); copy_range and clone_range from it reach BASE through
 * kimg_file_underlying; its "allocated" size is LEN; every write-type call
 * fails with -EBADF.  Two windows are the same file (kimg_file_same) when
 * they are the same range of the same base.  NAME (NULL: BASE's path) is
 * its path for messages.  With OWN the window owns BASE (closing it closes
 * BASE; BASE is closed on failure too); without, BASE must outlive it. */
int kimg_file_open_window(struct kimg_file **out, struct kimg_file *base, uint64_t off,
                          uint64_t len, const char *name, bool own);
/* The file holding bytes [*OFF, *OFF+LEN) of F, *OFF moved to its offset
 * there (through any number of windows); F itself for other files; NULL
 * when the range leaves a window. */
struct kimg_file *kimg_file_underlying(struct kimg_file *f, uint64_t *off, uint64_t len);
/* qemu's file-protocol creation attributes, set on a new, empty file:
 * NOCOW sets FS_NOCOW_FL (btrfs; a failure is ignored); the extent size
 * hint EXTSIZE goes into FS_IOC_FSSETXATTR with FS_XFLAG_EXTSIZE (XFS; 0
 * clears it), a failure warned about on stderr only when WARN (the user
 * gave a hint that is not 0), as qemu.  Never fails. */
void kimg_file_set_create_attrs(struct kimg_file *f, bool nocow, uint32_t extsize, bool warn);
/* The file's extent size hint (FS_IOC_FSGETXATTR's fsx_extsize, as qemu's
 * file driver reports it), 0 when it has none or cannot tell. */
uint32_t kimg_file_extent_size_hint(struct kimg_file *f);

/* Full-length transfers; errors carry a kimg_error() message naming the file.
 * Reading past the end of the file is an error (-EIO). */
int kimg_file_pread(struct kimg_file *f, void *buf, size_t len, uint64_t off);
int kimg_file_pwrite(struct kimg_file *f, const void *buf, size_t len, uint64_t off);
/* The same for byte-packed data (compressed clusters), which starts at any
 * file offset: exempt from the buffer alignment rule (file.c). */
int kimg_file_pwrite_packed(struct kimg_file *f, const void *buf, size_t len, uint64_t off);
/* Like pread, but bytes past the end of the file read as zeros. */
int kimg_file_pread_zero_eof(struct kimg_file *f, void *buf, size_t len, uint64_t off);
int kimg_file_size(struct kimg_file *f, uint64_t *size);
int kimg_file_truncate(struct kimg_file *f, uint64_t size);
int kimg_file_sync(struct kimg_file *f);
int kimg_file_zero(struct kimg_file *f, uint64_t off, uint64_t len, bool punch);
/* The zero_fast op: 0, -ENOTSUP (no message; also when F has no such op)
 * or -errno with a message. */
int kimg_file_zero_fast(struct kimg_file *f, uint64_t off, uint64_t len, bool punch);
int kimg_file_allocate(struct kimg_file *f, uint64_t off, uint64_t len);
/* Give [off, off+len) back to the host (a hole punched, the size kept;
 * clipped to the file's size), as qemu's discard: -EOPNOTSUPP where that
 * is not possible, never a write of zeros. */
int kimg_file_discard(struct kimg_file *f, uint64_t off, uint64_t len);
int kimg_file_data_status(struct kimg_file *f, uint64_t off, uint64_t len,
                          bool *is_data, uint64_t *pnum);
int64_t kimg_file_allocated(struct kimg_file *f);

/* The optional operations (see struct kimg_file_ops), -EOPNOTSUPP when the
 * backend has none; no message is set for that, the caller falls back.
 * Engines use img/srcmap.c rather than kimg_file_map directly: it guards
 * the accesses against a file that changes size. */
int kimg_file_map(struct kimg_file *f, uint64_t off, uint64_t len, struct kimg_file_map *m);
void kimg_file_unmap(struct kimg_file *f, struct kimg_file_map *m);
uint64_t kimg_file_clone_align(struct kimg_file *f);
int kimg_file_clone_range(struct kimg_file *dst, uint64_t doff, struct kimg_file *src,
                          uint64_t soff, uint64_t len);
int kimg_file_copy_range(struct kimg_file *dst, uint64_t doff, struct kimg_file *src,
                         uint64_t soff, uint64_t len);
int kimg_file_aio_prep(struct kimg_file *f, struct iocb *cb, bool write, void *buf,
                       size_t len, uint64_t off);
bool kimg_file_has_aio(const struct kimg_file *f);
bool kimg_file_has_copy_range(const struct kimg_file *f);
/* F is a host device (block device), whose bytes are not a file's. */
bool kimg_file_is_device(struct kimg_file *f);
/* A and B are one host file (false when a backend cannot tell). */
bool kimg_file_same(struct kimg_file *a, struct kimg_file *b);
/* QEMU's image locks (img/lock.c) on F: no-op for backends without them. */
int kimg_file_lock(struct kimg_file *f, bool writable, const char *filename);

/* Buffers suitable for O_DIRECT (4096-aligned); free with free().  Every
 * buffer that a large transfer reads into or writes from comes from here
 * (see check_align in file.c). */
void *kimg_alloc_aligned(size_t len);
void *kimg_alloc_aligned_zero(size_t len);     /* the same, zero-filled */

/* kimg_buffer_alloc / kimg_buffer_free, for the engines' long-lived job
 * buffers, are in kimg.h (clone/ uses them too). */

/* This thread's scratch buffer SLOT (0 or 1), aligned as above and at
 * least LEN bytes (img/scratch.c); NULL when out of memory.  Valid until
 * the next call for the same slot on this thread or kimg_scratch_done;
 * never free it.  Not for key material (it is not wiped).  A user calls
 * kimg_scratch_done when finished: that frees the buffers, except on a
 * thread marked with kimg_scratch_keep (the engines' workers), which
 * keeps them for its next job until it exits. */
#define KIMG_SCRATCH_SLOTS 2
void *kimg_scratch(unsigned slot, size_t len);
void kimg_scratch_done(void);
void kimg_scratch_keep(void);

/* A file change made without kimg_file_* (libaio writes, img/aio.c): it
 * counts for KIMG_CRASH_AFTER like the others. */
void kimg_file_count_change(void);

#endif
