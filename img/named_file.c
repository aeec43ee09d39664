/*
 * named_file.c — the security boundary for files an image names (VMDK
 * extents; OVA members and the like next): one policy for resolving and
 * opening them (kimg_open_named_file in kimg/driver.h).  qemu-img 7.2
 * follows any such name, "/etc/shadow" and "../../x" included; kimg
 * takes only regular files inside the image's folder.  The files of an
 * image this process is making (a pending output's members) are opened
 * under their temporary names.  The name is opened
 * with openat2(RESOLVE_BENEATH) on that folder, so no symbolic link (a
 * folder component or the file itself) leads out of it; under --untrusted
 * no symbolic link is followed at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kimg/driver.h"
#include "kimg/output.h"
#include "lock.h"

/* Whether NAME has a ".." path component. */
static bool has_dotdot(const char *name)
{
    for (const char *p = name; (p = strstr(p, "..")); p += 2)
        if ((p == name || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
            return true;
    return false;
}

int kimg_open_named_file(struct kimg *img, const char *name, const char *what,
                         struct kimg_file **out)
{
    bool untrusted = img->flags & KIMG_OPEN_UNTRUSTED;
    struct kimg_file *f;
    struct stat st;
    int ret;

    *out = NULL;
    if (img->flags & KIMG_OPEN_ARCHIVE_MEMBER)
        return kimg_fail(-EPERM, "the disk needs %s '%.200s'; kimg opens nothing outside "
                         "the archive", what, name);
    if (!*name)
        return kimg_fail(-EPERM, "%s has an empty file name", what);
    if (name[0] == '/')
        return kimg_fail(-EPERM, "refusing %s '%.200s': an absolute path (files an "
                         "image names must lie in its folder)", what, name);
    if (has_dotdot(name))
        return kimg_fail(-EPERM, "refusing %s '%.200s': the path leaves the image's "
                         "folder", what, name);
    if (untrusted && strchr(name, '/'))
        return kimg_fail(-EPERM, "refusing %s '%.200s' under --untrusted: only plain "
                         "file names in the image's folder", what, name);
    /* an image this process is making under a temporary name (convert
     * into a multi-file VMDK): the files it names are the output's
     * members, themselves under temporary names (kimg/output.h); opened
     * writable when the image is */
    char *member = kimg_output_member_path(img->filename, name);
    if (member) {
        ret = kimg_file_open(&f, member, (img->writable ? KIMG_FILE_RDWR : 0) |
                             ((img->flags & KIMG_OPEN_DIRECT) ? KIMG_FILE_DIRECT : 0));
        free(member);
        if (ret < 0)
            return ret;
        if ((ret = kimg_lock_named(img, f)) < 0) {
            kimg_file_close(f);
            return ret;
        }
        *out = f;
        return 0;
    }
    if (img->file->fd < 0)
        return kimg_fail(-ENOENT, "Could not open %s '%.200s': the image is not a "
                         "host file", what, name);

    char *path = kimg_path_relative_to(img->filename, name);
    if (!path)
        return -ENOMEM;
    /* the folder the image was named in (not a link's target: relative
     * names resolve as qemu resolves them) */
    const char *slash = strrchr(img->filename, '/');
    char *dir = slash ? strndup(img->filename, (size_t)(slash - img->filename) + 1)
                      : strdup(".");
    int dirfd = dir ? open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    int err = errno;
    free(dir);
    if (dirfd < 0) {
        free(path);
        return kimg_fail(err ? -err : -ENOMEM, "Could not open the folder of %s '%.200s': %s",
                         what, name, strerror(err));
    }
    ret = kimg_file_open_beneath(&f, dirfd, name, path,
                                 (untrusted ? KIMG_FILE_NOFOLLOW : 0) |
                                 (img->writable ? KIMG_FILE_RDWR : 0) |
                                 ((img->flags & KIMG_OPEN_DIRECT) ? KIMG_FILE_DIRECT : 0));
    close(dirfd);
    free(path);
    if (ret == -ELOOP && untrusted) {
        kimg_clear_error();
        return kimg_fail(-EPERM, "refusing %s '%.200s' under --untrusted: a symbolic "
                         "link", what, name);
    }
    if (ret == -EXDEV) {
        kimg_clear_error();
        return kimg_fail(-EPERM, "refusing %s '%.200s': a symbolic link leads out of "
                         "the image's folder", what, name);
    }
    if (ret < 0)
        return ret;
    if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        kimg_file_close(f);
        kimg_clear_error();
        return kimg_fail(-EPERM, "refusing %s '%.200s': not a regular file", what, name);
    }
    if ((ret = kimg_lock_named(img, f)) < 0) {
        kimg_file_close(f);
        return ret;
    }
    *out = f;
    return 0;
}
