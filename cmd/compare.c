/*
 * compare.c — `kimg compare`: guest-visible content of two images, across
 * formats and backing chains.  Ranges that block status proves to read as
 * zeros in both are skipped, not read; the others are read and compared
 * by a worker per core, in order (see "the pipeline").  Exit codes as
 * qemu-img's: 0 equal, 1 different, 2 error opening, 3 error checking
 * allocation, 4 read error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cmd.h"
#include "convert.h"

#define CHUNK (2u << 20)
#define SECTOR 512u

enum { CMP_SAME = 0, CMP_DIFF = 1, CMP_EOPEN = 2, CMP_ESTATUS = 3, CMP_EREAD = 4 };

/* Byte count of the leading run of A and B that is equal, in whole 512-byte
 * sectors (qemu-img reports mismatches at sector granularity). */
static uint64_t equal_prefix(const uint8_t *a, const uint8_t *b, uint64_t len)
{
    /* the common case, equal: one pass over the whole chunk */
    if (b ? !memcmp(a, b, len) : kimg_buffer_is_zero(a, len))
        return len;
    uint64_t i = 0;
    while (i < len) {
        uint64_t n = len - i < SECTOR ? len - i : SECTOR;
        if (b ? memcmp(a + i, b + i, n) : (a[i] != 0 || memcmp(a + i, a + i + 1, n - 1)))
            return i;
        i += n;
    }
    return len;
}

struct side {
    const char *name;
    struct kimg *img;
    uint8_t *buf;               /* check_tail_zero's reads */
};

/* Read LEN bytes at OFF of S into BUF; on failure MSG gets the error line. */
static int read_into(struct side *s, uint8_t *buf, uint64_t off, uint64_t len, char *msg,
                     size_t msglen)
{
    if (kimg_read(s->img, buf, off, len) == 0)
        return CMP_SAME;
    snprintf(msg, msglen, "kimg: Error while reading offset %" PRIu64 " of %s: %s\n", off,
             s->name, kimg_last_error() ? kimg_last_error() : "I/O error");
    kimg_clear_error();
    return CMP_EREAD;
}

/* ---- the pipeline ---------------------------------------------------------
 * The main thread walks block status and queues each range that must be
 * read as an item; worker threads (one per core) read an item's sides
 * (not a side known to read as zeros) and find its equal prefix, several
 * items at once, so reading and decompressing both images runs on every
 * core.  Results are taken strictly in order, and the walk's own findings
 * (a strict-mode difference, a block status error) only after every item
 * before them: what is reported, and the exit code, are those of a walk
 * from the start that stops at the first difference or error.  Errors are
 * reported even with -q, as qemu-img does. */

enum item_state { ITEM_FREE, ITEM_QUEUED, ITEM_BUSY, ITEM_DONE };

struct item {
    enum item_state state;
    uint64_t seq;
    uint64_t off, len;
    bool zero_a, zero_b;        /* that side reads as zeros: not read */
    uint8_t *buf_a, *buf_b;
    int ret;                    /* CMP_SAME or CMP_EREAD (msg says why) */
    uint64_t same;              /* equal prefix, whole sectors */
    char msg[512];
};

struct pool {
    struct side *a, *b;
    struct item *items;
    int nitems;
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    uint64_t next_seq, take_seq;
    bool quit;
    bool started;               /* the lock and conditions exist */
};

static void run_item(struct pool *p, struct item *it)
{
    it->ret = CMP_SAME;
    if (!it->zero_a)
        it->ret = read_into(p->a, it->buf_a, it->off, it->len, it->msg, sizeof(it->msg));
    if (it->ret == CMP_SAME && !it->zero_b)
        it->ret = read_into(p->b, it->buf_b, it->off, it->len, it->msg, sizeof(it->msg));
    if (it->ret != CMP_SAME)
        return;
    if (it->zero_a)
        it->same = equal_prefix(it->buf_b, NULL, it->len);
    else if (it->zero_b)
        it->same = equal_prefix(it->buf_a, NULL, it->len);
    else
        it->same = equal_prefix(it->buf_a, it->buf_b, it->len);
}

static void *worker_main(void *opaque)
{
    struct pool *p = opaque;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct item *it = NULL;
        for (int i = 0; i < p->nitems; i++)
            if (p->items[i].state == ITEM_QUEUED && (!it || p->items[i].seq < it->seq))
                it = &p->items[i];
        if (!it) {
            if (p->quit)
                break;
            pthread_cond_wait(&p->work, &p->lock);
            continue;
        }
        it->state = ITEM_BUSY;
        pthread_mutex_unlock(&p->lock);
        run_item(p, it);
        pthread_mutex_lock(&p->lock);
        it->state = ITEM_DONE;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Wait for the oldest queued item and take its result: CMP_SAME, or the
 * difference or error it found (reported here). */
static int take_oldest(struct pool *p, bool quiet)
{
    struct item *it = NULL;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        for (int i = 0; i < p->nitems && !it; i++)
            if (p->items[i].state == ITEM_DONE && p->items[i].seq == p->take_seq)
                it = &p->items[i];
        if (it)
            break;
        pthread_cond_wait(&p->done, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    int ret = it->ret;
    if (ret != CMP_SAME) {
        fputs(it->msg, stderr);
    } else if (it->same < it->len) {
        if (!quiet)
            printf("Content mismatch at offset %" PRIu64 "!\n", it->off + it->same);
        ret = CMP_DIFF;
    }
    pthread_mutex_lock(&p->lock);
    it->state = ITEM_FREE;
    p->take_seq++;
    pthread_mutex_unlock(&p->lock);
    return ret;
}

/* Take every queued item's result in order; the first difference or error. */
static int drain(struct pool *p, bool quiet)
{
    while (p->take_seq < p->next_seq) {
        int ret = take_oldest(p, quiet);
        if (ret != CMP_SAME)
            return ret;
    }
    return CMP_SAME;
}

/* Queue [off, off+len) (len <= CHUNK), taking older results while no slot
 * is free; CMP_SAME, or the first difference or error among them. */
static int submit(struct pool *p, uint64_t off, uint64_t len, bool zero_a, bool zero_b,
                  bool quiet)
{
    for (;;) {
        struct item *slot = NULL;
        pthread_mutex_lock(&p->lock);
        for (int i = 0; i < p->nitems && !slot; i++)
            if (p->items[i].state == ITEM_FREE)
                slot = &p->items[i];
        if (slot) {
            slot->off = off;
            slot->len = len;
            slot->zero_a = zero_a;
            slot->zero_b = zero_b;
            slot->seq = p->next_seq++;
            slot->state = ITEM_QUEUED;
            pthread_cond_signal(&p->work);
            pthread_mutex_unlock(&p->lock);
            return CMP_SAME;
        }
        pthread_mutex_unlock(&p->lock);
        int ret = take_oldest(p, quiet);
        if (ret != CMP_SAME)
            return ret;
    }
}

/* Start the workers: one per core (at least 2, at most 8), with two items
 * in flight each but at most 8 (4 MiB of buffers an item: 32 MiB). */
static int pool_start(struct pool *p)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    p->nthreads = ncpu < 2 ? 2 : ncpu > 8 ? 8 : (int)ncpu;
    p->nitems = 2 * p->nthreads > 8 ? 8 : 2 * p->nthreads;
    p->items = calloc((size_t)p->nitems, sizeof(*p->items));
    p->threads = calloc((size_t)p->nthreads, sizeof(*p->threads));
    if (!p->items || !p->threads)
        return -ENOMEM;
    for (int i = 0; i < p->nitems; i++) {
        p->items[i].buf_a = kimg_alloc_aligned(CHUNK);
        p->items[i].buf_b = kimg_alloc_aligned(CHUNK);
        if (!p->items[i].buf_a || !p->items[i].buf_b)
            return -ENOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->started = true;
    for (int i = 0; i < p->nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p)) {
            p->nthreads = i;
            return -EAGAIN;
        }
    }
    return 0;
}

/* Stop the workers (queued items are dropped) and free. */
static void pool_stop(struct pool *p)
{
    if (p->started) {
        pthread_mutex_lock(&p->lock);
        p->quit = true;
        for (int i = 0; i < p->nitems; i++)
            if (p->items[i].state == ITEM_QUEUED)
                p->items[i].state = ITEM_FREE;
        pthread_cond_broadcast(&p->work);
        pthread_mutex_unlock(&p->lock);
        for (int i = 0; i < p->nthreads; i++)
            pthread_join(p->threads[i], NULL);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->work);
        pthread_cond_destroy(&p->done);
    }
    for (int i = 0; p->items && i < p->nitems; i++) {
        free(p->items[i].buf_a);
        free(p->items[i].buf_b);
    }
    free(p->items);
    free(p->threads);
}

/* Block status of S at OFF; on failure MSG gets the error line. */
static int status(struct side *s, uint64_t off, uint64_t len, struct kimg_extent *e, char *msg,
                  size_t msglen)
{
    if (kimg_block_status(s->img, off, len, e) == 0)
        return CMP_SAME;
    snprintf(msg, msglen, "kimg: error while reading block status at offset %" PRIu64
             " of %s: %s\n", off, s->name, kimg_last_error() ? kimg_last_error() : "I/O error");
    kimg_clear_error();
    return CMP_ESTATUS;
}

/* The part of the larger image past the smaller one must read as zeros
 * (sequential: nothing else is in flight by then). */
static int check_tail_zero(struct side *s, uint64_t off, uint64_t end, bool quiet)
{
    char msg[512];
    while (off < end) {
        struct kimg_extent e;
        int ret = status(s, off, end - off, &e, msg, sizeof(msg));
        if (ret) {
            fputs(msg, stderr);
            return ret;
        }
        uint64_t n = e.length < CHUNK ? e.length : CHUNK;
        if (!(e.flags & KIMG_BS_ZERO)) {
            if ((ret = read_into(s, s->buf, off, n, msg, sizeof(msg)))) {
                fputs(msg, stderr);
                return ret;
            }
            uint64_t same = equal_prefix(s->buf, NULL, n);
            if (same < n) {
                if (!quiet)
                    printf("Content mismatch at offset %" PRIu64 "!\n", off + same);
                return CMP_DIFF;
            }
        }
        off += n;
    }
    return CMP_SAME;
}

static int compare(struct side *a, struct side *b, struct pool *p, bool strict, bool quiet)
{
    uint64_t size_a = kimg_size(a->img), size_b = kimg_size(b->img);
    uint64_t common = size_a < size_b ? size_a : size_b;
    uint64_t off = 0;
    char msg[512];
    int ret;

    if (size_a != size_b && strict) {
        if (!quiet)
            printf("Strict mode: Image size mismatch!\n");
        return CMP_DIFF;
    }
    while (off < common) {
        struct kimg_extent ea, eb;
        if ((ret = status(a, off, common - off, &ea, msg, sizeof(msg))) ||
            (ret = status(b, off, common - off, &eb, msg, sizeof(msg)))) {
            /* an earlier range may still differ: that comes first */
            int first = drain(p, quiet);
            if (first != CMP_SAME)
                return first;
            fputs(msg, stderr);
            return ret;
        }
        uint64_t n = ea.length < eb.length ? ea.length : eb.length;
        if (strict && (ea.flags & (KIMG_BS_ALLOCATED | KIMG_BS_ZERO | KIMG_BS_DATA)) !=
                      (eb.flags & (KIMG_BS_ALLOCATED | KIMG_BS_ZERO | KIMG_BS_DATA))) {
            int first = drain(p, quiet);
            if (first != CMP_SAME)
                return first;
            if (!quiet)
                printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", off);
            return CMP_DIFF;
        }
        if ((ea.flags & KIMG_BS_ZERO) && (eb.flags & KIMG_BS_ZERO)) {
            off += n;     /* both read as zeros: proven equal without reading */
            continue;
        }
        /* queue the extent in chunks */
        for (uint64_t end = off + n; off < end;) {
            uint64_t m = end - off < CHUNK ? end - off : CHUNK;
            if ((ret = submit(p, off, m, ea.flags & KIMG_BS_ZERO, eb.flags & KIMG_BS_ZERO,
                              quiet)))
                return ret;
            off += m;
        }
    }
    if ((ret = drain(p, quiet)))
        return ret;
    if (size_a != size_b) {
        if (!quiet)
            printf("Warning: Image size mismatch!\n");
        ret = check_tail_zero(size_a > size_b ? a : b, common,
                              size_a > size_b ? size_a : size_b, quiet);
        if (ret)
            return ret;
    }
    if (!quiet)
        printf("Images are identical.\n");
    return CMP_SAME;
}

int cmd_compare(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "force-share", no_argument, NULL, 'U' },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt1 = NULL, *fmt2 = NULL;
    unsigned flags = 0;
    bool strict = false, quiet = false;
    int c;

    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt1 = optarg; break;
        case 'F': fmt2 = optarg; break;
        case 'T': break;
        case 'p': break;   /* progress: the comparison is quick; accepted */
        case 'q': quiet = true; break;
        case 's': strict = true; break;
        case 'U': flags |= KIMG_OPEN_SHARE; break;
        case OPT_UNTRUSTED: flags |= KIMG_OPEN_UNTRUSTED; break;
        case 'h': print_synopsis("compare"); return 0;
        case OPT_OBJECT:
        case OPT_IMAGE_OPTS:
            cmd_usage_error("compare", "--object and --image-opts are not supported");
            return CMP_EOPEN;
        default:
            return cmd_bad_option("compare", argv, c);
        }
    }
    if (optind != argc - 2)
        return cmd_usage_error("compare", "Expecting two image file names");
    struct side a = { .name = argv[optind] }, b = { .name = argv[optind + 1] };
    int ret = CMP_EOPEN;
    a.img = cmd_open(a.name, fmt1, flags);
    if (!a.img)
        return CMP_EOPEN;
    b.img = cmd_open(b.name, fmt2, flags);
    if (!b.img)
        goto out;
    a.buf = kimg_alloc_aligned(CHUNK);
    b.buf = kimg_alloc_aligned(CHUNK);
    struct pool pool = { .a = &a, .b = &b };
    if (!a.buf || !b.buf || pool_start(&pool) < 0) {
        fprintf(stderr, "kimg: cannot start the comparison: out of memory or threads\n");
        ret = CMP_EREAD;
    } else {
        ret = compare(&a, &b, &pool, strict, quiet);
    }
    pool_stop(&pool);
out:
    free(a.buf);
    free(b.buf);
    if (b.img)
        kimg_close(b.img);
    kimg_close(a.img);
    return ret;
}
