/*
 * convert_pipe.c — `kimg convert` from a source that is a pipe, a FIFO or
 * a socket (`cat disk.raw | kimg convert -f raw -O qcow2 /dev/stdin
 * out.qcow2`): read once, in order, to its end, by kimg_convert_from_fd.
 * The source must be raw (-f raw, as `kimg dd` from standard input) and
 * the only one; options that need to read the source at any offset are
 * refused in one line.  A new target is created empty and grows as the
 * data arrives (formats that can grow: kimg_driver_can_grow), under a
 * temporary name renamed into place when complete.  A format that cannot
 * grow, or -B or -o preallocation (the size is needed first), gets the
 * stream spooled into an unnamed temporary file, then converted as a
 * file by cmd/convert.c.  -n writes into an existing target; a raw
 * target that is a pipe gets the bytes in order (a pipe into a pipe).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "convert.h"
#include "kimg/convert.h"
#include "kimg/output.h"

bool convert_is_stream(const char *name)
{
    struct stat st;
    return stat(name, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

/* NAME is the same pipe (or socket) as our descriptor FD. */
static bool is_our_fd(const char *name, int fd)
{
    struct stat a, b;
    return stat(name, &a) == 0 && fstat(fd, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* The option among those given that needs to read the source at any
 * offset or more than once, and that the data of a raw stream cannot
 * serve (-l, --bitmaps, -C, --salvage, --disk); NULL if none. */
static const char *needs_random_access(const struct convert_args *a, const char *snapshot,
                                       unsigned disk)
{
    if (snapshot)
        return "-l";
    if (a->bitmaps)
        return "--bitmaps";
    if (a->copy_offload)
        return "-C";
    if (a->salvage)
        return "--salvage";
    if (disk)
        return "--disk";
    return NULL;
}

/* Options that need the source's size when the target is created (-B,
 * whose target is made the backing file's size or the source's, and -o
 * preallocation): served by a spooled copy of the stream. */
static bool needs_size_first(const struct convert_args *a)
{
    const char *pre = a->opts ? kimg_opts_get(a->opts, "preallocation") : NULL;
    return a->backing || (pre && strcmp(pre, "off"));
}

static int open_source(const char *src)
{
    if (is_our_fd(src, STDIN_FILENO))
        return STDIN_FILENO;
    /* a named FIFO: waits for its writer, as any reader does */
    int fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        cmd_error("%s: Could not open '%s': %s", src, src, strerror(errno));
    return fd;
}

/* A target whose format cannot grow (its size is fixed when it is made:
 * vhdx, vmdk, vpc, vdi), or made with -B or -o preallocation, which need
 * the size first: the stream is first spooled into an unnamed
 * temporary raw file in the target's folder (O_TMPFILE, else a name
 * unlinked at once: nothing is left behind, whatever happens), sparse,
 * and then converted as a file.  The spool's descriptor, or -1 (said). */
static int spool_stream(int in, const char *dst)
{
    const char *dpath = dst;
    if (kimg_image_path(dst, &dpath) < 0)
        return cmd_fail(NULL, NULL), -1;
    char *copy = strdup(dpath), *tmpl = NULL;
    if (!copy)
        return cmd_error("out of memory"), -1;
    const char *dir = dirname(copy);
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && asprintf(&tmpl, "%s/.kimg-spool-XXXXXX", dir) >= 0) {
        fd = mkostemp(tmpl, O_CLOEXEC);
        if (fd >= 0)
            unlink(tmpl);
    }
    if (fd < 0)
        cmd_error("%s: cannot make a temporary file in '%s' to hold the stream: %s", dst,
                  dir, strerror(errno));
    free(tmpl);
    free(copy);
    if (fd < 0)
        return -1;
    char name[64];
    snprintf(name, sizeof(name), "/proc/self/fd/%d", fd);
    struct kimg *img;
    if (kimg_open(&img, name, "raw", KIMG_OPEN_RDWR | KIMG_OPEN_NOSYNC) < 0) {
        cmd_fail(dst, "cannot open the temporary file");
        close(fd);
        return -1;
    }
    struct kimg_convert cv = { .dst = img, .sparse_size = 4096, .target_is_zero = true };
    int r = kimg_convert_from_fd(&cv, in, -1, KIMG_CONVERT_GROW, NULL);
    if (r < 0)
        cmd_fail(dst, "error while converting");
    if (kimg_close(img) < 0 && r == 0) {
        cmd_fail(dst, "error while writing the temporary file");
        r = -1;
    }
    if (r < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A raw target that is a pipe or FIFO: the bytes in order.  The command's
 * exit code. */
static int pipe_to_pipe(struct convert_args *a, struct kimg_convert *cv, int in, const char *dst)
{
    if (a->no_create || strcmp(a->out_fmt, "raw") || a->opts || a->compress || a->backing) {
        cmd_error("%s: only a new raw target without -o, -c or -B can be written into a pipe",
                  dst);
        return 1;
    }
    int fd = is_our_fd(dst, STDOUT_FILENO) ? STDOUT_FILENO : open(dst, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        cmd_error("%s: error while converting raw: Could not create '%s': %s", dst, dst,
                  strerror(errno));
        return 1;
    }
    /* a reader that goes away is EPIPE on write, not a silent death */
    signal(SIGPIPE, SIG_IGN);
    int r = kimg_convert_from_fd(cv, in, fd, 0, NULL);
    if (fd != STDOUT_FILENO && close(fd) < 0 && r == 0)
        r = kimg_fail(-errno, "error while closing: %s", strerror(errno));
    return r < 0 ? cmd_fail(dst, "error while converting") : 0;
}

/* A new target: created empty under a temporary name, grown as the data
 * arrives, renamed into place when complete.  An existing device is
 * written in place (it cannot grow: a longer stream fails). */
static int to_new_target(struct convert_args *a, struct kimg_convert *cv, int in,
                         const char *dst, unsigned dflags)
{
    struct kimg_output out = { 0 };
    struct kimg *img = NULL;
    int ret = 1;
    const char *dpath = dst;
    if (kimg_image_path(dst, &dpath) < 0)
        return cmd_fail(NULL, NULL);
    int r = kimg_output_begin(&out, dpath, KIMG_OUTPUT_REPLACE);
    if (r < 0) {
        cmd_error("%s: error while converting %s: Could not create '%s': %s",
                  dst, a->out_fmt, dst, strerror(-r));
        kimg_clear_error();
        return 1;
    }
    unsigned grow = 0;
    if (out.in_place) {
        if (kimg_open(&img, dpath, a->out_fmt, dflags) < 0) {
            cmd_fail(dst, "cannot open the target");
            img = NULL;
            goto done;
        }
    } else {
        struct kimg_create_args ca = {
            .filename = out.path, .format = a->out_fmt, .size = 0, .size_given = true,
            .opts = a->opts, .final_name = dpath,
        };
        if (kimg_create(&ca) < 0) {
            const char *why = kimg_last_error();
            cmd_error("%s: error while converting %s: %s", dst, a->out_fmt,
                      why ? why : "cannot create the image");
            kimg_clear_error();
            goto done;
        }
        r = convert_open_created(&img, out.path, a->out_fmt, dflags | KIMG_OPEN_OWN_NAMES,
                                 a->opts);
        if (r < 0) {
            const char *why = kimg_last_error();
            cmd_error("Could not open '%s': %s", dst, why ? why : strerror(-r));
            kimg_clear_error();
            img = NULL;
            goto done;
        }
        grow = KIMG_CONVERT_GROW;
        cv->target_is_zero = kimg_zero_init(img);
    }
    if (a->level && kimg_set_write_option(img, "compression_level", a->level) < 0) {
        cmd_fail(NULL, NULL);
        goto done;
    }
    cv->dst = img;
    if (kimg_convert_from_fd(cv, in, -1, grow, NULL) < 0) {
        cmd_fail(dst, "error while converting");
        goto done;
    }
    r = kimg_close(img);
    img = NULL;
    if (r < 0) {
        cmd_fail(dst, "error while writing the image");
        goto done;
    }
    r = kimg_output_commit(&out, !(dflags & KIMG_OPEN_NOSYNC));
    if (r < 0) {
        cmd_error("%s: cannot rename the finished image into place: %s", dst, strerror(-r));
        kimg_clear_error();
        goto done;
    }
    ret = 0;
done:
    if (img)
        kimg_close(img);
    kimg_output_abort(&out);
    return ret;
}

/* -n: an existing target, written in place; it does not grow. */
static int to_existing_target(struct convert_args *a, struct kimg_convert *cv, int in,
                              const char *dst, unsigned dflags)
{
    struct kimg *img = cmd_open_image(dst, a->tgt_image_opts,
                                      a->tgt_image_opts && !a->out_fmt_given ? NULL
                                                                             : a->out_fmt,
                                      dflags, 0);
    if (!img)
        return 1;
    int ret = 1;
    if (a->compress && !kimg_can_compress(img)) {
        cmd_error("Compression not supported for this file format");
        goto done;
    }
    if (a->level && kimg_set_write_option(img, "compression_level", a->level) < 0) {
        cmd_fail(NULL, NULL);
        goto done;
    }
    cv->dst = img;
    cv->target_is_zero = a->target_is_zero;
    if (kimg_convert_from_fd(cv, in, -1, 0, NULL) < 0) {
        cmd_fail(dst, "error while converting");
        goto done;
    }
    ret = 0;
done:
    if (kimg_close(img) < 0 && ret == 0)
        ret = cmd_fail(dst, "error while writing the image");
    return ret;
}

int convert_from_pipe(struct convert_args *a, char **srcs, int nb_src, const char *dst,
                      const char *snapshot, unsigned disk, unsigned dflags, int *spooled)
{
    const char *src = srcs[0];
    for (int i = 0; i < nb_src; i++)
        if (convert_is_stream(srcs[i])) {
            src = srcs[i];
            break;
        }
    if (nb_src > 1) {
        cmd_error("%s: a source read from a pipe must be the only source", src);
        return 1;
    }
    if (!a->src_fmt || strcmp(a->src_fmt, "raw")) {
        cmd_error("%s: Input format must be raw when reading from a pipe (-f raw)", src);
        return 1;
    }
    const char *what = needs_random_access(a, snapshot, disk);
    if (what) {
        cmd_error("%s: %s cannot be used with a source read from a pipe (read once, "
                  "in order, its size unknown until its end)", src, what);
        return 1;
    }
    struct stat st;
    bool dst_pipe = !a->tgt_image_opts && stat(dst, &st) == 0 && S_ISFIFO(st.st_mode);
    const struct kimg_driver *drv = a->tgt_image_opts ? NULL : kimg_find_driver(a->out_fmt);
    bool spool = !a->no_create && !dst_pipe && drv &&
                 (!kimg_driver_can_grow(drv) || needs_size_first(a));
    if (!a->no_create && !dst_pipe && drv && a->opts) {
        /* qemu-img: option errors alone, before anything is read */
        struct kimg_optdesc *odesc = kimg_create_opts_merged(drv);
        int bad = odesc && kimg_opts_validate(a->opts, odesc, kimg_driver_name(drv)) < 0;
        free(odesc);
        if (bad)
            return cmd_fail(NULL, "Invalid option");
    }

    int in = open_source(src);
    if (in < 0)
        return 1;
    if (spool) {
        int fd = spool_stream(in, dst);
        if (in != STDIN_FILENO)
            close(in);
        if (fd < 0)
            return 1;
        *spooled = fd;
        return -1;
    }
    struct json_progress jp;
    struct kimg_convert cv = {
        .sparse_size = a->sparse, .compress = a->compress, .rate_limit = a->rate,
    };
    if (a->progress_json) {
        clock_gettime(CLOCK_MONOTONIC, &jp.start);
        cv.progress = convert_print_json_progress;
        cv.opaque = &jp;
    }
    int ret;
    if (dst_pipe && !a->no_create)
        ret = pipe_to_pipe(a, &cv, in, dst);
    else if (a->no_create)
        ret = to_existing_target(a, &cv, in, dst, dflags);
    else
        ret = to_new_target(a, &cv, in, dst, dflags);
    if (in != STDIN_FILENO)
        close(in);
    if (ret == 0 && a->show_steps)
        cmd_progress_value(100.0f);
    return ret;
}
