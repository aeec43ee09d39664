/*
 * file.c — host files for drivers.  The POSIX backend does full-length
 * pread/pwrite (EINTR and short transfers handled), hole punching,
 * SEEK_DATA/SEEK_HOLE, O_DIRECT with bounce buffers for unaligned
 * requests, a new file's attributes (nocow, XFS extent size hint), and the
 * engines' optional shortcuts: mmap, FICLONERANGE, copy_file_range and
 * libaio requests.  The memory backend serves fuzzers and unit tests (its
 * only shortcut: a view of its buffer as a mapping).
 */
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "kimg.h"
#include "kimg/file.h"
#include "crash.h"
#include "tunables.h"

#define DIRECT_ALIGN 4096u

void *kimg_alloc_aligned(size_t len)
{
    void *p = NULL;
    if (posix_memalign(&p, DIRECT_ALIGN, len ? len : DIRECT_ALIGN))
        return NULL;
    return p;
}

/* Job buffers of 2 MiB or more are mappings of their own, on a 2 MiB
 * boundary, with transparent huge pages asked for their whole 2 MiB
 * parts: their first touch is then one fault per 2 MiB, not 512.  In a VM
 * whose page faults trap to the hypervisor (this project's hosts: 11 us
 * each) the 4 KiB faults of convert's eight job buffers cost 45 ms of CPU,
 * 12% of a qcow2-to-raw copy of the bench disk.  Not from malloc: the
 * huge-page advice would outlive free() in malloc's heap, and every small
 * allocation later placed there would fault in a whole 2 MiB page (a
 * batch of 16 clones grew from 21 to 58 MiB that way).  Under
 * AddressSanitizer they come from malloc, so its checks cover them. */
#if defined(__SANITIZE_ADDRESS__)
#define BUFFER_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUFFER_MALLOC 1
#endif
#endif
#define HUGE_PAGE ((size_t)2 << 20)

#ifndef BUFFER_MALLOC
static size_t huge_span(size_t len)
{
    return (len + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
}
#endif

void *kimg_buffer_alloc(size_t len)
{
    if (len > SIZE_MAX / 4)   /* the rounding below must not wrap */
        return NULL;
#ifndef BUFFER_MALLOC
    if (len >= HUGE_PAGE) {
        size_t span = huge_span(len);
        uint8_t *m = mmap(NULL, span + HUGE_PAGE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        uint8_t *p = (uint8_t *)(((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
        if (p > m)
            munmap(m, (size_t)(p - m));
        if (p + span < m + span + HUGE_PAGE)
            munmap(p + span, (size_t)(m + span + HUGE_PAGE - (p + span)));
        (void)madvise(p, len / HUGE_PAGE * HUGE_PAGE, MADV_HUGEPAGE);
        return p;
    }
#endif
    return kimg_alloc_aligned(len);
}

void kimg_buffer_free(void *p, size_t len)
{
    if (!p)
        return;
#ifndef BUFFER_MALLOC
    if (len >= HUGE_PAGE) {
        munmap(p, huge_span(len));
        return;
    }
#endif
    free(p);
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

/*
 * A buffered write never makes the kernel allocate a PMD-sized (2 MiB)
 * page-cache folio.  The kernel sizes a new folio by the write: a write
 * that reaches a 2 MiB boundary with 2 MiB or more still to go gets a
 * 2 MiB folio, taken from the page allocator's high-order free blocks.
 * On a VM whose host reclaims free guest memory (virtio-balloon free page
 * reporting: Firecracker, cloud-hypervisor, QEMU's free-page-reporting=on)
 * those blocks are exactly the ones the host has taken back, and the copy
 * into them pays a host page fault per 4 KiB: measured on a 2-vCPU AMD
 * EPYC guest, a 1.3 GiB raw-to-raw copy in 2 MiB-aligned writes took
 * 1.4-4.6 s in 10 of 12 runs, the same writes shifted by 4 KiB 0.36-0.6 s
 * in 11 of 12 (README.md, "Performance").  qemu-img
 * escapes this by accident: its writes follow the source's extents.  So a
 * write crossing such a point is cut 4 KiB after it: the kernel then
 * builds that range from a 4 KiB folio and folios of up to 1 MiB, which
 * the allocator serves from memory the guest still holds.  Cost on any
 * host: one more pwrite per 2 MiB.
 */
#define FOLIO_PMD (2ull << 20)
#define FOLIO_CUT 4096ull

static ssize_t buffered_pwrite(int fd, const char *buf, size_t len, uint64_t off)
{
    uint64_t end = off + len;
    while (off < end) {
        uint64_t p = (off + FOLIO_PMD - 1) & ~(FOLIO_PMD - 1);   /* next 2 MiB point */
        uint64_t stop = end;
        if (p < end && end - p >= FOLIO_PMD)
            stop = p + FOLIO_CUT;
        ssize_t n = raw_pwrite(fd, buf, (size_t)(stop - off), off);
        if (n < 0)
            return n;
        buf += n;
        off = stop;
    }
    return (ssize_t)len;
}

static int posix_pwrite(struct kimg_file *f, const void *buf, size_t len, uint64_t off)
{
    ssize_t n = !f->direct ? buffered_pwrite(f->fd, buf, len, off)
              : is_aligned(f, buf, len, off) ? raw_pwrite(f->fd, buf, len, off)
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

/* Fast zero (the nbdkit plugin's NBD_CMD_FLAG_FAST_ZERO): only what the
 * file system or device does without writing zeros.  A regular file: a
 * hole punched (PUNCH) or an unwritten extent (FALLOC_FL_ZERO_RANGE); a
 * block device: the kernel's zero-out that never falls back to writing
 * (fallocate PUNCH_HOLE on a block device: BLKDEV_ZERO_NOFALLBACK), which
 * may unmap, so only when PUNCH allows it.  The range is within the file
 * (the size is the export's). */
static int posix_zero_fast(struct kimg_file *f, uint64_t off, uint64_t len, bool punch)
{
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        return -errno;
    int mode;
    if (S_ISBLK(st.st_mode)) {
        if (!punch)
            return -ENOTSUP;
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    } else if (S_ISREG(st.st_mode)) {
        mode = punch ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                     : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    } else {
        return -ENOTSUP;
    }
    if (fallocate(f->fd, mode, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL || errno == ENODEV)
        return -ENOTSUP;
    return -errno;
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

static const struct kimg_file_ops posix_ops;

/* Buffered regular files only: an O_DIRECT file's data must not come in
 * through the page cache, and a device's size is not the file's. */
static int posix_map(struct kimg_file *f, uint64_t off, uint64_t len, struct kimg_file_map *m)
{
    static long page;
    struct stat st;
    if (!page)
        page = sysconf(_SC_PAGESIZE);
    if (f->direct || !len || fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode))
        return -EOPNOTSUPP;
    if (off > (uint64_t)st.st_size || len > (uint64_t)st.st_size - off)
        return -ERANGE;
    uint64_t delta = off % (uint64_t)page;
    if (len + delta > SIZE_MAX)
        return -EOPNOTSUPP;
    size_t ml = (size_t)(len + delta);
    void *p = mmap(NULL, ml, PROT_READ, MAP_SHARED, f->fd, (off_t)(off - delta));
    if (p == MAP_FAILED)
        return -errno;
    m->base = p;
    m->len = ml;
    m->data = (const uint8_t *)p + delta;
    m->may_fault = true;
    return 0;
}

static void posix_unmap(struct kimg_file *f, struct kimg_file_map *m)
{
    munmap(m->base, m->len);
}

static uint64_t posix_clone_align(struct kimg_file *f)
{
    struct stat st;
    if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_blksize <= 0)
        return 0;
    return (uint64_t)st.st_blksize;
}

static int posix_clone_range(struct kimg_file *dst, uint64_t doff, struct kimg_file *src,
                             uint64_t soff, uint64_t len)
{
    if (src->ops != &posix_ops)
        return -EXDEV;
    struct file_clone_range r = { .src_fd = src->fd, .src_offset = soff,
                                  .src_length = len, .dest_offset = doff };
    return ioctl(dst->fd, FICLONERANGE, &r) == 0 ? 0 : -errno;
}

static int posix_copy_range(struct kimg_file *dst, uint64_t doff, struct kimg_file *src,
                            uint64_t soff, uint64_t len)
{
    if (src->ops != &posix_ops)
        return -EXDEV;
    loff_t in = (loff_t)soff, out = (loff_t)doff;
    while (len) {
        ssize_t n = copy_file_range(src->fd, &in, dst->fd, &out, (size_t)len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ENODATA;    /* the source ended */
        len -= (uint64_t)n;
    }
    return 0;
}

static int posix_aio_prep(struct kimg_file *f, struct iocb *cb, bool write, void *buf,
                          size_t len, uint64_t off)
{
    if (!f->direct)
        return -EOPNOTSUPP;     /* buffered: libaio would block in submit */
    if (write)
        io_prep_pwrite(cb, f->fd, buf, len, (long long)off);
    else
        io_prep_pread(cb, f->fd, buf, len, (long long)off);
    return 0;
}

static bool posix_same_file(struct kimg_file *a, struct kimg_file *b)
{
    struct stat sa, sb;
    return b->ops == &posix_ops && fstat(a->fd, &sa) == 0 && fstat(b->fd, &sb) == 0 &&
           sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static const struct kimg_file_ops posix_ops = {
    .pread = posix_pread, .pwrite = posix_pwrite, .get_size = posix_get_size,
    .truncate = posix_truncate, .sync = posix_sync, .zero = posix_zero,
    .discard = posix_discard,
    .allocate = posix_allocate, .data_status = posix_data_status,
    .allocated = posix_allocated, .close = posix_close,
    .map = posix_map, .unmap = posix_unmap, .clone_align = posix_clone_align,
    .clone_range = posix_clone_range, .copy_range = posix_copy_range,
    .aio_prep = posix_aio_prep, .same_file = posix_same_file,
    .zero_fast = posix_zero_fast,
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

uint32_t kimg_file_extent_size_hint(struct kimg_file *f)
{
    struct fsxattr fa;
    if (f->fd < 0 || kimg_file_is_nbd(f) || ioctl(f->fd, FS_IOC_FSGETXATTR, &fa) < 0)
        return 0;
    return fa.fsx_extsize;
}

static int open_flags(unsigned flags)
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
    if (flags & KIMG_FILE_NOFOLLOW)
        oflags |= O_NOFOLLOW;
    return oflags;
}

/* The checks and the handle for FD, just opened with OFLAGS (O_NONBLOCK
 * among them) for PATH (FD < 0: the open failed with errno); FD is
 * consumed. */
static int wrap_fd(struct kimg_file **out, int fd, const char *path, unsigned flags, int oflags)
{
    if (fd < 0 && (flags & KIMG_FILE_DIRECT) && errno == EINVAL)
        return kimg_fail(-EINVAL, "Could not open '%s': the file system does not support O_DIRECT", path);
    if (fd < 0) {
        int err = errno;
        return kimg_fail(-err, "Could not %s '%s': %s",
                         (flags & KIMG_FILE_CREATE) ? "create" : "open", path, strerror(err));
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* qemu's file driver, for a folder it could open read-only */
        close(fd);
        return kimg_fail(-EISDIR, "'file' driver requires '%s' to be a regular file", path);
    }
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        close(fd);
        /* a FIFO, pipe or socket: qemu's file driver's words; a character
         * device, which qemu opens as a host device, is refused */
        if (!S_ISCHR(st.st_mode))
            return kimg_fail(-EINVAL, "'file' driver requires '%s' to be a regular file", path);
        return kimg_fail(-EINVAL, "Could not open '%s': not a regular file or block device",
                         path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct kimg_file *f = calloc(1, sizeof(*f));
    if (!f || !(f->path = strdup(path))) {
        free(f);
        close(fd);
        return -ENOMEM;
    }
    f->fd = fd;
    f->ops = &posix_ops;
    f->writable = (oflags & O_ACCMODE) == O_RDWR;
    f->direct = flags & KIMG_FILE_DIRECT;
    f->align = f->direct ? DIRECT_ALIGN : 1;
    *out = f;
    return 0;
}

int kimg_file_open(struct kimg_file **out, const char *path, unsigned flags)
{
    if (kimg_nbd_is_uri(path))
        return kimg_nbd_open(out, path, flags);
    int oflags = open_flags(flags);
    /* O_NONBLOCK so a FIFO named as an image cannot hang the open; it is
     * refused in wrap_fd, and cleared for the files that are accepted */
    int fd = open(path, oflags | O_NONBLOCK, 0644);
    return wrap_fd(out, fd, path, flags, oflags);
}

int kimg_file_open_beneath(struct kimg_file **out, int dirfd, const char *name,
                           const char *path, unsigned flags)
{
    int oflags = open_flags(flags & ~(KIMG_FILE_NOFOLLOW | KIMG_FILE_CREATE));
    struct open_how how = {
        .flags = (uint64_t)(oflags | O_NONBLOCK),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
                   ((flags & KIMG_FILE_NOFOLLOW) ? RESOLVE_NO_SYMLINKS : 0),
    };
    int fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
    return wrap_fd(out, fd, path, flags, oflags);
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
    /* page-aligned, as every buffer kimg copies from (mem_map hands it out) */
    uint8_t *m = kimg_alloc_aligned((size_t)cap);
    if (!m)
        return -ENOMEM;
    if (f->mem_cap)
        memcpy(m, f->mem, (size_t)f->mem_cap);
    free(f->mem);
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

static void mem_close(struct kimg_file *f)
{
    free(f->mem);
    if (f->mem_lock)
        pthread_rwlock_destroy(f->mem_lock);
    free(f->mem_lock);
}

/* The engines call a file from several threads: reads share the lock,
 * changes (which may move the buffer) take it alone. */
#define MEM_LOCKED(f, excl, call) ({                                   \
    pthread_rwlock_t *l_ = (f)->mem_lock;                              \
    if (excl)                                                          \
        pthread_rwlock_wrlock(l_);                                     \
    else                                                               \
        pthread_rwlock_rdlock(l_);                                     \
    __auto_type r_ = (call);                                           \
    pthread_rwlock_unlock(l_);                                         \
    r_; })

static int mem_pread_l(struct kimg_file *f, void *buf, size_t len, uint64_t off)
{ return MEM_LOCKED(f, false, mem_pread(f, buf, len, off)); }
static int mem_pwrite_l(struct kimg_file *f, const void *buf, size_t len, uint64_t off)
{ return MEM_LOCKED(f, true, mem_pwrite(f, buf, len, off)); }
static int mem_get_size_l(struct kimg_file *f, uint64_t *size)
{ return MEM_LOCKED(f, false, mem_get_size(f, size)); }
static int mem_truncate_l(struct kimg_file *f, uint64_t size)
{ return MEM_LOCKED(f, true, mem_truncate(f, size)); }
static int mem_zero_l(struct kimg_file *f, uint64_t off, uint64_t len, bool punch)
{ return MEM_LOCKED(f, true, mem_zero(f, off, len, punch)); }
static int mem_discard_l(struct kimg_file *f, uint64_t off, uint64_t len)
{ return MEM_LOCKED(f, true, mem_discard(f, off, len)); }
static int mem_allocate_l(struct kimg_file *f, uint64_t off, uint64_t len)
{ return MEM_LOCKED(f, true, mem_allocate(f, off, len)); }
static int64_t mem_allocated_l(struct kimg_file *f)
{ return MEM_LOCKED(f, false, mem_allocated(f)); }

/* A view of the buffer itself, for read-only files only: a write may move
 * the buffer. */
static int mem_map(struct kimg_file *f, uint64_t off, uint64_t len, struct kimg_file_map *m)
{
    if (f->writable)
        return -EOPNOTSUPP;
    if (off > f->mem_size || len > f->mem_size - off || !len)
        return -ERANGE;
    m->data = f->mem + off;
    m->base = NULL;
    m->len = (size_t)len;
    m->may_fault = false;
    return 0;
}

static void mem_unmap(struct kimg_file *f, struct kimg_file_map *m) { }

static bool mem_same_file(struct kimg_file *a, struct kimg_file *b) { return a == b; }

static const struct kimg_file_ops mem_ops = {
    .pread = mem_pread_l, .pwrite = mem_pwrite_l, .get_size = mem_get_size_l,
    .truncate = mem_truncate_l, .sync = mem_sync, .zero = mem_zero_l,
    .discard = mem_discard_l,
    .allocate = mem_allocate_l, .data_status = mem_data_status,
    .allocated = mem_allocated_l, .close = mem_close,
    .map = mem_map, .unmap = mem_unmap, .same_file = mem_same_file,
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
    f->mem_lock = malloc(sizeof(pthread_rwlock_t));
    if (!f->path || !f->mem_lock || pthread_rwlock_init(f->mem_lock, NULL) ||
        mem_reserve(f, len) < 0) {
        free(f->path);
        free(f->mem);
        free(f->mem_lock);
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

static void check_align(const struct kimg_file *f, const void *buf, size_t len,
                        uint64_t off, const char *what)
{
    if (len < ALIGN_CHECK_MIN || (off & ALIGN_CHECK_MASK) ||
        !((uintptr_t)buf & ALIGN_CHECK_MASK) || !kimg_tunables()->check_align)
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

int kimg_file_zero_fast(struct kimg_file *f, uint64_t off, uint64_t len, bool punch)
{
    if (!f->ops->zero_fast)
        return -ENOTSUP;
    struct kimg_crash_token tok;
    bool logged = kimg_crash_begin(f, KIMG_CRASH_ZERO, off, len, NULL, &tok);
    int ret = f->ops->zero_fast(f, off, len, punch);
    if (logged)
        kimg_crash_end(f, &tok, ret);
    if (ret == -ENOTSUP)
        return ret;
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

/* ---- optional operations ------------------------------------------------- */

int kimg_file_map(struct kimg_file *f, uint64_t off, uint64_t len, struct kimg_file_map *m)
{
    if (!f->ops->map || !f->ops->unmap)
        return -EOPNOTSUPP;
    return f->ops->map(f, off, len, m);
}

void kimg_file_unmap(struct kimg_file *f, struct kimg_file_map *m)
{
    if (m->data)
        f->ops->unmap(f, m);
    m->data = NULL;
}

uint64_t kimg_file_clone_align(struct kimg_file *f)
{
    return f->ops->clone_range && f->ops->clone_align && f->writable ? f->ops->clone_align(f)
                                                                      : 0;
}

struct kimg_file *kimg_file_underlying(struct kimg_file *f, uint64_t *off, uint64_t len)
{
    /* each step moves to a different (base) file; a chain of windows is
     * short, the bound only guards against a cycle */
    for (int depth = 0; f && f->ops->underlying && depth < 16; depth++)
        f = f->ops->underlying(f, off, len);
    return f && f->ops->underlying ? NULL : f;
}

int kimg_file_clone_range(struct kimg_file *dst, uint64_t doff, struct kimg_file *src,
                          uint64_t soff, uint64_t len)
{
    /* a window source is its base at the shifted offset */
    if (!(src = kimg_file_underlying(src, &soff, len)))
        return -EOPNOTSUPP;
    if (!dst->ops->clone_range || src->ops != dst->ops)
        return -EOPNOTSUPP;
    /* a change of the target: a crash point (not logged for KIMG_CRASH_LOSE,
     * whose users turn cloning off: kimg_crash_lossy) */
    kimg_file_count_change();
    return dst->ops->clone_range(dst, doff, src, soff, len);
}

bool kimg_file_has_copy_range(const struct kimg_file *f)
{
    uint64_t off = 0;
    f = kimg_file_underlying((struct kimg_file *)f, &off, 0);
    return f && f->ops->copy_range != NULL;
}

int kimg_file_copy_range(struct kimg_file *dst, uint64_t doff, struct kimg_file *src,
                         uint64_t soff, uint64_t len)
{
    if (!(src = kimg_file_underlying(src, &soff, len)))
        return -EOPNOTSUPP;
    if (!dst->ops->copy_range || src->ops != dst->ops)
        return -EOPNOTSUPP;
    return dst->ops->copy_range(dst, doff, src, soff, len);
}

bool kimg_file_has_aio(const struct kimg_file *f)
{
    return f->ops->aio_prep && f->direct;
}

int kimg_file_aio_prep(struct kimg_file *f, struct iocb *cb, bool write, void *buf,
                       size_t len, uint64_t off)
{
    return f->ops->aio_prep ? f->ops->aio_prep(f, cb, write, buf, len, off) : -EOPNOTSUPP;
}

bool kimg_file_is_device(struct kimg_file *f)
{
    struct stat st;
    uint64_t off = 0;
    if (f->ops->underlying && !(f = kimg_file_underlying(f, &off, 0)))
        return false;
    return f->ops == &posix_ops && (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode));
}

bool kimg_file_same(struct kimg_file *a, struct kimg_file *b)
{
    return a && b && a->ops->same_file && a->ops == b->ops && a->ops->same_file(a, b);
}
