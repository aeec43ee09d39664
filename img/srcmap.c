/*
 * srcmap.c — mapped source data for every engine (see srcmap.h): the
 * registry of live mappings that can fault, the one SIGBUS handler that
 * turns a fault in them into zero pages plus a mark, the check that
 * turns the mark (or a file now shorter than the range) into an error,
 * and the shared windows over a file.
 * KIMG_TEST_MAP_PAUSE=FILE (tests): the first mapping made creates FILE
 * and waits until it is removed, so a test can change the source then.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "kimg/driver.h"
#include "srcmap.h"
#include "tunables.h"

#define MAX_MAPS 1024

/* A slot is free while start is 0; the handler reads it lock-free. */
static uintptr_t reg_start[MAX_MAPS], reg_end[MAX_MAPS];
static int reg_faulted[MAX_MAPS];

static pthread_mutex_t bus_lock = PTHREAD_MUTEX_INITIALIZER;
static int bus_users;
static struct sigaction bus_old;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    uintptr_t a = (uintptr_t)si->si_addr;
    for (int i = 0; i < MAX_MAPS; i++) {
        uintptr_t s0 = __atomic_load_n(&reg_start[i], __ATOMIC_ACQUIRE);
        uintptr_t s1 = __atomic_load_n(&reg_end[i], __ATOMIC_ACQUIRE);
        if (!s0 || a < s0 || a >= s1)
            continue;
        __atomic_store_n(&reg_faulted[i], 1, __ATOMIC_RELEASE);
        /* the whole mapping reads zeros from now on: one fault, not one
         * per page, and every later reader sees the mark */
        if (mmap((void *)s0, s1 - s0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                 -1, 0) != MAP_FAILED)
            return;
        break;
    }
    /* not ours (or no way to patch it): the previous action, on return */
    sigaction(sig, &bus_old, NULL);
}

static int bus_get(void)
{
    int ret = 0;
    pthread_mutex_lock(&bus_lock);
    if (bus_users == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, &bus_old) < 0)
            ret = -errno;
    }
    if (ret == 0)
        bus_users++;
    pthread_mutex_unlock(&bus_lock);
    return ret;
}

static void bus_put(void)
{
    pthread_mutex_lock(&bus_lock);
    if (--bus_users == 0)
        sigaction(SIGBUS, &bus_old, NULL);
    pthread_mutex_unlock(&bus_lock);
}

static int reg_add(const void *base, size_t len)
{
    uintptr_t a = (uintptr_t)base;
    for (int i = 0; i < MAX_MAPS; i++) {
        uintptr_t zero = 0;
        if (__atomic_compare_exchange_n(&reg_start[i], &zero, a, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            __atomic_store_n(&reg_faulted[i], 0, __ATOMIC_RELEASE);
            __atomic_store_n(&reg_end[i], a + len, __ATOMIC_RELEASE);
            return i;
        }
    }
    return -1;
}

static void reg_del(int i)
{
    __atomic_store_n(&reg_end[i], 0, __ATOMIC_RELEASE);
    __atomic_store_n(&reg_start[i], 0, __ATOMIC_RELEASE);
}

/* The test hook (see the top): once per process. */
static void test_pause(void)
{
    static int done;
    kimg_test_pause(kimg_tunables()->test_map_pause, &done);
}

static int changed_size(const struct kimg_srcmap *sm)
{
    return kimg_fail(-EIO, "error while reading '%s' at offset %llu: the file changed size "
                     "while it was read", sm->file->path ? sm->file->path : "?",
                     (unsigned long long)sm->off);
}

int kimg_srcmap_open(struct kimg_srcmap *sm, struct kimg_file *f, uint64_t off, uint64_t len)
{
    memset(sm, 0, sizeof(*sm));
    sm->file = f;
    sm->off = off;
    sm->len = len;
    sm->slot = -1;
    if (!kimg_tunables()->map_sources)
        return -EOPNOTSUPP;     /* reads are the default (srcmap.h) */
    int ret = kimg_file_map(f, off, len, &sm->m);
    if (ret == -ERANGE)
        return changed_size(sm);
    if (ret < 0)
        return ret;
    if (sm->m.may_fault) {
        ret = bus_get();
        if (ret == 0 && (sm->slot = reg_add(sm->m.base, sm->m.len)) < 0) {
            bus_put();
            ret = -EBUSY;
        }
        if (ret < 0) {
            kimg_file_unmap(f, &sm->m);
            sm->slot = -1;
            return ret;
        }
    }
    sm->data = sm->m.data;
    test_pause();
    return 0;
}

int kimg_srcmap_check(const struct kimg_srcmap *sm)
{
    uint64_t size;
    if (!sm->data)
        return 0;
    if (sm->slot >= 0 && __atomic_load_n(&reg_faulted[sm->slot], __ATOMIC_ACQUIRE))
        return changed_size(sm);
    if (sm->file->ops->get_size(sm->file, &size) < 0 || size < sm->off + sm->len)
        return changed_size(sm);
    return 0;
}

void kimg_srcmap_close(struct kimg_srcmap *sm)
{
    if (!sm->data)
        return;
    /* out of the registry first (nothing reads the range any more), so a
     * new mapping at the same address is never taken for this one */
    if (sm->slot >= 0)
        reg_del(sm->slot);
    kimg_file_unmap(sm->file, &sm->m);
    if (sm->slot >= 0)
        bus_put();
    sm->slot = -1;
    sm->data = NULL;
}

/* ---- shared windows ------------------------------------------------------- */

#define MAX_WINDOWS 32

struct window {
    struct kimg_srcmap sm;      /* sm.data NULL: slot unused */
    int refs;
    uint64_t stamp;             /* creation order */
};

struct kimg_srcwins {
    pthread_mutex_t lock;
    uint64_t size, stamp;
    struct window win[MAX_WINDOWS];
};

struct kimg_srcwins *kimg_srcwins_new(uint64_t window)
{
    struct kimg_srcwins *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    pthread_mutex_init(&w->lock, NULL);
    w->size = window;
    return w;
}

void kimg_srcwins_free(struct kimg_srcwins *w)
{
    if (!w)
        return;
    for (int i = 0; i < MAX_WINDOWS; i++)
        kimg_srcmap_close(&w->win[i].sm);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* Whether window I is idle and older than another window of its file. */
static bool stale(struct kimg_srcwins *w, int i)
{
    struct window *x = &w->win[i];
    if (!x->sm.data || x->refs)
        return false;
    for (int k = 0; k < MAX_WINDOWS; k++)
        if (w->win[k].sm.data && w->win[k].sm.file == x->sm.file && w->win[k].stamp > x->stamp)
            return true;
    return false;
}

/* Map a job's pages in one call before a worker reads them: page by
 * page, fault-around maps 64 KiB a fault, and on a host where a guest's
 * page fault is expensive (free page reporting) kimg took 3.7 times
 * qemu-img's faults converting a raw file.  Only the job's range (data,
 * never a hole of the window, which would fill the page cache with
 * zeros).  Advisory: a kernel without MADV_POPULATE_READ (5.14) says
 * EINVAL, a file cut short EFAULT; either way the reads fault as before,
 * and a shrunk file is still caught by the SIGBUS handler. */
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
static void populate(const uint8_t *p, uint64_t len)
{
    static uintptr_t page;
    if (!page)
        page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(page - 1), b = (uintptr_t)p + (uintptr_t)len;
    if (len && !kimg_tunables()->no_populate)
        (void)madvise((void *)a, b - a, MADV_POPULATE_READ);
}

int kimg_srcwins_get(struct kimg_srcwins *w, struct kimg_file *f, uint64_t off, uint64_t len,
                     struct kimg_srcmap **map, const uint8_t **data)
{
    int ret, slot = -1;
    if (!kimg_tunables()->map_sources)
        return -EOPNOTSUPP;     /* reads are the default (srcmap.h) */
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < MAX_WINDOWS; i++) {
        struct window *x = &w->win[i];
        if (x->sm.data && x->sm.file == f && off >= x->sm.off &&
            off + len <= x->sm.off + x->sm.len) {
            x->refs++;
            *map = &x->sm;
            *data = x->sm.data + (off - x->sm.off);
            pthread_mutex_unlock(&w->lock);
            populate(*data, len);
            return 0;
        }
        if (!x->sm.data && slot < 0)
            slot = i;
    }
    if (slot < 0) {
        pthread_mutex_unlock(&w->lock);
        return -EBUSY;          /* every window in use: the caller reads */
    }
    /* the aligned window around OFF, inside the file; a range that
     * crosses a window's end gets a mapping of its own */
    uint64_t start = off & ~(w->size - 1), end = start + w->size, size;
    if (f->ops->get_size(f, &size) < 0)
        size = off + len;
    if (off + len > size) {
        /* past the file's end (a raw image's size rounds the file up to
         * 512 bytes): not mappable; the caller reads, which gives zeros
         * there, and the end-of-run size check still sees a truncation */
        pthread_mutex_unlock(&w->lock);
        return -EOPNOTSUPP;
    }
    if (end > size)
        end = size;
    if (off + len > end || off + len > size) {
        start = off;
        end = off + len;
    }
    struct window *x = &w->win[slot];
    ret = kimg_srcmap_open(&x->sm, f, start, end - start);
    if (ret == 0) {
        x->refs = 1;
        x->stamp = ++w->stamp;
        *map = &x->sm;
        *data = x->sm.data + (off - start);
        /* older idle windows of this file will not be asked for again */
        for (int i = 0; i < MAX_WINDOWS; i++)
            if (stale(w, i))
                kimg_srcmap_close(&w->win[i].sm);
    }
    pthread_mutex_unlock(&w->lock);
    if (ret == 0)
        populate(*data, len);
    return ret;
}

void kimg_srcwins_put(struct kimg_srcwins *w, struct kimg_srcmap *map)
{
    pthread_mutex_lock(&w->lock);
    struct window *x = (struct window *)((char *)map - offsetof(struct window, sm));
    int i = (int)(x - w->win);
    if (--x->refs == 0 && stale(w, i))
        kimg_srcmap_close(&x->sm);
    pthread_mutex_unlock(&w->lock);
}

/* ---- whole files ---------------------------------------------------------- */

void kimg_srcmap_note_sizes(struct kimg *img, struct kimg_file *written,
                            struct kimg_srcsizes *s)
{
    s->n = 0;
    for (; img && s->n < (int)(sizeof(s->size) / sizeof(s->size[0])); img = img->backing) {
        uint64_t size = UINT64_MAX;
        /* a read-only layer: the size the driver opened (a raw layer's
         * virtual size is it), so a cut between that open and now is a
         * change too, not a file that reads as holes from the start; a
         * writable one may have been written through its own handle
         * since, so its size now */
        if (!img->file || (written && (img->file == written ||
                                       kimg_file_same(img->file, written))))
            size = UINT64_MAX;
        else if (!img->writable && img->file_size_at_open != UINT64_MAX)
            size = img->file_size_at_open;
        else if (img->file->ops->get_size(img->file, &size) < 0)
            size = UINT64_MAX;
        s->size[s->n++] = size;
    }
}

int kimg_srcmap_check_sizes(struct kimg *img, const struct kimg_srcsizes *s)
{
    for (int i = 0; img && i < s->n; img = img->backing, i++) {
        uint64_t size;
        if (!img->file || s->size[i] == UINT64_MAX ||
            img->file->ops->get_size(img->file, &size) < 0 || size == s->size[i])
            continue;
        return kimg_fail(-EIO, "error while reading '%s': the file changed size while it "
                         "was read", img->file->path ? img->file->path : "?");
    }
    return 0;
}
