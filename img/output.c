/*
 * output.c — a command's output file, written whole or not at all (the
 * contract is in output.h): symlinks are followed to the real target, the
 * temporary file is made beside it and renamed over it when complete;
 * devices, FIFOs and other non-regular files are written in place.
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
#include "kimg.h"
#include "output.h"

#define MAX_LINK_HOPS 40    /* as the kernel's limit on a path's symlinks */

/* The temporary file a signal removes: one output at a time. */
static char tmp_path[PATH_MAX];
static volatile sig_atomic_t tmp_active;

static const int guarded[] = { SIGINT, SIGTERM, SIGHUP };

static void on_signal(int sig)
{
    if (tmp_active)
        unlink(tmp_path);
    tmp_active = 0;
    signal(sig, SIG_DFL);
    raise(sig);
}

static void guard_signals(bool on)
{
    struct sigaction sa = { .sa_handler = on ? on_signal : SIG_DFL };
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(guarded) / sizeof(guarded[0]); i++)
        sigaction(guarded[i], &sa, NULL);
}

static void block_signals(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(guarded) / sizeof(guarded[0]); i++)
        sigaddset(&set, guarded[i]);
    sigprocmask(SIG_BLOCK, &set, old);
}

static int copy_path(char *dst, const char *src)
{
    size_t n = strlen(src);
    if (n >= PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(dst, src, n + 1);
    return 0;
}

/* Follow PATH's last component through symlinks to the file they name,
 * which may not exist (a dangling link creates its target).  A relative
 * link is relative to the folder of the link. */
static int resolve_links(const char *path, char *out)
{
    char cur[PATH_MAX], link[PATH_MAX];
    int r = copy_path(cur, path);
    for (int hops = 0; r == 0; hops++) {
        struct stat st;
        if (lstat(cur, &st) < 0) {
            if (errno != ENOENT)
                return -errno;
            break;
        }
        if (!S_ISLNK(st.st_mode))
            break;
        if (hops >= MAX_LINK_HOPS)
            return -ELOOP;
        ssize_t n = readlink(cur, link, sizeof(link) - 1);
        if (n < 0)
            return -errno;
        if ((size_t)n >= sizeof(link) - 1)
            return -ENAMETOOLONG;
        link[n] = '\0';
        if (link[0] == '/') {
            r = copy_path(cur, link);
        } else {
            char dir[PATH_MAX];
            memcpy(dir, cur, sizeof(dir));
            int m = snprintf(cur, sizeof(cur), "%s/%s", dirname(dir), link);
            r = m < 0 || (size_t)m >= sizeof(cur) ? -ENAMETOOLONG : 0;
        }
    }
    return r < 0 ? r : copy_path(out, cur);
}

/* "dir/.base.kimg-XXXXXX" beside TARGET, in tmp_path. */
static int make_tmp_name(const char *target)
{
    char d[PATH_MAX], b[PATH_MAX];
    memcpy(d, target, strlen(target) + 1);
    memcpy(b, target, strlen(target) + 1);
    int n = snprintf(tmp_path, sizeof(tmp_path), "%s/.%s.kimg-XXXXXX", dirname(d), basename(b));
    return n < 0 || (size_t)n >= sizeof(tmp_path) ? -ENAMETOOLONG : 0;
}

int kimg_output_begin(struct kimg_output *o, const char *path)
{
    struct stat st;
    memset(o, 0, sizeof(*o));
    if (tmp_active)
        return kimg_fail(-EBUSY, "%s: another output is being written", path);
    /* an existing non-regular file (device, FIFO, ...): written in place */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        int r = copy_path(o->target, path);
        if (r < 0)
            return kimg_fail(r, "%s: %s", path, strerror(-r));
        o->in_place = true;
        o->path = o->target;
        return 0;
    }
    int r = resolve_links(path, o->target);
    if (r == 0)
        r = make_tmp_name(o->target);
    if (r < 0)
        return kimg_fail(r, "%s: %s", path, strerror(-r));

    sigset_t old;
    block_signals(&old);
    int fd = mkostemp(tmp_path, O_CLOEXEC);
    r = fd < 0 ? -errno : 0;
    if (fd >= 0) {
        tmp_active = 1;
        guard_signals(true);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (r < 0)
        return kimg_fail(r, "%s: %s", path, strerror(-r));
    /* mkstemp makes 0600.  qemu-img truncates an existing target in
     * place, so it keeps its mode and owner: the replacement gets them
     * too (the owner where we may set it, e.g. as root); a new file gets
     * the mode any new file would get (0666 less the umask). */
    mode_t mode;
    struct stat old_st;
    if (stat(o->target, &old_st) == 0 && S_ISREG(old_st.st_mode)) {
        mode = old_st.st_mode & 07777;
        if (fchown(fd, old_st.st_uid, old_st.st_gid) < 0) {
            /* not ours to give away: the file stays ours */
        }
    } else {
        mode_t mask = umask(0);
        umask(mask);
        mode = 0666 & ~mask;
    }
    if (fchmod(fd, mode) < 0) {
        r = -errno;
        close(fd);
        kimg_output_abort(o);
        return kimg_fail(r, "%s: %s", path, strerror(-r));
    }
    close(fd);
    o->path = tmp_path;
    return 0;
}

int kimg_output_commit(struct kimg_output *o, bool sync_dir)
{
    if (o->in_place || !o->path)
        return 0;
    sigset_t old;
    block_signals(&old);
    int r = rename(tmp_path, o->target) < 0 ? -errno : 0;
    if (r == 0) {
        tmp_active = 0;
        guard_signals(false);
        o->path = NULL;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (r < 0)
        return kimg_fail(r, "%s", strerror(-r));
    if (sync_dir) {
        char d[PATH_MAX];
        memcpy(d, o->target, sizeof(d));
        int fd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    }
    return 0;
}

void kimg_output_abort(struct kimg_output *o)
{
    if (o->in_place)
        return;
    sigset_t old;
    block_signals(&old);
    if (tmp_active)
        unlink(tmp_path);
    tmp_active = 0;
    guard_signals(false);
    o->path = NULL;
    sigprocmask(SIG_SETMASK, &old, NULL);
}
