/*
 * create.c — image creation shared by all formats: option validation
 * against the driver's table and qemu's file protocol options (nocow,
 * extent_size_hint), -b/-F merged with -o backing_file/backing_fmt,
 * the size taken from the backing file when none is given, and removal of
 * a half-created file on failure.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kimg/driver.h"
#include "lock.h"

static int create_file(struct kimg_create_args *a, const struct kimg_driver *drv);

const struct kimg_optdesc kimg_file_create_opts[] = {
    { "size", KIMG_OPT_SIZE, "Virtual disk size" },
    { "nocow", KIMG_OPT_BOOL, "Turn off copy-on-write (valid only on btrfs)" },
    { "preallocation", KIMG_OPT_STRING,
      "Preallocation mode (allowed values: off, falloc, full)" },
    { "extent_size_hint", KIMG_OPT_SIZE, "Extent size hint for the image file, 0 to disable" },
    { NULL, 0, NULL },
};

struct kimg_optdesc *kimg_create_opts_merged(const struct kimg_driver *drv)
{
    size_t n = 0, m = 0;
    while (drv->create_opts && drv->create_opts[n].name)
        n++;
    while (kimg_file_create_opts[m].name)
        m++;
    struct kimg_optdesc *v = calloc(n + m + 1, sizeof(*v));
    if (!v)
        return NULL;
    if (n)
        memcpy(v, drv->create_opts, n * sizeof(*v));
    size_t k = n;
    for (size_t i = 0; i < m; i++) {
        bool have = false;
        for (size_t j = 0; j < n && !have; j++)
            have = !strcmp(v[j].name, kimg_file_create_opts[i].name);
        if (!have)
            v[k++] = kimg_file_create_opts[i];
    }
    return v;
}

struct kimg_optdesc *kimg_create_opts_own(const struct kimg_driver *drv)
{
    size_t n = 0;
    while (drv->create_opts && drv->create_opts[n].name)
        n++;
    struct kimg_optdesc *v = calloc(n + 1, sizeof(*v));
    if (!v)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool proto = false;
        for (size_t j = 0; drv->protocol_opts && drv->protocol_opts[j]; j++)
            proto |= !strcmp(drv->protocol_opts[j], drv->create_opts[i].name);
        if (!proto)
            v[k++] = drv->create_opts[i];
    }
    return v;
}

/*
 * qemu's file-posix create: nocow (btrfs) and the extent size hint (XFS),
 * the hint 1 MiB unless given, set on the new file before it gets its
 * size; failures are not fatal, a warning only for a hint given (not 0).
 */
int kimg_create_file_attrs(const struct kimg_opts *opts, struct kimg_file *f)
{
    bool nocow;
    uint64_t hint;
    int ret = kimg_opts_get_bool(opts, "nocow", false, &nocow);
    if (ret == 0)
        ret = kimg_opts_get_size(opts, "extent_size_hint", 1u << 20, &hint);
    if (ret < 0)
        return ret;
    if (hint > UINT32_MAX)
        return kimg_fail(-EINVAL, "Extent size hint is too large");
    if (f)
        kimg_file_set_create_attrs(f, nocow, (uint32_t)hint,
                                   kimg_opts_get(opts, "extent_size_hint") && hint);
    return 0;
}

/* Move KEY out of the options into *field (unless -b/-F already set it). */
static int take_string_opt(struct kimg_create_args *a, const char *key,
                           const char **field, char **owned)
{
    const char *v = kimg_opts_get(a->opts, key);
    if (!v)
        return 0;
    if (*field && strcmp(*field, v))
        return kimg_fail(-EINVAL, "'%s' given twice with different values", key);
    *owned = strdup(v);
    if (!*owned)
        return -ENOMEM;
    *field = *owned;
    return 0;
}

int kimg_create(struct kimg_create_args *a)
{
    const struct kimg_driver *drv = kimg_find_driver(a->format);
    const char *given = a->filename, *path;
    int ret;

    if (!drv)
        return kimg_fail(-EINVAL, "Unknown file format '%s'", a->format);
    /* "file:NAME" creates NAME; other protocols are refused (qemu: right
     * after the format) */
    ret = kimg_image_path(a->filename, &path);
    if (ret < 0)
        return ret;
    a->given_filename = given;
    a->filename = path;
    ret = create_file(a, drv);
    a->filename = given;
    a->given_filename = NULL;
    return ret;
}

static int create_file(struct kimg_create_args *a, const struct kimg_driver *drv)
{
    char *bfile = NULL, *bfmt = NULL;
    int ret;

    if (!drv)
        return kimg_fail(-EINVAL, "Unknown file format '%s'", a->format);
    if (!drv->create)
        return kimg_fail(-ENOTSUP, "Format driver '%s' does not support image creation",
                         a->format);
    /* the format's options and the file protocol's, as qemu-img merges them */
    struct kimg_optdesc *desc = kimg_create_opts_merged(drv);
    if (!desc)
        return -ENOMEM;
    ret = kimg_opts_validate(a->opts, desc, drv->name);
    free(desc);
    if (ret == 0)
        ret = kimg_create_file_attrs(a->opts, NULL);
    if (ret < 0)
        return ret;
    if ((ret = take_string_opt(a, "backing_file", &a->backing_file, &bfile)) < 0 ||
        (ret = take_string_opt(a, "backing_fmt", &a->backing_format, &bfmt)) < 0)
        goto out;
    const char *size_opt = kimg_opts_get(a->opts, "size");
    if (size_opt) {
        uint64_t sz;
        if (kimg_parse_size(size_opt, &sz) < 0) {
            ret = kimg_fail(-EINVAL, "Invalid size '%s'", size_opt);
            goto out;
        }
        if (a->size_given && sz != a->size) {
            ret = kimg_fail(-EINVAL, "size given twice with different values");
            goto out;
        }
        a->size = sz;
        a->size_given = true;
    }
    if (a->backing_file) {
        /* qemu's checks and words, in its order */
        bool takes_backing = false;
        for (const struct kimg_optdesc *d = drv->create_opts; d && d->name; d++)
            takes_backing |= !strcmp(d->name, "backing_file");
        if (!takes_backing) {
            ret = kimg_fail(-ENOTSUP, "Backing file not supported for file format '%s'",
                            a->format);
            goto out;
        }
        if (!strcmp(a->filename, a->backing_file)) {
            ret = kimg_fail(-EINVAL, "Error: Trying to create an image with the same "
                            "filename as the backing file");
            goto out;
        }
        if (!a->backing_file[0]) {
            ret = kimg_fail(-EINVAL, "Expected backing file name, got empty string");
            goto out;
        }
        if (!a->backing_format) {
            /* qemu-img adds "Detected format of FMT." on a second line */
            ret = kimg_fail(-EINVAL, "Backing file specified without backing format");
            goto out;
        }
        if (!kimg_find_driver(a->backing_format)) {
            ret = kimg_fail(-EINVAL, "Unknown driver '%s'", a->backing_format);
            goto out;
        }
        if (!a->unsafe) {
            /* the backing file must open (and gives the default size) */
            struct kimg *b;
            const char *bpath;
            ret = kimg_image_path(a->backing_file, &bpath);
            if (ret < 0)
                goto out;
            char *path = kimg_path_relative_to(a->filename, bpath);
            if (!path) {
                ret = -ENOMEM;
                goto out;
            }
            /* metadata only (qemu's bdrv_img_create: BDRV_O_NO_IO), so an
             * encrypted backing file gives its size too */
            ret = kimg_open(&b, path, a->backing_format, KIMG_OPEN_PATH |
                            KIMG_OPEN_SHARE | KIMG_OPEN_NO_BACKING | KIMG_OPEN_NO_IO);
            free(path);
            if (ret < 0) {
                kimg_error("Could not open backing image.");
                goto out;
            }
            if (!a->size_given) {
                a->size = kimg_size(b);
                a->size_given = true;
            }
            kimg_close(b);
        }
    }
    if (!a->size_given) {
        ret = kimg_fail(-EINVAL, "Image creation needs a size parameter");
        goto out;
    }
    if (a->size > INT64_MAX - 511) {
        ret = kimg_fail(-EINVAL, "Invalid image size specified. Must be between 0 and %lld.",
                        (long long)INT64_MAX);
        goto out;
    }
    if (a->on_formatting)
        a->on_formatting(a);
    /* from here on qemu-img has printed its "Formatting" line */
    if (a->backing_format && !a->backing_file) {
        ret = kimg_fail(-EINVAL, "Backing format cannot be used without backing file");
        goto out;
    }
    /* qemu-img rounds every new image up to whole 512-byte sectors */
    a->size = (a->size + 511) & ~(uint64_t)511;
    /* Creating over an existing image truncates it: not while another
     * process (a running VM) holds it.  Our write lock is held until the
     * new image is complete. */
    struct kimg_file *old = NULL;
    if (kimg_file_open(&old, a->filename, KIMG_FILE_RDWR) == 0) {
        ret = old->fd >= 0 ? kimg_lock_fd(old->fd, true, a->filename) : 0;
        if (ret < 0) {
            kimg_file_close(old);
            goto out;
        }
    }
    kimg_clear_error();
    ret = drv->create(a);
    /* never leave a half-made image behind; but only a regular file is
     * one: a name that is a symlink, a device or a FIFO (/dev/stdout on a
     * pipe, whose create fails) is not ours to remove */
    struct stat lst;
    if (ret < 0 && lstat(a->filename, &lst) == 0 && S_ISREG(lst.st_mode))
        unlink(a->filename);
    kimg_file_close(old);
out:
    if (bfile || bfmt) {
        /* the args must not point at freed memory after we return */
        if (a->backing_file == bfile)
            a->backing_file = NULL;
        if (a->backing_format == bfmt)
            a->backing_format = NULL;
    }
    free(bfile);
    free(bfmt);
    return ret;
}
