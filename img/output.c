/*
 * output.c — the files a command creates, written whole or not at all (the
 * contract, the replace rules and the signal set are in output.h): symlinks
 * are followed to the real target, the temporary file is made beside it
 * and renamed over it when complete; devices, FIFOs and other non-regular
 * files, and NBD exports, are written in place.  An output may own member
 * files (a VMDK's extents), renamed into place before it.  A registry of
 * the files made lets a signal or a failed run remove them all.
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
#include "crash.h"

#define MAX_LINK_HOPS 40    /* as the kernel's limit on a path's symlinks */
#define MAX_OUTPUTS KIMG_OUTPUT_MAX

/* SLOT_DIR: a folder made by kimg_output_mkdir; SLOT_GONE:
 * such a folder, removed */
enum { SLOT_FREE, SLOT_TMP, SLOT_FINAL, SLOT_DIR, SLOT_GONE };

/* A signal handler reads the slots: they are allocated on first use and
 * never freed, and a slot's names are written before its state says to
 * use them.  The names are sized to fit (a batch of clones keeps
 * thousands of committed outputs registered: a slot is its two names and
 * some 50 bytes); a free slot's buffers are kept for its next use, and
 * replaced only while it is free, when the handler does not read them. */
struct slot {
    char *tmp, *final;
    size_t tmp_cap, final_cap;
    volatile sig_atomic_t state;
    bool used;              /* taken (main thread only; the handler reads state) */
    bool undo;              /* KIMG_OUTPUT_UNDO */
    bool replace;           /* KIMG_OUTPUT_REPLACE */
    int owner;              /* a member: its output's slot + 1; else 0 */
    int nmembers;           /* an output: the slots whose owner it is */
    char *name;             /* a member: the name its image gives it */
};

static struct slot *slots[MAX_OUTPUTS];
static volatile sig_atomic_t nslots;   /* slots below this index may be in use */
static int nused;                      /* slots taken: guards are on while > 0 */
static int free_hint;                  /* no free slot below this index */

static const int guarded[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };
#define NGUARDED (sizeof(guarded) / sizeof(guarded[0]))
static struct sigaction saved[NGUARDED], saved_xfsz;

/* Remove the registered folders (kimg_output_mkdir), once the files
 * are gone: writable first (a copied mode may not be), then emptied from
 * the deepest up, in passes, since a slot's index does not follow the
 * order the folders were made in.  Async-signal-safe. */
static void remove_dirs(void)
{
    for (sig_atomic_t i = 0; i < nslots; i++)
        if (slots[i] && slots[i]->state == SLOT_DIR && chmod(slots[i]->final, 0700) < 0) {
            /* gone already, or not ours: rmdir says */
        }
    for (bool progress = true; progress;) {
        progress = false;
        for (sig_atomic_t i = nslots; i-- > 0;) {
            struct slot *s = slots[i];
            if (s && s->state == SLOT_DIR && (rmdir(s->final) == 0 || errno == ENOENT)) {
                s->state = SLOT_GONE;
                progress = true;
            }
        }
    }
}

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
        if (s->state != SLOT_DIR)
            s->state = SLOT_FREE;
    }
    remove_dirs();
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
    for (int i = free_hint; i < MAX_OUTPUTS; i++) {
        if (!slots[i] && !(slots[i] = calloc(1, sizeof(*slots[i]))))
            return -ENOMEM;
        if (!slots[i]->used) {
            free_hint = i + 1;
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

/* Member M no longer belongs to its output. */
static void drop_owner(struct slot *m)
{
    if (m->owner)
        slots[m->owner - 1]->nmembers--;
    m->owner = 0;
}

/* Set a free slot's name *BUF (capacity *CAP) to S (signals blocked). */
static int set_name(char **buf, size_t *cap, const char *s)
{
    size_t n = strlen(s) + 1;
    if (n > PATH_MAX)
        return -ENAMETOOLONG;
    if (n > *cap) {
        char *b = malloc(n), *old = *buf;
        if (!b)
            return -ENOMEM;
        *buf = b;
        *cap = n;
        free(old);
    }
    memcpy(*buf, s, n);
    return 0;
}

/* Release slot I (signals blocked) without touching its files. */
static void release_slot(int i)
{
    slots[i]->state = SLOT_FREE;
    slots[i]->used = false;
    drop_owner(slots[i]);
    if (i < free_hint)
        free_hint = i;
    free(slots[i]->name);
    slots[i]->name = NULL;
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

/* S's temporary file beside its final name, with the final file's mode;
 * S is marked as owning it (for the cleanup) with signals held. */
static int create_tmp(struct slot *s)
{
    sigset_t old;
    char t[PATH_MAX];
    int r = make_tmp_name(t, s->final);
    if (r == 0) {
        block_signals(&old);
        r = set_name(&s->tmp, &s->tmp_cap, t);
        restore_signals(&old);
    }
    if (r < 0)
        return r;
    block_signals(&old);
    int fd = mkostemp(s->tmp, O_CLOEXEC);
    r = fd < 0 ? -errno : 0;
    if (fd >= 0)
        s->state = SLOT_TMP;
    restore_signals(&old);
    if (fd < 0)
        return r;
    r = set_mode(fd, s->final);
    close(fd);
    return r;
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
    s->replace = flags & KIMG_OUTPUT_REPLACE;
    char final[PATH_MAX];
    int r = resolve_links(path, final);
    if (r == 0) {
        block_signals(&old);
        r = set_name(&s->final, &s->final_cap, final);
        restore_signals(&old);
    }
    if (r == 0)
        r = create_tmp(s);
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

/* ---- several files: an output's members -------------------------------- */

/* The slot of the pending output (not a member) whose temporary file is
 * TMP, or -1 (signals blocked). */
static int find_pending(const char *tmp)
{
    for (int i = 0; i < nslots; i++) {
        struct slot *s = slots[i];
        if (s && s->used && !s->owner && s->state == SLOT_TMP && !strcmp(s->tmp, tmp))
            return i;
    }
    return -1;
}

/* A counted point for the crash tests (img/crash.c) between the renames
 * of a multi-file output: the rename itself is no file change. */
static void crash_point(void)
{
    struct kimg_crash_token tok;
    if (kimg_crash_begin(NULL, KIMG_CRASH_SYNC, 0, 0, NULL, &tok))
        kimg_crash_end(NULL, &tok, 0);
}

int kimg_output_add_member(const char *owner_tmp, const char *path, const char *name,
                           char **tmp)
{
    struct stat st;
    sigset_t old;
    *tmp = NULL;
    block_signals(&old);
    int o = find_pending(owner_tmp);
    restore_signals(&old);
    if (o < 0)
        return -ENOENT;
    if (!slots[o]->replace && lstat(path, &st) == 0)
        return kimg_fail(-EEXIST, "%s already exists; not replacing it", path);
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return kimg_fail(-EINVAL, "%s: not a regular file (the files of a multi-file "
                         "image are renamed into place)", path);
    block_signals(&old);
    int i = take_slot();
    restore_signals(&old);
    if (i < 0)
        return kimg_fail(i, "%s: %s", path, i == -EMFILE ? "too many output files at once"
                                                         : strerror(-i));
    struct slot *s = slots[i];
    s->undo = slots[o]->undo;
    s->replace = slots[o]->replace;
    s->owner = o + 1;
    slots[o]->nmembers++;
    s->name = strdup(name);
    char final[PATH_MAX];
    int r = s->name ? resolve_links(path, final) : -ENOMEM;
    if (r == 0) {
        block_signals(&old);
        r = set_name(&s->final, &s->final_cap, final);
        restore_signals(&old);
    }
    /* two names for one file would lose one of them at commit */
    for (int j = 0; r == 0 && j < nslots; j++)
        if (slots[j] && slots[j]->used && j != i && (j == o || slots[j]->owner == o + 1) &&
            !strcmp(slots[j]->final, s->final))
            r = -EEXIST;
    if (r == 0)
        r = create_tmp(s);
    if (r == 0 && !(*tmp = strdup(s->tmp)))
        r = -ENOMEM;
    if (r < 0) {
        block_signals(&old);
        if (s->state == SLOT_TMP)
            unlink(s->tmp);
        release_slot(i);
        restore_signals(&old);
        return kimg_fail(r, "%s: cannot create a file in its folder: %s", path,
                         r == -EEXIST ? "the image names it twice" : strerror(-r));
    }
    return 0;
}

char *kimg_output_member_path(const char *owner_tmp, const char *name)
{
    char *p = NULL;
    sigset_t old;
    block_signals(&old);
    int o = find_pending(owner_tmp);
    for (int i = 0; o >= 0 && i < nslots && !p; i++) {
        struct slot *s = slots[i];
        if (s && s->used && s->owner == o + 1 && s->state == SLOT_TMP && s->name &&
            !strcmp(s->name, name))
            p = strdup(s->tmp);
    }
    restore_signals(&old);
    return p;
}

static bool has_members(int o)
{
    return slots[o]->nmembers > 0;
}

/* Remove output O's members, renamed or not, and release them (signals
 * blocked): the output failed. */
static void remove_members(int o)
{
    for (int i = 0; i < nslots; i++) {
        struct slot *s = slots[i];
        if (!s || !s->used || s->owner != o + 1)
            continue;
        if (s->state == SLOT_TMP)
            unlink(s->tmp);
        else if (s->state == SLOT_FINAL)
            unlink(s->final);
        release_slot(i);
    }
}

static void sync_dir_of(const char *path)
{
    char d[PATH_MAX];
    memcpy(d, path, strlen(path) + 1);
    int fd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Output O's members into place, before O itself: each one's data on
 * stable storage (SYNC), an old file at O's name that the new members
 * would replace removed first (it may name files of the same names: it
 * must not name a mix of old and new ones), the members renamed, their
 * folders synced.  A crash leaves members without the file naming them,
 * never the reverse.  On failure the renamed members stay registered as
 * such (the caller's abort removes them). */
static int commit_members(int o, bool sync)
{
    struct slot *os = slots[o];
    int r = 0;
    for (int i = 0; i < nslots && r == 0 && sync; i++) {
        struct slot *s = slots[i];
        if (!s || !s->used || s->owner != o + 1 || s->state != SLOT_TMP)
            continue;
        int fd = open(s->tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
            r = -errno;
        if (fd >= 0)
            close(fd);
    }
    sigset_t old;
    block_signals(&old);
    bool clobber = false;
    struct stat st;
    for (int i = 0; i < nslots && r == 0 && os->replace && !clobber; i++)
        clobber = slots[i] && slots[i]->used && slots[i]->owner == o + 1 &&
                  lstat(slots[i]->final, &st) == 0;
    if (clobber && lstat(os->final, &st) == 0 && S_ISREG(st.st_mode)) {
        crash_point();
        if (unlink(os->final) < 0 && errno != ENOENT)
            r = -errno;
        else if (sync)
            sync_dir_of(os->final);
    }
    for (int i = 0; i < nslots && r == 0; i++) {
        struct slot *s = slots[i];
        if (!s || !s->used || s->owner != o + 1 || s->state != SLOT_TMP)
            continue;
        crash_point();
        r = rename_into_place(s->tmp, s->final, s->replace);
        if (r == 0)
            s->state = SLOT_FINAL;
    }
    restore_signals(&old);
    const char *last = NULL;
    for (int i = 0; i < nslots && r == 0 && sync; i++) {
        struct slot *s = slots[i];
        if (!s || !s->used || s->owner != o + 1)
            continue;
        char d[PATH_MAX], e[PATH_MAX];
        memcpy(d, s->final, strlen(s->final) + 1);
        if (last) {
            memcpy(e, last, strlen(last) + 1);
            if (!strcmp(dirname(d), dirname(e)))
                continue;
        }
        sync_dir_of(s->final);
        last = s->final;
    }
    return r;
}

int kimg_output_commit(struct kimg_output *o, bool sync_dir)
{
    if (o->in_place || !o->slot || !o->path)
        return 0;
    struct slot *s = slots[o->slot - 1];
    char d[PATH_MAX];
    memcpy(d, s->final, strlen(s->final) + 1);  /* the slot may be reused once released */
    bool group = has_members(o->slot - 1);
    int r = group ? commit_members(o->slot - 1, sync_dir) : 0;
    if (r < 0)
        return kimg_fail(r, "%s: cannot rename its files into place: %s", o->name,
                         r == -EEXIST ? "one appeared meanwhile; not replacing it"
                                      : strerror(-r));
    sigset_t old;
    block_signals(&old);
    if (group)
        crash_point();
    r = s->state == SLOT_TMP
        ? rename_into_place(s->tmp, s->final, o->flags & KIMG_OUTPUT_REPLACE) : -ENOENT;
    if (r == 0) {
        for (int i = 0; group && i < nslots; i++)
            if (slots[i] && slots[i]->used && slots[i]->owner == o->slot) {
                if (s->undo)
                    drop_owner(slots[i]);   /* now an output of its own, for undo */
                else
                    release_slot(i);
            }
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
    remove_members(o->slot - 1);
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
        if (s->state != SLOT_DIR)
            release_slot(i);
    }
    if (remove)
        remove_dirs();
    for (int i = 0; i < nslots; i++)
        if (slots[i] && slots[i]->used)
            release_slot(i);
    restore_signals(&old);
}

int kimg_output_mkdir(const char *path, unsigned mode)
{
    sigset_t old;
    block_signals(&old);
    int i = take_slot();
    int e = i >= 0 ? set_name(&slots[i]->final, &slots[i]->final_cap, path) : 0;
    if (e < 0) {
        release_slot(i);
        i = e;
    }
    if (i >= 0 && mkdir(path, (mode_t)mode) < 0) {
        e = -errno;
        release_slot(i);
        i = e;
    }
    if (i >= 0)
        slots[i]->state = SLOT_DIR;
    restore_signals(&old);
    if (i < 0)
        return kimg_fail(i, "%s: %s", path, i == -EMFILE ? "too many output files at once"
                                                         : strerror(-i));
    return 0;
}

void kimg_output_undo_all(void)
{
    end_all(true);
}

void kimg_output_forget_all(void)
{
    end_all(false);
}
