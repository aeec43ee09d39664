/*
 * file.h — host file access for drivers: a small table of operations with
 * a POSIX backend (buffered or O_DIRECT with bounce buffers) and an
 * in-memory backend (fuzzers, unit tests); KIMG_CRASH_AFTER=N (file.c)
 * kills the process before its (N+1)-th file change, for crash tests.
 * All calls are full transfers: a short read or write is an error.
 */
#ifndef KIMG_FILE_H
#define KIMG_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct kimg_file;

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
};

struct kimg_file {
    const struct kimg_file_ops *ops;
    char *path;        /* as opened (for messages) */
    int fd;            /* -1 for memory files */
    bool writable;
    bool direct;       /* O_DIRECT: the backend bounces unaligned requests */
    unsigned align;    /* O_DIRECT alignment (512 or 4096), else 1 */
    bool nosync;       /* cache=unsafe: kimg_file_sync() does nothing */
    /* memory backend */
    uint8_t *mem;
    uint64_t mem_size, mem_cap, mem_limit;
};

#define KIMG_FILE_RDWR   0x1u
#define KIMG_FILE_CREATE 0x2u  /* create; with EXCL fail if it exists */
#define KIMG_FILE_EXCL   0x4u
#define KIMG_FILE_DIRECT 0x8u
#define KIMG_FILE_TRUNC  0x10u

int kimg_file_open(struct kimg_file **out, const char *path, unsigned flags);
/* A memory file holding a copy of DATA; writes grow it up to LIMIT bytes. */
int kimg_file_open_mem(struct kimg_file **out, const char *name,
                       const void *data, size_t len, bool writable,
                       uint64_t limit);
void kimg_file_close(struct kimg_file *f);
/* qemu's file-protocol creation attributes, set on a new, empty file:
 * NOCOW sets FS_NOCOW_FL (btrfs; a failure is ignored); the extent size
 * hint EXTSIZE goes into FS_IOC_FSSETXATTR with FS_XFLAG_EXTSIZE (XFS; 0
 * clears it), a failure warned about on stderr only when WARN (the user
 * gave a hint that is not 0), as qemu.  Never fails. */
void kimg_file_set_create_attrs(struct kimg_file *f, bool nocow, uint32_t extsize, bool warn);

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
int kimg_file_allocate(struct kimg_file *f, uint64_t off, uint64_t len);
/* Give [off, off+len) back to the host (a hole punched, the size kept;
 * clipped to the file's size), as qemu's discard: -EOPNOTSUPP where that
 * is not possible, never a write of zeros. */
int kimg_file_discard(struct kimg_file *f, uint64_t off, uint64_t len);
int kimg_file_data_status(struct kimg_file *f, uint64_t off, uint64_t len,
                          bool *is_data, uint64_t *pnum);
int64_t kimg_file_allocated(struct kimg_file *f);

/* Buffers suitable for O_DIRECT (4096-aligned); free with free().  Every
 * buffer that a large transfer reads into or writes from comes from here
 * (see check_align in file.c). */
void *kimg_alloc_aligned(size_t len);
void *kimg_alloc_aligned_zero(size_t len);     /* the same, zero-filled */

/* A file change made without kimg_file_* (libaio writes, img/aio.c): it
 * counts for KIMG_CRASH_AFTER like the others. */
void kimg_file_count_change(void);

#endif
