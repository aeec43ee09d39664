/*
 * copy.c — the storage side of a clone, each into a temporary file beside
 * its destination (an output, kimg/output.h): a full sparse copy through
 * the convert engine (same format, qcow2 properties kept, overlays
 * flattened; --nonsparse preallocates), a --linked qcow2 overlay of the
 * original, and a --reflink FICLONE.  The new file gets the source's mode (and owner,
 * when run as root).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kimg.h"
#include "clone.h"

void clone_progress_line(void *opaque, uint64_t done, uint64_t total)
{
    const struct clone_disk_plan *d = opaque;
    double pct = total ? (double)done * 100.0 / (double)total : 100.0;
    fputs("\rCloning ", stderr);
    kimg_print_for_terminal(stderr, d->target);   /* from the XML */
    fprintf(stderr, ": %6.2f%%", pct);
    fflush(stderr);
}

int clone_create_target(struct clone_disk_plan *d, const struct clone_opts *o,
                        struct kimg **out)
{
    struct kimg_opts *co = NULL;
    int r = 0;
    *out = NULL;
    /* a copy in the source's own format keeps its properties (qcow2:
     * cluster size, compat, refcount width, ...) */
    if (!strcmp(d->dst_format, kimg_format_name(d->img)))
        r = kimg_create_opts_like(d->img, &co);
    if (r == 0 && o->nonsparse)
        r = kimg_opts_set(&co, "preallocation", "falloc");
    if (r == 0) {
        struct kimg_create_args ca = {
            .filename = d->tmp, .format = d->dst_format, .size = d->size, .size_given = true,
            .opts = co,
        };
        r = kimg_create(&ca);
    }
    if (r == 0)
        r = kimg_open(out, d->tmp, d->dst_format, KIMG_OPEN_RDWR);
    kimg_opts_free(co);
    return r;
}

static int full_copy(struct clone_disk_plan *d, const struct clone_opts *o)
{
    struct kimg *out = NULL;
    int r = clone_create_target(d, o, &out);
    if (r < 0)
        return r;
    bool show = !o->quiet && isatty(STDERR_FILENO);
    struct kimg_convert cv = {
        .src = &d->img, .nb_src = 1, .dst = out, .sparse_size = 4096,
        .target_is_zero = true,   /* new, or preallocated: reads as zeros */
        .own_blocks = o->nonsparse,
        .progress = show ? clone_progress_line : NULL, .opaque = d,
    };
    r = kimg_convert_run(&cv);
    if (show) {
        clone_progress_line(d, 1, 1);
        fputc('\n', stderr);
    }
    if (r < 0) {
        kimg_close(out);
        return r;
    }
    return kimg_close(out);   /* flushes and syncs */
}

static int overlay(struct clone_disk_plan *d)
{
    struct kimg_create_args ca = {
        .filename = d->tmp, .format = "qcow2", .size = d->size, .size_given = true,
        .backing_file = d->backing, .backing_format = d->src_format,
    };
    int r = kimg_create(&ca);
    if (r < 0)
        return r;
    /* the overlay is on disk before it is renamed into place */
    int fd = open(d->tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        r = kimg_fail(-errno, "%s: cannot sync the new overlay: %s", d->tmp, strerror(errno));
    if (fd >= 0)
        close(fd);
    return r;
}

int clone_reflink_fd(int src_fd, int dst_fd, const char *src, const char *dst)
{
    if (ioctl(dst_fd, FICLONE, src_fd) == 0)
        return 0;
    int e = errno;
    if (e == EXDEV)
        return kimg_fail(-e, "%s: --reflink: %s is on another filesystem; a reflink shares "
                         "extents within one filesystem", dst, src);
    if (e == EOPNOTSUPP || e == ENOTTY || e == EINVAL || e == ENOSYS)
        return kimg_fail(-EOPNOTSUPP, "%s: --reflink: this filesystem cannot share extents "
                         "(FICLONE: %s); clone without --reflink", dst, strerror(e));
    return kimg_fail(-e, "%s: --reflink: FICLONE from %s failed: %s", dst, src, strerror(e));
}

static int reflink(struct clone_disk_plan *d)
{
    int sfd = open(d->src, O_RDONLY | O_CLOEXEC);
    if (sfd < 0)
        return kimg_fail(-errno, "%s: %s: %s", d->target, d->src, strerror(errno));
    int dfd = open(d->tmp, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (dfd < 0) {
        int e = errno;
        close(sfd);
        return kimg_fail(-e, "%s: %s", d->dst, strerror(e));
    }
    int r = clone_reflink_fd(sfd, dfd, d->src, d->dst);
    if (r == 0 && fsync(dfd) < 0)
        r = kimg_fail(-errno, "%s: %s", d->dst, strerror(errno));
    close(sfd);
    close(dfd);
    return r;
}

/* The clone's file gets the source's permissions (and owner, as root). */
static void copy_mode(const struct clone_disk_plan *d)
{
    struct stat st;
    if (stat(d->src, &st) < 0 || !S_ISREG(st.st_mode))
        return;
    if (geteuid() == 0 && chown(d->tmp, st.st_uid, st.st_gid) < 0) {
        /* best effort: libvirt's dynamic ownership fixes it at start */
    }
    chmod(d->tmp, st.st_mode & 0777);
}

int clone_copy_begin(struct clone_disk_plan *d)
{
    int r = kimg_output_begin(&d->out, d->dst, KIMG_OUTPUT_UNDO);
    if (r < 0)
        return r;
    d->tmp = d->out.path;
    copy_mode(d);   /* before any data: never readable more widely than the source */
    return 0;
}

int clone_copy_error(struct clone_disk_plan *d, int r)
{
    const char *m = kimg_last_error();
    if (!m || strncmp(m, d->dst, strlen(d->dst))) {
        char *copy = strdup(m ? m : strerror(-r));
        kimg_clear_error();
        kimg_error("%s: cloning %s to %s: %s", d->target, d->src, d->dst,
                   copy ? copy : "error");
        free(copy);
    }
    return r;
}

int clone_copy_disk(struct clone_disk_plan *d, const struct clone_opts *o)
{
    int r = d->tmp ? 0 : clone_copy_begin(d);
    if (r < 0)
        return r;
    switch (d->action) {
    case CLONE_COPY: r = full_copy(d, o); break;
    case CLONE_LINK: r = overlay(d); break;
    case CLONE_REFLINK: r = reflink(d); break;
    default: return -EINVAL;
    }
    return r < 0 ? clone_copy_error(d, r) : 0;
}

bool clone_fs_reflinks(struct clone_disk_plan *d0, struct clone_disk_plan *d1)
{
    /* two fresh, empty temporary files in the destination folders: FICLONE
     * between them succeeds only where the file system shares extents */
    struct stat ss, st;
    if (stat(d0->src, &ss) < 0 || !S_ISREG(ss.st_mode) || stat(d0->tmp, &st) < 0 ||
        ss.st_dev != st.st_dev)
        return false;
    int a = open(d0->tmp, O_RDONLY | O_CLOEXEC), b = open(d1->tmp, O_WRONLY | O_CLOEXEC);
    bool ok = a >= 0 && b >= 0 && ioctl(b, FICLONE, a) == 0;
    if (a >= 0)
        close(a);
    if (b >= 0)
        close(b);
    return ok;
}
