/*
 * convert.c — the copy engine.  It walks each source's block status
 * through its backing chain: ranges that read as zeros are never read and,
 * on a target that already reads as zeros, never written; data ranges are
 * read in large chunks, and inside them zero runs of at least the sparse
 * size (rounded up to the target's cluster size) become holes.
 *
 * Pipeline: the main thread walks block status and cuts the work into
 * jobs of up to 2 MiB; worker threads read them (and scan for zeros) in
 * parallel, up to `in_flight` at once; the main thread writes finished jobs
 * strictly in order, so reads, zero scans and writes overlap while the
 * target's layout stays deterministic.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "convert.h"
#include "driver.h"

#define CHUNK (2u << 20)

bool kimg_buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    /* head up to word alignment, then words, then the tail */
    while (len && ((uintptr_t)p & (sizeof(uint64_t) - 1))) {
        if (*p++)
            return false;
        len--;
    }
    const uint64_t *w = (const uint64_t *)(const void *)p;
    while (len >= 4 * sizeof(uint64_t)) {
        if (w[0] | w[1] | w[2] | w[3])
            return false;
        w += 4;
        len -= 4 * sizeof(uint64_t);
    }
    p = (const unsigned char *)w;
    while (len--)
        if (*p++)
            return false;
    return true;
}

enum job_kind { JOB_DATA, JOB_ZERO, JOB_SKIP, JOB_OFFLOAD };
#define CLEN_ZERO INT64_MIN
enum job_state { JOB_FREE, JOB_QUEUED, JOB_BUSY, JOB_DONE };

struct job {
    enum job_state state;
    enum job_kind kind;
    uint64_t seq;
    struct kimg *src;
    uint64_t soff, doff, len;
    int src_fd;                 /* JOB_OFFLOAD: soff is a host offset in it */
    uint8_t *buf;               /* CHUNK bytes, for data jobs */
    /* -c: each target cluster of the job compressed by the worker */
    uint8_t *cbuf;              /* the compressed clusters, back to back */
    int64_t *clen;              /* per cluster: length, -ENOSPC/-ENOTSUP, or
                                   CLEN_ZERO for an all-zero cluster */
    uint32_t npieces;
    int ret;
    char err[256];              /* the worker's error message */
};

struct engine {
    struct kimg_convert *c;
    uint8_t *zbuf;              /* zeros, for -S 0 */
    uint64_t grain;             /* zero-detection granularity, 0 = off */
    uint64_t cluster;           /* target cluster size (compression unit) */
    bool split_compress;        /* workers compress (the target supports it) */
    int dst_fd;                 /* -C: the raw target's descriptor */
    bool raw_target;            /* workers write their own jobs: a raw file
                                   has no layout to keep in order, and it is
                                   already full size, so writes cannot race
                                   on its length */
    uint64_t done, total, last_report;

    pthread_mutex_t lock;
    pthread_cond_t work;        /* a job was queued, or stop */
    pthread_cond_t finished;    /* a job is done */
    struct job *jobs;
    int nb_jobs;
    pthread_t *threads;
    int nb_threads;
    bool stop;
    uint64_t next_seq;          /* sequence number of the next job made */
    uint64_t write_seq;         /* sequence number of the next job written */
};

static void report(struct engine *e, uint64_t n)
{
    e->done += n;
    if (!e->c->progress)
        return;
    if (e->done == e->total || (e->done - e->last_report) * 100 >= e->total) {
        e->c->progress(e->c->opaque, e->done, e->total);
        e->last_report = e->done;
    }
}

static int write_zero_range(struct engine *e, uint64_t off, uint64_t len)
{
    if (!e->c->sparse_size) {
        /* -S 0: fully allocated output, zeros written as data */
        while (len) {
            uint64_t n = len < CHUNK ? len : CHUNK;
            int ret = kimg_write(e->c->dst, e->zbuf, off, n);
            if (ret < 0)
                return ret;
            off += n;
            len -= n;
        }
        return 0;
    }
    if (e->c->target_is_zero)
        return 0;
    return kimg_write_zeroes(e->c->dst, off, len, KIMG_ZERO_MAY_UNMAP);
}

/* Write BUF (LEN bytes, target offset OFF), leaving aligned zero runs of
 * at least e->grain bytes as holes. */
static int write_sparse(struct engine *e, const uint8_t *buf, uint64_t off, uint64_t len)
{
    if (e->c->compress) {
        /* whole clusters, each compressed (or stored plain if it does not
         * shrink) by the driver; all-zero clusters stay holes */
        for (uint64_t pos = 0; pos < len;) {
            uint64_t n = e->cluster - ((off + pos) % e->cluster);
            if (n > len - pos)
                n = len - pos;
            bool whole = n == e->cluster || off + pos + n == kimg_size(e->c->dst);
            int ret = kimg_buffer_is_zero(buf + pos, n)
                    ? write_zero_range(e, off + pos, n)
                    : whole ? kimg_write_compressed(e->c->dst, buf + pos, off + pos, n)
                            /* a cluster split between two sources */
                            : kimg_write(e->c->dst, buf + pos, off + pos, n);
            if (ret < 0)
                return ret;
            pos += n;
        }
        return 0;
    }
    if (!e->grain)
        return kimg_write(e->c->dst, buf, off, len);
    uint64_t pos = 0;
    while (pos < len) {
        /* the next grain-aligned block (partial at the edges) */
        uint64_t n = e->grain - ((off + pos) % e->grain);
        if (n > len - pos)
            n = len - pos;
        bool zero = kimg_buffer_is_zero(buf + pos, n);
        /* extend the run while blocks keep the same kind */
        uint64_t run = n;
        while (pos + run < len) {
            uint64_t m = len - pos - run < e->grain ? len - pos - run : e->grain;
            if (kimg_buffer_is_zero(buf + pos + run, m) != zero)
                break;
            run += m;
        }
        int ret = zero ? write_zero_range(e, off + pos, run)
                       : kimg_write(e->c->dst, buf + pos, off + pos, run);
        if (ret < 0)
            return ret;
        pos += run;
    }
    return 0;
}

/* ---- workers ------------------------------------------------------------- */

/* The job's target clusters: piece I starts at *pos (offset in the job). */
static uint64_t piece_len(const struct engine *e, const struct job *j, uint64_t pos)
{
    uint64_t n = e->cluster - ((j->doff + pos) % e->cluster);
    return n < j->len - pos ? n : j->len - pos;
}

/* -C: copy a job inside the kernel, file to file (on a worker thread). */
static int offload_copy(struct engine *e, struct job *j)
{
    loff_t in = (loff_t)j->soff, out = (loff_t)j->doff;
    uint64_t left = j->len;
    while (left) {
        ssize_t n = copy_file_range(j->src_fd, &in, e->dst_fd, &out, (size_t)left, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            snprintf(j->err, sizeof(j->err), "copy offloading failed at offset %llu: %s",
                     (unsigned long long)j->doff, n < 0 ? strerror(err) : "short copy");
            return -err;
        }
        left -= (uint64_t)n;
    }
    return 0;
}

/* -c: compress every cluster of a job (on a worker thread). */
static void compress_job(struct engine *e, struct job *j)
{
    uint64_t pos = 0, cpos = 0;
    uint32_t i = 0;
    while (pos < j->len && i < j->npieces) {
        uint64_t n = piece_len(e, j, pos);
        if (kimg_buffer_is_zero(j->buf + pos, n)) {
            j->clen[i] = CLEN_ZERO;
        } else {
            int64_t c = kimg_compress_cluster(e->c->dst, j->doff + pos, j->buf + pos, n,
                                              j->cbuf + cpos, CHUNK - cpos);
            j->clen[i] = c;
            if (c > 0)
                cpos += (uint64_t)c;
        }
        pos += n;
        i++;
    }
}

/* -c: write a job's clusters compressed by the workers, in order. */
static int write_compressed_job(struct engine *e, struct job *j)
{
    uint64_t pos = 0, cpos = 0;
    for (uint32_t i = 0; pos < j->len; i++) {
        uint64_t n = piece_len(e, j, pos);
        int64_t c = j->clen[i];
        int ret;
        if (c == CLEN_ZERO) {
            ret = write_zero_range(e, j->doff + pos, n);
        } else if (c >= 0) {
            ret = kimg_write_compressed_data(e->c->dst, j->doff + pos, n, j->cbuf + cpos,
                                             (size_t)c);
            cpos += (uint64_t)c;
        } else if (c == -ENOSPC || c == -ENOTSUP) {
            ret = kimg_write(e->c->dst, j->buf + pos, j->doff + pos, n);
        } else {
            ret = kimg_fail((int)c, "compression failed");
        }
        if (ret < 0)
            return ret;
        pos += n;
    }
    return 0;
}

static void *worker(void *opaque)
{
    struct engine *e = opaque;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        struct job *j = NULL;
        /* the oldest queued job first, so the writer is never starved */
        for (int i = 0; i < e->nb_jobs; i++)
            if (e->jobs[i].state == JOB_QUEUED && (!j || e->jobs[i].seq < j->seq))
                j = &e->jobs[i];
        if (!j) {
            if (e->stop)
                break;
            pthread_cond_wait(&e->work, &e->lock);
            continue;
        }
        j->state = JOB_BUSY;
        pthread_mutex_unlock(&e->lock);
        kimg_clear_error();
        if (j->kind == JOB_OFFLOAD) {
            j->ret = offload_copy(e, j);
            pthread_mutex_lock(&e->lock);
            j->state = JOB_DONE;
            pthread_cond_broadcast(&e->finished);
            continue;
        }
        j->ret = kimg_read(j->src, j->buf, j->soff, j->len);
        if (j->ret < 0)
            snprintf(j->err, sizeof(j->err), "error while reading at offset %llu of '%s': %s",
                     (unsigned long long)j->soff, kimg_filename(j->src),
                     kimg_last_error() ? kimg_last_error() : "I/O error");
        else if (e->split_compress)
            compress_job(e, j);
        else if (e->raw_target) {
            j->ret = write_sparse(e, j->buf, j->doff, j->len);
            if (j->ret < 0)
                snprintf(j->err, sizeof(j->err), "error while writing at offset %llu: %s",
                         (unsigned long long)j->doff,
                         kimg_last_error() ? kimg_last_error() : "I/O error");
        }
        pthread_mutex_lock(&e->lock);
        j->state = JOB_DONE;
        pthread_cond_broadcast(&e->finished);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

/* Write the job with sequence number write_seq once it is done; returns
 * 0 when nothing was ready to write and WAIT is false. */
static int write_next(struct engine *e, bool wait, bool *wrote)
{
    struct job *j = NULL;
    *wrote = false;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        j = NULL;
        for (int i = 0; i < e->nb_jobs; i++)
            if (e->jobs[i].state != JOB_FREE && e->jobs[i].seq == e->write_seq)
                j = &e->jobs[i];
        if (!j || j->state == JOB_DONE || !wait)
            break;
        pthread_cond_wait(&e->finished, &e->lock);
    }
    pthread_mutex_unlock(&e->lock);
    if (!j || j->state != JOB_DONE)
        return 0;

    int ret = j->ret;
    if (ret < 0) {
        kimg_error("%s", j->err);
    } else if (j->kind == JOB_ZERO) {
        ret = write_zero_range(e, j->doff, j->len);
    } else if (j->kind == JOB_OFFLOAD) {
        ret = 0;          /* the worker did the copy */
    } else if (j->kind == JOB_DATA && e->raw_target) {
        ret = 0;          /* the worker wrote it */
    } else if (j->kind == JOB_DATA) {
        ret = e->split_compress ? write_compressed_job(e, j)
                                : write_sparse(e, j->buf, j->doff, j->len);
        if (ret < 0)
            kimg_error("error while writing at offset %llu", (unsigned long long)j->doff);
    }
    if (ret == 0)
        report(e, j->len);
    pthread_mutex_lock(&e->lock);
    j->state = JOB_FREE;
    e->write_seq++;
    pthread_mutex_unlock(&e->lock);
    *wrote = true;
    return ret;
}

/* Queue a job (waiting, and writing finished ones, until a slot is free). */
static int add_job_fd(struct engine *e, enum job_kind kind, struct kimg *src, int src_fd,
                      uint64_t soff, uint64_t doff, uint64_t len)
{
    for (;;) {
        struct job *slot = NULL;
        pthread_mutex_lock(&e->lock);
        for (int i = 0; i < e->nb_jobs && !slot; i++)
            if (e->jobs[i].state == JOB_FREE)
                slot = &e->jobs[i];
        if (slot) {
            slot->kind = kind;
            slot->src = src;
            slot->src_fd = src_fd;
            slot->soff = soff;
            slot->doff = doff;
            slot->len = len;
            slot->ret = 0;
            slot->seq = e->next_seq++;
            /* zero and skip jobs need no reading: done at once */
            bool work = kind == JOB_DATA || kind == JOB_OFFLOAD;
            slot->state = work ? JOB_QUEUED : JOB_DONE;
            if (work)
                pthread_cond_signal(&e->work);
            pthread_mutex_unlock(&e->lock);
            break;
        }
        pthread_mutex_unlock(&e->lock);
        bool wrote;
        int ret = write_next(e, true, &wrote);
        if (ret < 0)
            return ret;
    }
    /* write whatever is already finished, without waiting */
    for (;;) {
        bool wrote;
        int ret = write_next(e, false, &wrote);
        if (ret < 0)
            return ret;
        if (!wrote)
            return 0;
    }
}

static int add_job(struct engine *e, enum job_kind kind, struct kimg *src,
                   uint64_t soff, uint64_t doff, uint64_t len)
{
    return add_job_fd(e, kind, src, -1, soff, doff, len);
}

/* -C: queue the data extent EXT (guest [off, off+len) of SRC) as in-kernel
 * copies from its host file; fails when the data is not plainly stored. */
static int add_offload_jobs(struct engine *e, struct kimg *src, uint64_t base,
                            uint64_t off, const struct kimg_extent *ext)
{
    if (!(ext->flags & KIMG_BS_OFFSET_VALID) || (ext->flags & KIMG_BS_COMPRESSED) ||
        !ext->host_file || ext->host_file->fd < 0)
        return kimg_fail(-ENOTSUP, "copy offloading (-C) is not possible: the data at "
                         "offset %llu of '%s' is not stored plainly in a file",
                         (unsigned long long)off, kimg_filename(src));
    for (uint64_t pos = 0; pos < ext->length;) {
        uint64_t n = CHUNK - ((base + off + pos) % CHUNK);
        if (n > ext->length - pos)
            n = ext->length - pos;
        int ret = add_job_fd(e, JOB_OFFLOAD, src, ext->host_file->fd, ext->offset + pos,
                             base + off + pos, n);
        if (ret < 0)
            return ret;
        pos += n;
    }
    return 0;
}

/* Queue [from, to) of SRC as data jobs of up to CHUNK bytes, cut at
 * CHUNK-aligned target offsets so they line up with the target's clusters. */
static int add_data_jobs(struct engine *e, struct kimg *src, uint64_t base,
                         uint64_t from, uint64_t to)
{
    while (from < to) {
        uint64_t n = CHUNK - ((base + from) % CHUNK);
        if (n > to - from)
            n = to - from;
        int ret = add_job(e, JOB_DATA, src, from, base + from, n);
        if (ret < 0)
            return ret;
        from += n;
    }
    return 0;
}

static int copy_source(struct engine *e, struct kimg *src, uint64_t base)
{
    uint64_t size = kimg_size(src);
    /* With -c, data is read in whole target clusters (a cluster that is
     * half data, half zeros is still one compressed cluster): `covered`
     * is where the queued jobs end. */
    uint64_t covered = 0;
    for (uint64_t off = 0; off < size;) {
        struct kimg_extent ext;
        int ret;
        if (e->c->target_has_backing) {
            /* -B: the target's backing file has the content of the source's
             * backing chain, so only what the top layer holds is copied */
            ret = kimg_layer_block_status(src, off, size - off, &ext);
            if (ret < 0)
                return ret;
            if (!(ext.flags & KIMG_BS_ALLOCATED)) {
                uint64_t from = off > covered ? off : covered;
                if (from < off + ext.length) {
                    ret = add_job(e, JOB_SKIP, src, from, base + from, off + ext.length - from);
                    if (ret < 0)
                        return ret;
                    covered = off + ext.length;
                }
                off += ext.length;
                continue;
            }
        }
        ret = kimg_block_status(src, off, size - off, &ext);
        if (ret < 0)
            return ret;
        uint64_t end = off + ext.length;
        if (ext.flags & KIMG_BS_ZERO) {
            uint64_t from = off > covered ? off : covered, to = end;
            if (e->c->compress && end < size) {
                /* stop at a cluster boundary: data further on may still
                 * claim the rest of this cluster */
                uint64_t d = (base + end) - (base + end) % e->cluster;
                to = d > base + from ? d - base : from;
            }
            if (from < to) {
                ret = add_job(e, JOB_ZERO, src, from, base + from, to - from);
                if (ret < 0)
                    return ret;
                covered = to;
            }
        } else if (e->c->copy_offload) {
            ret = add_offload_jobs(e, src, base, off, &ext);
            if (ret < 0)
                return ret;
            covered = end;
        } else {
            uint64_t from = off, to = end;
            if (e->c->compress) {
                /* widen to whole target clusters within this source */
                uint64_t d0 = (base + off) - (base + off) % e->cluster;
                uint64_t d1 = (base + end + e->cluster - 1) / e->cluster * e->cluster;
                from = d0 > base ? d0 - base : 0;
                to = d1 - base < size ? d1 - base : size;
                if (from < covered)
                    from = covered;
            }
            ret = add_data_jobs(e, src, base, from, to);
            if (ret < 0)
                return ret;
            covered = to;
        }
        off = end;
    }
    return 0;
}

static int engine_start(struct engine *e, int in_flight)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    e->nb_jobs = in_flight;
    /* at least 4 threads even on 2 cores: with O_DIRECT a worker spends
     * its time waiting for the device, not computing */
    long want = ncpu < 4 ? 4 : ncpu;
    e->nb_threads = want > in_flight ? in_flight : (int)want;
    e->jobs = calloc((size_t)e->nb_jobs, sizeof(*e->jobs));
    e->threads = calloc((size_t)e->nb_threads, sizeof(*e->threads));
    if (!e->jobs || !e->threads)
        return -ENOMEM;
    for (int i = 0; i < e->nb_jobs; i++) {
        struct job *j = &e->jobs[i];
        j->buf = kimg_alloc_aligned(CHUNK);
        if (!j->buf)
            return -ENOMEM;
        if (e->split_compress) {
            j->npieces = (uint32_t)(CHUNK / e->cluster + 2);
            j->cbuf = malloc(CHUNK);
            j->clen = calloc(j->npieces, sizeof(*j->clen));
            if (!j->cbuf || !j->clen)
                return -ENOMEM;
        }
    }
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->work, NULL);
    pthread_cond_init(&e->finished, NULL);
    for (int i = 0; i < e->nb_threads; i++) {
        if (pthread_create(&e->threads[i], NULL, worker, e)) {
            e->nb_threads = i;
            return -EAGAIN;
        }
    }
    return 0;
}

/* Stop the workers (after the queue drains or is abandoned) and free. */
static void engine_stop(struct engine *e)
{
    if (e->threads) {
        pthread_mutex_lock(&e->lock);
        e->stop = true;
        /* abandoned jobs are dropped so the workers can exit */
        for (int i = 0; i < e->nb_jobs; i++)
            if (e->jobs[i].state == JOB_QUEUED)
                e->jobs[i].state = JOB_FREE;
        pthread_cond_broadcast(&e->work);
        pthread_mutex_unlock(&e->lock);
        for (int i = 0; i < e->nb_threads; i++)
            pthread_join(e->threads[i], NULL);
        pthread_mutex_destroy(&e->lock);
        pthread_cond_destroy(&e->work);
        pthread_cond_destroy(&e->finished);
    }
    for (int i = 0; e->jobs && i < e->nb_jobs; i++) {
        free(e->jobs[i].buf);
        free(e->jobs[i].cbuf);
        free(e->jobs[i].clen);
    }
    free(e->jobs);
    free(e->threads);
}

int kimg_convert_run(struct kimg_convert *c)
{
    struct engine e = { .c = c };
    struct kimg_info info;
    int ret;

    for (int i = 0; i < c->nb_src; i++)
        e.total += kimg_size(c->src[i]);
    if (kimg_get_info(c->dst, &info) < 0)
        return -EIO;
    e.cluster = info.cluster_size ? info.cluster_size : 65536;
    kimg_info_free(&info);
    if (c->sparse_size) {
        /* holes smaller than a target cluster save nothing in a cluster
         * format and cost a read-modify-write: round up */
        e.grain = c->sparse_size;
        if (e.cluster > e.grain && strcmp(kimg_format_name(c->dst), "raw"))
            e.grain = e.cluster;
    } else {
        e.zbuf = kimg_alloc_aligned(CHUNK);
        if (!e.zbuf)
            return kimg_fail(-ENOMEM, "out of memory");
        memset(e.zbuf, 0, CHUNK);
    }
    /* the target compresses on our workers if its driver splits the work */
    if (c->compress) {
        uint8_t probe_buf[1];
        e.split_compress = kimg_size(c->dst) > 0 &&
            kimg_compress_cluster(c->dst, 0, probe_buf, 0, NULL, 0) != -ENOTSUP;
    }
    if (c->copy_offload) {
        if (strcmp(kimg_format_name(c->dst), "raw") || !c->dst->file || c->dst->file->fd < 0 ||
            c->compress) {
            free(e.zbuf);
            return kimg_fail(-ENOTSUP, "copy offloading (-C) needs a raw target file and no -c");
        }
        e.dst_fd = c->dst->file->fd;
    }
    e.raw_target = !c->compress && !c->copy_offload && !strcmp(kimg_format_name(c->dst), "raw");
    int in_flight = c->in_flight > 0 ? c->in_flight : 8;
    ret = engine_start(&e, in_flight);
    if (ret < 0) {
        engine_stop(&e);
        free(e.zbuf);
        return kimg_fail(ret, "cannot start the copy: %s", strerror(-ret));
    }
    if (c->progress)
        c->progress(c->opaque, 0, e.total);
    uint64_t base = 0;
    for (int i = 0; i < c->nb_src && ret == 0; i++) {
        ret = copy_source(&e, c->src[i], base);
        base += kimg_size(c->src[i]);
    }
    /* drain: write every job still in flight, in order */
    while (ret == 0 && e.write_seq < e.next_seq) {
        bool wrote;
        ret = write_next(&e, true, &wrote);
    }
    engine_stop(&e);
    free(e.zbuf);
    if (ret == 0)
        ret = kimg_flush(c->dst);
    return ret;
}
