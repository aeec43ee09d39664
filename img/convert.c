/*
 * convert.c — the copy engine's plan and main thread (its workers are in
 * convert_work.c, the state both share in convert_engine.h).  It walks
 * each source's block status through its backing chain: ranges that read
 * as zeros are never read and, on a target that already reads as zeros,
 * never written; data ranges are read in large chunks, and inside them
 * zero runs of at least the sparse size (rounded up to the target's
 * cluster size) become holes.
 *
 * -B (a target with a backing file), qemu-img's rule: only what the
 * source's top layer holds is copied, its zero clusters as zero writes;
 * what it leaves to its backing file is skipped (the -B image stands in
 * for that chain).  A source without a backing file holds everything: its
 * unallocated ranges are zeros to write.  Zeros at or past the end of the
 * -B image are not written (source_span).  With -c each target cluster is
 * decided at its start, as in qemu-img (copy_source_compressed).
 *
 * Pipeline: the main thread walks block status and cuts the work into
 * jobs of up to 2 MiB; the engines' worker pool (img/pool.c) reads them
 * (and scans for zeros) in parallel, up to `in_flight` at once, each into
 * its own page-aligned 2 MiB buffer, reused job after job.  Data stored
 * plainly in a buffered host file (raw, uncompressed qcow2 clusters) is
 * mapped instead only with KIMG_MAP_SOURCES=1 (img/srcmap.h says why that
 * is not the default: writing from mappings took twice qemu-img's time in
 * a VM, likely from nested TLB misses); a source that
 * changes size fails the copy either way.  An O_DIRECT source is read
 * with libaio (img/aio.c).  Every
 * shortcut (mapping, cloning, copy offload, libaio) is an optional
 * operation of the file layer; a backend without it is read and written
 * with plain reads and writes.
 *
 * Writes: a raw target is written by the workers themselves (libaio
 * batches when it is O_DIRECT).  For a qcow2 target the main thread takes
 * finished jobs strictly in order and allocates their clusters
 * (alloc_data: refcounts and L2 tables, never the L2 entries), the data
 * is written, and the main thread links the clusters (commit_data) only
 * after their data is written.  All allocation happens in job order on
 * one thread, so the layout is deterministic (the same bytes for -m 1 and
 * -m 16), and a crash leaves at worst leaked clusters.  Who writes the
 * data: into a buffered file, the main thread itself, right after the
 * allocation (main_writes: the file takes one writer at a time anyway,
 * and a second hand-off to a worker and back only cost wake-ups: raw ->
 * qcow2 of the bench disk took 10% less CPU idle, and 12% less time and
 * 19% less CPU with the other core busy); into an O_DIRECT file (libaio)
 * or one that encrypts its data, the workers, in parallel, in a second
 * phase of the job (wphase), as the KIMG_CONVERT_WRITE_LAG hook needs.
 * Compressed clusters (-c) are compressed by the workers and written in
 * order by the main thread.
 *
 * One writer per buffered target file.  The kernel copies a buffered
 * write into the page cache under the file's inode lock, one writer at a
 * time: a second worker writing the same file only spins on that lock
 * (perf: 37% of convert's time in rwsem_spin_on_owner).  So the workers
 * take turns at the target's data writes (write_turn), sleeping on a
 * mutex instead of spinning in the kernel, and go on reading, mapping and
 * scanning for zeros in parallel; an O_DIRECT target (libaio, no page
 * cache copy) keeps writing in parallel.  KIMG_CONVERT_PARALLEL_WRITES=1
 * lets buffered writes run in parallel again (for benchmarks).
 *
 * Reflinks.  Data stored plainly in a file on the target's file system
 * (a raw source, uncompressed qcow2 clusters) is not copied where the
 * file system can share extents (XFS, btrfs): the data runs a job would
 * write (a raw target's, or a qcow2 target's allocated clusters) are
 * cloned from the source with FICLONERANGE instead, as `cp` does by
 * default.  Zero detection still runs, so zero runs still become holes
 * and a convert still sparsifies; only the writing is saved, and the
 * output takes no new space for its data.  Runs that are not whole
 * file-system blocks are copied.  The first refusal (another file system,
 * no reflink support) turns cloning off and that run is copied as usual;
 * on ext4 the cost is one failed ioctl.  Not where the output's blocks
 * must be its own (kimg_convert.own_blocks, -S 0): a later write to a
 * shared block needs new space.  copy_file_range is not used unasked
 * (-C): where it cannot share extents it copies through the page cache,
 * slower than the engine's own copy (0.46 s against 0.38 s for the bench
 * disk on ext4).
 *
 * For benchmarks and tests: KIMG_CONVERT_NO_REFLINK=1 copies instead of
 * cloning, KIMG_CONVERT_NO_MAP=1 reads everything through the drivers,
 * KIMG_CONVERT_SERIAL=1 writes a qcow2 target from the main thread only
 * (the layout is the same either way), KIMG_CONVERT_WRITE_LAG=N
 * holds a job's parallel data writes until N more jobs have been planned
 * (or the copy drains): the main thread then evicts L2 tables of jobs whose
 * data is not written yet, so a crash test sees whether a cluster could be
 * linked before its data.
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

/* Zero scan: the head byte by byte up to a 16-byte boundary, then 128
 * bytes per step as eight 16-byte vectors ORed together (one test per
 * step: SSE2 on x86-64, NEON on arm64; GCC's and clang's vector types),
 * then the tail.  A data block usually fails at its first bytes; the
 * steps matter for the zero blocks inside data extents, read whole. */
typedef uint64_t zscan_vec __attribute__((vector_size(16), aligned(16)));

bool kimg_buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len && ((uintptr_t)p & (sizeof(zscan_vec) - 1))) {
        if (*p++)
            return false;
        len--;
    }
    const zscan_vec *v = (const zscan_vec *)(const void *)p;
    while (len >= 8 * sizeof(zscan_vec)) {
        zscan_vec acc = (v[0] | v[1]) | (v[2] | v[3]) | (v[4] | v[5]) | (v[6] | v[7]);
        if (acc[0] | acc[1])
            return false;
        v += 8;
        len -= 8 * sizeof(zscan_vec);
    }
    p = (const unsigned char *)v;
    while (len--)
        if (*p++)
            return false;
    return true;
}

/* ---- the main thread: allocation, ordered writes, links -------------------- */

static int add_piece(struct job *j, uint64_t pos, uint64_t len, uint64_t host,
                     struct kimg_file *file)
{
    if (j->npieces_w == j->pieces_cap) {
        uint32_t nc = j->pieces_cap ? j->pieces_cap * 2 : 16;
        struct piece *v = realloc(j->pieces, nc * sizeof(*v));
        if (!v)
            return kimg_fail(-ENOMEM, "out of memory");
        j->pieces = v;
        j->pieces_cap = nc;
    }
    j->pieces[j->npieces_w++] = (struct piece){ pos, len, host, file };
    return 0;
}

/* qcow2 target: zero runs and partial clusters written now, whole clusters
 * given host space (in order: this decides the layout) for a worker to
 * write.  Returns 0 or -errno. */
static int plan_job(struct engine *e, struct job *j)
{
    struct kimg *dst = e->c->dst;
    uint64_t cs = e->cluster;
    j->npieces_w = 0;
    for (uint32_t i = 0; i < j->nruns; i++) {
        const struct run *r = &j->runs[i];
        uint64_t a = j->doff + r->pos, b = a + r->len;
        int ret;
        if (r->zero) {
            ret = convert_write_zero_range(e, a, r->len);
            if (ret < 0)
                return ret;
            continue;
        }
        /* whole clusters [ca, cb); the partial ones around them go through
         * the driver's write (copy-on-write and all) */
        uint64_t ca = (a + cs - 1) / cs * cs, cb = b / cs * cs;
        if (ca >= cb) {
            ca = cb = b;
        }
        if (a < ca) {
            ret = kimg_write(dst, j->data + (a - j->doff), a, (ca < b ? ca : b) - a);
            if (ret < 0)
                return ret;
        }
        /* [wa, ca): clusters that go through the driver's write (allocated
         * already, or not for this path), gathered into one call */
        uint64_t wa = ca;
        while (ca < cb) {
            uint64_t host = 0;
            struct kimg_file *f = NULL;
            /* after a refusal, probe one cluster at a time */
            int64_t n = kimg_alloc_data(dst, ca, wa < ca ? cs : cb - ca, &host, &f);
            if (n < 0)
                return (int)n;
            if (n == 0) {
                ca += cs;
                continue;
            }
            if (wa < ca) {
                ret = kimg_write(dst, j->data + (wa - j->doff), wa, ca - wa);
                if (ret < 0)
                    return ret;
            }
            ret = add_piece(j, ca - j->doff, (uint64_t)n, host, f);
            if (ret < 0)
                return ret;
            ca += (uint64_t)n;
            wa = ca;
        }
        if (wa < cb) {
            ret = kimg_write(dst, j->data + (wa - j->doff), wa, cb - wa);
            if (ret < 0)
                return ret;
        }
        if (cb > a && cb < b) {
            ret = kimg_write(dst, j->data + (cb - j->doff), cb, b - cb);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

/* The pieces of J are written: link them. */
static int commit_job(struct engine *e, struct job *j)
{
    struct kimg *dst = e->c->dst;
    for (uint32_t i = 0; i < j->npieces_w; i++) {
        const struct piece *p = &j->pieces[i];
        int ret = kimg_commit_data(dst, j->doff + p->pos, p->len, p->host);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static void release_job(struct engine *e, struct job *j)
{
    if (j->map)
        kimg_srcwins_put(e->wins, j->map);
    j->map = NULL;
    kimg_pool_put(e->pool, j);
}

static int write_sparse_compress(struct engine *e, struct job *j);
static int write_runs_serial(struct engine *e, struct job *j);

/* Do one piece of main-thread work: link a job whose pieces are written,
 * or take the next job in sequence once it is read.  Returns 1 if it did
 * something, 0 if nothing was ready (and WAIT is false), or -errno. */
static int service(struct engine *e, bool wait)
{
    int ret;
    struct job *j = kimg_pool_take(e->pool, &ret, wait);
    if (!j)
        return 0;
    if (ret < 0) {              /* its message is set (the pool) */
        release_job(e, j);
        return ret;
    }
    if (j->wphase) {
        ret = commit_job(e, j);
        if (ret == 0)
            convert_report(e, j->len);
        release_job(e, j);
        return ret < 0 ? ret : 1;
    }
    bool keep = false;
    /* --salvage: the job's unreadable ranges, in target order */
    for (uint32_t i = 0; i < j->nsalv && e->c->salvaged; i++)
        e->c->salvaged(e->c->opaque, j->src_index, j->salv[i].off, j->salv[i].len,
                       j->salv[i].err);
    j->nsalv = 0;
    if (j->kind == JOB_ZERO) {
        if (!e->c->sparse_size)     /* -S 0: the zeros go as data */
            kimg_ratelimit_charge(&e->rl, j->len);
        ret = convert_write_zero_range(e, j->doff, j->len);
    } else if (j->kind == JOB_DATA && !e->raw_target) {
        if (e->split_compress)
            ret = convert_store_clusters(e->c, e->cluster, j->doff, j->data, j->len, j->cbuf,
                                         j->clen);
        else if (e->c->compress)
            ret = write_sparse_compress(e, j);
        else if (e->par_write)
            ret = plan_job(e, j);
        else
            ret = write_runs_serial(e, j);
        if (j->map && kimg_srcmap_check(j->map) < 0) {
            kimg_clear_error();     /* the source changed size: that first */
            ret = kimg_srcmap_check(j->map);
        } else if (ret < 0) {
            kimg_error("error while writing at offset %llu", (unsigned long long)j->doff);
        }
        if (ret == 0 && e->main_writes && j->npieces_w) {
            ret = convert_write_pieces_here(e, j);
            if (ret == 0)
                ret = commit_job(e, j);
            if (ret < 0 && !kimg_last_error())
                kimg_error("error while writing at offset %llu", (unsigned long long)j->doff);
        }
        keep = ret == 0 && e->par_write && !e->main_writes && j->npieces_w;
    }
    __atomic_store_n(&e->write_seq, e->write_seq + 1, __ATOMIC_RELEASE);
    if (keep) {
        j->wphase = true;
        kimg_pool_requeue(e->pool, j);
    } else if (e->write_lag) {
        kimg_pool_kick(e->pool);            /* held jobs may go now */
    }
    if (!keep) {
        if (ret == 0)
            convert_report(e, j->len);
        release_job(e, j);
    }
    return ret < 0 ? ret : 1;
}

/* -c into a target whose driver compresses only in its own write path:
 * whole clusters, all-zero ones left as holes (in order, main thread). */
static int write_sparse_compress(struct engine *e, struct job *j)
{
    for (uint64_t pos = 0; pos < j->len;) {
        uint64_t n = convert_piece_len(e, j, pos), off = j->doff + pos;
        bool whole = n == e->cluster || off + n == kimg_size(e->c->dst);
        int ret = e->c->sparse_size && kimg_buffer_is_zero(j->data + pos, n)
                ? convert_write_zero_range(e, off, n)
                : whole ? kimg_write_compressed(e->c->dst, j->data + pos, off, n)
                        /* a cluster split between two sources */
                        : kimg_write(e->c->dst, j->data + pos, off, n);
        if (ret < 0)
            return ret;
        pos += n;
    }
    return 0;
}

/* A target without parallel writes: the job's runs, in order. */
static int write_runs_serial(struct engine *e, struct job *j)
{
    for (uint32_t i = 0; i < j->nruns; i++) {
        const struct run *r = &j->runs[i];
        int ret = r->zero ? convert_write_zero_range(e, j->doff + r->pos, r->len)
                          : kimg_write(e->c->dst, j->data + r->pos, j->doff + r->pos, r->len);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Queue a job (doing main-thread work until a slot is free).  HFILE/HOFF:
 * the data is stored plainly there (NULL: read through the driver). */
static int add_job_full(struct engine *e, enum job_kind kind, struct kimg *src,
                        struct kimg_file *src_file,
                        struct kimg_file *hfile, uint64_t hoff,
                        uint64_t soff, uint64_t doff, uint64_t len)
{
    for (;;) {
        struct job *slot = kimg_pool_get(e->pool);
        if (slot) {
            slot->kind = kind;
            slot->wphase = false;
            slot->src = src;
            slot->src_file = src_file;
            slot->err[0] = 0;
            slot->hfile = hfile;
            slot->hoff = hoff;
            slot->soff = soff;
            slot->doff = doff;
            slot->len = len;
            slot->ret = 0;
            slot->nruns = 0;
            slot->npieces_w = 0;
            slot->nsalv = 0;
            slot->src_index = e->src_index;
            slot->data = slot->buf;
            slot->seq = e->next_seq++;
            /* zero and skip jobs need no reading: done at once */
            if (kind == JOB_DATA || kind == JOB_OFFLOAD)
                kimg_pool_submit(e->pool, slot);
            else
                kimg_pool_submit_done(e->pool, slot);
            break;
        }
        int ret = service(e, true);
        if (ret < 0)
            return ret;
    }
    convert_steps_advance(&e->steps, doff + len);
    /* whatever is already finished, without waiting */
    for (;;) {
        int ret = service(e, false);
        if (ret <= 0)
            return ret;
    }
}

static int add_job(struct engine *e, enum job_kind kind, struct kimg *src,
                   uint64_t soff, uint64_t doff, uint64_t len)
{
    return add_job_full(e, kind, src, NULL, NULL, 0, soff, doff, len);
}

/* -C: queue the data extent EXT (guest [off, off+len) of SRC) as in-kernel
 * copies from its host file; fails when the data is not plainly stored. */
static int add_offload_jobs(struct engine *e, struct kimg *src, uint64_t base,
                            uint64_t off, const struct kimg_extent *ext)
{
    if (!(ext->flags & KIMG_BS_OFFSET_VALID) || (ext->flags & KIMG_BS_COMPRESSED) ||
        !ext->host_file || !kimg_file_has_copy_range(ext->host_file))
        return kimg_fail(-ENOTSUP, "copy offloading (-C) is not possible: the data at "
                         "offset %llu of '%s' is not stored plainly in a file",
                         (unsigned long long)off, kimg_filename(src));
    for (uint64_t pos = 0; pos < ext->length;) {
        uint64_t n = CHUNK - ((base + off + pos) % CHUNK);
        if (n > ext->length - pos)
            n = ext->length - pos;
        int ret = add_job_full(e, JOB_OFFLOAD, src, ext->host_file, NULL, 0,
                               ext->offset + pos, base + off + pos, n);
        if (ret < 0)
            return ret;
        pos += n;
    }
    return 0;
}

/* Queue [from, to) of SRC as data jobs of up to CHUNK bytes, cut at
 * CHUNK-aligned target offsets so they line up with the target's clusters.
 * HFILE: the range is stored plainly at HOFF (for FROM) in that file. */
static int add_data_jobs(struct engine *e, struct kimg *src, uint64_t base,
                         uint64_t from, uint64_t to, struct kimg_file *hfile, uint64_t hoff)
{
    while (from < to) {
        uint64_t n = CHUNK - ((base + from) % CHUNK);
        if (n > to - from)
            n = to - from;
        int ret = add_job_full(e, JOB_DATA, src, NULL, hfile, hoff, from, base + from, n);
        if (ret < 0)
            return ret;
        from += n;
        hoff += n;
    }
    return 0;
}

/* The host file holding EXT's data as is, if the engine may map or read it
 * directly: a file (not a device), the whole extent inside it. */
static struct kimg_file *plain_host(const struct kimg_extent *ext)
{
    struct kimg_file *f = ext->host_file;
    uint64_t size;
    if (!(ext->flags & KIMG_BS_OFFSET_VALID) || (ext->flags & KIMG_BS_COMPRESSED) || !f ||
        kimg_tunables()->convert_no_map)
        return NULL;
    if (kimg_file_is_device(f) || f->ops->get_size(f, &size) < 0 ||
        ext->offset + ext->length > size)
        return NULL;
    return f;
}

/* What a range of a source is to the copy, as qemu-img convert decides it:
 * data to read, zeros to write, or nothing to do (the target's backing
 * file supplies it). */
enum span { SPAN_SKIP, SPAN_ZERO, SPAN_DATA };

/* The span of SRC (at BASE in the target) starting at OFF, into *KIND and
 * EXT (its length; for data, where it is stored).  Without -B: the whole
 * chain's status, zero or data.  With -B (qemu-img's rule): the source's
 * top layer only, as the target's backing file stands in for the source's
 * backing chain; a range the top layer leaves to its backing file is
 * skipped, even past that backing file's end; a top layer without a
 * backing file decides everything (its unallocated ranges are zeros).
 * Zeros at or past the end of the target's backing file are skipped (the
 * target reads zeros there already), and spans are split at that end. */
static int source_span(struct engine *e, struct kimg *src, uint64_t base, uint64_t off,
                       enum span *kind, struct kimg_extent *ext)
{
    const struct kimg_convert *c = e->c;
    uint64_t len = kimg_size(src) - off;
    int ret;
    if (c->backing_end_known && base + off < c->backing_end && c->backing_end - (base + off) < len)
        len = c->backing_end - (base + off);
    if (c->target_has_backing) {
        ret = kimg_layer_block_status(src, off, len, ext);
        if (ret < 0)
            return ret;
        if (!(ext->flags & KIMG_BS_ALLOCATED) && kimg_backing(src)) {
            *kind = SPAN_SKIP;
            return 0;
        }
        len = ext->length;
    }
    ret = kimg_content_status(src, off, len, ext);
    if (ret < 0)
        return ret;
    if (!(ext->flags & KIMG_BS_ZERO))
        *kind = SPAN_DATA;
    else if (c->backing_end_known && base + off >= c->backing_end)
        *kind = SPAN_SKIP;
    else
        *kind = SPAN_ZERO;
    return 0;
}

/* source_span, and with --salvage, where the source's block status
 * fails: the 512 bytes at OFF asked alone, and if that fails too, taken
 * as data to read (qemu-img's warning for them through the callback). */
static int salvage_span(struct engine *e, struct kimg *src, uint64_t base, uint64_t off,
                        enum span *kind, struct kimg_extent *ext)
{
    int ret = source_span(e, src, base, off, kind, ext);
    if (ret >= 0 || !e->c->salvage)
        return ret;
    kimg_clear_error();
    uint64_t n = kimg_size(src) - off < 512 ? kimg_size(src) - off : 512;
    ret = kimg_content_status(src, off, n, ext);
    if (ret == 0) {
        ext->length = ext->length < n ? ext->length : n;
        *kind = (ext->flags & KIMG_BS_ZERO) ? SPAN_ZERO : SPAN_DATA;
        return 0;
    }
    kimg_clear_error();
    if (e->c->status_salvaged)
        e->c->status_salvaged(e->c->opaque, e->src_index, off, n, ret);
    memset(ext, 0, sizeof(*ext));
    ext->start = off;
    ext->length = n;
    ext->flags = KIMG_BS_DATA | KIMG_BS_ALLOCATED;
    *kind = SPAN_DATA;
    return 0;
}

static int copy_source(struct engine *e, struct kimg *src, uint64_t base)
{
    uint64_t size = kimg_size(src);
    for (uint64_t off = 0; off < size;) {
        struct kimg_extent ext;
        enum span kind;
        int ret = salvage_span(e, src, base, off, &kind, &ext);
        if (ret < 0)
            return ret;
        uint64_t end = off + ext.length;
        if (kind != SPAN_DATA)
            ret = add_job(e, kind == SPAN_ZERO ? JOB_ZERO : JOB_SKIP, src, off, base + off,
                          ext.length);
        else if (e->c->copy_offload)
            ret = add_offload_jobs(e, src, base, off, &ext);
        else
            ret = add_data_jobs(e, src, base, off, end, plain_host(&ext), ext.offset);
        if (ret < 0)
            return ret;
        off = end;
    }
    return 0;
}

/* -c: data is read and compressed in whole target clusters, decided as
 * qemu-img does at each cluster's start: a span that covers whole
 * clusters is handled as its kind for those clusters; a shorter one (data,
 * or zeros or skipped ranges that end inside the cluster) makes the whole
 * cluster data, read through the chain (with -B, the backing file's part
 * too).  A cluster shared with the previous or next source is data. */
static int copy_source_compressed(struct engine *e, struct kimg *src, uint64_t base)
{
    uint64_t size = kimg_size(src), cs = e->cluster, off = 0;
    int ret;
    if (base % cs) {
        off = cs - base % cs < size ? cs - base % cs : size;
        ret = add_data_jobs(e, src, base, 0, off, NULL, 0);
        if (ret < 0)
            return ret;
    }
    /* here base + off is a multiple of the cluster size */
    while (off < size) {
        struct kimg_extent ext;
        enum span kind;
        ret = salvage_span(e, src, base, off, &kind, &ext);
        if (ret < 0)
            return ret;
        uint64_t end = off + ext.length, to;
        struct kimg_file *hf = NULL;
        /* -S 0: zeros are data, compressed as any (qemu-img) */
        bool zero_data = kind == SPAN_ZERO && !e->c->sparse_size;
        if (kind != SPAN_DATA && !zero_data) {
            uint64_t whole = (base + end) / cs * cs - base;
            if (whole > off) {
                ret = add_job(e, kind == SPAN_ZERO ? JOB_ZERO : JOB_SKIP, src, off, base + off,
                              whole - off);
                if (ret < 0)
                    return ret;
                off = whole;
                continue;
            }
            to = off + cs < size ? off + cs : size;
        } else {
            to = (base + end + cs - 1) / cs * cs - base;
            if (to > size)
                to = size;
            /* mapped or read directly only if the jobs lie inside EXT */
            if (to == end && kind == SPAN_DATA)
                hf = plain_host(&ext);
        }
        ret = add_data_jobs(e, src, base, off, to, hf, ext.offset);
        if (ret < 0)
            return ret;
        off = to;
    }
    return 0;
}

static int engine_start(struct engine *e, int in_flight)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    /* Workers: one per core, as page-cache copies and decoding keep a
     * thread on its core and more threads only take turns there (AMD
     * EPYC, 2 vCPUs, medians of 5-9 alternating runs, 4 workers -> 2:
     * raw -> qcow2 0.28 -> 0.25 s, qcow2 -> raw 0.24 -> 0.22 s, zstd
     * qcow2 -> qcow2 0.74 -> 0.65 s).  At least 4 with O_DIRECT: a worker
     * there waits for the device, not computing.  One fewer when the main
     * thread writes (main_writes) and the sources are raw files: reading
     * is then all a worker does, and the main thread's writing is the
     * other core's work (raw -> qcow2 0.22 s, the pipeline floor 0.20 s;
     * a compressed source wants both cores decoding: zstd qcow2 -> qcow2
     * took 1.08 s with one worker). */
    long want = e->use_aio ? (ncpu < 4 ? 4 : ncpu) : (ncpu > 1 ? ncpu : 1);
    if (!e->use_aio && e->main_writes && e->plain_sources && want > 1)
        want--;
    struct kimg_pool_def def = {
        .threads = want > in_flight ? in_flight : (int)want, .slots = in_flight,
        .job_size = sizeof(struct job), .run = convert_run_job, .worker_init = convert_worker_init,
        .worker_fini = convert_worker_fini, .hold = e->write_lag ? convert_hold_job : NULL, .opaque = e,
    };
    pthread_mutex_init(&e->wturn, NULL);
    kimg_ratelimit_init(&e->rl, e->c->rate_limit);
    e->wins = kimg_srcwins_new(MAP_WINDOW);
    e->pool = e->wins ? kimg_pool_new(&def) : NULL;
    if (!e->pool)
        return -ENOMEM;
    /* runs: at most one per grain block (512 bytes at the finest) */
    uint64_t g = e->grain ? e->grain : CHUNK;
    uint32_t nruns = (uint32_t)(CHUNK / (g < 512 ? 512 : g) + 2);
    for (int i = 0; i < in_flight; i++) {
        struct job *j = kimg_pool_job(e->pool, i);
        j->buf = kimg_buffer_alloc(CHUNK);
        j->runs = calloc(nruns, sizeof(*j->runs));
        if (!j->buf || !j->runs)
            return -ENOMEM;
        j->runs_cap = nruns;
        if (e->split_compress) {
            j->npieces = (uint32_t)(CHUNK / e->cluster + 2);
            /* room for clusters that do not shrink (a stream VMDK
             * stores them deflated all the same) */
            j->cbuf_cap = CHUNK + j->npieces * 1024;
            j->cbuf = kimg_buffer_alloc(j->cbuf_cap);
            j->clen = calloc(j->npieces, sizeof(*j->clen));
            if (!j->cbuf || !j->clen)
                return -ENOMEM;
        }
    }
    return 0;
}

/* Stop the workers (after the queue drains or is abandoned) and free. */
static void engine_stop(struct engine *e)
{
    if (!e->pool) {
        kimg_srcwins_free(e->wins);
        e->wins = NULL;
        return;
    }
    /* abandoned jobs are dropped, running ones finish */
    kimg_pool_stop(e->pool);
    for (int i = 0; i < kimg_pool_slots(e->pool); i++) {
        struct job *j = kimg_pool_job(e->pool, i);
        if (j->map)
            kimg_srcwins_put(e->wins, j->map);
        kimg_buffer_free(j->buf, CHUNK);
        free(j->runs);
        free(j->pieces);
        kimg_buffer_free(j->cbuf, j->cbuf_cap);
        free(j->clen);
        free(j->salv);
    }
    kimg_pool_free(e->pool);
    e->pool = NULL;
    kimg_srcwins_free(e->wins);
    e->wins = NULL;
    pthread_mutex_destroy(&e->wturn);
    kimg_ratelimit_fini(&e->rl);
}

/* Reflinks (see the top), where they may work and are wanted: copies of
 * plain data into a regular target file whose blocks need not be its own
 * (not with -S 0 or a preallocated or existing target, whose owner wants
 * the space held), and not under a crash model that cannot see them. */
static void reflink_start(struct engine *e)
{
    struct kimg_file *f = e->c->dst->file;
    uint64_t align;
    /* --salvage: bad source blocks are not shared, they are read (and
     * copied as zeros where they fail) */
    if ((!e->raw_target && !e->par_write) || e->c->own_blocks || !e->c->sparse_size || !f ||
        e->c->salvage ||
        kimg_tunables()->convert_no_reflink || kimg_crash_lossy() ||
        !(align = kimg_file_clone_align(f)))
        return;
    e->reflink = true;
    e->reflink_align = align;
}

static bool is_direct(const struct kimg *img)
{
    for (; img; img = img->backing)
        if (img->file && img->file->direct)
            return true;
    return false;
}

int kimg_convert_run(struct kimg_convert *c)
{
    struct engine e = { .c = c };
    int ret;

    for (int i = 0; i < c->nb_src; i++)
        e.total += kimg_size(c->src[i]);
    /* qemu-img: a target that stores every write compressed is copied as
     * with -c (its -p steps too) */
    if (!c->compress && kimg_needs_compressed_writes(c->dst))
        c->compress = true;
    e.cluster = kimg_cluster_size(c->dst) ? kimg_cluster_size(c->dst) : 65536;
    if (c->sparse_size) {
        /* holes smaller than a target cluster save nothing in a cluster
         * format and cost a read-modify-write: round up */
        e.grain = c->sparse_size;
        if (kimg_cluster_size(c->dst) > e.grain)
            e.grain = e.cluster;
    } else {
        e.zbuf = kimg_alloc_aligned(CHUNK);
        if (!e.zbuf)
            return kimg_fail(-ENOMEM, "out of memory");
        memset(e.zbuf, 0, CHUNK);
    }
    if (c->compress && kimg_transforms_data(c->dst)) {
        free(e.zbuf);
        return kimg_fail(-ENOTSUP, "Compression and encryption not supported at the same "
                         "time");
    }
    /* the target compresses on our workers if its driver splits the work */
    if (c->compress)
        e.split_compress = kimg_size(c->dst) > 0 && kimg_can_compress(c->dst);
    if (c->copy_offload) {
        if (!kimg_maps_identity(c->dst) || !c->dst->file || !kimg_file_has_copy_range(c->dst->file) ||
            c->compress) {
            free(e.zbuf);
            return kimg_fail(-ENOTSUP, "copy offloading (-C) needs a raw target file and no -c");
        }
    }
    e.raw_target = !c->compress && !c->copy_offload && kimg_maps_identity(c->dst);
    e.par_write = !c->compress && !c->copy_offload && !e.raw_target &&
                  kimg_can_alloc_data(c->dst) &&
                  !kimg_tunables()->convert_serial;
    e.transform = e.par_write && kimg_transforms_data(c->dst);
    reflink_start(&e);
    e.use_aio = is_direct(c->dst);
    e.one_writer = !e.use_aio && !kimg_tunables()->convert_parallel_writes;
    for (int i = 0; i < c->nb_src; i++)
        e.use_aio |= is_direct(c->src[i]);
    int in_flight = c->in_flight > 0 ? c->in_flight : 8;
    /* the job slots' buffers within JOB_MEMORY whatever -m asks (16
     * slots of -c's data and compressed buffers took 68 MiB peak) */
    uint64_t per_slot = CHUNK + (e.split_compress ? CHUNK + (CHUNK / e.cluster + 2) * 1024 : 0);
    if ((uint64_t)in_flight * per_slot > JOB_MEMORY)
        in_flight = JOB_MEMORY / per_slot > 1 ? (int)(JOB_MEMORY / per_slot) : 1;
    uint64_t lag = kimg_tunables()->convert_write_lag;
    /* held jobs keep their slots: leave room for the jobs that release them */
    if (lag > 0 && in_flight > 2 && lag < (uint64_t)(in_flight - 2))
        e.write_lag = lag;
    /* a buffered qcow2 target: the main thread writes what it allocates
     * (see the top); the write-lag hook needs the second phase */
    e.main_writes = e.par_write && e.one_writer && !e.transform && !e.use_aio && !e.write_lag;
    e.plain_sources = true;
    for (int i = 0; i < c->nb_src; i++)
        e.plain_sources &= kimg_maps_identity(c->src[i]) && !c->src[i]->backing;
    /* the sources' sizes now and at the end (srcmap.h) */
    struct kimg_srcsizes *sizes = calloc((size_t)c->nb_src, sizeof(*sizes));
    ret = sizes ? engine_start(&e, in_flight) : -ENOMEM;
    if (ret < 0) {
        engine_stop(&e);
        free(e.zbuf);
        free(sizes);
        return kimg_fail(ret, "cannot start the copy: %s", strerror(-ret));
    }
    for (int i = 0; i < c->nb_src; i++)
        kimg_srcmap_note_sizes(c->src[i], c->dst->file, &sizes[i]);
    if (c->progress)
        c->progress(c->opaque, 0, e.total);
    convert_steps_start(&e.steps, c, e.cluster);
    uint64_t base = 0;
    for (int i = 0; i < c->nb_src && ret == 0; i++) {
        e.src_index = i;
        ret = c->compress ? copy_source_compressed(&e, c->src[i], base)
                          : copy_source(&e, c->src[i], base);
        base += kimg_size(c->src[i]);
    }
    if (ret == 0)
        convert_steps_advance(&e.steps, UINT64_MAX);
    convert_steps_free(&e.steps);
    /* drain: every job still in flight written and linked */
    __atomic_store_n(&e.draining, true, __ATOMIC_RELEASE);
    kimg_pool_kick(e.pool);
    while (ret == 0) {
        int r = service(&e, true);
        if (r <= 0) {
            ret = r;
            break;
        }
    }
    engine_stop(&e);
    free(e.zbuf);
    for (int i = 0; i < c->nb_src && ret == 0; i++)
        ret = kimg_srcmap_check_sizes(c->src[i], &sizes[i]);
    free(sizes);
    if (ret == 0)
        ret = kimg_flush(c->dst);
    return ret;
}
