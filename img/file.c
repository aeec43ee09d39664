/*
 * file.c — host files for drivers.  The POSIX backend does full-length
 * pread/pwrite (EINTR and short transfers handled), hole punching,
 * SEEK_DATA/SEEK_HOLE, O_DIRECT with bounce buffers for unaligned
 * requests, and a new file's attributes (nocow, XFS extent size hint).
 * The memory backend serves fuzzers and unit tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kimg.h"
#include "file.h"
#include "crash.h"

#define DIRECT_ALIGN 4096u

void *kimg_alloc_aligned(size_t len)
{
    void *p = NULL;
    if (posix_memalign(&p, DIRECT_ALIGN, len ? len : DIRECT_ALIGN))
        return NULL;
    return p;
}

void *kimg_alloc_aligned_zero(size_t len)
{
    void *p = kimg_alloc_aligned(len);
    if (p)
        memset(p, 0, len ? len : DIRECT_ALIGN);
    return p;
}

/* ---- crash injection (tests): img/crash.c -------------------------------- */

/* For writes that bypass kimg_file_pwrite (img/aio.c's libaio batches):
 * counted as changes (a crash point), not logged for KIMG_CRASH_LOSE. */
void kimg_file_count_change(void)
{
    struct kimg_crash_token tok;
    if (kimg_crash_begin(NULL, KIMG_CRASH_SYNC, 0, 0, NULL, &tok))
        kimg_crash_end(NULL, &tok, 0);
}

/* ---- POSIX backend ------------------------------------------------------- */

/* Transfer as much as the kernel gives; returns bytes done or -errno. */
static ssize_t raw_pread(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static ssize_t raw_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ENOSPC;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static bool is_aligned(const struct kimg_file *f, const void *buf, size_t len, uint64_t off)
{
    return !f->direct ||
           (((uintptr_t)buf | len | off) & (f->align - 1)) == 0;
}

/* O_DIRECT read through an aligned bounce buffer; bytes past EOF read as 0
 * and the count returned stops at EOF. */
static ssize_t bounce_pread(struct kimg_file *f, void *buf, size_t len, uint64_t off)
{
    uint64_t start = off & ~(uint64_t)(f->align - 1);
    uint64_t end = (off + len + f->align - 1) & ~(uint64_t)(f->align - 1);
    size_t blen = (size_t)(end - start);
    uint8_t *b = kimg_alloc_aligned(blen);
    if (!b)
        return -ENOMEM;
    ssize_t n = raw_pread(f->fd, b, blen, start);
    if (n >= 0) {
        size_t lead = (size_t)(off - start);
        size_t got = (size_t)n > lead ? (size_t)n - lead : 0;
        if (got > len)
            got = len;
        memcpy(buf, b + lead, got);
        n = (ssize_t)got;
    }
    free(b);
    return n;
}

static ssize_t bounce_pwrite(struct kimg_file *f, const void *buf, size_t len, uint64_t off)
{
    uint64_t start = off & ~(uint64_t)(f->align - 1);
    uint64_t end = (off + len + f->align - 1) & ~(uint64_t)(f->align - 1);
    size_t blen = (size_t)(end - start);
    uint8_t *b = kimg_alloc_aligned(blen);
    struct stat st;
    if (!b)
        return -ENOMEM;
    memset(b, 0, blen);
    /* the size before the write: only what this write adds may be trimmed */
    if (fstat(f->fd, &st) < 0) {
        free(b);
        return -errno;
    }
    uint64_t old_size = (uint64_t)st.st_size;
    /* read-modify-write of the partial head and tail blocks */
    ssize_t n = raw_pread(f->fd, b, blen, start);
    if (n < 0) {
        free(b);
        return n;
    }
    memcpy(b + (off - start), buf, len);
    n = raw_pwrite(f->fd, b, blen, start);
    free(b);
    if (n < 0)
        return n;
    /* the aligned tail block may have grown the file past what was asked
     * for: trim back to the larger of the old size and the write's end
     * (never below the old size: that would cut existing data) */
    uint64_t want = old_size > off + len ? old_size : off + len;
    if (end > want && ftruncate(f->fd, (off_t)want) < 0)
        return -errno;
    return (ssize_t)len;
}

static int posix_pread(struct kimg_file *f, void *buf, size_t len, uint64_t off)
{
    ssize_t n = is_aligned(f, buf, len, off) ? raw_pread(f->fd, buf, len, off)
                                             : bounce_pread(f, buf, len, off);
    if (n < 0)
        return (int)n;
    if ((size_t)n < len) {
        memset((char *)buf + n, 0, len - (size_t)n);
        return -ENODATA;   /* short: reached the end of the file */
    }
    return 0;
}

static int posix_pwrite(struct kimg_file *f, const void *buf, size_t len, uint64_t off)
{
    ssize_t n = is_aligned(f, buf, len, off) ? raw_pwrite(f->fd, buf, len, off)
                                             : bounce_pwrite(f, buf, len, off);
    return n < 0 ? (int)n : 0;
}

static int posix_get_size(struct kimg_file *f, uint64_t *size)
{
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        return -errno;
    if (S_ISBLK(st.st_mode)) {
        off_t end = lseek(f->fd, 0, SEEK_END);
        if (end < 0)
            return -errno;
        *size = (uint64_t)end;
    } else {
        *size = (uint64_t)st.st_size;
    }
    return 0;
}

static int posix_truncate(struct kimg_file *f, uint64_t size)
{
    return ftruncate(f->fd, (off_t)size) < 0 ? -errno : 0;
}

static int posix_sync(struct kimg_file *f)
{
    return fdatasync(f->fd) < 0 ? -errno : 0;
}

static int write_zero_bytes(struct kimg_file *f, uint64_t off, uint64_t len)
{
    size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
    uint8_t *z = kimg_alloc_aligned(chunk);
    int ret = 0;
    if (!z)
        return -ENOMEM;
    memset(z, 0, chunk);
    while (len && ret == 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        ret = posix_pwrite(f, z, n, off);
        off += n;
        len -= n;
    }
    free(z);
    return ret;
}

static int posix_zero(struct kimg_file *f, uint64_t off, uint64_t len, bool punch)
{
    uint64_t size;
    int ret = posix_get_size(f, &size);
    if (ret < 0)
        return ret;
    /* past the end of the file everything already reads as zero, but the
     * file must grow to cover the range */
    if (off + len > size) {
        ret = posix_truncate(f, off + len);
        if (ret < 0)
            return ret;
        if (off >= size)
            return 0;
        len = size - off;
    }
    if (punch && fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           (off_t)off, (off_t)len) == 0)
        return 0;
    if (fallocate(f->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0)
        return 0;
    return write_zero_bytes(f, off, len);
}

static int posix_discard(struct kimg_file *f, uint64_t off, uint64_t len)
{
    if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    return errno == ENOSYS ? -EOPNOTSUPP : -errno;
}

static int posix_allocate(struct kimg_file *f, uint64_t off, uint64_t len)
{
    int r = posix_fallocate(f->fd, (off_t)off, (off_t)len);
    return r ? -r : 0;
}

static int posix_data_status(struct kimg_file *f, uint64_t off, uint64_t len,
                             bool *is_data, uint64_t *pnum)
{
    off_t d = lseek(f->fd, (off_t)off, SEEK_DATA);
    if (d < 0) {
        if (errno == ENXIO) {           /* no data from here to EOF */
            *is_data = false;
            *pnum = len;
            return 0;
        }
        *is_data = true;                /* no SEEK_DATA: all data */
        *pnum = len;
        return 0;
    }
    if ((uint64_t)d > off) {
        *is_data = false;
        *pnum = (uint64_t)d - off < len ? (uint64_t)d - off : len;
        return 0;
    }
    off_t h = lseek(f->fd, (off_t)off, SEEK_HOLE);
    *is_data = true;
    if (h < 0 || (uint64_t)h <= off)
        *pnum = len;
    else
        *pnum = (uint64_t)h - off < len ? (uint64_t)h - off : len;
    return 0;
}

static int64_t posix_allocated(struct kimg_file *f)
{
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        return -1;
    return (int64_t)st.st_blocks * 512;
}

static void posix_close(struct kimg_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
}

static const struct kimg_file_ops posix_ops = {
    .pread = posix_pread, .pwrite = posix_pwrite, .get_size = posix_get_size,
    .truncate = posix_truncate, .sync = posix_sync, .zero = posix_zero,
    .discard = posix_discard,
    .allocate = posix_allocate, .data_status = posix_data_status,
    .allocated = posix_allocated, .close = posix_close,
};

void kimg_file_set_create_attrs(struct kimg_file *f, bool nocow, uint32_t extsize, bool warn)
{
    if (f->fd < 0)
        return;
    if (nocow) {
        int attr;
        if (ioctl(f->fd, FS_IOC_GETFLAGS, &attr) == 0) {
            attr |= FS_NOCOW_FL;
            (void)ioctl(f->fd, FS_IOC_SETFLAGS, &attr);
        }
    }
    struct fsxattr fa;
    int ret = ioctl(f->fd, FS_IOC_FSGETXATTR, &fa);
    if (ret == 0) {
        fa.fsx_xflags |= FS_XFLAG_EXTSIZE;
        fa.fsx_extsize = extsize;
        ret = ioctl(f->fd, FS_IOC_FSSETXATTR, &fa);
    }
    if (ret < 0 && warn)
        fprintf(stderr, "kimg: warning: Failed to set extent size hint: %s\n", strerror(errno));
}

int kimg_file_open(struct kimg_file **out, const char *path, unsigned flags)
{
    int oflags = O_CLOEXEC | ((flags & KIMG_FILE_RDWR) ? O_RDWR : O_RDONLY);
    if (flags & KIMG_FILE_CREATE)
        oflags |= O_CREAT | O_RDWR;
    if (flags & KIMG_FILE_EXCL)
        oflags |= O_EXCL;
    if (flags & KIMG_FILE_TRUNC)
        oflags |= O_TRUNC;
    if (flags & KIMG_FILE_DIRECT)
        oflags |= O_DIRECT;

    struct kimg_file *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    /* O_NONBLOCK so a FIFO named as an image cannot hang the open; it is
     * refused below, and cleared for the files that are accepted */
    f->fd = open(path, oflags | O_NONBLOCK, 0644);
    if (f->fd < 0 && (flags & KIMG_FILE_DIRECT) && errno == EINVAL) {
        free(f);
        return kimg_fail(-EINVAL, "Could not open '%s': the file system does not support O_DIRECT", path);
    }
    if (f->fd < 0) {
        int err = errno;
        free(f);
        return kimg_fail(-err, "Could not %s '%s': %s",
                         (flags & KIMG_FILE_CREATE) ? "create" : "open", path, strerror(err));
    }
    struct stat st;
    if (fstat(f->fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* qemu's file driver, for a folder it could open read-only */
        close(f->fd);
        free(f);
        return kimg_fail(-EISDIR, "'file' driver requires '%s' to be a regular file", path);
    }
    if (fstat(f->fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        close(f->fd);
        free(f);
        /* a FIFO, pipe or socket: qemu's file driver's words; a character
         * device, which qemu opens as a host device, is refused */
        if (!S_ISCHR(st.st_mode))
            return kimg_fail(-EINVAL, "'file' driver requires '%s' to be a regular file", path);
        return kimg_fail(-EINVAL, "Could not open '%s': not a regular file or block device",
                         path);
    }
    int fl = fcntl(f->fd, F_GETFL);
    if (fl >= 0)
        fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK);
    f->path = strdup(path);
    f->ops = &posix_ops;
    f->writable = (oflags & O_ACCMODE) == O_RDWR;
    f->direct = flags & KIMG_FILE_DIRECT;
    f->align = f->direct ? DIRECT_ALIGN : 1;
    if (!f->path) {
        close(f->fd);
        free(f);
        return -ENOMEM;
    }
    *out = f;
    return 0;
}

/* ---- memory backend ------------------------------------------------------ */

static int mem_reserve(struct kimg_file *f, uint64_t size)
{
    if (size <= f->mem_cap)
        return 0;
    if (size > f->mem_limit)
        return -ENOSPC;
    uint64_t cap = f->mem_cap ? f->mem_cap : 4096;
    while (cap < size)
        cap *= 2;
    if (cap > f->mem_limit)
        cap = f->mem_limit;
    uint8_t *m = realloc(f->mem, (size_t)cap);
    if (!m)
        return -ENOMEM;
    memset(m + f->mem_cap, 0, (size_t)(cap - f->mem_cap));
    f->mem = m;
    f->mem_cap = cap;
    return 0;
}

static int mem_pread(struct kimg_file *f, void *buf, size_t len, uint64_t off)
{
    size_t avail = off < f->mem_size ? (size_t)(f->mem_size - off) : 0;
    size_t n = len < avail ? len : avail;
    if (n)
        memcpy(buf, f->mem + off, n);
    if (n < len) {
        memset((char *)buf + n, 0, len - n);
        return -ENODATA;
    }
    return 0;
}

static int mem_pwrite(struct kimg_file *f, const void *buf, size_t len, uint64_t off)
{
    uint64_t end;
    if (__builtin_add_overflow(off, len, &end))
        return -EFBIG;
    if (len == 0)
        return 0;
    int ret = mem_reserve(f, end);
    if (ret < 0)
        return ret;
    memcpy(f->mem + off, buf, len);
    if (end > f->mem_size)
        f->mem_size = end;
    return 0;
}

static int mem_get_size(struct kimg_file *f, uint64_t *size)
{
    *size = f->mem_size;
    return 0;
}

static int mem_truncate(struct kimg_file *f, uint64_t size)
{
    int ret = mem_reserve(f, size);
    if (ret < 0)
        return ret;
    if (size < f->mem_size && f->mem)
        memset(f->mem + size, 0, (size_t)(f->mem_size - size));
    f->mem_size = size;
    return 0;
}

static int mem_sync(struct kimg_file *f) { return 0; }

static int mem_zero(struct kimg_file *f, uint64_t off, uint64_t len, bool punch)
{
    uint64_t end;
    if (__builtin_add_overflow(off, len, &end))
        return -EFBIG;
    if (end > f->mem_size) {
        int ret = mem_truncate(f, end);
        if (ret < 0)
            return ret;
    }
    if (len)
        memset(f->mem + off, 0, (size_t)len);
    return 0;
}

static int mem_discard(struct kimg_file *f, uint64_t off, uint64_t len)
{
    if (len)
        memset(f->mem + off, 0, (size_t)len);   /* inside the size (caller) */
    return 0;
}

static int mem_allocate(struct kimg_file *f, uint64_t off, uint64_t len)
{
    uint64_t end;
    if (__builtin_add_overflow(off, len, &end))
        return -EFBIG;
    return end > f->mem_size ? mem_truncate(f, end) : 0;
}

static int mem_data_status(struct kimg_file *f, uint64_t off, uint64_t len,
                           bool *is_data, uint64_t *pnum)
{
    *is_data = true;
    *pnum = len;
    return 0;
}

static int64_t mem_allocated(struct kimg_file *f) { return (int64_t)f->mem_size; }
static void mem_close(struct kimg_file *f) { free(f->mem); }

static const struct kimg_file_ops mem_ops = {
    .pread = mem_pread, .pwrite = mem_pwrite, .get_size = mem_get_size,
    .truncate = mem_truncate, .sync = mem_sync, .zero = mem_zero,
    .discard = mem_discard,
    .allocate = mem_allocate, .data_status = mem_data_status,
    .allocated = mem_allocated, .close = mem_close,
};

int kimg_file_open_mem(struct kimg_file **out, const char *name,
                       const void *data, size_t len, bool writable,
                       uint64_t limit)
{
    struct kimg_file *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->ops = &mem_ops;
    f->fd = -1;
    f->path = strdup(name ? name : "memory");
    f->writable = writable;
    f->align = 1;
    f->mem_limit = limit > len ? limit : len;
    if (!f->path || mem_reserve(f, len) < 0) {
        free(f->path);
        free(f);
        return -ENOMEM;
    }
    if (len)
        memcpy(f->mem, data, len);
    f->mem_size = len;
    *out = f;
    return 0;
}

/* ---- checked wrappers ---------------------------------------------------- */

void kimg_file_close(struct kimg_file *f)
{
    if (!f)
        return;
    kimg_crash_closing(f);
    f->ops->close(f);
    free(f->path);
    free(f);
}

/*
 * Buffer alignment.  On some CPUs (AMD EPYC here) the kernel copies
 * between the page cache and a user buffer several times slower when the
 * buffer does not start on a cache line (2.5 against 13 GB/s), so every
 * buffer kimg reads into or writes from comes from kimg_alloc_aligned (or
 * is a stack buffer declared aligned), and a sub-buffer starts at the same
 * offset into it as the file range it holds.  The rule checked: a transfer
 * of 4 KiB or more at a file offset that is a multiple of 64 uses a buffer
 * that is too.  (Compressed clusters start anywhere; their transfers are
 * exempt.)  KIMG_CHECK_ALIGN=1, set by the test suite, turns a breach into
 * an abort, so a new misaligned buffer fails the tests instead of slowing
 * some hosts down.
 */
#define ALIGN_CHECK_MIN 4096u
#define ALIGN_CHECK_MASK 63u

static bool align_check_on(void)
{
    static int on = -1;
    int v = __atomic_load_n(&on, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *e = getenv("KIMG_CHECK_ALIGN");
        v = e && *e == '1';
        __atomic_store_n(&on, v, __ATOMIC_RELAXED);
    }
    return v;
}

static void check_align(const struct kimg_file *f, const void *buf, size_t len,
                        uint64_t off, const char *what)
{
    if (len < ALIGN_CHECK_MIN || (off & ALIGN_CHECK_MASK) ||
        !((uintptr_t)buf & ALIGN_CHECK_MASK) || !align_check_on())
        return;
    fprintf(stderr, "kimg: internal error: %s of %zu bytes at offset %llu of %s from a "
            "buffer at %p, not 64-byte aligned (KIMG_CHECK_ALIGN)\n", what, len,
            (unsigned long long)off, f->path ? f->path : "?", buf);
    abort();
}

int kimg_file_pread(struct kimg_file *f, void *buf, size_t len, uint64_t off)
{
    check_align(f, buf, len, off, "read");
    int ret = f->ops->pread(f, buf, len, off);
    if (ret == -ENODATA)
        return kimg_fail(-EIO, "read past the end of the file at offset %llu (%zu bytes)",
                         (unsigned long long)off, len);
    if (ret < 0)
        return kimg_fail(ret, "read error at offset %llu: %s",
                         (unsigned long long)off, strerror(-ret));
    return 0;
}

int kimg_file_pread_zero_eof(struct kimg_file *f, void *buf, size_t len, uint64_t off)
{
    check_align(f, buf, len, off, "read");
    int ret = f->ops->pread(f, buf, len, off);
    if (ret == -ENODATA)
        return 0;
    if (ret < 0)
        return kimg_fail(ret, "read error at offset %llu: %s",
                         (unsigned long long)off, strerror(-ret));
    return 0;
}

static int file_pwrite(struct kimg_file *f, const void *buf, size_t len, uint64_t off,
                       bool packed)
{
    if (!f->writable)
        return kimg_fail(-EBADF, "file is read-only");
    if (!packed)
        check_align(f, buf, len, off, "write");
    struct kimg_crash_token tok;
    bool logged = kimg_crash_begin(f, KIMG_CRASH_WRITE, off, len, buf, &tok);
    int ret = f->ops->pwrite(f, buf, len, off);
    if (logged)
        kimg_crash_end(f, &tok, ret);
    if (ret < 0)
        return kimg_fail(ret, "write error at offset %llu: %s",
                         (unsigned long long)off, strerror(-ret));
    return 0;
}

int kimg_file_pwrite(struct kimg_file *f, const void *buf, size_t len, uint64_t off)
{
    return file_pwrite(f, buf, len, off, false);
}

int kimg_file_pwrite_packed(struct kimg_file *f, const void *buf, size_t len, uint64_t off)
{
    return file_pwrite(f, buf, len, off, true);
}

int kimg_file_size(struct kimg_file *f, uint64_t *size)
{
    int ret = f->ops->get_size(f, size);
    return ret < 0 ? kimg_fail(ret, "cannot get the file size: %s", strerror(-ret)) : 0;
}

int kimg_file_truncate(struct kimg_file *f, uint64_t size)
{
    struct kimg_crash_token tok;
    bool logged = kimg_crash_begin(f, KIMG_CRASH_TRUNCATE, 0, size, NULL, &tok);
    int ret = f->ops->truncate(f, size);
    if (logged)
        kimg_crash_end(f, &tok, ret);
    return ret < 0 ? kimg_fail(ret, "cannot resize the file: %s", strerror(-ret)) : 0;
}

int kimg_file_sync(struct kimg_file *f)
{
    if (f->nosync)
        return 0;
    struct kimg_crash_token tok;
    bool logged = kimg_crash_begin(f, KIMG_CRASH_SYNC, 0, 0, NULL, &tok);
    int ret = f->ops->sync(f);
    if (logged) {
        kimg_crash_end(f, &tok, ret);
        if (ret == 0)
            kimg_crash_synced(f);
    }
    return ret < 0 ? kimg_fail(ret, "flush failed: %s", strerror(-ret)) : 0;
}

int kimg_file_zero(struct kimg_file *f, uint64_t off, uint64_t len, bool punch)
{
    struct kimg_crash_token tok;
    bool logged = kimg_crash_begin(f, KIMG_CRASH_ZERO, off, len, NULL, &tok);
    int ret = f->ops->zero(f, off, len, punch);
    if (logged)
        kimg_crash_end(f, &tok, ret);
    return ret < 0 ? kimg_fail(ret, "cannot zero %llu bytes at %llu: %s",
                               (unsigned long long)len, (unsigned long long)off,
                               strerror(-ret)) : 0;
}

int kimg_file_discard(struct kimg_file *f, uint64_t off, uint64_t len)
{
    uint64_t size;
    int ret = f->ops->discard ? f->ops->get_size(f, &size) : -EOPNOTSUPP;
    if (ret < 0)
        return kimg_fail(ret, "cannot discard %llu bytes at %llu: %s", (unsigned long long)len,
                         (unsigned long long)off, strerror(-ret));
    if (off >= size || !len)
        return 0;
    if (len > size - off)
        len = size - off;
    struct kimg_crash_token tok;
    bool logged = kimg_crash_begin(f, KIMG_CRASH_ZERO, off, len, NULL, &tok);
    ret = f->ops->discard(f, off, len);
    if (logged)
        kimg_crash_end(f, &tok, ret);
    return ret < 0 ? kimg_fail(ret, "cannot discard %llu bytes at %llu: %s",
                               (unsigned long long)len, (unsigned long long)off,
                               strerror(-ret)) : 0;
}

int kimg_file_allocate(struct kimg_file *f, uint64_t off, uint64_t len)
{
    struct kimg_crash_token tok;
    bool logged = kimg_crash_begin(f, KIMG_CRASH_ALLOCATE, off, len, NULL, &tok);
    int ret = f->ops->allocate(f, off, len);
    if (logged)
        kimg_crash_end(f, &tok, ret);
    return ret < 0 ? kimg_fail(ret, "cannot allocate %llu bytes at %llu: %s",
                               (unsigned long long)len, (unsigned long long)off,
                               strerror(-ret)) : 0;
}

int kimg_file_data_status(struct kimg_file *f, uint64_t off, uint64_t len,
                          bool *is_data, uint64_t *pnum)
{
    return f->ops->data_status(f, off, len, is_data, pnum);
}

int64_t kimg_file_allocated(struct kimg_file *f)
{
    return f->ops->allocated(f);
}
