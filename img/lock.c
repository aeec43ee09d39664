/*
 * lock.c — QEMU's image locking protocol on OFD locks.  Permission i is
 * "held" by a shared lock on byte 100+i and "not shared" by a shared lock
 * on byte 200+i; a conflict is found by testing for any other lock on the
 * opposite byte.  Permissions: consistent read, write, write unchanged,
 * resize.  Readers hold read and refuse to share write; writers hold read,
 * write and resize and share only read and write-unchanged.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include "kimg/driver.h"
#include "lock.h"

#define PERM_BASE   100
#define SHARED_BASE 200
#define NPERMS      4

enum { P_READ = 1, P_WRITE = 2, P_WRITE_UNCHANGED = 4, P_RESIZE = 8 };
static const char *const perm_names[NPERMS] = {
    "consistent read", "write", "write unchanged", "resize",
};

static int lock_byte(int fd, int off, short type, int cmd)
{
    struct flock fl = {
        .l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
    };
    if (fcntl(fd, cmd, &fl) < 0)
        return -errno;
    if (cmd == F_OFD_GETLK)
        return fl.l_type == F_UNLCK ? 0 : -EAGAIN;
    return 0;
}

int kimg_lock_acquire(struct kimg *img)
{
    int ret = kimg_lock_fd(img->file ? img->file->fd : -1, img->writable, img->filename);
    if (ret == 0)
        img->lock_fd_held = 1;
    return ret;
}

int kimg_lock_fd(int fd, bool writable, const char *filename)
{
    unsigned perm = P_READ, shared = P_READ | P_WRITE_UNCHANGED | P_RESIZE;
    if (fd < 0)
        return 0;
    if (writable) {
        perm = P_READ | P_WRITE | P_RESIZE;
        shared = P_READ | P_WRITE_UNCHANGED;
    }
    for (int i = 0; i < NPERMS; i++) {
        int ret = 0;
        if (perm & (1u << i))
            ret = lock_byte(fd, PERM_BASE + i, F_RDLCK, F_OFD_SETLK);
        if (ret == 0 && !(shared & (1u << i)))
            ret = lock_byte(fd, SHARED_BASE + i, F_RDLCK, F_OFD_SETLK);
        if (ret == -EINVAL || ret == -ENOLCK || ret == -EOPNOTSUPP)
            return 0;   /* no OFD locks on this file system: as QEMU, go on */
        if (ret < 0)
            goto conflict;
    }
    /* Conflicts: someone not sharing what we hold, or holding what we do
     * not share.  Our own locks are on this OFD, so GETLK ignores them.
     * The messages are qemu's first line (its second asks "Is another
     * process using the image [FILE]?"). */
    for (int i = 0; i < NPERMS; i++) {
        if ((perm & (1u << i)) &&
            lock_byte(fd, SHARED_BASE + i, F_WRLCK, F_OFD_GETLK) == -EAGAIN)
            return kimg_fail(-EAGAIN, "Failed to get \"%s\" lock", perm_names[i]);
        if (!(shared & (1u << i)) &&
            lock_byte(fd, PERM_BASE + i, F_WRLCK, F_OFD_GETLK) == -EAGAIN)
            return kimg_fail(-EAGAIN, "Failed to get shared \"%s\" lock", perm_names[i]);
    }
    return 0;
conflict:
    return kimg_fail(-EAGAIN, "Failed to lock byte range");
}

int kimg_file_lock(struct kimg_file *f, bool writable, const char *filename)
{
    return kimg_lock_fd(f ? f->fd : -1, writable, filename);
}

int kimg_lock_named(struct kimg *img, struct kimg_file *f)
{
    if ((img->flags & (KIMG_OPEN_SHARE | KIMG_OPEN_NO_LOCK)) ||
        (!img->writable && !(img->flags & KIMG_OPEN_NO_WRITERS)))
        return 0;
    return kimg_file_lock(f, img->writable, f->path);
}

void kimg_lock_release(struct kimg *img)
{
    /* OFD locks go away with the file description; nothing to do until a
     * long-lived handle needs to drop them early. */
    img->lock_fd_held = 0;
}
