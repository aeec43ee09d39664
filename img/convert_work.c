/*
 * convert_work.c — the copy engine's workers (convert.c has the plan and
 * the main thread): a job's reads (mapped or read, from the sources or
 * their plainly stored host data), zero scans, compression, and the
 * writes a worker makes itself (a raw target's runs, taking turns on a
 * buffered file; a qcow2 target's allocated pieces; reflinks; libaio for
 * O_DIRECT), plus progress.  The rules are in convert.c's top comment.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "aio.h"
#include "kimg/convert.h"
#include "convert_steps.h"
#include "crash.h"
#include "kimg/driver.h"
#include "tunables.h"
#include "pool.h"
#include "srcmap.h"
#include "internal.h"

#include "convert_engine.h"

void convert_report(struct engine *e, uint64_t n)
{
    e->done += n;
    if (!e->c->progress)
        return;
    if (e->done == e->total || (e->done - e->last_report) * 100 >= e->total) {
        e->c->progress(e->c->opaque, e->done, e->total);
        e->last_report = e->done;
    }
}

int convert_write_zero_range(struct engine *e, uint64_t off, uint64_t len)
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
    return kimg_write_zeroes(e->c->dst, off, len, KIMG_ZERO_MAY_UNMAP | KIMG_ZERO_WIDEN);
}

/* Cut the job's data into runs of zero and non-zero grain-aligned blocks
 * (partial at the edges); one data run when zero detection is off. */
static void scan_runs(struct engine *e, struct job *j)
{
    const uint8_t *buf = j->data;
    uint64_t off = j->doff, len = j->len;
    j->nruns = 0;
    if (!e->grain) {
        j->runs[j->nruns++] = (struct run){ 0, (uint32_t)len, false };
        return;
    }
    uint64_t pos = 0;
    while (pos < len) {
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
        j->runs[j->nruns++] = (struct run){ (uint32_t)pos, (uint32_t)run, zero };
        pos += run;
    }
}

/* Write REQS (N of them, any number) with WRITE direction through the
 * worker's aio context in batches. */
static int aio_all(struct kimg_aio *aio, struct kimg_aio_req *reqs, int n, bool write)
{
    for (int i = 0; i < n; i += KIMG_AIO_MAX) {
        int ret = kimg_aio_run(aio, reqs + i, n - i < KIMG_AIO_MAX ? n - i : KIMG_AIO_MAX, write);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Queue [buf, buf+len) to FILE at OFF into REQS (cut to AIO_PIECE when
 * the file is O_DIRECT); flushes REQS when full. */
static int aio_add(struct kimg_aio *aio, struct kimg_aio_req *reqs, int *n,
                   struct kimg_file *file, uint8_t *buf, uint64_t len, uint64_t off, bool write)
{
    while (len) {
        uint64_t m = file->direct && len > AIO_PIECE ? AIO_PIECE : len;
        if (*n == KIMG_AIO_MAX) {
            int ret = kimg_aio_run(aio, reqs, *n, write);
            *n = 0;
            if (ret < 0)
                return ret;
        }
        reqs[(*n)++] = (struct kimg_aio_req){ file, buf, (size_t)m, off };
        buf += m;
        off += m;
        len -= m;
    }
    return 0;
}

/* ---- reflinks ----------------------------------------------------------- */

/* Clone LEN bytes at SOFF of the plain source file SRC (NULL: the data is
 * not stored plainly) to DOFF of the target's file DST (see the top).
 * True if done; false if the caller must copy: the range is not whole
 * blocks, or the file system refused (cloning is then off for good). */
static bool reflink_range(struct engine *e, struct kimg_file *src, uint64_t soff,
                          struct kimg_file *dst, uint64_t doff, uint64_t len)
{
    if (!__atomic_load_n(&e->reflink, __ATOMIC_RELAXED) || !src || !len ||
        dst != e->c->dst->file || ((soff | doff | len) % e->reflink_align))
        return false;
    if (kimg_file_clone_range(dst, doff, src, soff, len) == 0)
        return true;
    __atomic_store_n(&e->reflink, false, __ATOMIC_RELAXED);
    return false;
}

/* A worker's turn at the target's writes (see the top): taken around the
 * whole batch a job writes, so one job's data goes in as one run. */
static void write_turn(struct engine *e, bool take)
{
    if (!e->one_writer)
        return;
    if (take)
        pthread_mutex_lock(&e->wturn);
    else
        pthread_mutex_unlock(&e->wturn);
}

/* Raw target, on a worker: the job's runs, data in one batch. */
static int write_runs_raw(struct engine *e, struct job *j, struct kimg_aio *aio)
{
    struct kimg_aio_req reqs[KIMG_AIO_MAX];
    struct kimg_file *f = e->c->dst->file;
    int n = 0, ret = 0;
    write_turn(e, true);
    for (uint32_t i = 0; i < j->nruns && ret == 0; i++) {
        const struct run *r = &j->runs[i];
        if (r->zero)
            ret = convert_write_zero_range(e, j->doff + r->pos, r->len);
        else if (j->hfile && reflink_range(e, j->hfile, j->hoff + r->pos, f, j->doff + r->pos,
                                           r->len))
            continue;
        else if (f)
            ret = aio_add(aio, reqs, &n, f, j->data + r->pos, r->len, j->doff + r->pos, true);
        else
            ret = kimg_write(e->c->dst, j->data + r->pos, j->doff + r->pos, r->len);
    }
    if (ret == 0 && n)
        ret = aio_all(aio, reqs, n, true);
    write_turn(e, false);
    return ret;
}

/* Fetch a data job's bytes: mapped, read with libaio, or read through the
 * driver.  A host file now too short for the range fails (srcmap.h). */
static int fetch_data(struct engine *e, struct job *j, struct kimg_aio *aio)
{
    j->data = j->buf;
    /* --salvage reads: a mapped page that fails to read would only be a
     * SIGBUS taken for a changed size (srcmap.h), never a read error */
    if (j->hfile && !j->hfile->direct && !e->c->salvage) {
        const uint8_t *p;
        int ret = kimg_srcwins_get(e->wins, j->hfile, j->hoff, j->len, &j->map, &p);
        if (ret == 0) {
            j->data = (uint8_t *)p;
            return 0;
        }
        j->map = NULL;
        if (ret == -EIO) {
            snprintf(j->err, sizeof(j->err), "%s", kimg_last_error());
            return ret;
        }
    }
    if (j->hfile && j->hfile->direct) {
        struct kimg_aio_req reqs[KIMG_AIO_MAX];
        int n = 0;
        int ret = aio_add(aio, reqs, &n, j->hfile, j->buf, j->len, j->hoff, false);
        if (ret == 0)
            ret = aio_all(aio, reqs, n, false);
        return ret;
    }
    return kimg_read(j->src, j->buf, j->soff, j->len);
}

/* ---- workers ------------------------------------------------------------- */

/* The job's target clusters: piece I starts at *pos (offset in the job). */
uint64_t convert_piece_len(const struct engine *e, const struct job *j, uint64_t pos)
{
    uint64_t n = e->cluster - ((j->doff + pos) % e->cluster);
    return n < j->len - pos ? n : j->len - pos;
}

/* -C: copy a job inside the kernel, file to file (on a worker thread). */
static int offload_copy(struct engine *e, struct job *j)
{
    int ret = kimg_file_copy_range(e->c->dst->file, j->doff, j->src_file, j->soff, j->len);
    if (ret < 0)
        snprintf(j->err, sizeof(j->err), "copy offloading failed at offset %llu: %s",
                 (unsigned long long)j->doff, ret == -ENODATA ? "short copy" : strerror(-ret));
    return ret == -ENODATA ? -EIO : ret;
}

/* -c, shared with convert from a pipe (convert_pipe_compress.c): the
 * clusters of [OFF, OFF+LEN) of the target, cut at multiples of CLUSTER,
 * from DATA.  Zero clusters (unless -S 0) get CLEN_ZERO, the others are
 * compressed back to back into CBUF (CAP bytes): CLEN[i] their length or
 * -errno (-ENOSPC: it would not shrink; -ENOTSUP: not this piece), at
 * most NCLEN of them.  Thread-safe for one target (the workers'). */
void convert_compress_clusters(const struct kimg_convert *c, uint64_t cluster, uint64_t off,
                               const uint8_t *data, uint64_t len, uint8_t *cbuf, size_t cap,
                               int64_t *clen, uint32_t nclen)
{
    uint64_t pos = 0, cpos = 0;
    for (uint32_t i = 0; pos < len && i < nclen; i++) {
        uint64_t n = cluster - ((off + pos) % cluster);
        if (n > len - pos)
            n = len - pos;
        /* -S 0: zero clusters too are written compressed */
        if (c->sparse_size && kimg_buffer_is_zero(data + pos, n)) {
            clen[i] = CLEN_ZERO;
        } else {
            int64_t r = kimg_compress_cluster(c->dst, off + pos, data + pos, n, cbuf + cpos,
                                              cap - cpos);
            clen[i] = r;
            if (r > 0)
                cpos += (uint64_t)r;
        }
        pos += n;
    }
}

/* -c: store what convert_compress_clusters made, in order (one thread):
 * zero clusters as zeros (nothing on a target that reads as zeros), the
 * compressed ones as they are, one that would not shrink or cannot be
 * split plainly.  0 or -errno. */
int convert_store_clusters(const struct kimg_convert *c, uint64_t cluster, uint64_t off,
                           const uint8_t *data, uint64_t len, const uint8_t *cbuf,
                           const int64_t *clen)
{
    uint64_t pos = 0, cpos = 0;
    for (uint32_t i = 0; pos < len; i++) {
        uint64_t n = cluster - ((off + pos) % cluster);
        if (n > len - pos)
            n = len - pos;
        int64_t r = clen[i];
        int ret;
        if (r == CLEN_ZERO) {
            ret = c->target_is_zero ? 0
                  : kimg_write_zeroes(c->dst, off + pos, n, KIMG_ZERO_MAY_UNMAP | KIMG_ZERO_WIDEN);
        } else if (r >= 0) {
            ret = kimg_write_compressed_data(c->dst, off + pos, n, cbuf + cpos, (size_t)r);
            cpos += (uint64_t)r;
        } else if (r == -ENOSPC || r == -ENOTSUP) {
            ret = kimg_write(c->dst, data + pos, off + pos, n);
        } else {
            ret = kimg_fail((int)r, "compression failed");
        }
        if (ret < 0)
            return ret;
        pos += n;
    }
    return 0;
}

static void set_err(struct job *j, const char *what, uint64_t off, const char *name)
{
    const char *m = kimg_last_error() ? kimg_last_error() : "I/O error";
    if (name)
        snprintf(j->err, sizeof(j->err), "error while %s at offset %llu of '%s': %s", what,
                 (unsigned long long)off, name, m);
    else
        snprintf(j->err, sizeof(j->err), "error while %s at offset %llu: %s", what,
                 (unsigned long long)off, m);
}

/* After the last use of a job's mapped data so far: a source that changed
 * size fails the job, whatever else went wrong with that data (srcmap.h). */
static int check_map(struct job *j)
{
    if (!j->map)
        return 0;
    kimg_clear_error();     /* the message is the source's, not the write's */
    int ret = kimg_srcmap_check(j->map);
    if (ret < 0)
        snprintf(j->err, sizeof(j->err), "%s", kimg_last_error());
    return ret;
}

/* -r: the bytes a data job will write to the target as data, after its
 * scan: its data runs (all of it with -c or -S 0).  Zero writes are not
 * charged: qemu-img 7.2's limit lets them through too (convert -n -r 8M
 * of 4 MiB of data and 8 MiB of zeros onto a raw file takes 0.42 s). */
static uint64_t job_write_bytes(const struct engine *e, const struct job *j)
{
    if (e->c->compress)
        return j->len;
    uint64_t n = 0;
    for (uint32_t i = 0; i < j->nruns; i++)
        if (!j->runs[i].zero)
            n += j->runs[i].len;
    return n;
}

/* --salvage: note LEN bytes at job offset POS as unreadable (ERR),
 * merged with the previous range while the error stays the same. */
static int salvage_note(struct job *j, uint64_t pos, uint64_t len, int err)
{
    struct salvaged *last = j->nsalv ? &j->salv[j->nsalv - 1] : NULL;
    if (last && last->err == err && last->off + last->len == j->soff + pos) {
        last->len += len;
        return 0;
    }
    if (j->nsalv == j->salv_cap) {
        uint32_t nc = j->salv_cap ? j->salv_cap * 2 : 8;
        struct salvaged *v = realloc(j->salv, nc * sizeof(*v));
        if (!v) {
            snprintf(j->err, sizeof(j->err), "out of memory");
            return -ENOMEM;
        }
        j->salv = v;
        j->salv_cap = nc;
    }
    j->salv[j->nsalv++] = (struct salvaged){ j->soff + pos, len, err };
    return 0;
}

/* --salvage: [pos, pos+len) of the job failed to read as a whole: read
 * each half again, down to 512 bytes; what fails there is zeros.  Halving
 * finds the bad sectors in a few reads where qemu-img reads every 512
 * bytes (the result and the messages are the same). */
static int salvage_range(struct job *j, uint64_t pos, uint64_t len)
{
    if (len <= 512) {
        int ret = kimg_read(j->src, j->buf + pos, j->soff + pos, len);
        kimg_clear_error();
        if (ret == 0)
            return 0;
        memset(j->buf + pos, 0, len);
        return salvage_note(j, pos, len, ret);
    }
    uint64_t half = (len / 2 + 511) / 512 * 512;
    for (int i = 0; i < 2; i++) {
        uint64_t p = i ? pos + half : pos, n = i ? len - half : half;
        int ret = n <= 512 ? 0 : kimg_read(j->src, j->buf + p, j->soff + p, n);
        kimg_clear_error();
        if (n <= 512 || ret < 0)
            ret = salvage_range(j, p, n);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* --salvage: the job's read failed: find what can be read (above). */
static int salvage_job(struct job *j)
{
    j->data = j->buf;
    j->nsalv = 0;
    j->err[0] = 0;
    return salvage_range(j, 0, j->len);
}

/* First phase of a job on a worker: read, then scan/compress/write. */
static void work_read(struct engine *e, struct job *j, struct kimg_aio *aio)
{
    if (j->kind == JOB_OFFLOAD) {
        kimg_ratelimit_charge(&e->rl, j->len);
        j->ret = offload_copy(e, j);
        return;
    }
    j->nsalv = 0;
    j->ret = fetch_data(e, j, aio);
    /* a source that changed size is no read error to salvage (srcmap.h) */
    if (j->ret < 0 && e->c->salvage && !j->map && !j->err[0])
        j->ret = salvage_job(j);
    if (j->ret < 0) {
        if (!j->err[0])
            set_err(j, "reading", j->soff, kimg_filename(j->src));
        return;
    }
    if (e->split_compress) {
        convert_compress_clusters(e->c, e->cluster, j->doff, j->data, j->len, j->cbuf,
                                  j->cbuf_cap, j->clen, j->npieces);
    } else if (!e->c->compress) {
        scan_runs(e, j);
    }
    /* before any of the job's writes, here or on the main thread */
    kimg_ratelimit_charge(&e->rl, job_write_bytes(e, j));
    if (!e->split_compress && !e->c->compress) {
        if (e->raw_target) {
            j->ret = write_runs_raw(e, j, aio);
            if (j->ret < 0)
                set_err(j, "writing", j->doff, NULL);
        }
    }
    int ret = check_map(j);
    if (ret < 0)
        j->ret = ret;
}

/* A target that transforms its data (encryption): each piece copied into
 * the job's own buffer (the data may be a mapped source) and transformed
 * there, on this worker, before anything is written. */
static int transform_pieces(struct engine *e, struct job *j)
{
    for (uint32_t i = 0; i < j->npieces_w; i++) {
        const struct piece *p = &j->pieces[i];
        if (j->data != j->buf)
            memcpy(j->buf + p->pos, j->data + p->pos, p->len);
        int ret = kimg_transform_data(e->c->dst, j->doff + p->pos, p->host, j->buf + p->pos,
                                      p->len);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* The allocated pieces of J from DATA, in one batch (AIO may be NULL:
 * plain writes).  0 or -errno. */
static int write_pieces(struct engine *e, struct job *j, const uint8_t *data,
                        struct kimg_aio *aio)
{
    struct kimg_aio_req reqs[KIMG_AIO_MAX];
    int n = 0, ret = 0;
    for (uint32_t i = 0; i < j->npieces_w && ret == 0; i++) {
        const struct piece *p = &j->pieces[i];
        if (!e->transform && j->hfile &&
            reflink_range(e, j->hfile, j->hoff + p->pos, p->file, p->host, p->len))
            continue;
        ret = aio_add(aio, reqs, &n, p->file, (uint8_t *)data + p->pos, p->len, p->host, true);
    }
    if (ret == 0 && n)
        ret = aio_all(aio, reqs, n, true);
    return ret;
}

/* On the main thread (e->main_writes): J's allocated pieces, from J's
 * data, with plain writes; then the check of a mapped source. */
int convert_write_pieces_here(struct engine *e, struct job *j)
{
    int ret = write_pieces(e, j, j->data, NULL);
    if (ret == 0)
        ret = check_map(j);
    return ret;
}

/* Second phase (parallel qcow2 writes): the pieces, in one batch. */
static void work_write(struct engine *e, struct job *j, struct kimg_aio *aio)
{
    int ret = 0;
    const uint8_t *data = j->data;
    if (e->transform) {
        ret = transform_pieces(e, j);
        data = j->buf;
        if (ret < 0) {
            j->ret = ret;
            set_err(j, "encrypting", j->doff, NULL);
            return;
        }
    }
    write_turn(e, true);
    ret = write_pieces(e, j, data, aio);
    write_turn(e, false);
    j->ret = ret;
    if (ret < 0)
        set_err(j, "writing", j->doff, NULL);
    if ((ret = check_map(j)) < 0)
        j->ret = ret;
}

/* A pool job on a worker; the job's message goes with its result. */
int convert_run_job(void *opaque, void *local, void *job)
{
    struct engine *e = opaque;
    struct job *j = job;
    if (j->wphase)
        work_write(e, j, local);
    else
        work_read(e, j, local);
    if (j->ret < 0) {
        kimg_clear_error();
        kimg_error("%s", j->err);
    }
    return j->ret;
}

void *convert_worker_init(void *opaque)
{
    struct engine *e = opaque;
    return e->use_aio ? kimg_aio_new() : NULL;
}

void convert_worker_fini(void *opaque, void *local)
{
    kimg_aio_free(local);
}

/* KIMG_CONVERT_WRITE_LAG (test hook): a job's data writes wait until
 * write_lag more jobs have been taken, or the copy drains. */
bool convert_hold_job(void *opaque, void *job)
{
    struct engine *e = opaque;
    struct job *j = job;
    return j->wphase && !__atomic_load_n(&e->draining, __ATOMIC_ACQUIRE) &&
           __atomic_load_n(&e->write_seq, __ATOMIC_ACQUIRE) <= j->seq + e->write_lag;
}
