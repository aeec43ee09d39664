/*
 * crash.c — crash simulation for tests (never active unless asked for in
 * the environment, as read by img/tunables.c).
 *
 * KIMG_CRASH_AFTER=N: the process dies with _exit(KIMG_CRASH_EXIT) just
 * before its (N+1)-th change to a file (write, zero, truncate, allocate,
 * sync).  Without more, the changes made so far all stay: the model of a
 * process killed at that point (the kernel still writes its page cache).
 *
 * KIMG_CRASH_LOSE=SEED in addition models a power failure: changes made to
 * a file since its last completed sync may each be lost, independently and
 * in any order (a disk with a volatile cache reorders and drops unflushed
 * writes).  Every change since the last sync is logged with the bytes it
 * replaced; at the crash each file is rolled back to its state at its last
 * sync and then a pseudo-random subset (SEED) of the logged changes is
 * replayed in their original order.  Metadata that is correctly ordered
 * with flushes survives every subset; an update that relies on two
 * unflushed writes landing in order does not.  Files opened with nosync
 * (cache=unsafe) never sync, so all their changes stay at risk, as they
 * are.  Limits: whole changes are lost or kept (no torn sectors), folder
 * entries (rename, unlink) are not modelled, and logging stops (the crash
 * is then a plain kill) after KIMG_CRASH_LOG_MAX bytes or on O_DIRECT files.
 *
 * The logging serialises file changes behind one mutex; it exists only
 * when KIMG_CRASH_AFTER is set.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "crash.h"
#include "kimg/file.h"
#include "tunables.h"

#define KIMG_CRASH_EXIT 222
#define KIMG_CRASH_LOG_MAX (512ull << 20)

struct crash_change {
    enum kimg_crash_op op;
    uint64_t off, len;
    uint64_t old_size, new_size;
    uint8_t *before;            /* old bytes of [off, off+len) below old_size */
    uint64_t before_len;
    uint8_t *data;              /* KIMG_CRASH_WRITE: the bytes written */
};

/* One file's unsynced changes.  Logs of closed files keep a dup'd fd. */
struct crash_log {
    struct crash_log *next;
    const struct kimg_file *owner;   /* NULL once the file is closed */
    int fd;
    struct crash_change *v;
    size_t n, cap;
};

static pthread_mutex_t crash_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t crash_once = PTHREAD_ONCE_INIT;
static long crash_after = -1;          /* -1: disabled */
static long crash_count;
static bool crash_lose;
static uint64_t crash_seed;
static uint64_t log_bytes;
static bool log_overflow;
static struct crash_log *logs;

static void read_env(void)
{
    const struct kimg_tunables *t = kimg_tunables();
    crash_after = t->crash_after;
    if (t->crash_lose) {
        crash_lose = true;
        crash_seed = t->crash_seed * 0x9e3779b97f4a7c15ull + 1;
    }
}

bool kimg_crash_enabled(void)
{
    pthread_once(&crash_once, read_env);
    return crash_after >= 0;
}

bool kimg_crash_lossy(void)
{
    pthread_once(&crash_once, read_env);
    return crash_lose;
}

static uint64_t next_random(void)
{
    /* xorshift64*: reproducible for a given seed */
    crash_seed ^= crash_seed >> 12;
    crash_seed ^= crash_seed << 25;
    crash_seed ^= crash_seed >> 27;
    return crash_seed * 0x2545f4914f6cdd1dull;
}

static void full_pwrite(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            return;     /* best effort: we are dying anyway */
        }
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
}

static void zero_fill(int fd, uint64_t off, uint64_t len)
{
    static const uint8_t zeros[65536];
    while (len > 0) {
        uint64_t n = len < sizeof(zeros) ? len : sizeof(zeros);
        full_pwrite(fd, zeros, n, off);
        off += n;
        len -= n;
    }
}

/* Roll one file back to its last sync, then replay a random subset. */
static void lose_changes(struct crash_log *l)
{
    for (size_t i = l->n; i-- > 0;) {
        struct crash_change *c = &l->v[i];
        if (ftruncate(l->fd, (off_t)c->old_size) != 0)
            return;
        if (c->before_len)
            full_pwrite(l->fd, c->before, c->before_len, c->off);
    }
    for (size_t i = 0; i < l->n; i++) {
        struct crash_change *c = &l->v[i];
        if (next_random() & 1)
            continue;                       /* this change never reached the disk */
        off_t cur = lseek(l->fd, 0, SEEK_END);
        switch (c->op) {
        case KIMG_CRASH_WRITE:
            full_pwrite(l->fd, c->data, c->len, c->off);
            break;
        case KIMG_CRASH_ZERO:
            if (c->off < c->new_size)
                zero_fill(l->fd, c->off,
                          (c->off + c->len < c->new_size ? c->off + c->len : c->new_size) - c->off);
            if (cur >= 0 && (uint64_t)cur < c->new_size && ftruncate(l->fd, (off_t)c->new_size))
                return;
            break;
        case KIMG_CRASH_TRUNCATE:
            if (ftruncate(l->fd, (off_t)c->new_size) != 0)
                return;
            break;
        case KIMG_CRASH_ALLOCATE:
            if (cur >= 0 && (uint64_t)cur < c->new_size && ftruncate(l->fd, (off_t)c->new_size))
                return;
            break;
        case KIMG_CRASH_SYNC:
            break;
        }
    }
}

static void die(void)
{
    if (crash_lose && !log_overflow)
        for (struct crash_log *l = logs; l; l = l->next)
            lose_changes(l);
    _exit(KIMG_CRASH_EXIT);
}

static struct crash_log *log_of(const struct kimg_file *f)
{
    for (struct crash_log *l = logs; l; l = l->next)
        if (l->owner == f)
            return l;
    struct crash_log *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->owner = f;
    l->fd = f->fd;
    l->next = logs;
    logs = l;
    return l;
}

static uint64_t fd_size(int fd)
{
    off_t end = lseek(fd, 0, SEEK_END);
    return end < 0 ? 0 : (uint64_t)end;
}

bool kimg_crash_begin(struct kimg_file *f, enum kimg_crash_op op, uint64_t off,
                      uint64_t len, const void *data, struct kimg_crash_token *tok)
{
    if (!kimg_crash_enabled())
        return false;
    pthread_mutex_lock(&crash_lock);
    if (crash_count++ >= crash_after)
        die();
    memset(tok, 0, sizeof(*tok));
    tok->locked = true;
    if (!crash_lose || log_overflow || op == KIMG_CRASH_SYNC || !f || f->fd < 0)
        return true;
    if (f->direct) {
        /* O_DIRECT fds cannot take the unaligned log I/O: plain kill */
        log_overflow = true;
        return true;
    }
    uint64_t old_size = fd_size(f->fd);
    uint64_t before_len = 0;
    if (op == KIMG_CRASH_TRUNCATE) {
        /* what a shrink cuts off */
        off = len < old_size ? len : old_size;
        before_len = old_size - off;
    } else if (op != KIMG_CRASH_ALLOCATE && off < old_size) {
        before_len = (off + len < old_size ? off + len : old_size) - off;
    }
    uint64_t cost = before_len + (op == KIMG_CRASH_WRITE ? len : 0);
    if (log_bytes + cost > KIMG_CRASH_LOG_MAX) {
        log_overflow = true;
        return true;
    }
    struct crash_change c = { .op = op, .off = off, .len = len, .old_size = old_size,
                              .before_len = before_len };
    c.before = before_len ? malloc(before_len) : NULL;
    c.data = op == KIMG_CRASH_WRITE ? malloc(len ? len : 1) : NULL;
    if ((before_len && !c.before) || (op == KIMG_CRASH_WRITE && !c.data)) {
        free(c.before);
        free(c.data);
        log_overflow = true;
        return true;
    }
    if (before_len && pread(f->fd, c.before, before_len, (off_t)off) != (ssize_t)before_len) {
        free(c.before);
        free(c.data);
        log_overflow = true;
        return true;
    }
    if (c.data)
        memcpy(c.data, data, len);
    log_bytes += cost;
    tok->change = malloc(sizeof(c));
    if (!tok->change) {
        free(c.before);
        free(c.data);
        log_overflow = true;
        return true;
    }
    memcpy(tok->change, &c, sizeof(c));
    return true;
}

static void free_change(struct crash_change *c)
{
    free(c->before);
    free(c->data);
}

void kimg_crash_end(struct kimg_file *f, struct kimg_crash_token *tok, int ret)
{
    if (!tok->locked)
        return;
    struct crash_change *c = tok->change;
    if (c) {
        struct crash_log *l = ret == 0 ? log_of(f) : NULL;
        if (l && l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 64;
            struct crash_change *v = realloc(l->v, cap * sizeof(*v));
            if (v) {
                l->v = v;
                l->cap = cap;
            }
        }
        if (l && l->n < l->cap) {
            c->new_size = fd_size(f->fd);
            l->v[l->n++] = *c;
        } else {
            if (ret == 0)
                log_overflow = true;   /* could not log a change that happened */
            free_change(c);
        }
        free(c);
    }
    pthread_mutex_unlock(&crash_lock);
}

void kimg_crash_synced(struct kimg_file *f)
{
    if (!kimg_crash_enabled())
        return;
    pthread_mutex_lock(&crash_lock);
    for (struct crash_log *l = logs; l; l = l->next) {
        if (l->owner != f)
            continue;
        for (size_t i = 0; i < l->n; i++) {
            log_bytes -= l->v[i].before_len + (l->v[i].data ? l->v[i].len : 0);
            free_change(&l->v[i]);
        }
        l->n = 0;
    }
    pthread_mutex_unlock(&crash_lock);
}

void kimg_crash_closing(struct kimg_file *f)
{
    if (!kimg_crash_enabled())
        return;
    pthread_mutex_lock(&crash_lock);
    for (struct crash_log *l = logs; l; l = l->next) {
        if (l->owner != f)
            continue;
        l->owner = NULL;
        /* unsynced changes of a closed file can still be lost */
        l->fd = l->n ? dup(f->fd) : -1;
        if (l->n && l->fd < 0)
            log_overflow = true;
    }
    pthread_mutex_unlock(&crash_lock);
}
