/*
 * output.c — the files a command creates, written whole or not at all (the
 * contract, the replace rules and the signal set are in output.h): symlinks
 * are followed to the real target, the temporary file is made beside it
 * and renamed over it when complete; devices, FIFOs and other non-regular
 * files, and NBD exports, are written in place.  A registry of the files
 * made lets a signal or a failed run remove them all.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kimg.h"
#include "kimg/output.h"
#include "kimg/file.h"

#define MAX_LINK_HOPS 40    /* as the kernel's limit on a path's symlinks */
#define MAX_OUTPUTS 1024    /* clone: 256 disks, the nvram, XML, report */

enum { SLOT_FREE, SLOT_TMP, SLOT_FINAL };

/* A signal handler reads the slots: they are allocated on first use and
 * never freed, and a slot's names are written before its state says to
 * use them. */
struct slot {
    char tmp[PATH_MAX];
    char final[PATH_MAX];
    volatile sig_atomic_t state;
    bool used;              /* taken (main thread only; the handler reads state) */
    bool undo;              /* KIMG_OUTPUT_UNDO */
};

static struct slot *slots[MAX_OUTPUTS];
static volatile sig_atomic_t nslots;   /* slots below this index may be in use */
static int nused;                      /* slots taken: guards are on while > 0 */

static const int guarded[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };
#define NGUARDED (sizeof(guarded) / sizeof(guarded[0]))
static struct sigaction saved[NGUARDED], saved_xfsz;

static void remove_all_signal_safe(void)
{
    for (sig_atomic_t i = nslots; i-- > 0;) {
        struct slot *s = slots[i];
        if (!s)
            continue;
        if (s->state == SLOT_TMP)
            unlink(s->tmp);
        else if (s->state == SLOT_FINAL)
            unlink(s->final);
        s->state = SLOT_FREE;
    }
}

static void on_signal(int sig)
{
    remove_all_signal_safe();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void block_signals(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < NGUARDED; i++)
        sigaddset(&set, guarded[i]);
    pthread_sigmask(SIG_BLOCK, &set, old);
}

static void restore_signals(const sigset_t *old)
{
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* With the guarded signals blocked: the first output installs the
 * handlers, the last one restores what was there. */
static void guard(bool on)
{
    if (on) {
        struct sigaction sa = { .sa_handler = on_signal };
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < NGUARDED; i++)
            sigaddset(&sa.sa_mask, guarded[i]);
        /* a signal the process ignores (nohup, a background job's
         * SIGINT, a parent's SIGPIPE) stays ignored: the run goes on */
        for (size_t i = 0; i < NGUARDED; i++) {
            sigaction(guarded[i], NULL, &saved[i]);
            if (saved[i].sa_handler != SIG_IGN)
                sigaction(guarded[i], &sa, NULL);
        }
        struct sigaction ign = { .sa_handler = SIG_IGN };
        sigemptyset(&ign.sa_mask);
        sigaction(SIGXFSZ, &ign, &saved_xfsz);
    } else {
        for (size_t i = 0; i < NGUARDED; i++)
            sigaction(guarded[i], &saved[i], NULL);
        sigaction(SIGXFSZ, &saved_xfsz, NULL);
    }
}

/* Take a free slot (signals blocked); its index, -ENOMEM or -EMFILE. */
static int take_slot(void)
{
    for (int i = 0; i < MAX_OUTPUTS; i++) {
        if (!slots[i] && !(slots[i] = calloc(1, sizeof(*slots[i]))))
            return -ENOMEM;
        if (!slots[i]->used) {
            slots[i]->used = true;
            slots[i]->state = SLOT_FREE;
            if (i >= nslots)
                nslots = i + 1;
            if (nused++ == 0)
                guard(true);
            return i;
        }
    }
    return -EMFILE;
}

/* Release slot I (signals blocked) without touching its files. */
static void release_slot(int i)
{
    slots[i]->state = SLOT_FREE;
    slots[i]->used = false;
    if (--nused == 0)
        guard(false);
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

/* "dir/.base.kimg-XXXXXX" beside TARGET. */
static int make_tmp_name(char *tmp, const char *target)
{
    char d[PATH_MAX], b[PATH_MAX];
    memcpy(d, target, strlen(target) + 1);
    memcpy(b, target, strlen(target) + 1);
    int n = snprintf(tmp, PATH_MAX, "%s/.%s.kimg-XXXXXX", dirname(d), basename(b));
    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* mkstemp makes 0600: give FD an existing regular TARGET's mode and owner
 * (qemu-img truncates it in place, which keeps them), else the mode any
 * new file gets. */
static int set_mode(int fd, const char *target)
{
    mode_t mode;
    struct stat st;
    if (stat(target, &st) == 0 && S_ISREG(st.st_mode)) {
        mode = st.st_mode & 07777;
        if (fchown(fd, st.st_uid, st.st_gid) < 0) {
            /* not ours to give away: the file stays ours */
        }
    } else {
        mode_t mask = umask(0);
        umask(mask);
        mode = 0666 & ~mask;
    }
    return fchmod(fd, mode) < 0 ? -errno : 0;
}

int kimg_output_begin(struct kimg_output *o, const char *path, unsigned flags)
{
    struct stat st;
    memset(o, 0, sizeof(*o));
    o->name = path;
    o->flags = flags;
    /* an NBD export (protocols/nbd/) exists and has no folder to make a
     * temporary file in: the format is created onto it directly (its
     * create opens the export, which keeps its size) and written there,
     * with no temporary file and no rename (no slot: commit and abort do
     * nothing).  A failed run leaves the export partly written. */
    if (kimg_nbd_is_uri(path)) {
        o->path = path;
        return 0;
    }
    /* without REPLACE nothing that exists is written, in place or not */
    if (!(flags & KIMG_OUTPUT_REPLACE) && lstat(path, &st) == 0)
        return kimg_fail(-EEXIST, "%s already exists; not replacing it", path);
    /* an existing non-regular file (device, FIFO, pipe, ...): in place */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        o->in_place = true;
        o->path = path;
        return 0;
    }
    sigset_t old;
    block_signals(&old);
    int i = take_slot();
    restore_signals(&old);
    if (i < 0)
        return kimg_fail(i, "%s: %s", path, i == -EMFILE ? "too many output files at once"
                                                         : strerror(-i));
    struct slot *s = slots[i];
    s->undo = flags & KIMG_OUTPUT_UNDO;
    int r = resolve_links(path, s->final);
    if (r == 0)
        r = make_tmp_name(s->tmp, s->final);
    int fd = -1;
    if (r == 0) {
        block_signals(&old);
        fd = mkostemp(s->tmp, O_CLOEXEC);
        r = fd < 0 ? -errno : 0;
        if (fd >= 0)
            s->state = SLOT_TMP;
        restore_signals(&old);
    }
    if (r == 0)
        r = set_mode(fd, s->final);
    if (fd >= 0)
        close(fd);
    o->slot = i + 1;
    o->path = s->tmp;
    if (r < 0) {
        kimg_output_abort(o);
        return kimg_fail(r, "%s: cannot create a file in its folder: %s", path, strerror(-r));
    }
    return 0;
}

/* rename(2) TMP over FINAL; without REPLACE, never over an existing file. */
static int rename_into_place(const char *tmp, const char *final, bool replace)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, replace ? 0 : RENAME_NOREPLACE) == 0)
        return 0;
    if (replace || !(errno == EINVAL || errno == ENOSYS || errno == ENOTSUP))
        return -errno;
    /* no RENAME_NOREPLACE on this filesystem: link() never replaces */
    if (link(tmp, final) < 0)
        return -errno;
    unlink(tmp);
    return 0;
}

int kimg_output_commit(struct kimg_output *o, bool sync_dir)
{
    if (o->in_place || !o->slot || !o->path)
        return 0;
    struct slot *s = slots[o->slot - 1];
    char d[PATH_MAX];
    memcpy(d, s->final, sizeof(d));     /* the slot may be reused once released */
    sigset_t old;
    block_signals(&old);
    int r = s->state == SLOT_TMP
            ? rename_into_place(s->tmp, s->final, o->flags & KIMG_OUTPUT_REPLACE) : -ENOENT;
    if (r == 0) {
        if (s->undo) {
            s->state = SLOT_FINAL;
        } else {
            release_slot(o->slot - 1);
            o->slot = 0;
        }
        o->path = NULL;
    }
    restore_signals(&old);
    if (r < 0)
        return kimg_fail(r, "%s: cannot rename the finished file into place: %s", o->name,
                         r == -EEXIST ? "it appeared meanwhile; not replacing it"
                                      : strerror(-r));
    if (sync_dir) {
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
    if (o->in_place || !o->slot || !o->path)
        return;   /* in place, idle, or committed */
    struct slot *s = slots[o->slot - 1];
    sigset_t old;
    block_signals(&old);
    if (s->state == SLOT_TMP)
        unlink(s->tmp);
    release_slot(o->slot - 1);
    o->slot = 0;
    o->path = NULL;
    restore_signals(&old);
}

static void end_all(bool remove)
{
    sigset_t old;
    block_signals(&old);
    for (int i = 0; i < nslots; i++) {
        struct slot *s = slots[i];
        if (!s || !s->used)
            continue;
        if (s->state == SLOT_TMP)
            unlink(s->tmp);
        else if (s->state == SLOT_FINAL && remove)
            unlink(s->final);
        release_slot(i);
    }
    restore_signals(&old);
}

void kimg_output_undo_all(void)
{
    end_all(true);
}

void kimg_output_forget_all(void)
{
    end_all(false);
}
