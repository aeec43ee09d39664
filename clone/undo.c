/*
 * undo.c — every file a clone run creates is registered here, first under
 * its temporary name and then under its final one; a failure, SIGINT,
 * SIGTERM, SIGHUP or SIGPIPE removes them all, so a failed clone leaves
 * nothing behind.  Renames into place never replace an existing file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kimg.h"
#include "clone/clone.h"

#define UNDO_MAX (2 * CLONE_MAX_DISKS + 8)

enum { SLOT_FREE, SLOT_TMP, SLOT_FINAL };

struct slot {
    char *tmp;
    char *final;
    volatile sig_atomic_t state;
};

static struct slot slots[UNDO_MAX];
static volatile sig_atomic_t nslots;

static void undo_all_signal_safe(void)
{
    for (sig_atomic_t i = nslots; i-- > 0;) {
        if (slots[i].state == SLOT_TMP)
            unlink(slots[i].tmp);
        else if (slots[i].state == SLOT_FINAL)
            unlink(slots[i].final);
        slots[i].state = SLOT_FREE;
    }
}

static void on_signal(int sig)
{
    undo_all_signal_safe();
    signal(sig, SIG_DFL);
    raise(sig);
}

static const int guarded[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };

void clone_undo_guard_signals(bool on)
{
    struct sigaction sa = { .sa_handler = on ? on_signal : SIG_DFL };
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(guarded) / sizeof(guarded[0]); i++)
        sigaddset(&sa.sa_mask, guarded[i]);
    for (size_t i = 0; i < sizeof(guarded) / sizeof(guarded[0]); i++)
        sigaction(guarded[i], &sa, NULL);
    /* a file size limit (ulimit -f) then fails the write with EFBIG, and
     * the run undoes itself, instead of dying with SIGXFSZ */
    signal(SIGXFSZ, on ? SIG_IGN : SIG_DFL);
}

static void block_signals(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(guarded) / sizeof(guarded[0]); i++)
        sigaddset(&set, guarded[i]);
    pthread_sigmask(SIG_BLOCK, &set, old);
}

static void restore_signals(const sigset_t *old)
{
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

int clone_undo_mktemp(const char *dst, char **tmp)
{
    *tmp = NULL;
    if (nslots >= UNDO_MAX)
        return kimg_fail(-EMFILE, "too many files in one clone");
    char *dir = clone_dirname(dst);
    char *name;
    if (!dir)
        return -ENOMEM;
    int r = asprintf(&name, "%s/.%s.kimg-XXXXXX", dir, clone_basename(dst));
    free(dir);
    if (r < 0)
        return -ENOMEM;
    char *final = strdup(dst);
    if (!final) {
        free(name);
        return -ENOMEM;
    }
    int slot = nslots;
    slots[slot].tmp = name;
    slots[slot].final = final;
    slots[slot].state = SLOT_FREE;
    nslots = slot + 1;

    sigset_t old;
    block_signals(&old);
    int fd = mkostemp(name, O_CLOEXEC);
    int e = errno;
    if (fd >= 0)
        slots[slot].state = SLOT_TMP;
    restore_signals(&old);
    if (fd < 0)
        return kimg_fail(-e, "%s: cannot create a file in its folder: %s", dst, strerror(e));
    close(fd);
    *tmp = name;
    return slot;
}

int clone_undo_commit(int slot, const char *dst, bool replace)
{
    if (slot < 0 || slot >= nslots || slots[slot].state != SLOT_TMP)
        return -EINVAL;
    sigset_t old;
    block_signals(&old);
    int r = renameat2(AT_FDCWD, slots[slot].tmp, AT_FDCWD, dst, replace ? 0 : RENAME_NOREPLACE);
    if (r < 0 && !replace && (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP)) {
        /* no RENAME_NOREPLACE on this filesystem: link() never replaces */
        r = link(slots[slot].tmp, dst);
        if (r == 0)
            unlink(slots[slot].tmp);
    }
    int e = errno;
    if (r == 0) {
        if (strcmp(slots[slot].final, dst)) {
            char *f = strdup(dst);
            if (f) {
                free(slots[slot].final);
                slots[slot].final = f;
            }
        }
        slots[slot].state = SLOT_FINAL;
    }
    restore_signals(&old);
    if (r < 0)
        return kimg_fail(-e, "%s: cannot rename the finished file into place: %s", dst,
                         e == EEXIST ? "it appeared meanwhile; not replacing it" : strerror(e));
    return 0;
}

static void forget(void)
{
    for (int i = 0; i < nslots; i++) {
        free(slots[i].tmp);
        free(slots[i].final);
        slots[i].tmp = slots[i].final = NULL;
        slots[i].state = SLOT_FREE;
    }
    nslots = 0;
}

void clone_undo_run(void)
{
    sigset_t old;
    block_signals(&old);
    undo_all_signal_safe();
    forget();
    restore_signals(&old);
}

void clone_undo_forget(void)
{
    sigset_t old;
    block_signals(&old);
    forget();
    restore_signals(&old);
}
