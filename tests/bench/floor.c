/*
 * floor.c — the page-cache floor for `make bench`: how long the kernel
 * takes to accept a source's data into a new file's page cache, which
 * every buffered conversion whose output holds that data plainly must
 * wait for.  A buffered file takes one writer at a time (the kernel copies
 * into its page cache under the file's inode lock), so this part of a
 * conversion is serial however many threads a tool has; reading, format
 * work and zero detection can overlap with it, this cannot.
 *
 * It creates DST as large as SRC, then writes at each of SRC's data
 * extents (SEEK_DATA/SEEK_HOLE) from one thread, 2 MiB at a time, without
 * fsync (as `convert -t unsafe`), from one reused page-aligned 2 MiB
 * buffer holding SRC's first data (reading SRC is a tool's work, done on
 * other threads; the copy into the page cache does not depend on the
 * bytes), and prints the seconds that took.  It used to write from a
 * mapping of SRC, and in a VM that floor was twice what qemu-img took
 * (likely from nested TLB misses on the mapped pages).  Each
 * write is cut 4 KiB after a 2 MiB point with 2 MiB still to go, as kimg's
 * buffered writes are (img/file.c, buffered_pwrite): otherwise the kernel
 * builds 2 MiB folios, which on a VM with free page reporting cost a host
 * page fault per 4 KiB and made this floor itself up to five times slower
 * than the tools it measures.
 *
 * With -p it measures a second floor: the best a tool that also reads its
 * source can do with two threads.  One thread preads SRC's data 2 MiB at
 * a time into a ring of four page-aligned 2 MiB buffers (on huge pages,
 * as kimg's); the other writes each one as above, the moment it is read.
 * Nothing else: no zero scan, no format, no process start.  On the
 * project's AMD EPYC guest that took 0.95-1.35 times the plain floor,
 * depending on the machine's spell (the data is cold in the caches, the
 * two copies share the memory bandwidth).
 *
 *   floor [-p] SRC DST   prints seconds; exit 0, or 1 with a message
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PIECE (2 << 20)
#define RING 4

static int fail(const char *what)
{
    fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
    return 1;
}

/* The pieces to write, in order: SRC's data extents cut at 2 MiB, each
 * piece cut again 4 KiB after a 2 MiB point with 2 MiB still to go.
 * next_piece() gives the next one (false at the end; errno set on error). */
struct walk {
    int in;
    off_t data, hole;
};

static bool next_piece(struct walk *w, off_t *off, size_t *len)
{
    while (w->data >= w->hole) {
        off_t d = lseek(w->in, w->hole, SEEK_DATA);
        if (d < 0) {
            if (errno == ENXIO)
                errno = 0;
            return false;
        }
        off_t h = lseek(w->in, d, SEEK_HOLE);
        if (h < 0)
            return false;
        w->data = d;
        w->hole = h;
    }
    size_t n = w->hole - w->data < PIECE ? (size_t)(w->hole - w->data) : PIECE;
    off_t p = (w->data + PIECE - 1) / PIECE * PIECE;   /* next 2 MiB point */
    if (p < w->hole && w->hole - p >= PIECE && p + 4096 - w->data < (off_t)n)
        n = (size_t)(p + 4096 - w->data);
    *off = w->data;
    *len = n;
    w->data += (off_t)n;
    return true;
}

/* -p: the reader thread's ring */
struct ring {
    int in;
    char *buf[RING];
    off_t off[RING];
    size_t len[RING];
    unsigned head, tail;   /* pieces read, pieces written */
    bool done;
    int err;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void *reader(void *arg)
{
    struct ring *r = arg;
    struct walk w = { r->in, 0, 0 };
    off_t off;
    size_t len;
    int err = 0;
    while (next_piece(&w, &off, &len)) {
        pthread_mutex_lock(&r->mu);
        while (r->head - r->tail == RING)
            pthread_cond_wait(&r->cv, &r->mu);
        unsigned slot = r->head % RING;
        pthread_mutex_unlock(&r->mu);
        if (pread(r->in, r->buf[slot], len, off) != (ssize_t)len) {
            err = errno ? errno : EIO;
            break;
        }
        r->off[slot] = off;
        r->len[slot] = len;
        pthread_mutex_lock(&r->mu);
        r->head++;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_lock(&r->mu);
    r->err = err ? err : errno;
    r->done = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static int pipeline(int in, int out)
{
    struct ring r = { .in = in, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
    for (int i = 0; i < RING; i++) {
        if (posix_memalign((void **)&r.buf[i], PIECE, PIECE) != 0)
            return fail("posix_memalign");
        madvise(r.buf[i], PIECE, MADV_HUGEPAGE);
    }
    pthread_t t;
    if ((errno = pthread_create(&t, NULL, reader, &r)) != 0)
        return fail("pthread_create");
    for (;;) {
        pthread_mutex_lock(&r.mu);
        while (r.head == r.tail && !r.done)
            pthread_cond_wait(&r.cv, &r.mu);
        bool end = r.head == r.tail;
        unsigned slot = r.tail % RING;
        pthread_mutex_unlock(&r.mu);
        if (end)
            break;
        if (pwrite(out, r.buf[slot], r.len[slot], r.off[slot]) != (ssize_t)r.len[slot])
            return fail("pwrite");
        pthread_mutex_lock(&r.mu);
        r.tail++;
        pthread_cond_broadcast(&r.cv);
        pthread_mutex_unlock(&r.mu);
    }
    pthread_join(t, NULL);
    errno = r.err;
    return r.err ? fail("read") : 0;
}

static int plain(int in, int out)
{
    char *src;
    if (posix_memalign((void **)&src, 4096, PIECE) != 0)
        return fail("posix_memalign");
    off_t first = lseek(in, 0, SEEK_DATA);
    ssize_t got = first < 0 ? 0 : pread(in, src, PIECE, first);
    if (got < 0)
        return fail("pread");
    memset(src + got, 0x5a, PIECE - (size_t)got);  /* never all zeros */
    struct walk w = { in, 0, 0 };
    off_t off;
    size_t len;
    while (next_piece(&w, &off, &len))
        if (pwrite(out, src, len, off) != (ssize_t)len)
            return fail("pwrite");
    return errno ? fail("SEEK_DATA") : 0;
}

int main(int argc, char **argv)
{
    bool pipe_mode = argc == 4 && strcmp(argv[1], "-p") == 0;
    if (argc != 3 && !pipe_mode) {
        fprintf(stderr, "usage: floor [-p] SRC DST\n");
        return 1;
    }
    const char *srcname = argv[argc - 2], *dstname = argv[argc - 1];
    int in = open(srcname, O_RDONLY);
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0)
        return fail(srcname);
    int out = open(dstname, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || ftruncate(out, st.st_size) < 0)
        return fail(dstname);
    if (st.st_size == 0)
        return 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    errno = 0;
    int ret = pipe_mode ? pipeline(in, out) : plain(in, out);
    if (ret)
        return ret;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.3f\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
