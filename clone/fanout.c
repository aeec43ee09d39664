/*
 * fanout.c — a batch's full copies of one source disk in one pass: the
 * source's allocation is walked once, each chunk of data is read once
 * into one buffer and written to every clone's new image (zero blocks
 * left as holes, as the convert engine leaves them), so ten clones cost
 * one read of the template.  The chunk is written to the targets by up to
 * one worker per CPU, each worker owning some of the targets, while the
 * main thread reads the next chunk.  Memory is two chunks plus each open
 * target's own image state (a qcow2 target's metadata caches: about
 * 0.7 MiB for a 4 GiB disk with 64 KiB clusters, 16 MiB with 2 MiB
 * clusters), so the targets are opened in groups that fit a budget (what
 * the process has left below 52 MiB, at most 40 MiB) and a batch bigger
 * than one group reads the source once per group: memory does not grow
 * with the batch.
 *
 * Why not the convert engine (kimg_convert_run, which a single clone's
 * copy and a reflinked batch use): the engine copies N sources into ONE
 * target, its plan and ordering (one allocating main thread, links after
 * data) are per target; a fan-out is one source into N targets, each
 * with its own allocation, written in parallel.  What the two share is
 * the library's: block status to skip holes, kimg_buffer_alloc's
 * huge-page buffers, kimg_buffer_is_zero's scan, and the targets'
 * drivers (their own crash-safe write order).
 */
#include <errno.h>
#include <malloc.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kimg.h"
#include "clone.h"

#define FANOUT_CHUNK (4u << 20)
#define FANOUT_GRAIN 4096u          /* zero runs this long become holes */
#define FANOUT_MAX_RUNS (FANOUT_CHUNK / FANOUT_GRAIN / 2 + 2)
#define FANOUT_MAX_WORKERS 8
/* the open targets' image state, estimated (target_cost), per group: at
 * most this, and no more than leaves the process under FANOUT_GOAL with
 * the two chunks, whatever the batch holds already (its clones' plans and
 * XML text: some 8 KiB each), but room for one target at least */
#define FANOUT_TARGET_BUDGET (40u << 20)
#define FANOUT_GOAL (52u << 20)         /* 64 MiB less the chunks and a margin */
#define FANOUT_MIN_BUDGET (4u << 20)

struct run {
    uint32_t pos, len;              /* within the chunk */
};

/* One chunk of the source's data, read once, with its data runs. */
struct chunk {
    uint8_t *buf;
    uint64_t off, len;
    struct run *runs;
    int nruns;
};

struct fan {
    struct clone_disk_plan **ds;
    struct kimg **outs;
    int *res;
    char **errs;
    int n, nw;
    bool keep_going;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;                   /* what the workers are asked to do next */
    const struct chunk *job;        /* the chunk to write, or NULL: close */
    bool quit;
    int pending;                    /* workers still on this generation */
    int live;                       /* targets still being written */
    bool stop;                      /* a failure ends the copy (!keep_going) */
};

/* The data runs of a chunk: grains aligned to the guest offset (partial at
 * the edges), zero grains left out, neighbours merged.  Found once per
 * chunk, not once per target. */
static int find_runs(const uint8_t *buf, uint64_t off, uint64_t len, struct run *runs)
{
    int nr = 0;
    uint64_t pos = 0;
    while (pos < len) {
        uint64_t g = FANOUT_GRAIN - (off + pos) % FANOUT_GRAIN;
        if (g > len - pos)
            g = len - pos;
        if (!kimg_buffer_is_zero(buf + pos, g)) {
            if (nr && runs[nr - 1].pos + runs[nr - 1].len == pos)
                runs[nr - 1].len += (uint32_t)g;
            else
                runs[nr++] = (struct run){ (uint32_t)pos, (uint32_t)g };
        }
        pos += g;
    }
    return nr;
}

/* Target K failed with R (on this thread): its message kept, prefixed
 * with its disk, and its image closed. */
static void target_failed(struct fan *f, int k, int r)
{
    f->res[k] = clone_copy_error(f->ds[k], r);
    const char *m = kimg_last_error();
    free(f->errs[k]);
    f->errs[k] = strdup(m ? m : strerror(-r));
    kimg_clear_error();
    if (f->outs[k]) {
        kimg_close(f->outs[k]);
        f->outs[k] = NULL;
    }
}

/* Worker W owns targets W, W+nw, ...: each image is written by one thread
 * only (an open image takes one writer at a time), and different files'
 * buffered writes do not wait on each other's inode locks. */
static void work(struct fan *f, int w, const struct chunk *c)
{
    for (int k = w; k < f->n; k += f->nw) {
        if (!f->outs[k])
            continue;
        int r = 0;
        if (c) {
            for (int i = 0; i < c->nruns && r == 0; i++)
                r = kimg_write(f->outs[k], c->buf + c->runs[i].pos, c->off + c->runs[i].pos,
                               c->runs[i].len);
        } else {
            r = kimg_close(f->outs[k]);     /* flushes and syncs */
            f->outs[k] = NULL;
        }
        if (r < 0) {
            target_failed(f, k, r);
            pthread_mutex_lock(&f->mu);
            f->live--;
            if (!f->keep_going)
                f->stop = true;
            pthread_mutex_unlock(&f->mu);
        }
    }
}

struct worker_arg {
    struct fan *f;
    int w;
};

static void *worker(void *opaque)
{
    struct worker_arg *a = opaque;
    struct fan *f = a->f;
    uint64_t seen = 0;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (f->gen == seen && !f->quit)
            pthread_cond_wait(&f->go, &f->mu);
        if (f->quit)
            break;
        seen = f->gen;
        const struct chunk *c = f->job;
        pthread_mutex_unlock(&f->mu);
        work(f, a->w, c);
        pthread_mutex_lock(&f->mu);
        if (--f->pending == 0)
            pthread_cond_signal(&f->done);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static void dispatch(struct fan *f, const struct chunk *c)
{
    pthread_mutex_lock(&f->mu);
    f->job = c;
    f->pending = f->nw;
    f->gen++;
    pthread_cond_broadcast(&f->go);
    pthread_mutex_unlock(&f->mu);
}

/* Wait for the dispatched work; whether the copy goes on. */
static bool finish(struct fan *f)
{
    pthread_mutex_lock(&f->mu);
    while (f->pending)
        pthread_cond_wait(&f->done, &f->mu);
    bool go_on = !f->stop && f->live > 0;
    pthread_mutex_unlock(&f->mu);
    return go_on;
}

/* The next chunk of the source's data at or after *OFF into C (len 0 at
 * the end): block status skips zero ranges, a data range is read. */
static int next_chunk(struct kimg *src, uint64_t size, uint64_t *off, struct chunk *c)
{
    while (*off < size) {
        struct kimg_extent ext;
        uint64_t want = size - *off < FANOUT_CHUNK ? size - *off : FANOUT_CHUNK;
        int r = kimg_block_status(src, *off, want, &ext);
        if (r < 0)
            return r;
        uint64_t len = ext.length && ext.length < want ? ext.length : want;
        uint64_t at = *off;
        *off += len;
        if (ext.flags & KIMG_BS_ZERO)
            continue;
        if ((r = kimg_read(src, c->buf, at, len)) < 0)
            return r;
        c->off = at;
        c->len = len;
        c->nruns = find_runs(c->buf, at, len, c->runs);
        if (c->nruns)
            return 0;
    }
    c->len = 0;
    return 0;
}

/* One group: DS[0..N) written from one read of the source.  Progress is
 * shown as part P of NP. */
static int fanout_group(struct clone_disk_plan **ds, int n, const struct clone_opts *o,
                        bool keep_going, int *res, char **errs, int p, int np)
{
    struct kimg *src = ds[0]->img;
    struct fan f = { .ds = ds, .n = n, .res = res, .errs = errs, .keep_going = keep_going };
    struct chunk ch[2] = { 0 };
    pthread_t tids[FANOUT_MAX_WORKERS];
    struct worker_arg args[FANOUT_MAX_WORKERS];
    int ret = 0, started = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    f.nw = n < ncpu ? n : ncpu < 1 ? 1 : (int)ncpu;
    if (f.nw > FANOUT_MAX_WORKERS)
        f.nw = FANOUT_MAX_WORKERS;
    f.outs = calloc((size_t)n, sizeof(*f.outs));
    for (int i = 0; i < 2; i++) {
        ch[i].buf = kimg_buffer_alloc(FANOUT_CHUNK);
        ch[i].runs = malloc(FANOUT_MAX_RUNS * sizeof(struct run));
    }
    if (!f.outs || !ch[0].buf || !ch[1].buf || !ch[0].runs || !ch[1].runs) {
        ret = -ENOMEM;
        goto free_all;
    }
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.go, NULL);
    pthread_cond_init(&f.done, NULL);
    for (int k = 0; k < n; k++) {
        res[k] = 0;
        errs[k] = NULL;
        int r = clone_create_target(ds[k], o, &f.outs[k]);
        if (r < 0) {
            target_failed(&f, k, r);
            if (!ret)
                ret = r;
            if (!keep_going)
                goto out;
            continue;
        }
        f.live++;
    }
    for (; started < f.nw; started++) {
        args[started] = (struct worker_arg){ &f, started };
        if (pthread_create(&tids[started], NULL, worker, &args[started]) != 0)
            break;
    }
    if (started == 0) {
        ret = -EAGAIN;
        goto out;
    }
    f.nw = started;     /* targets are dealt to the workers that started */
    bool show = !o->quiet && isatty(STDERR_FILENO);
    uint64_t size = ds[0]->size, off = 0, last = 0;
    int cur = 0, r = f.live ? next_chunk(src, size, &off, &ch[0]) : 0;
    /* write chunk CUR on the workers while the next one is read here */
    while (r == 0 && f.live > 0 && ch[cur].len) {
        dispatch(&f, &ch[cur]);
        r = next_chunk(src, size, &off, &ch[cur ^ 1]);
        bool go_on = finish(&f);
        if (show && (off - last) * 100 >= size * (uint64_t)np) {
            clone_progress_line(ds[0], (uint64_t)p * size + off, (uint64_t)np * size);
            last = off;
        }
        if (!go_on)
            break;
        cur ^= 1;
    }
    if (r < 0) {
        /* the source: every target fails with its error */
        char *m = kimg_last_error() ? strdup(kimg_last_error()) : NULL;
        for (int k = 0; k < n; k++) {
            if (!f.outs[k])
                continue;
            kimg_clear_error();
            if (m)
                kimg_error("%s", m);
            target_failed(&f, k, r);
        }
        free(m);
        ret = r;
    } else if (!f.stop) {
        if (show && p == np - 1) {
            clone_progress_line(ds[0], 1, 1);
            fputc('\n', stderr);
        }
        dispatch(&f, NULL);     /* close (flush, sync) every target */
        finish(&f);
    }
out:
    if (started) {
        pthread_mutex_lock(&f.mu);
        f.quit = true;
        pthread_cond_broadcast(&f.go);
        pthread_mutex_unlock(&f.mu);
        for (int i = 0; i < started; i++)
            pthread_join(tids[i], NULL);
    }
    for (int k = 0; k < n; k++) {
        if (f.outs[k])
            kimg_close(f.outs[k]);
        if (res[k] < 0 && !ret)
            ret = res[k];
    }
    /* the first failure's message, here, for a caller that ends the run */
    kimg_clear_error();
    for (int k = 0; k < n; k++)
        if (res[k] < 0) {
            kimg_error("%s", errs[k] ? errs[k] : strerror(-res[k]));
            break;
        }
    pthread_cond_destroy(&f.go);
    pthread_cond_destroy(&f.done);
    pthread_mutex_destroy(&f.mu);
free_all:
    free(f.outs);
    for (int i = 0; i < 2; i++) {
        kimg_buffer_free(ch[i].buf, FANOUT_CHUNK);
        free(ch[i].runs);
    }
    return ret;
}

/* The memory an open target of D's source is expected to hold while it
 * is written in guest order (generously): with an allocation unit C, its
 * mapping and refcount metadata (10 bytes per unit of the disk, as a
 * qcow2 L2 entry and refcount cover it, up to what a driver caches:
 * 9 MiB) or, where C is big, the few C-sized tables every cache keeps
 * (8 C); 256 KiB for the rest of the image. */
static uint64_t target_cost(const struct clone_disk_plan *d)
{
    uint64_t c = d->img ? kimg_cluster_size(d->img) : 0, meta = 0;
    if (c) {
        meta = d->size / c * 10;
        if (meta > (9u << 20))
            meta = 9u << 20;
        if (meta < 8 * c)
            meta = 8 * c;
    }
    return (256u << 10) + meta;
}

/* The process's resident memory now, or 0 when not known. */
static uint64_t resident_bytes(void)
{
    uint64_t pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return 0;
    if (fscanf(f, "%" SCNu64 " %" SCNu64, &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

int clone_fanout_copy(struct clone_disk_plan **ds, int n, const struct clone_opts *o,
                      bool keep_going, int *res, char **errs)
{
    uint64_t budget = FANOUT_TARGET_BUDGET, rss = resident_bytes();
    uint64_t room = rss < FANOUT_GOAL ? FANOUT_GOAL - rss : 0;
    if (rss && room < budget)
        budget = room > FANOUT_MIN_BUDGET ? room : FANOUT_MIN_BUDGET;
    uint64_t g = budget / target_cost(ds[0]);
    int per = g < 1 ? 1 : g > (uint64_t)n ? n : (int)g;
    int np = (n + per - 1) / per, ret = 0;
    for (int k = 0; k < n; k++) {
        res[k] = 0;
        errs[k] = NULL;
    }
    for (int p = 0; p < np; p++) {
        int at = p * per, m = n - at < per ? n - at : per;
        int r = fanout_group(ds + at, m, o, keep_going, res + at, errs + at, p, np);
        if (r < 0 && !ret)
            ret = r;
        if (r < 0 && !keep_going)
            break;
        /* the group's closed targets gave back their caches: hand that
         * memory to the system, or the next group's would come on top
         * (glibc keeps big freed blocks in its heap once it has seen one
         * freed, and the heap does not shrink past the ones still used) */
        malloc_trim(0);
    }
    /* the first failure's message, here, for a caller that ends the run */
    kimg_clear_error();
    for (int k = 0; k < n; k++)
        if (res[k] < 0) {
            kimg_error("%s", errs[k] ? errs[k] : strerror(-res[k]));
            break;
        }
    return ret;
}
